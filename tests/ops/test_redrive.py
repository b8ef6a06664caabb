"""``ops.redrive`` against SQS as moto runs it (in-process), with the queues template.yaml declares.

The end-to-end drill (a real outage on the local stack, parked by the real function, redriven with the command
line, delivered once under the original messageId) is ``tests/integration/test_redrive.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from local_stack.strict_sqs import make_strict
from local_stack.template import Template
from ops.redrive import (
    OWN_ATTRIBUTES,
    REASON_ATTRIBUTES,
    QueuePair,
    body_problem,
    dry_run,
    main,
    redrive,
    redriven_attributes,
    redriven_copy,
    render,
    stack_queues,
)
from segment_forwarder.events import sqs_delivery_id

OWN = {"delivery_id", "source_message_id", "source_kind", "retry_since", "first_received_at"}
make_strict()  # moto's SQS refuses what SQS refuses (sizes, attributes, batches, visibility)
NOW_MS = 1_900_000_000_000
BODY = json.dumps({"workspace_id": "ws", "visitor_id": "v-1", "conversion_id": "c", "conversion_type": "CLICK",
                   "origin_url": "https://example.com/"})  # fmt: skip


class Aws:
    """moto with the template's queues; helpers to park messages and read queues."""

    def __init__(self, parameters: dict[str, str] | None = None, stack_name: str = "segment-forwarder-local") -> None:
        self.template = Template.load(parameters=parameters, stack_name=stack_name)
        self.session = boto3.session.Session()
        self.resources = self.template.create_resources(self.session)
        self.sqs = self.session.client("sqs")
        self.queues = QueuePair(
            "conversion",
            self.resources["ConversionQueue"].ref,
            self.resources["ConversionDeadLetterQueue"].ref,
            "moto",
        )

    def park(self, body: str = BODY, **attributes: str) -> str:
        """Put a message on the DLQ as the function parks one; its DLQ message id."""
        sent = self.sqs.send_message(
            QueueUrl=self.queues.dlq_url,
            MessageBody=body,
            MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()},
        )
        return str(sent["MessageId"])

    def take(self, url: str) -> list[dict[str, Any]]:
        """Receive and delete every visible message of a queue (at once: nothing may still be hidden)."""
        taken: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
        ).get("Messages", []):
            for message in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            taken += batch
        return taken


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield Aws()


def strings(message: dict[str, Any]) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def parked_by_the_function(aws: Aws, code: str, source_id: str, **more: str) -> str:
    return aws.park(
        error_code=code,
        error_message=f"{code}: what went wrong",
        source_message_id=source_id,
        receive_count="412",
        source_kind="conversion",
        first_received_at="1899990000000",
        **more,
    )


def test_a_dry_run_counts_by_reason_moves_nothing_and_every_message_is_visible_again_at_once(aws):
    for i in range(3):
        parked_by_the_function(aws, "retries_exhausted", f"src-{i}")
    parked_by_the_function(aws, "invalid_value", "src-9", error_field="origin_url")

    report = dry_run(aws.sqs, aws.queues)
    lines = render(report, aws.queues, dlq_depth=4)

    assert report.by_reason == {"retries_exhausted": 3, "invalid_value": 1}
    assert len(aws.take(aws.queues.dlq_url)) == 4  # all of them receivable right away: nothing hidden, nothing gone
    assert aws.take(aws.queues.source_url) == []
    assert lines[1].startswith("DRY RUN: nothing moved or deleted. 4 message(s) looked at of ~4 in the DLQ")
    assert any(line.split() == ["retries_exhausted", "3"] for line in lines)
    assert any("(field origin_url)" in line and "source message src-9" in line for line in lines)


