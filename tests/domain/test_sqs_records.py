"""An SQS record read once into its typed view: what SQS set, and what a producer may have written, believed only
when well-formed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from segment_forwarder.events import Event, new_nonce, sqs_delivery_id
from segment_forwarder.records import (
    TRUSTED_FUTURE_MS,
    TRUSTED_PAST_MS,
    SqsRecord,
    attribute_ms,
    read_record,
)
from tests.support.bodies import CONVERSION

NOW_MS = 1_900_000_000_000


def raw(body: str = "{}", *, system: dict[str, str] | None = None, **carried: Any) -> dict[str, Any]:
    """A record as Lambda's SQS event gives it."""
    return {
        "messageId": "m-1",
        "receiptHandle": "handle-1",
        "body": body,
        "attributes": system or {},
        "messageAttributes": {name: {"stringValue": value, "dataType": "String"} for name, value in carried.items()},
    }


def test_a_record_is_read_into_what_sqs_and_the_function_wrote():
    record = read_record(
        raw(
            '{"a": 1}',
            system={"ApproximateReceiveCount": "3", "ApproximateFirstReceiveTimestamp": str(NOW_MS - 10)},
            first_received_at=str(NOW_MS - 30),
            retry_since=str(NOW_MS - 20),
            delivery_nonce="0" * 32,
            source_message_id="m-0",
            trace="a producer's own",
        ),
        now_ms=NOW_MS,
    )

    assert (record.message_id, record.receipt_handle, record.body) == ("m-1", "handle-1", '{"a": 1}')
    assert (record.receive_count, record.first_receive_ms) == (3, NOW_MS - 10)
    assert (record.first_received_ms, record.retry_since_ms) == (NOW_MS - 30, NOW_MS - 20)
    assert (record.nonce, record.source_message_id) == ("0" * 32, "m-0")
    assert record.carried["trace"] == "a producer's own"


def test_the_horizon_counts_from_retry_since_else_first_receipt_else_sqs():
    since, first, sqs = NOW_MS - 2000, NOW_MS - 3000, NOW_MS - 1000
    system = {"ApproximateFirstReceiveTimestamp": str(sqs)}

    def start(**carried: str) -> int:
        return read_record(raw(system=system, **carried), now_ms=NOW_MS).horizon_start(now_ms=NOW_MS)

    assert start(retry_since=str(since), first_received_at=str(first)) == since
    assert start(first_received_at=str(first)) == first
    assert start(retry_since="not a number") == sqs
    assert read_record(raw(), now_ms=NOW_MS).horizon_start(now_ms=NOW_MS) == NOW_MS  # SQS said nothing


def test_a_body_is_dated_by_its_first_receipt_else_when_sqs_took_it_else_now():
    sent = {"SentTimestamp": str(NOW_MS - 500), "ApproximateFirstReceiveTimestamp": str(NOW_MS - 100)}

    kept = read_record(raw(system=sent, first_received_at=str(NOW_MS - 900)), now_ms=NOW_MS)
    taken = read_record(raw(system=sent), now_ms=NOW_MS)
    bare = read_record(raw(system={"ApproximateFirstReceiveTimestamp": str(NOW_MS - 100)}), now_ms=NOW_MS)

    assert [r.received_ms(now_ms=NOW_MS) for r in (kept, taken, bare)] == [NOW_MS - 900, NOW_MS - 500, NOW_MS]
    # a parked copy records the first receipt, the first delivery when nothing else says
    assert [r.first_receipt_ms for r in (kept, taken, bare)] == [NOW_MS - 900, NOW_MS - 500, NOW_MS - 100]
    assert read_record(raw(), now_ms=NOW_MS).first_receipt_ms is None


@pytest.mark.parametrize(
    "garbled",
    [
        "²",  # str.isdigit() says yes, int() says no
        "٣٣٣٣٣٣٣٣٣٣٣٣٣",  # Arabic-Indic digits: int() takes them, they are not what we write
        "9" * 5000,  # int() refuses more than 4,300 digits
        "0",  # 1970: the horizon would be over at once
        str(NOW_MS + TRUSTED_FUTURE_MS + 1),  # the far future: the horizon would never end
        str(NOW_MS - TRUSTED_PAST_MS - 1),
        "",
        " 1899999999000",
        "1899999999000.0",
        "-1",
    ],
)
def test_a_garbled_time_attribute_is_ignored_and_never_raises(garbled):
    system = {"ApproximateFirstReceiveTimestamp": str(NOW_MS - 5)}
    record = read_record(raw(system=system, retry_since=garbled, first_received_at=garbled), now_ms=NOW_MS)

    assert attribute_ms(garbled, now_ms=NOW_MS) is None
    assert (record.first_received_ms, record.retry_since_ms) == (None, None)
    assert record.horizon_start(now_ms=NOW_MS) == NOW_MS - 5


def test_a_plausible_time_attribute_is_believed_within_its_window():
    assert attribute_ms(str(NOW_MS - TRUSTED_PAST_MS), now_ms=NOW_MS) == NOW_MS - TRUSTED_PAST_MS
    assert attribute_ms(str(NOW_MS + TRUSTED_FUTURE_MS), now_ms=NOW_MS) == NOW_MS + TRUSTED_FUTURE_MS
    assert attribute_ms(None, now_ms=NOW_MS) is None


@pytest.mark.parametrize(
    ("nonce", "source"),
    [("0" * 31, "m 0"), ("0" * 32 + "0", "x" * 129), ("A" * 32, ""), ("g" * 32, "é")],
)
def test_a_malformed_nonce_or_source_message_id_is_not_believed(nonce, source):
    record = read_record(raw(delivery_nonce=nonce, source_message_id=source), now_ms=NOW_MS)

    assert (record.nonce, record.source_message_id) == (None, None)
    assert record.delivery_id() == sqs_delivery_id("m-1")


def test_the_delivery_id_is_the_one_bound_to_the_body_else_derived_from_the_first_message():
    event = Event.from_body("conversion", CONVERSION, datetime(2030, 3, 1, tzinfo=UTC)).bound(new_nonce())
    text = event.queue_text()

    bound = read_record(raw(text, delivery_id=event.delivery_id, delivery_nonce=event.delivery_nonce), now_ms=NOW_MS)
    copied = read_record(raw("{}", delivery_id=event.delivery_id, delivery_nonce=event.delivery_nonce), now_ms=NOW_MS)
    redriven = read_record(raw("{}", delivery_id=event.delivery_id, source_message_id="m-0"), now_ms=NOW_MS)

    assert bound.delivery_id() == event.delivery_id
    assert copied.delivery_id() == sqs_delivery_id("m-1")  # the nonce names another id for another body
    assert redriven.delivery_id() == sqs_delivery_id("m-0")


@pytest.mark.parametrize("count", ["²", "", "-1", "9" * 17, "three"])
def test_a_receive_count_that_is_not_a_number_counts_as_the_first(count):
    assert read_record(raw(system={"ApproximateReceiveCount": count}), now_ms=NOW_MS).receive_count == 1


def test_attributes_that_are_not_strings_are_not_read():
    odd = {**raw(), "messageAttributes": {"delivery_nonce": {"binaryValue": "AAAA"}, "retry_since": "1", "x": None}}

    assert read_record(odd, now_ms=NOW_MS) == SqsRecord("m-1", "{}", "handle-1")
    assert read_record({"messageId": "m-2"}, now_ms=NOW_MS) == SqsRecord("m-2", "")
