"""moto's SQS made strict (``local_stack.strict_sqs``): what Amazon SQS refuses is refused, with SQS's error.

In-process moto (``mock_aws``) here; that the local stack's server-mode endpoint has the same rules is checked in
``test_lambda_emulation.py`` (its stack is already running there; ``mock_aws`` would reset that stack's moto).
Each rule has at least one case moto alone gets wrong (it accepts, or refuses what SQS takes).
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.exceptions
import moto.core.utils
import pytest
from moto import mock_aws

from local_stack.strict_sqs import MAX_BATCH_BYTES, make_strict, message_size
from local_stack.template import Template

make_strict()

SMALL = 1024  # the smallest MaximumMessageSize SQS allows
TOO_LONG = "One or more parameters are invalid. Reason: Message must be shorter than {} bytes."


class Sqs:
    """A boto3 SQS client on in-process moto, a queue of ``SMALL`` bytes, and a clock to move moto's time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.client = boto3.session.Session().client("sqs")
        self.url = self.client.create_queue(QueueName="strict", Attributes={"MaximumMessageSize": str(SMALL)})[
            "QueueUrl"
        ]
        self._monkeypatch = monkeypatch
        self._offset = datetime.timedelta()

    def advance(self, **delta: float) -> None:
        """Move moto's clock forward (every moto timestamp reads it: sends, receives, visibility)."""
        real = moto.core.utils.utcnow
        self._offset += datetime.timedelta(**delta)
        offset = self._offset
        self._monkeypatch.setattr(moto.core.utils, "utcnow", lambda: real() + offset)

    def received(self, body: str = "x") -> dict[str, Any]:
        self.client.send_message(QueueUrl=self.url, MessageBody=body)
        return self.client.receive_message(QueueUrl=self.url, AttributeNames=["All"])["Messages"][0]


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sqs]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield Sqs(monkeypatch)


