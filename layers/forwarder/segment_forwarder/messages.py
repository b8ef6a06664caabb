"""Segment messages: what the forwarder sends, built in one place (pure: no I/O, no clock).

A message is its *content* (what a fact records the first time it is claimed: type, ids, event name,
properties or traits, timestamp) plus the ``messageId`` and the ``context`` added when it is sent::

    content = identify_content("v-1", user_id="u-42", timestamp="2026-11-29T12:00:00.000Z")
    message = with_delivery(content, message_id("demo", "v-1", "IDENTIFY"), {"ip": "203.0.113.7"})
    message_size(message) <= MAX_MESSAGE_BYTES      # bytes as sent: encode_json(message), compact UTF-8

Message ids are UUIDv5 of (workspace, visitor, fact key), so every resend of a fact carries the same id and
Segment drops the repeat.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import LIBRARY

Content = dict[str, Any]
Message = dict[str, Any]

MAX_MESSAGE_BYTES = 32 * 1024  # Segment's limit for one message, alone or in a batch
# Fixed namespace of this forwarder's message ids: uuid5(NAMESPACE_URL, "segment-forwarder:message-id").
MESSAGE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "segment-forwarder:message-id")
EXPERIMENT_VIEWED = "Experiment Viewed"
CONVERSION_TRIGGERED = "Conversion Triggered"
CONNECTION_TEST = "Segment Connection Test"
CONNECTION_TEST_ANONYMOUS_ID = "segment-forwarder-connection-test"


def iso_ms(moment: datetime) -> str:
    """UTC ISO-8601 with milliseconds, as Segment expects: ``2026-11-29T12:00:00.000Z``."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def message_id(workspace_id: str, visitor_id: str, fact_key: str, generation: int = 0) -> str:
    """Deterministic Segment messageId of a visitor's fact: a resend after a crash carries the same id.

    ``generation`` counts the visitor's erasures: after one, the visitor's facts are sent under ids Segment has
    never seen (generation 0, a visitor never erased, keeps the ids it always had)::

        message_id("demo", "v-1", "IDENTIFY")      # the first life's id
        message_id("demo", "v-1", "IDENTIFY", 1)   # after one erasure: another id

    Workspace ids cannot contain a newline and visitor ids no control character, so the join is unambiguous.
    """
    name = f"{workspace_id}\n{visitor_id}\n{fact_key}"
    return str(uuid.uuid5(MESSAGE_ID_NAMESPACE, name if generation == 0 else f"{name}\n{generation}"))


# What Python's str.strip() and JavaScript's String.prototype.trim() remove, together: an id that is nothing but
# these is refused by Segment (its servers trim ids).
ID_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def usable_id(value: str) -> bool:
    """Whether Segment accepts ``value`` as an id (``anonymousId``, ``userId``...): not blank once trimmed."""
    return bool(value.strip(ID_WHITESPACE))