def test_a_moved_message_keeps_what_a_duplicate_safe_resend_needs_and_starts_a_new_horizon(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1", delivery_id="first-attempt-id", error_field="x")

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    [copy] = aws.take(aws.queues.source_url)
    assert (report.moved, report.failed, report.by_reason) == (1, {}, {"retries_exhausted": 1})
    assert copy["Body"] == BODY
    assert strings(copy) == {
        "delivery_id": "first-attempt-id",
        "source_message_id": "src-1",
        "source_kind": "conversion",
        "first_received_at": "1899990000000",
        "retry_since": str(NOW_MS),
    }
    assert aws.take(aws.queues.dlq_url) == []


def test_without_a_delivery_id_it_is_derived_from_the_source_message_id_as_the_function_does(aws):
    parked_by_the_function(aws, "retries_exhausted", "0f6c3c1e-5d1f-4cbb-9c4e-8a7b0a1b2c3d")

    redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    [copy] = aws.take(aws.queues.source_url)
    assert strings(copy)["delivery_id"] == sqs_delivery_id("0f6c3c1e-5d1f-4cbb-9c4e-8a7b0a1b2c3d")


def test_a_message_moved_by_the_redrive_policy_keeps_its_message_id_and_so_its_delivery_id(aws):
    aws = Aws(parameters={"MaxReceiveCount": "1"}, stack_name="max-receive-1")
    original = aws.sqs.send_message(QueueUrl=aws.queues.source_url, MessageBody=BODY)["MessageId"]
    aws.sqs.receive_message(QueueUrl=aws.queues.source_url, VisibilityTimeout=0)  # receive 1 of 1
    aws.sqs.receive_message(QueueUrl=aws.queues.source_url)  # over maxReceiveCount: SQS moves it to the DLQ

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    [copy] = aws.take(aws.queues.source_url)
    assert report.by_reason == {"(no error_code: moved by SQS after MaxReceiveCount receives)": 1}
    assert strings(copy)["source_message_id"] == original
    assert strings(copy)["delivery_id"] == sqs_delivery_id(original)  # what its first attempts were sent under


def test_a_copy_the_source_queue_refuses_is_never_deleted_and_is_visible_again(aws):
    for i in range(12):
        parked_by_the_function(aws, "retries_exhausted", f"src-{i}")
    gone = QueuePair("conversion", aws.queues.source_url + "-gone", aws.queues.dlq_url, "moto")

    report = redrive(aws.sqs, gone, now_ms=lambda: NOW_MS)

    assert report.moved == 0 and len(report.failed) == 12 and not report.ok
    assert len(aws.take(aws.queues.dlq_url)) == 12
    assert any(line.startswith("NOT MOVED: 12 message(s) stay in the DLQ") for line in render(report, gone))


def test_messages_parked_after_the_run_began_stay_for_the_next_run(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: 0)  # the run "began" before the message was parked

    assert (report.moved, report.parked_during_run) == (0, 1)
    assert len(aws.take(aws.queues.dlq_url)) == 1
    assert aws.take(aws.queues.source_url) == []


def test_limit_moves_at_most_that_many_and_leaves_the_rest_visible(aws):
    for i in range(15):
        parked_by_the_function(aws, "retries_exhausted", f"src-{i}")

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, limit=4)

    assert report.moved == 4
    assert len(aws.take(aws.queues.source_url)) == 4
    assert len(aws.take(aws.queues.dlq_url)) == 11


def test_the_reason_attributes_are_dropped_and_any_other_attribute_is_kept():
    message = {
        "MessageId": "dlq-1",
        "MessageAttributes": {
            "error_code": {"DataType": "String", "StringValue": "rejected"},
            "error_message": {"DataType": "String", "StringValue": "no"},
            "error_field": {"DataType": "String", "StringValue": "f"},
            "receive_count": {"DataType": "String", "StringValue": "3"},
            "producer_trace": {"DataType": "String", "StringValue": "abc"},
        },
    }

    attributes = redriven_attributes(message, "identify", NOW_MS)

    assert set(attributes) == {"producer_trace", "delivery_id", "source_message_id", "source_kind", "retry_since"}
    assert attributes["source_message_id"]["StringValue"] == "dlq-1"
    assert attributes["source_kind"]["StringValue"] == "identify"
    assert attributes["delivery_id"]["StringValue"] == sqs_delivery_id("dlq-1")


