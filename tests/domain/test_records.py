"""Records a producer may have written: delivery ids bound to their body, the queued text, hashed dedup keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from segment_forwarder.errors import RequestError
from segment_forwarder.events import (
    Event,
    bound_delivery_id,
    new_nonce,
    queue_text,
    record_delivery_id,
    sqs_delivery_id,
)
from segment_forwarder.facts import Fact, FactKind
from segment_forwarder.table import HASHED_MARKER, MAX_KEY_NAME_BYTES, fact_key, sort_key
from segment_forwarder.validation import parse_body

NOW = datetime(2030, 3, 1, 12, tzinfo=UTC)
CONVERSION = {
    "workspace_id": "ws-us",
    "visitor_id": "v-1",
    "conversion_id": "c-1",
    "conversion_type": "CLICK",
    "origin_url": "https://shop.example/",
}


def _queued(body: dict) -> Event:
    return Event.from_body("conversion", body, NOW).bound(new_nonce())


# -- delivery ids -------------------------------------------------------------------------------------------


def test_the_http_paths_delivery_id_is_bound_to_its_queued_text_and_recomputed_from_the_record():
    event = _queued(CONVERSION)

    found = record_delivery_id(event.queue_text(), "sqs-1", carried_id=event.delivery_id, nonce=event.delivery_nonce)

    assert found == event.delivery_id == bound_delivery_id(event.delivery_nonce, event.queue_text())


def test_a_delivery_id_copied_onto_another_body_is_ignored():
    first = _queued(CONVERSION)
    other = queue_text({**CONVERSION, "conversion_id": "c-2", "timestamp": first.timestamp})

    copied_id_only = record_delivery_id(other, "sqs-2", carried_id=first.delivery_id)
    copied_with_nonce = record_delivery_id(other, "sqs-2", carried_id=first.delivery_id, nonce=first.delivery_nonce)

    assert copied_id_only == copied_with_nonce == sqs_delivery_id("sqs-2") != first.delivery_id


def test_a_nonce_a_producer_chose_names_only_an_id_bound_to_its_own_body():
    first = _queued(CONVERSION)
    other = queue_text({**CONVERSION, "conversion_id": "c-2", "timestamp": first.timestamp})
    forged = bound_delivery_id(first.delivery_nonce, other)  # the best a producer can compute without the body

    assert record_delivery_id(other, "sqs-2", carried_id=forged, nonce=first.delivery_nonce) == forged
    assert forged != first.delivery_id


@pytest.mark.parametrize("nonce", ["", "x" * 32, "A" * 32, "0" * 31, "0" * 33, "0" * 5000, None])
def test_a_malformed_nonce_is_ignored(nonce):
    body = queue_text(CONVERSION)
    carried = bound_delivery_id(str(nonce), body)

    assert record_delivery_id(body, "sqs-3", carried_id=carried, nonce=nonce) == sqs_delivery_id("sqs-3")


def test_a_redriven_record_keeps_the_id_derived_from_its_first_message_and_a_garbled_source_is_ignored():
    body = queue_text(CONVERSION)

    assert record_delivery_id(body, "sqs-4", source_message_id="first") == sqs_delivery_id("first")
    for garbled in ("", "é", "a b", "x" * 129, "\u0000"):
        assert record_delivery_id(body, "sqs-4", source_message_id=garbled) == sqs_delivery_id("sqs-4")


# -- the queued text ----------------------------------------------------------------------------------------


def test_the_queued_text_is_compact_utf8_that_the_sqs_path_reads_back_as_the_same_body():
    body = {**CONVERSION, "context": {"page": {"title": "Crème brûlée — 日本語 \U0001f600", "x": "\ufffe\uffff"}}}

    text = queue_text(body)

    assert ", " not in text and '": ' not in text and "\\u00e8" not in text and "日本語" in text
    assert "\ufffe" not in text and "\\ufffe" in text  # SQS refuses U+FFFE/U+FFFF raw: escaped, same JSON
    assert json.loads(text) == body
    assert parse_body("ConversionRequest", text.encode("utf-8")) == body


# -- hashed dedup keys --------------------------------------------------------------------------------------


def test_a_literal_sha256_id_never_shares_the_item_of_a_long_id_hashed_to_the_same_hex():
    long_id = "é" * 101  # 202 bytes: hashed
    hashed = sort_key(Fact(FactKind.ASSIGNMENT, long_id))
    hex_part = hashed.rsplit(":", 1)[1]
    literal = Fact(FactKind.ASSIGNMENT, f"sha256:{hex_part}")

    assert len(long_id.encode()) > MAX_KEY_NAME_BYTES
    assert sort_key(literal) == f"ASSIGN#sha256:{hex_part}"  # literal ids keep their keys
    assert hashed == f"ASSIGN#{HASHED_MARKER}{hex_part}" != sort_key(literal)


ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


@pytest.mark.parametrize(
    ("schema", "body", "field"),  # every id a fact is named after
    [
        ("AssignmentRequest", ASSIGNMENT, "test_id"),
        ("AssignmentRequest", ASSIGNMENT, "user_id"),
        ("ConversionRequest", CONVERSION, "conversion_id"),
        ("ConversionRequest", CONVERSION, "event_id"),
    ],
)
def test_no_valid_id_can_hold_the_hashed_marker(schema, body, field):
    assert parse_body(schema, json.dumps({**body, field: f"x-sha256:{'0' * 64}"}).encode())  # the old marker could

    with pytest.raises(RequestError) as refused:
        parse_body(schema, json.dumps({**body, field: f"x{HASHED_MARKER}{'0' * 64}"}).encode())

    assert refused.value.field == field


def test_the_fact_key_of_a_hashed_item_names_its_id_under_either_marker():
    for marker in (HASHED_MARKER, "sha256:"):  # the old marker: items stored before the change
        item = {"sk": {"S": f"IDENTIFY#U#{marker}{'a' * 64}"}, "fact_name": {"S": "u" * 300}}
        assert fact_key(item) == f"IDENTIFY#U#{'u' * 300}"