def refused(call: Callable[[], Any]) -> tuple[str, str, str]:
    """The (Error.Code, exception class, Error.Message) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    return error["Code"], type(caught.value).__name__, error["Message"]


def string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def depth(sqs: Sqs) -> int:
    attributes = sqs.client.get_queue_attributes(QueueUrl=sqs.url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# -- message size -----------------------------------------------------------------------------------------------


def test_message_size_counts_utf8_bytes_and_each_attributes_name_type_and_value():
    assert message_size("é", None) == 2
    assert message_size("ab", {"n": string("xyz"), "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}) == (
        2 + (1 + 6 + 3) + (1 + 6 + 2)
    )


@pytest.mark.parametrize(
    ("at_limit", "over", "attributes"),
    [
        pytest.param("é" * (SMALL // 2), "é" * (SMALL // 2) + "x", {}, id="multi-byte body"),
        pytest.param("x" * (SMALL - 11), "x" * (SMALL - 10), {"name": string("v")}, id="body and attribute"),
    ],
)
def test_a_message_over_the_queues_maximum_counted_in_bytes_with_its_attributes_is_refused(
    sqs, at_limit, over, attributes
):
    assert message_size(at_limit, attributes) == SMALL

    sqs.client.send_message(QueueUrl=sqs.url, MessageBody=at_limit, MessageAttributes=attributes)
    send_over = lambda: sqs.client.send_message(  # noqa: E731
        QueueUrl=sqs.url, MessageBody=over, MessageAttributes=attributes
    )
    assert refused(send_over) == ("InvalidParameterValue", "ClientError", TOO_LONG.format(SMALL))
    assert depth(sqs) == 1


def test_each_template_queue_takes_up_to_its_own_MaximumMessageSize(sqs):
    session = boto3.session.Session()
    resources = Template.load().create_resources(session)
    queues = [r.ref for name, r in resources.items() if r.type == "AWS::SQS::Queue"]
    assert len(queues) == 6
    for url in queues:
        limit = int(
            sqs.client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"][
                "MaximumMessageSize"
            ]
        )
        attributes = {"delivery_id": string("d" * 100)}
        room = limit - message_size("", attributes)
        sqs.client.send_message(QueueUrl=url, MessageBody="x" * room, MessageAttributes=attributes)
        assert refused(
            lambda url=url, room=room, attributes=attributes: sqs.client.send_message(
                QueueUrl=url, MessageBody="x" * (room + 1), MessageAttributes=attributes
            )
        ) == ("InvalidParameterValue", "ClientError", TOO_LONG.format(limit))


def test_a_queues_MaximumMessageSize_in_the_template_is_the_limit(sqs):
    document = copy.deepcopy(Template.load().document)
    document["Resources"]["AssignmentQueue"]["Properties"]["MaximumMessageSize"] = 2048
    url = Template(document).create_resources(boto3.session.Session())["AssignmentQueue"].ref

    attributes = sqs.client.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
    assert attributes == {"MaximumMessageSize": "2048"}
    sqs.client.send_message(QueueUrl=url, MessageBody="x" * 2048)
    send_over = lambda: sqs.client.send_message(QueueUrl=url, MessageBody="x" * 2049)  # noqa: E731
    assert refused(send_over) == ("InvalidParameterValue", "ClientError", TOO_LONG.format(2048))


# -- SendMessageBatch ---------------------------------------------------------------------------------------------


def test_a_batch_over_one_mib_with_its_attributes_is_refused_though_each_message_fits(sqs):
    big = sqs.client.create_queue(QueueName="big")["QueueUrl"]
    attributes = {"reason": string("r" * 5000)}
    entries = [
        {"Id": str(i), "MessageBody": "x" * 100_000, "MessageAttributes": attributes} for i in range(10)
    ]  # bodies 1,000,000 bytes: under 1 MiB alone
    total = sum(message_size(e["MessageBody"], attributes) for e in entries)
    assert total > MAX_BATCH_BYTES

    assert refused(lambda: sqs.client.send_message_batch(QueueUrl=big, Entries=entries)) == (
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "BatchRequestTooLong",
        f"Batch requests cannot be longer than 1048576 bytes. You have sent {total} bytes.",
    )
    sqs.client.send_message_batch(QueueUrl=big, Entries=entries[:9])  # 9 x 105,016 bytes fit


def test_a_batch_entry_over_the_queues_maximum_fails_the_request(sqs):
    entries = [{"Id": "small", "MessageBody": "x"}, {"Id": "big", "MessageBody": "é" * 600}]  # 1,200 bytes
    assert refused(lambda: sqs.client.send_message_batch(QueueUrl=sqs.url, Entries=entries)) == (
        "InvalidParameterValue",
        "ClientError",
        TOO_LONG.format(SMALL),
    )
    assert depth(sqs) == 0


def _send_batch(sqs: Sqs, entries: list[dict[str, Any]]) -> Any:
    return sqs.client.send_message_batch(QueueUrl=sqs.url, Entries=entries)


def _visibility_batch(sqs: Sqs, entries: list[dict[str, Any]]) -> Any:
    handle = sqs.received()["ReceiptHandle"]
    entries = [{**e, "ReceiptHandle": handle, "VisibilityTimeout": 10} for e in entries]
    return sqs.client.change_message_visibility_batch(QueueUrl=sqs.url, Entries=entries)


def _delete_batch(sqs: Sqs, entries: list[dict[str, Any]]) -> Any:
    handle = sqs.received()["ReceiptHandle"]
    entries = [{**e, "ReceiptHandle": f"{handle}-{i}"} for i, e in enumerate(entries)]
    return sqs.client.delete_message_batch(QueueUrl=sqs.url, Entries=entries)


BATCHES = {"SendMessage": _send_batch, "ChangeMessageVisibility": _visibility_batch, "DeleteMessage": _delete_batch}


@pytest.mark.parametrize("action", BATCHES)
def test_a_batch_of_more_than_ten_entries_is_refused(sqs, action):
    entries = [{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)]
    if action != "SendMessage":
        entries = [{"Id": e["Id"]} for e in entries]
    assert refused(lambda: BATCHES[action](sqs, entries)) == (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "TooManyEntriesInBatchRequest",
        "Maximum number of entries per request are 10. You have sent 11.",
    )


@pytest.mark.parametrize("action", BATCHES)
def test_a_batch_with_an_id_twice_is_refused(sqs, action):
    entries = [{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}]
    if action != "SendMessage":
        entries = [{"Id": "same"}, {"Id": "same"}]
    assert refused(lambda: BATCHES[action](sqs, entries)) == (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "BatchEntryIdsNotDistinct",
        "Id same repeated.",
    )


@pytest.mark.parametrize("action", BATCHES)
def test_an_empty_batch_is_refused(sqs, action):
    assert refused(lambda: BATCHES[action](sqs, [])) == (
        "AWS.SimpleQueueService.EmptyBatchRequest",
        "EmptyBatchRequest",
        f"There should be at least one {action}BatchRequestEntry in the request.",
    )


# -- message attributes -------------------------------------------------------------------------------------------


def test_at_most_ten_message_attributes(sqs):
    ten = {f"a{i}": string("v") for i in range(10)}
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x", MessageAttributes=ten)
    eleven = {**ten, "a10": string("v")}
    assert refused(lambda: sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x", MessageAttributes=eleven)) == (
        "InvalidParameterValue",
        "ClientError",
        "Number of message attributes [11] exceeds the allowed maximum [10].",
    )


CAST = "Can't cast the value of message (user) attribute 'n' to a number."
RESERVED = (
    "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These strings are reserved for "
    "internal use. Additionally, they cannot start or end with '.'."
)
BAD_CHARACTERS = (
    "Message (user) attributes name can only contain upper and lower score characters, digits, periods, hyphens "
    "and underscores. "
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("AWS.trace", RESERVED),
        ("aws.trace", RESERVED),
        ("AmAzOn.trace", RESERVED),
        (".trace", RESERVED),
        ("trace.", RESERVED),
        ("trace..id", "Message (user) attribute name must not have successive '.' characters."),
        ("trace id", BAD_CHARACTERS),
        ("traceÀid", BAD_CHARACTERS),
        ("a" * 256, "Message (user) attribute names must be shorter than 256 Bytes"),
        ("AWSfoo", None),
        ("amazon-x", None),
        ("Foo_Bar-1.2", None),
        ("a" * 255, None),
    ],
)
def test_attribute_names(sqs, name, problem):
    send = lambda: sqs.client.send_message(  # noqa: E731
        QueueUrl=sqs.url, MessageBody="x", MessageAttributes={name: string("v")}
    )
    if problem is None:
        send()
    else:
        assert refused(send) == ("InvalidParameterValue", "ClientError", problem)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (string(""), "Message (user) attribute 'n' must contain a non-empty value of type 'String'."),
        (
            {"DataType": "Number", "StringValue": "abc"},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"DataType": "Number", "StringValue": "1,000"},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"DataType": "Number.int", "StringValue": "0x1f"},
            "Can't cast the value of message (user) attribute 'n' to a number.",
        ),
        (
            {"DataType": "Str", "StringValue": "v"},
            'Type for parameter MessageAttributes.Attribute_name.DataType must be prefixed with "String", "Binary", '
            'or "Number", but was: Str',
        ),
        (
            {"DataType": "string", "StringValue": "v"},
            'Type for parameter MessageAttributes.Attribute_name.DataType must be prefixed with "String", "Binary", '
            'or "Number", but was: string',
        ),
        (
            {"DataType": "String." + "t" * 249, "StringValue": "v"},
            "Message (user) attribute types must be shorter than 256 Bytes",
        ),
        ({"DataType": "Number", "StringValue": "-3.5e10"}, None),
        ({"DataType": "Number.java.lang.Long", "StringValue": "42"}, None),
        ({"DataType": "String.json", "StringValue": "{}"}, None),
        ({"DataType": "Binary.gif", "BinaryValue": b"GIF"}, None),
    ],
)
def test_attribute_types_and_values(sqs, value, problem):
    send = lambda: sqs.client.send_message(  # noqa: E731
        QueueUrl=sqs.url, MessageBody="x", MessageAttributes={"n": value}
    )
    if problem is None:
        send()
    else:
        assert refused(send) == ("InvalidParameterValue", "ClientError", problem)


def test_a_batch_entry_with_invalid_attributes_fails_alone(sqs):
    entries = [
        {"Id": "good", "MessageBody": "1", "MessageAttributes": {"n": string("v")}},
        {"Id": "bad", "MessageBody": "2", "MessageAttributes": {f"a{i}": string("v") for i in range(11)}},
        {"Id": "good-too", "MessageBody": "3"},
    ]
    answer = sqs.client.send_message_batch(QueueUrl=sqs.url, Entries=entries)

    assert sorted(s["Id"] for s in answer["Successful"]) == ["good", "good-too"]
    assert answer["Failed"] == [
        {
            "Id": "bad",
            "SenderFault": True,
            "Code": "InvalidParameterValue",
            "Message": "Number of message attributes [11] exceeds the allowed maximum [10].",
        }
    ]
    assert depth(sqs) == 2


# -- delay and visibility -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [-1, 901])
def test_delay_seconds_from_0_to_900(sqs, seconds):
    why = f"Value {seconds} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
    send = lambda: sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x", DelaySeconds=seconds)  # noqa: E731
    assert refused(send) == ("InvalidParameterValue", "ClientError", why)
    answer = sqs.client.send_message_batch(
        QueueUrl=sqs.url,
        Entries=[{"Id": "bad", "MessageBody": "x", "DelaySeconds": seconds}, {"Id": "ok", "MessageBody": "y"}],
    )
    assert [f["Message"] for f in answer["Failed"]] == [why]
    assert [s["Id"] for s in answer["Successful"]] == ["ok"]
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x", DelaySeconds=900)


def test_a_negative_visibility_timeout_is_refused(sqs):
    handle = sqs.received()["ReceiptHandle"]
    why = "Value -1 for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
    change = lambda: sqs.client.change_message_visibility(  # noqa: E731
        QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=-1
    )
    assert refused(change) == ("InvalidParameterValue", "ClientError", why)
    answer = sqs.client.change_message_visibility_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "a", "ReceiptHandle": handle, "VisibilityTimeout": -1}]
    )
    assert answer["Failed"] == [{"Id": "a", "SenderFault": True, "Code": "InvalidParameterValue", "Message": why}]


def test_the_twelve_hours_count_from_the_receive_not_the_send(sqs):
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="waited")
    sqs.advance(hours=13)  # e.g. a message that waited in the queue, or a retry pushed back for hours
    handle = sqs.client.receive_message(QueueUrl=sqs.url)["Messages"][0]["ReceiptHandle"]

    sqs.client.change_message_visibility(QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=43_200)
    answer = sqs.client.change_message_visibility_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "a", "ReceiptHandle": handle, "VisibilityTimeout": 600}]
    )
    assert answer["Successful"] == [{"Id": "a"}]


def test_a_visibility_ending_more_than_twelve_hours_after_the_receive_is_refused(sqs):
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x")
    handle = sqs.client.receive_message(QueueUrl=sqs.url, VisibilityTimeout=43_000)["Messages"][0]["ReceiptHandle"]
    sqs.advance(hours=11, minutes=55)  # still in flight (a visibility that ran out could not be changed at all)

    sqs.client.change_message_visibility(QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=300)  # 12 h
    why = (
        "Value 301 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is "
        "beyond the limit [43200 seconds]"
    )
    change = lambda: sqs.client.change_message_visibility(  # noqa: E731
        QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=301
    )
    assert refused(change) == ("InvalidParameterValue", "ClientError", why)
    answer = sqs.client.change_message_visibility_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "a", "ReceiptHandle": handle, "VisibilityTimeout": 301}]
    )
    assert answer["Failed"] == [{"Id": "a", "SenderFault": True, "Code": "InvalidParameterValue", "Message": why}]

    sqs.advance(minutes=10)  # visible again; a new receive starts a new 12 hours
    handle = sqs.client.receive_message(QueueUrl=sqs.url)["Messages"][0]["ReceiptHandle"]
    sqs.client.change_message_visibility(QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=43_200)


def test_make_strict_is_idempotent(sqs):
    make_strict()
    make_strict()
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody=json.dumps({"ok": True}))
    assert depth(sqs) == 1


# -- text SQS takes -----------------------------------------------------------------------------------------------

ALLOWED = "#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF"


@pytest.mark.parametrize(
    ("body", "character"),
    [("a\x00b", "#x0"), ("esc\x1b[0m", "#x1B"), ("\x7f ok \x0b", "#xB"), ("noncharacter \ufffe", "#xFFFE")],
)
def test_a_body_with_a_character_outside_xmls_is_refused(sqs, body, character):
    why = (
        f"Invalid binary character '{character}' was found in the message body, the set of allowed characters is "
        f"{ALLOWED}"
    )
    send = lambda: sqs.client.send_message(QueueUrl=sqs.url, MessageBody=body)  # noqa: E731
    assert refused(send) == ("InvalidMessageContents", "InvalidMessageContents", why)
    answer = sqs.client.send_message_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "bad", "MessageBody": body}, {"Id": "ok", "MessageBody": "fine"}]
    )
    assert answer["Failed"] == [{"Id": "bad", "SenderFault": True, "Code": "InvalidMessageContents", "Message": why}]
    assert [s["Id"] for s in answer["Successful"]] == ["ok"]
    assert depth(sqs) == 1


def test_tabs_newlines_and_characters_beyond_the_bmp_are_taken(sqs):
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="\t\n\r \ud7ff\ue000\ufffd\U0001f600\U0010ffff")
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x", MessageAttributes={"n": string("tab\there \U0001f600")})
    assert depth(sqs) == 2


def test_an_attribute_value_with_a_character_outside_xmls_is_refused(sqs):
    why = (
        f"Invalid binary character '#x1' was found in the value of message (user) attribute 'n', the set of allowed "
        f"characters is {ALLOWED}"
    )
    send = lambda: sqs.client.send_message(  # noqa: E731
        QueueUrl=sqs.url, MessageBody="x", MessageAttributes={"n": string("a\x01b")}
    )
    assert refused(send) == ("InvalidParameterValue", "ClientError", why)
    answer = sqs.client.send_message_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "bad", "MessageBody": "x", "MessageAttributes": {"n": string("a\x01b")}}]
    )
    assert answer["Failed"] == [{"Id": "bad", "SenderFault": True, "Code": "InvalidParameterValue", "Message": why}]
    assert depth(sqs) == 0


def test_an_empty_body_is_refused(sqs):
    send = lambda: sqs.client.send_message(QueueUrl=sqs.url, MessageBody="")  # noqa: E731
    why = "The request must contain the parameter MessageBody."
    assert refused(send) == ("MissingParameter", "ClientError", why)
    answer = sqs.client.send_message_batch(QueueUrl=sqs.url, Entries=[{"Id": "empty", "MessageBody": ""}])
    assert answer["Failed"] == [{"Id": "empty", "SenderFault": True, "Code": "MissingParameter", "Message": why}]
    assert depth(sqs) == 0


# -- receipt handles ----------------------------------------------------------------------------------------------


def not_available(handle: str) -> str:
    return (
        f"Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available "
        "for visibility timeout change."
    )


def in_flight(sqs: Sqs) -> int:
    attributes = sqs.client.get_queue_attributes(
        QueueUrl=sqs.url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def test_a_stale_receipt_handle_cannot_change_the_visibility_of_the_newer_receive(sqs):
    stale = sqs.received()["ReceiptHandle"]
    sqs.advance(seconds=31)  # the queue's 30 s visibility ran out: received again, by another consumer
    newer = sqs.client.receive_message(QueueUrl=sqs.url, VisibilityTimeout=60)["Messages"][0]["ReceiptHandle"]

    change = lambda: sqs.client.change_message_visibility(  # noqa: E731
        QueueUrl=sqs.url, ReceiptHandle=stale, VisibilityTimeout=0
    )
    assert refused(change) == ("InvalidParameterValue", "ClientError", not_available(stale))
    answer = sqs.client.change_message_visibility_batch(
        QueueUrl=sqs.url, Entries=[{"Id": "a", "ReceiptHandle": stale, "VisibilityTimeout": 0}]
    )
    assert answer["Failed"] == [
        {"Id": "a", "SenderFault": True, "Code": "InvalidParameterValue", "Message": not_available(stale)}
    ]
    assert in_flight(sqs) == 1  # still held by the newer receive
    sqs.client.change_message_visibility(QueueUrl=sqs.url, ReceiptHandle=newer, VisibilityTimeout=0)
    assert in_flight(sqs) == 0


def test_the_visibility_of_a_deleted_message_cannot_be_changed(sqs):
    handle = sqs.received()["ReceiptHandle"]
    sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=handle)
    change = lambda: sqs.client.change_message_visibility(  # noqa: E731
        QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=10
    )
    assert refused(change) == ("InvalidParameterValue", "ClientError", not_available(handle))


def test_changing_a_visibility_that_already_ran_out_changes_nothing(sqs):
    handle = sqs.received()["ReceiptHandle"]
    sqs.advance(seconds=31)  # visible again, not received since
    sqs.client.change_message_visibility(QueueUrl=sqs.url, ReceiptHandle=handle, VisibilityTimeout=600)
    assert in_flight(sqs) == 0
    assert depth(sqs) == 1


def test_a_delete_with_a_stale_receipt_handle_succeeds_and_deletes_nothing(sqs):
    stale = sqs.received()["ReceiptHandle"]
    sqs.advance(seconds=31)
    newer = sqs.client.receive_message(QueueUrl=sqs.url)["Messages"][0]["ReceiptHandle"]

    sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=stale)
    answer = sqs.client.delete_message_batch(QueueUrl=sqs.url, Entries=[{"Id": "a", "ReceiptHandle": stale}])
    assert answer["Successful"] == [{"Id": "a"}]
    assert in_flight(sqs) == 1  # the newer receive still holds it

    sqs.client.delete_message(QueueUrl=sqs.url, ReceiptHandle=newer)
    assert in_flight(sqs) + depth(sqs) == 0


@pytest.mark.parametrize("seconds", [-1, 43_201])
def test_receive_message_visibility_timeout_from_0_to_43200(sqs, seconds):
    sqs.client.send_message(QueueUrl=sqs.url, MessageBody="x")
    receive = lambda: sqs.client.receive_message(QueueUrl=sqs.url, VisibilityTimeout=seconds)  # noqa: E731
    code, _, _ = refused(receive)
    assert code == "InvalidParameterValue"
    assert depth(sqs) == 1