def test_a_deployed_stack_is_found_by_its_outputs(aws):
    template = aws.template
    outputs = {
        "ConversionQueueUrl": {"Value": {"Ref": "Queue"}},
        "ConversionDeadLetterQueueUrl": {"Value": {"Ref": "Dead"}},
    }
    assert template.document["Outputs"]["ConversionQueueUrl"]["Value"] == {"Ref": "ConversionQueue"}
    cloudformation = aws.session.client("cloudformation")
    cloudformation.create_stack(
        StackName="forwarder-prod",
        TemplateBody=json.dumps(
            {
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}, "Dead": {"Type": "AWS::SQS::Queue"}},
                "Outputs": outputs,
            }
        ),
    )

    _sqs, queues = stack_queues("conversion", "forwarder-prod", session=aws.session, template=template)

    described = cloudformation.describe_stacks(StackName="forwarder-prod")["Stacks"][0]["Outputs"]
    urls = {output["OutputKey"]: output["OutputValue"] for output in described}
    assert (queues.source_url, queues.dlq_url) == (urls["ConversionQueueUrl"], urls["ConversionDeadLetterQueueUrl"])
    assert queues.where == "stack forwarder-prod (us-east-1)"


def test_an_unknown_stack_or_an_absent_local_stack_is_one_clear_error(aws, capsys):
    assert main(["identify", "--stack", "nope"]) == 1
    assert "redrive: error: stack nope:" in capsys.readouterr().err

    assert main(["identify", "--endpoint", "http://127.0.0.1:9"]) == 1
    assert "is `make run` running?" in capsys.readouterr().err


def test_a_message_moved_by_the_redrive_policy_with_ten_producer_attributes_is_redriven(aws):
    producer = {f"trace{i}": f"t{i}" for i in range(10)}  # SQS's limit, as a producer may send
    aws.park(**producer)  # where SQS's redrive policy puts a message, attributes unchanged

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    assert (report.moved, report.failed, report.folded, report.dropped) == (1, {}, 1, 0)
    [copy] = aws.take(aws.queues.source_url)
    attributes = strings(copy)
    assert len(attributes) <= 10
    assert set(attributes) == {*OWN, "producer_attributes"}
    folded = json.loads(attributes["producer_attributes"])
    assert folded == {name: {"DataType": "String", "StringValue": value} for name, value in producer.items()}
    assert any(line.startswith("producer attributes: folded into producer_attributes on 1") for line in
               render(report, aws.queues))  # fmt: skip


# -- only what can succeed is moved ----------------------------------------------------------------------------

INVALID = json.dumps({"workspace_id": "ws", "visitor_id": "v-1", "conversion_id": "c", "conversion_type": "CLICK",
                      "origin_url": "not a url"})  # fmt: skip


def park_every_kind_of_reason(aws: Aws) -> dict[str, str]:
    """One message per situation; their DLQ message ids by name."""
    return {
        "outage": parked_by_the_function(aws, "retries_exhausted", "src-1"),
        "bug": parked_by_the_function(aws, "unexpected_error", "src-2"),
        "by_sqs": aws.park(),  # SQS's redrive policy: no reason at all
        "not_json": aws.park(body="{", error_code="invalid_json", error_message="not JSON"),
        "schema": aws.park(body=INVALID, error_code="invalid_value", error_field="origin_url"),
        "refused": parked_by_the_function(aws, "rejected", "src-3"),  # Segment refused the message itself
        "invalid_now": aws.park(body=INVALID, error_code="retries_exhausted"),  # no longer validates
        "by_sqs_invalid": aws.park(body="[]"),
    }