def encode_json(value: Any) -> bytes:
    """JSON as the forwarder sends it to Segment: compact (no spaces), UTF-8, non-ASCII text as is::

        encode_json({"title": "Été"})      # '{"title":"Été"}' in UTF-8: 17 bytes (25 with ``\\u`` escapes)

    An unpaired UTF-16 surrogate (which validation refuses at the edge, so none should get here) cannot be
    encoded as UTF-8: it is written as its JSON escape (``\\ud800``), so encoding never fails and the result is
    always valid JSON. ``NaN`` and the infinities raise ValueError (they are not JSON).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "backslashreplace")  # only a lone surrogate needs it: "\udXXX", a JSON escape


def message_size(message: Mapping[str, Any]) -> int:
    """Bytes of a message as it is sent (``encode_json``: compact JSON in UTF-8), the way Segment's Node.js and
    browser clients measure it against the 32 KB limit: ``"été"`` counts 7 bytes, not the 15 it takes with
    ``\\u`` escapes (the Python client's measure, which would refuse 12 KB of French text as 36 KB).
    """
    return len(encode_json(message))


def _ids(anonymous_id: str, user_id: str | None) -> Content:
    ids: Content = {"anonymousId": anonymous_id}
    if user_id is not None:
        ids["userId"] = user_id
    return ids


def _anonymous_id(visitor_id: str, segment_anonymous_id: str | None) -> tuple[str, Content]:
    """``anonymousId`` and the extra traits / properties: the visitor id alone, or, bridged to the site's Segment
    anonymous id, that id with the visitor id as ``visitor_id``."""
    if segment_anonymous_id is None:
        return visitor_id, {}
    return segment_anonymous_id, {"visitor_id": visitor_id}


def identify_content(
    visitor_id: str, *, user_id: str | None, timestamp: str, segment_anonymous_id: str | None = None
) -> Content:
    """An Identify of the visitor (``anonymousId``), linking it to ``user_id`` when given.

    With ``segment_anonymous_id`` (the site's analytics.js ``ajs_anonymous_id``) that id is the ``anonymousId``
    and the visitor id travels as ``traits.visitor_id``.
    """
    anonymous_id, traits = _anonymous_id(visitor_id, segment_anonymous_id)
    content: Content = {"type": "identify", **_ids(anonymous_id, user_id), "timestamp": timestamp}
    if traits:
        content["traits"] = traits
    return content


def experiment_viewed_content(
    visitor_id: str,
    *,
    user_id: str | None,
    timestamp: str,
    test_id: str,
    variant_id: str,
    test_name: str | None = None,
    variant_name: str | None = None,
    spec_names: bool = True,
    segment_anonymous_id: str | None = None,
) -> Content:
    """ "Experiment Viewed" with the product's names and, unless ``spec_names`` is False, Segment's A/B spec names
    (experiment_*, variation_*); ``segment_anonymous_id`` as for ``identify_content`` (``properties.visitor_id``)."""
    properties: Content = {"test_id": test_id, "variant_id": variant_id}
    if spec_names:
        properties.update(experiment_id=test_id, variation_id=variant_id)
    if test_name is not None:
        properties["test_name"] = test_name
        if spec_names:
            properties["experiment_name"] = test_name
    if variant_name is not None:
        properties["variant_name"] = variant_name
        if spec_names:
            properties["variation_name"] = variant_name
    return _track(EXPERIMENT_VIEWED, visitor_id, user_id, timestamp, properties, segment_anonymous_id)


def conversion_triggered_content(
    visitor_id: str,
    *,
    user_id: str | None,
    timestamp: str,
    conversion_id: str,
    conversion_type: str,
    origin_url: str,
    segment_anonymous_id: str | None = None,
) -> Content:
    """ "Conversion Triggered" with the conversion's id, type and the page it happened on; ``segment_anonymous_id``
    as for ``identify_content`` (``properties.visitor_id``)."""
    properties: Content = {
        "conversion_id": conversion_id,
        "conversion_type": conversion_type,
        "origin_url": origin_url,
    }
    return _track(CONVERSION_TRIGGERED, visitor_id, user_id, timestamp, properties, segment_anonymous_id)


def connection_test_content(workspace_id: str, *, timestamp: str) -> Content:
    """The Track the connection test route sends, so the user can find it in Segment's source debugger."""
    properties: Content = {"workspace_id": workspace_id, "sent_by": LIBRARY["name"]}
    return _track(CONNECTION_TEST, CONNECTION_TEST_ANONYMOUS_ID, None, timestamp, properties)


def _track(
    event: str,
    visitor_id: str,
    user_id: str | None,
    timestamp: str,
    properties: Content,
    segment_anonymous_id: str | None = None,
) -> Content:
    anonymous_id, extra = _anonymous_id(visitor_id, segment_anonymous_id)
    return {
        "type": "track",
        "event": event,
        **_ids(anonymous_id, user_id),
        "properties": {**properties, **extra},
        "timestamp": timestamp,
    }


def with_delivery(content: Mapping[str, Any], message_id: str, context: Mapping[str, Any]) -> Message:
    """The message to send: recorded content, its message id, and the sender's context with ``library`` set."""
    return {**content, "messageId": message_id, "context": {**context, "library": LIBRARY}}
