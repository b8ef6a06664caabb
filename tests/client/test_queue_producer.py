"""QueueProducer's batching and retries against SQS answers scripted with botocore's Stubber.

The Stubber checks each request against the SQS model and the parameters expected here, so these tests see exactly
which entries each SendMessageBatch carries. Delivery through a real queue to the forwarder is in
``tests/integration/test_client.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from segment_forwarder_client import QueueProducer, QueueSendError, RetryPolicy, assignment_body, conversion_body

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/ConversionQueue"
FAST = RetryPolicy(max_attempts=3, base_s=0.001, cap_s=0.005)


@pytest.fixture
def sqs() -> Iterator[tuple[Any, Stubber]]:
    client = botocore.session.get_session().create_client(
        "sqs", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def producer(client: Any) -> QueueProducer:
    return QueueProducer({"conversion": URL, "assignment": URL}, sqs_client=client, retry=FAST)


def conversions(count: int) -> list[dict[str, Any]]:
    return [conversion_body("demo", f"v-{i}", "c-1", "CLICK", "https://x.example/") for i in range(count)]


def entries(bodies: list[dict[str, Any]], indexes: range | list[int]) -> list[dict[str, str]]:
    return [{"Id": str(i), "MessageBody": json.dumps(bodies[i], separators=(",", ":"))} for i in indexes]


def ok(indexes: range | list[int]) -> dict[str, Any]:
    return {
        "Successful": [{"Id": str(i), "MessageId": f"m-{i}", "MD5OfMessageBody": "x"} for i in indexes],
        "Failed": [],
    }


def test_bodies_go_ten_at_a_time_in_order(sqs):
    client, stubber = sqs
    bodies = conversions(23)
    for part in (range(0, 10), range(10, 20), range(20, 23)):
        stubber.add_response("send_message_batch", ok(part), {"QueueUrl": URL, "Entries": entries(bodies, part)})

    sent = producer(client).send("conversion", bodies)

    assert [s.message_id for s in sent] == [f"m-{i}" for i in range(23)]
    assert [s.event_id for s in sent] == [b["event_id"] for b in bodies]


def test_a_conversion_without_event_id_gets_one_and_other_kinds_are_sent_as_given(sqs):
    client, stubber = sqs
    raw = {"workspace_id": "demo", "visitor_id": "v", "conversion_id": "c", "conversion_type": "CLICK"}
    stubber.add_response("send_message_batch", ok([0]))
    stubber.add_response("send_message_batch", ok([0]))
    queue = producer(client)

    conversion = queue.send("conversion", [raw])[0]
    assignment = queue.send("assignment", [assignment_body("demo", "v", "t", "b")])[0]

    assert conversion.event_id and conversion.body["event_id"] == conversion.event_id
    assert "event_id" not in raw
    assert assignment.event_id is None and "event_id" not in assignment.body


def test_entries_sqs_failed_on_its_side_are_resent_alone_with_the_same_body(sqs):
    client, stubber = sqs
    bodies = conversions(10)
    failed = {"Id": "7", "SenderFault": False, "Code": "InternalError", "Message": "try again"}
    stubber.add_response(
        "send_message_batch",
        {"Successful": ok([i for i in range(10) if i != 7])["Successful"], "Failed": [failed]},
        {"QueueUrl": URL, "Entries": entries(bodies, range(10))},
    )
    stubber.add_response("send_message_batch", ok([7]), {"QueueUrl": URL, "Entries": entries(bodies, [7])})

    sent = producer(client).send("conversion", bodies)

    assert [s.message_id for s in sent] == [f"m-{i}" for i in range(10)]


def test_entries_refused_as_sent_are_not_retried_and_reported(sqs):
    client, stubber = sqs
    bodies = conversions(3)
    refused = {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents", "Message": "bad characters"}
    stubber.add_response("send_message_batch", {"Successful": ok([0, 2])["Successful"], "Failed": [refused]})

    with pytest.raises(QueueSendError) as raised:
        producer(client).send("conversion", bodies)

    assert [s.message_id for s in raised.value.sent] == ["m-0", "m-2"]
    [failure] = raised.value.failed
    assert (failure.body, failure.code, failure.sender_fault) == (bodies[1], "InvalidMessageContents", True)
    assert raised.value.code == "InvalidMessageContents"


def test_a_throttled_request_is_retried_and_a_denied_one_is_not(sqs):
    client, stubber = sqs
    bodies = conversions(2)
    stubber.add_client_error("send_message_batch", "RequestThrottled", "slow down", http_status_code=400)
    stubber.add_response("send_message_batch", ok([0, 1]), {"QueueUrl": URL, "Entries": entries(bodies, range(2))})
    stubber.add_client_error("send_message_batch", "AccessDenied", "no sqs:SendMessage", http_status_code=403)
    queue = producer(client)

    assert len(queue.send("conversion", bodies)) == 2
    with pytest.raises(QueueSendError) as raised:
        queue.send("conversion", bodies)

    assert raised.value.sent == []
    assert [(f.code, f.sender_fault) for f in raised.value.failed] == [("AccessDenied", True)] * 2


def test_entries_still_failing_after_the_last_attempt_are_reported_not_dropped(sqs):
    client, stubber = sqs
    bodies = conversions(2)
    for _ in range(FAST.max_attempts):
        stubber.add_response(
            "send_message_batch",
            {
                "Successful": [],
                "Failed": [
                    {"Id": "0", "SenderFault": False, "Code": "InternalError"},
                    {"Id": "1", "SenderFault": False, "Code": "InternalError"},
                ],
            },
        )

    with pytest.raises(QueueSendError) as raised:
        producer(client).send("conversion", bodies)

    assert [(f.code, f.sender_fault) for f in raised.value.failed] == [("InternalError", False)] * 2


def test_batches_stay_under_256_kib(sqs):
    client, stubber = sqs
    bodies = [conversion_body("demo", f"v-{i}", "c", "CLICK", "https://x.example/" + "p" * 100_000) for i in range(3)]
    stubber.add_response("send_message_batch", ok([0, 1]), {"QueueUrl": URL, "Entries": entries(bodies, range(2))})
    stubber.add_response("send_message_batch", ok([2]), {"QueueUrl": URL, "Entries": entries(bodies, [2])})

    assert len(producer(client).send("conversion", bodies)) == 3


def test_unknown_kinds_and_missing_queues_are_refused(sqs):
    client, _ = sqs
    with pytest.raises(ValueError, match="unknown kinds"):
        QueueProducer({"conversions": URL}, sqs_client=client)
    with pytest.raises(ValueError, match="no queue URL for 'identify'"):
        producer(client).send("identify", [{"workspace_id": "demo", "visitor_id": "v"}])


def test_a_conversion_that_was_not_queued_carries_its_event_id_and_resending_its_body_keeps_it(sqs):
    client, stubber = sqs
    body = {k: v for k, v in conversions(1)[0].items() if k != "event_id"}  # its event_id is made by send
    unlucky = {"Id": "0", "SenderFault": False, "Code": "InternalError", "Message": "try again"}
    for _ in range(FAST.max_attempts):
        stubber.add_response("send_message_batch", {"Successful": [], "Failed": [unlucky]})
    stubber.add_response("send_message_batch", ok([0]))
    queue = producer(client)

    with pytest.raises(QueueSendError) as raised:
        queue.send("conversion", [body])
    [resent] = queue.send("conversion", [f.body for f in raised.value.failed])

    [failure] = raised.value.failed
    assert failure.event_id is not None and failure.event_id == failure.body["event_id"]
    assert raised.value.event_id == failure.event_id and raised.value.event_ids == (failure.event_id,)
    assert resent.event_id == failure.event_id