def test_by_default_only_what_can_succeed_is_moved_and_the_report_says_what_was_skipped_and_why(aws):
    ids = park_every_kind_of_reason(aws)

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)
    lines = render(report, aws.queues)

    moved = aws.take(aws.queues.source_url)
    left = {m["MessageId"] for m in aws.take(aws.queues.dlq_url)}
    assert (report.moved, report.ok, report.exit_status) == (3, True, 0)
    assert sorted(strings(m)["source_message_id"] for m in moved) == sorted(["src-1", "src-2", ids["by_sqs"]])
    assert left == {ids[name] for name in ("not_json", "schema", "refused", "invalid_now", "by_sqs_invalid")}
    assert report.skipped == {
        "invalid_json (the body can never succeed)": 1,
        "invalid_value (the body can never succeed)": 1,
        "rejected (Segment refused the message itself)": 1,
        "retries_exhausted, but the body does not validate: invalid_value, field origin_url": 1,
        "no error_code, but the body does not validate: invalid_body, field body": 1,
    }
    assert any(line.startswith("SKIPPED (left in the DLQ): 5 message(s) that cannot succeed") for line in lines)
    assert any("INCLUDE_PERMANENT=1" in line for line in lines)
    assert any(line.split() == ["rejected", "(Segment", "refused", "the", "message", "itself)", "1"] for line in lines)


def test_include_permanent_moves_everything_parked_before_the_run(aws):
    park_every_kind_of_reason(aws)

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, include_permanent=True)

    assert (report.moved, sum(report.skipped.values())) == (8, 0)
    assert len(aws.take(aws.queues.source_url)) == 8
    assert aws.take(aws.queues.dlq_url) == []


def test_a_body_a_newer_version_accepts_is_skipped_but_named_as_valid_now(aws):
    aws.park(error_code="invalid_value", error_message="context has more than 64 keys")  # BODY is valid today

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    assert report.moved == 0
    assert list(report.skipped) == ["invalid_value (its body is valid now: a newer version accepts it; "
                                    "--include-permanent moves it)"]  # fmt: skip


def test_a_dry_run_says_what_a_redrive_would_skip(aws):
    park_every_kind_of_reason(aws)

    report = dry_run(aws.sqs, aws.queues)

    assert sum(report.by_reason.values()) == 8 and sum(report.skipped.values()) == 5
    assert any(line.startswith("a redrive would skip 5 message(s)") for line in render(report, aws.queues))
    assert len(aws.take(aws.queues.dlq_url)) == 8


def test_the_body_is_judged_by_the_functions_own_validation():
    assert body_problem("conversion", BODY) is None
    assert body_problem("assignment", BODY).code == "missing_field"  # type: ignore[union-attr]
    assert body_problem("conversion", "{").code == "invalid_json"  # type: ignore[union-attr]
    context = {"a": {f"k{i}": "x" * 500 for i in range(60)}, "b": {f"k{i}": "x" * 500 for i in range(10)}}
    huge = json.dumps({**json.loads(BODY), "context": context})  # over 32 KB
    assert body_problem("conversion", huge).code == "payload_too_large"  # type: ignore[union-attr]


