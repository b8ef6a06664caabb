"""Request bodies of the three ingest kinds, the same for the HTTP API and the queues.

::

    identify_body("demo", "v-1", user_id="u-42", context={"ip": "203.0.113.7"})
    assignment_body("demo", "v-1", "t-checkout", "b", test_name="Checkout button")
    conversion_body("demo", "v-1", "c-signup", ConversionType.CLICK, "https://shop.example.com/pricing")
    # -> {..., "event_id": "0b0c6f1e-…"}: a new UUIDv4 unless event_id= is given

The ``event_id`` rule: every conversion body carries an ``event_id``, the caller's or one generated here, once.
The forwarder forwards a conversion that is not ``one_per_visitor`` once per ``event_id`` (kept for
``EventIdTtlHours``, default 72 h), so resending the same body after a timeout or a 5xx cannot duplicate it. For
``one_per_visitor`` conversions the conversion id already deduplicates; the ``event_id`` is sent anyway (the API
accepts it) and changes nothing. Give your own ``event_id`` when the same conversion may be reported again from
another process (say, your outbox's row id): the generated one only protects the retries of one call.

Timestamps are ``datetime`` objects with a time zone (sent with milliseconds) or ISO-8601 strings with a zone.
``segment_anonymous_id`` is the site's Segment anonymous id (analytics.js ``ajs_anonymous_id``): a workspace
whose ``anonymous_id`` setting is ``segment`` sends it as ``anonymousId`` (see the README's Settings).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

Kind = Literal["identify", "assignment", "conversion"]
KINDS: tuple[Kind, ...] = ("identify", "assignment", "conversion")
ROUTES: dict[Kind, str] = {
    "identify": "/v1/identify",
    "assignment": "/v1/assignments",
    "conversion": "/v1/conversions",
}


# Characters that cannot travel as UTF-8 text (unpaired surrogates) or in an SQS message body (U+FFFE, U+FFFF);
# JSON escapes every other character it must (quotes, backslashes, control characters) itself.
_UNSENDABLE = re.compile("[\ud800-\udfff\ufffe\uffff]")


def encode_body(body: Mapping[str, Any]) -> str:
    """A body as JSON the way it is sent, over HTTP (as UTF-8) and to a queue: compact, non-ASCII text as is, so
    it counts against the 32 KB limit as the bytes it is (12 KB of French or Japanese text is 12 KB, not the
    36 KB of its ``\\u`` escapes)::

        encode_body({"title": "Été"})   # '{"title":"Été"}'

    The few characters that could not be sent as they are go as their JSON escape (``\\ud800``), which the
    forwarder then refuses naming the field, for an unpaired surrogate.
    """
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return _UNSENDABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


class ConversionType(StrEnum):
    """``conversion_type`` values."""

    CLICK = "CLICK"
    PAGE_VIEW = "PAGE_VIEW"
    PROGRAMMATIC = "PROGRAMMATIC"


def new_event_id() -> str:
    """A fresh ``event_id`` (UUIDv4)."""
    return str(uuid.uuid4())


def with_event_id(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body``; for a conversion without ``event_id``, with a new one."""
    copy = dict(body)
    if kind == "conversion" and "event_id" not in copy:
        copy["event_id"] = new_event_id()
    return copy


def _common(
    workspace_id: str,
    visitor_id: str,
    user_id: str | None,
    timestamp: datetime | str | None,
    context: Mapping[str, Any] | None,
    segment_anonymous_id: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"workspace_id": workspace_id, "visitor_id": visitor_id}
    if segment_anonymous_id is not None:
        body["segment_anonymous_id"] = segment_anonymous_id
    if user_id is not None:
        body["user_id"] = user_id
    if timestamp is not None:
        body["timestamp"] = format_timestamp(timestamp)
    if context is not None:
        body["context"] = dict(context)
    return body


def format_timestamp(value: datetime | str) -> str:
    """ISO-8601 with milliseconds and the zone; a string is passed on as it is. ValueError for a naive datetime."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware (e.g. datetime.now(UTC))")
    return value.isoformat(timespec="milliseconds")


def identify_body(
    workspace_id: str,
    visitor_id: str,
    *,
    user_id: str | None = None,
    timestamp: datetime | str | None = None,
    context: Mapping[str, Any] | None = None,
    segment_anonymous_id: str | None = None,
) -> dict[str, Any]:
    """Body of ``POST /v1/identify`` (and of an IdentifyQueue message)."""
    return _common(workspace_id, visitor_id, user_id, timestamp, context, segment_anonymous_id)


def assignment_body(
    workspace_id: str,
    visitor_id: str,
    test_id: str,
    variant_id: str,
    *,
    test_name: str | None = None,
    variant_name: str | None = None,
    user_id: str | None = None,
    timestamp: datetime | str | None = None,
    context: Mapping[str, Any] | None = None,
    segment_anonymous_id: str | None = None,
) -> dict[str, Any]:
    """Body of ``POST /v1/assignments`` (and of an AssignmentQueue message)."""
    body = _common(workspace_id, visitor_id, user_id, timestamp, context, segment_anonymous_id)
    body.update(test_id=test_id, variant_id=variant_id)
    if test_name is not None:
        body["test_name"] = test_name
    if variant_name is not None:
        body["variant_name"] = variant_name
    return body


def conversion_body(
    workspace_id: str,
    visitor_id: str,
    conversion_id: str,
    conversion_type: ConversionType | str,
    origin_url: str,
    *,
    one_per_visitor: bool = False,
    event_id: str | None = None,
    user_id: str | None = None,
    timestamp: datetime | str | None = None,
    context: Mapping[str, Any] | None = None,
    segment_anonymous_id: str | None = None,
) -> dict[str, Any]:
    """Body of ``POST /v1/conversions`` (and of a ConversionQueue message), always with an ``event_id``."""
    body = _common(workspace_id, visitor_id, user_id, timestamp, context, segment_anonymous_id)
    body.update(
        conversion_id=conversion_id,
        conversion_type=str(conversion_type),
        origin_url=origin_url,
        event_id=event_id if event_id is not None else new_event_id(),
    )
    if one_per_visitor:
        body["one_per_visitor"] = True
    return body