def test_make_redrive_passes_include_permanent_and_wait():
    import subprocess

    dry = subprocess.run(
        ["make", "-n", "redrive", "KIND=conversion", "INCLUDE_PERMANENT=1", "WAIT=5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    command = next(line for line in dry.splitlines() if "ops.redrive" in line)
    assert "--include-permanent" in command and '--wait "$WAIT"' in command
    plain = subprocess.run(["make", "-n", "redrive", "KIND=conversion"], capture_output=True, text=True, check=True)
    assert "--include-permanent" not in plain.stdout


# -- at most 10 attributes ------------------------------------------------------------------------------------


def test_ours_are_what_the_function_writes_when_it_queues_or_parks():
    from segment_forwarder.queues import Parked
    from segment_forwarder.records import read_record

    record = {
        "messageId": "m-1",
        "body": BODY,
        "attributes": {"ApproximateReceiveCount": "3", "ApproximateFirstReceiveTimestamp": "1"},
        "messageAttributes": {
            "retry_since": {"stringValue": "5"},
            "delivery_nonce": {"stringValue": "0" * 32},
            "source_message_id": {"stringValue": "m-0"},
        },
    }
    parked = Parked(read_record(record, now_ms=NOW_MS), "rejected", "no", "f", "d-1", "conversion")
    written = set(parked.attributes()) | set(parked.attributes(truncated=True))

    assert written <= set(OWN_ATTRIBUTES) | set(REASON_ATTRIBUTES)


def test_producer_attributes_that_cannot_be_folded_small_enough_are_dropped_and_counted(aws):
    aws.park(**{f"trace{i}": "x" * 600 for i in range(8)})

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    [copy] = aws.take(aws.queues.source_url)
    assert (report.moved, report.folded, report.dropped) == (1, 0, 1)
    assert set(strings(copy)) == OWN
    assert any("dropped from 1" in line for line in render(report, aws.queues))


def test_a_binary_producer_attribute_is_folded_as_base64():
    attributes = {f"p{i}": {"DataType": "String", "StringValue": str(i)} for i in range(6)}
    attributes["blob"] = {"DataType": "Binary", "BinaryValue": b"\x00\xff"}
    message = {"MessageId": "dlq-1", "Body": BODY, "MessageAttributes": attributes}

    copy = redriven_copy(message, "conversion", NOW_MS)

    assert copy.producer == "folded" and len(copy.attributes) == 5
    folded = json.loads(copy.attributes["producer_attributes"]["StringValue"])
    assert folded["blob"] == {"DataType": "Binary", "BinaryValue": "AP8="}
    assert redriven_copy({**message, "MessageAttributes": dict(list(attributes.items())[:5])}, "x", 1).producer == (
        "kept"
    )


def test_a_fold_that_would_not_fit_the_queues_message_size_is_dropped():
    attributes = {f"p{i}": {"DataType": "String", "StringValue": "y" * 300} for i in range(7)}
    message = {"MessageId": "dlq-1", "Body": BODY, "MessageAttributes": attributes}

    assert redriven_copy(message, "conversion", NOW_MS, max_message_bytes=len(BODY) + 3000).producer == "folded"
    assert redriven_copy(message, "conversion", NOW_MS, max_message_bytes=len(BODY) + 1000).producer == "dropped"


# -- interrupted runs -----------------------------------------------------------------------------------------


def failing(sqs: Any, operation: str, times: int) -> list[int]:
    """Make the client's next ``times`` calls of ``operation`` fail as a lost connection would; the calls seen."""
    calls: list[int] = []

    def fail(**_: Any) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise EndpointConnectionError(endpoint_url="https://sqs.invalid")

    sqs.meta.events.register(f"before-call.sqs.{operation}", fail)
    return calls


def test_a_delete_that_fails_once_is_retried_so_the_message_is_not_left_on_both_queues(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    calls = failing(aws.sqs, "DeleteMessageBatch", times=1)

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS)

    assert (report.moved, report.not_deleted, report.ok, len(calls)) == (1, 0, True, 2)
    assert aws.take(aws.queues.dlq_url) == []
    assert len(aws.take(aws.queues.source_url)) == 1


def test_an_interrupted_run_leaves_a_copy_on_both_queues_with_one_delivery_id_and_says_what_that_means(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    failing(aws.sqs, "DeleteMessageBatch", times=1_000)

    first = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, visibility_s=1)
    lines = render(first, aws.queues)
    second = redrive(aws.session.client("sqs"), aws.queues, now_ms=lambda: NOW_MS + 5_000, wait_s=10, poll_s=0.2)

    assert (first.moved, first.not_deleted, first.exit_status) == (1, 1, 1)
    warning = next(line for line in lines if line.startswith("WARNING: 1 message(s) were copied"))
    assert "a conversion without event_id is sent again under the same messageId" in warning
    assert "Segment drops only within about 24 hours" in warning
    assert (second.moved, second.ok) == (1, True)
    copies = aws.take(aws.queues.source_url)
    assert [strings(c)["delivery_id"] for c in copies] == [sqs_delivery_id("src-1")] * 2


def test_a_copied_message_seen_again_in_the_same_run_is_deleted_not_copied_twice(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    parked_by_the_function(aws, "retries_exhausted", "src-2")
    aws.sqs.receive_message(QueueUrl=aws.queues.dlq_url, VisibilityTimeout=3)  # another reader keeps the run waiting
    failing(aws.sqs, "DeleteMessageBatch", times=3)  # every attempt of the first delete

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, visibility_s=1, wait_s=20, poll_s=0.3)

    assert (report.moved, report.not_deleted, report.ok, report.in_flight) == (2, 0, True, 0)
    copies = aws.take(aws.queues.source_url)
    assert sorted(strings(c)["source_message_id"] for c in copies) == ["src-1", "src-2"]
    assert aws.take(aws.queues.dlq_url) == []


# -- messages another reader holds -------------------------------------------------------------------------------


def test_messages_another_reader_holds_are_counted_and_the_report_says_to_run_again(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    parked_by_the_function(aws, "retries_exhausted", "src-2")
    aws.sqs.receive_message(QueueUrl=aws.queues.dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=60)

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, wait_s=0)
    lines = render(report, aws.queues)

    assert (report.moved, report.in_flight, report.exit_status) == (1, 1, 3)
    assert any(line.startswith("IN FLIGHT: 1 message(s) of the DLQ were held invisible") for line in lines)
    assert any(line.endswith("run again in a minute.") for line in lines)


def test_a_run_waits_for_messages_another_reader_holds_with_progress_and_moves_them(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    aws.sqs.receive_message(QueueUrl=aws.queues.dlq_url, VisibilityTimeout=2)  # a dry run still running, say
    progress: list[str] = []

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, wait_s=20, poll_s=0.3, out=progress.append)

    assert (report.moved, report.in_flight, report.exit_status) == (1, 0, 0)
    assert progress and progress[0].startswith("waiting for 1 message(s) another reader holds in flight")
    assert len(aws.take(aws.queues.source_url)) == 1


def test_the_wait_is_bounded(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    aws.sqs.receive_message(QueueUrl=aws.queues.dlq_url, VisibilityTimeout=60)
    progress: list[str] = []

    started = time.monotonic()

    report = redrive(aws.sqs, aws.queues, now_ms=lambda: NOW_MS, wait_s=3.0, poll_s=0.5, out=progress.append)

    assert (report.moved, report.in_flight, report.exit_status) == (0, 1, 3)
    assert time.monotonic() - started < 8  # 3 s, and one last look
    assert 1 <= len(progress) <= 6


def test_a_dry_run_counts_messages_in_flight(aws):
    parked_by_the_function(aws, "retries_exhausted", "src-1")
    aws.sqs.receive_message(QueueUrl=aws.queues.dlq_url, VisibilityTimeout=60)

    report = dry_run(aws.sqs, aws.queues)

    assert (sum(report.by_reason.values()), report.in_flight) == (0, 1)
    assert any(line.startswith("IN FLIGHT: 1 message(s)") for line in render(report, aws.queues))


def test_a_message_moved_by_the_redrive_policy_keeps_when_it_was_first_sent():
    # SQS's redrive policy moves a message as it is: no attribute of ours, its SentTimestamp the producer's send.
    # The copy carries it as first_received_at, so an event without a timestamp is dated then, not at the redrive.
    message = {"MessageId": "dlq-1", "Body": BODY, "Attributes": {"SentTimestamp": str(NOW_MS - 86_400_000)}}

    copy = redriven_copy(message, "conversion", NOW_MS)

    assert copy.attributes["first_received_at"] == {"DataType": "String", "StringValue": str(NOW_MS - 86_400_000)}
    assert copy.attributes["retry_since"]["StringValue"] == str(NOW_MS)
