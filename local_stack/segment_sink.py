"""A local stand-in for Segment's HTTP tracking API (the "Segment sink" of the local stack).

A small real HTTP server (stdlib only, nothing imported from the forwarder) that enforces the rules of
Segment's tracking API, as Segment documents them, strictly enough for a forwarder's mistakes to show up:

* Basic auth with the write key (or ``writeKey`` in the body); ``{"success": true}`` for accepted requests;
* sizes measured on the request as received: the body (after gunzip with ``Content-Encoding: gzip``) at most
  500 KB, and each message at most 32 KB, as the UTF-8 bytes of its JSON as written in the body (a single call:
  the whole body; a batch item: its own text), so non-ASCII text counts its UTF-8 bytes, not ``\\u`` escapes.
  Over either limit: 400 for the whole request (one oversize message refuses its whole batch);
* ``messageId`` at most 100 characters; the silent drop (200) of batches over 2,500 messages; gzip bodies;
* a rate limit per source (write key): a token bucket of requests per second (Segment's documented
  1,000/s by default) and, optionally, of events per second; over it, 429 with ``Retry-After`` and
  ``X-RateLimit-Reset`` (seconds), one source throttled while the others are served.

It serves both regions, under ``/us`` and ``/eu``, records what arrived, can be told to fail or stall requests
(all of them, or only one source's or one region's), and shows a small debugger page at ``/``.

Usage from Python (tests, the local stack, the benchmarks)::

    from local_stack.segment_sink import RateLimit, SegmentSink

    with SegmentSink() as sink:                      # port 0: any free port, released on exit
        base_us = sink.region_url("us")              # "http://127.0.0.1:<port>/us": the forwarder's base URL
        ...                                          # POST {base_us}/v1/batch as the forwarder does
        sink.events()                                # [{"region", "write_key", "received_at", "message"}]
        sink.requests()                              # every request under /us and /eu, failed ones included
        sink.set_fault(status=503, count=2, retry_after=1)   # the next two /v1 requests answer 503
        sink.set_fault(status=429, count=100, write_key="K") # ...and K's next 100 answer 429 (armed alongside)
        sink.set_fault(status=500, count=5, region="eu")     # ...and the next 5 under /eu answer 500
        sink.faults()                                # the armed faults, each with its remaining count
        sink.set_fault(status=None, delay_s=0.5)     # the next /v1 request stalls 0.5 s, then proceeds
        sink.set_latency(0.05)                       # every tracking request waits 50 ms first (network + Segment)
        sink.set_rate_limit(requests_per_s=10, events_per_s=500)  # per write key; None: no limit
        sink.clear()

    SegmentSink(rate_limit=RateLimit(requests_per_s=None))       # no rate limit at all

Arming a fault replaces the armed one of the same scope (``write_key``, ``region``, ``match``) and keeps the
others; a request takes the first armed fault whose scope it matches, and only such requests count against
that fault's ``count``.

From a shell (foreground, Ctrl-C stops it)::

    python -m local_stack.segment_sink --host 127.0.0.1 --port 3001 --requests-per-s 1000 --events-per-s off
    curl -s localhost:3001/events                    # JSON; ?region=us and ?write_key=... filter
    curl -s -X POST localhost:3001/faults -d '{"status": 503, "count": 2}'
    curl -s -X POST localhost:3001/faults -d '{"status": 429, "count": 100, "write_key": "K", "retry_after": 2}'
    curl -s localhost:3001/faults                    # the armed faults: a JSON list
    curl -s -X DELETE localhost:3001/faults          # disarm them all
    curl -s -X POST localhost:3001/rate-limit -d '{"requests_per_s": 5, "events_per_s": null, "burst_s": 1}'
    curl -s localhost:3001/rate-limit
    open http://127.0.0.1:3001/                       # the debugger page, refreshing every 2 s

The rate limit's defaults come from ``SEGMENT_SINK_REQUESTS_PER_S`` (1000), ``SEGMENT_SINK_EVENTS_PER_S``
(off) and ``SEGMENT_SINK_BURST_S`` (1) when set (a number, or ``off``), for the CLI and for a sink constructed
without ``rate_limit``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import dataclasses
import html
import json
import math
import os
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "DEFAULT_REQUESTS_PER_S",
    "LISTEN_BACKLOG",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_REQUEST_BYTES",
    "REGIONS",
    "RateLimit",
    "SegmentSink",
    "main",
]

# Segment's documented limits ("500KB per batch request and 32KB per call"; KB taken as 1,024 bytes).
MAX_REQUEST_BYTES = 500 * 1024  # one request body, after gunzip
MAX_MESSAGE_BYTES = 32 * 1024  # one message (a single call's body, or one batch item as written), UTF-8 bytes
MAX_BATCH_MESSAGES = 2500  # more in one batch: 200, and the whole batch is dropped
MAX_MESSAGE_ID_CHARS = 100
DEFAULT_REQUESTS_PER_S = 1000.0  # Segment asks each workspace to stay under 1,000 requests per second
REGIONS = ("us", "eu")
SINGLE_METHODS = ("identify", "track", "page", "screen", "group", "alias")
BATCH_METHODS = ("batch", "import")
TRACKING_METHODS = SINGLE_METHODS + BATCH_METHODS

_READ_CAP = 16 * 1024 * 1024  # bodies above this are not even read: 400 and the connection is closed
_CONTROL_BODY_CAP = 64 * 1024  # for POST /faults
_HTML_ROWS = 500
_SOCKET_TIMEOUT_S = 30.0
# Listen backlog of the sink and of the local HTTP API: connections the kernel completes while the accept loop is
# busy. Python's default (5) reset about one connection in four under 64 concurrent clients (the kernel counts
# each in TcpExt ListenOverflows); the kernel caps the value at net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 1024
_TRACKING_PATH = re.compile(r"/v1/([A-Za-z]+)/?")
_JSON_WS = re.compile(r"[ \t\n\r]*")  # JSON's insignificant whitespace
# What Python's str.strip() and JavaScript's String.prototype.trim() remove, together: Segment's servers trim
# ids, and an id that is nothing but these is refused.
_ID_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_RATE_ENV = {
    "requests_per_s": "SEGMENT_SINK_REQUESTS_PER_S",
    "events_per_s": "SEGMENT_SINK_EVENTS_PER_S",
    "burst_s": "SEGMENT_SINK_BURST_S",
}

LogFn = Callable[[str], None]


def _now() -> str:
    """Current UTC time as ISO-8601 with milliseconds and ``Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mask_key(key: str | None) -> str:
    """Show at most the last 4 characters of a write key, never the whole key."""
    if not key:
        return "—"
    return "…" + key[-4:] if len(key) >= 8 else "…"


def _printable(value: object, limit: int = 120) -> str:
    """A log-safe rendering of an id: no control characters, bounded length."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Rejected(Exception):
    """An HTTP error answer decided while reading or checking a request."""

    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


@dataclass
class _Fault:
    """An armed fault: the next ``count`` matching /v1 requests stall ``delay_s`` then answer ``status``.

    A fault's scope says which requests match: with ``write_key``, only that source's requests; with ``region``,
    only requests under that region; with ``match``, only requests holding a message whose fields equal all of
    ``match`` (e.g. ``{"anonymousId": "v-bad"}``), as Segment refuses a whole batch for one bad message. Without
    any, every request matches. Only matching requests count against ``count``.
    """

    status: int | None
    count: int
    delay_s: float
    retry_after: float | None
    match: dict[str, Any] | None = None
    write_key: str | None = None
    region: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as shown by ``GET /faults``."""
        return {
            "status": self.status,
            "count": self.count,
            "delay_s": self.delay_s,
            "retry_after": self.retry_after,
            "match": self.match,
            "write_key": self.write_key,
            "region": self.region,
        }

    @property
    def scope(self) -> tuple[str | None, str | None, str | None]:
        """What arming replaces: a fault of the same scope (write key, region, match)."""
        match = None if self.match is None else json.dumps(self.match, sort_keys=True)
        return (self.write_key, self.region, match)

    def applies(self, region: str, write_key: str | None, messages: list[dict[str, Any]]) -> bool:
        """Whether a request of this region and write key, with these messages, is faulted."""
        if self.write_key is not None and write_key != self.write_key:
            return False
        if self.region is not None and region != self.region:
            return False
        if self.match is None:
            return True
        match = self.match
        return any(all(m.get(k) == v for k, v in match.items()) for m in messages)

    @property
    def fails(self) -> bool:
        """True when the faulted request is answered with an error (not just delayed)."""
        return self.status not in (None, 200)


def _make_fault(
    status: object,
    count: object,
    delay_s: object,
    retry_after: object,
    match: object = None,
    write_key: object = None,
    region: object = None,
) -> _Fault:
    """Validate fault parameters (ValueError with a readable message when wrong)."""
    if match is not None and (not isinstance(match, dict) or not match):
        raise ValueError("match must be null or a non-empty object of message fields")
    if write_key is not None and (not isinstance(write_key, str) or not write_key):
        raise ValueError("write_key must be null or a non-empty string")
    if region is not None and region not in REGIONS:
        raise ValueError(f"region must be null or one of {', '.join(REGIONS)}")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not (status == 200 or 400 <= status <= 599)
    ):
        raise ValueError("status must be null, 200 or an error status 400-599")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("count must be an integer >= 0")
    if not _is_finite_non_negative(delay_s):
        raise ValueError("delay_s must be a finite number >= 0")
    if retry_after is not None and not _is_finite_non_negative(retry_after):
        raise ValueError("retry_after must be null or a finite number >= 0")
    assert isinstance(delay_s, int | float)
    assert retry_after is None or isinstance(retry_after, int | float)
    return _Fault(
        status=status,
        count=count,
        delay_s=float(delay_s),
        retry_after=None if retry_after is None else float(retry_after),
        match=match,
        write_key=write_key,
        region=region,
    )


def _is_finite_non_negative(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < math.inf


@dataclass(frozen=True)
class RateLimit:
    """The rate limit of every source (write key): token buckets refilled at ``requests_per_s`` requests and
    ``events_per_s`` messages per second, each holding ``burst_s`` seconds' worth (at least one request). None
    turns that bucket off. Every request that names a write key counts (one Segment would refuse with a 400 too;
    an armed fault that fails it comes first). Over it, a request is answered 429 with ``Retry-After`` and
    ``X-RateLimit-Reset`` (whole seconds until it would pass) and is not counted.

    A batch with more messages than the events bucket holds passes when the bucket is full, and leaves the
    bucket in debt (the source then waits until it is paid back)::

        RateLimit()                                  # 1,000 requests/s per write key, as Segment documents
        RateLimit(requests_per_s=5, events_per_s=200, burst_s=2)
        RateLimit(requests_per_s=None)               # no limit
        RateLimit.from_env()                         # SEGMENT_SINK_REQUESTS_PER_S, ..._EVENTS_PER_S, ..._BURST_S
    """

    requests_per_s: float | None = DEFAULT_REQUESTS_PER_S
    events_per_s: float | None = None
    burst_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("requests_per_s", "events_per_s"):
            value = getattr(self, name)
            if value is not None and (not _is_finite_non_negative(value) or value == 0):
                raise ValueError(f"{name} must be null (no limit) or a finite number > 0")
        if not _is_finite_non_negative(self.burst_s) or self.burst_s == 0:
            raise ValueError("burst_s must be a finite number > 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RateLimit:
        """The limit the environment sets (``SEGMENT_SINK_REQUESTS_PER_S``, ``SEGMENT_SINK_EVENTS_PER_S``: a
        number or ``off``; ``SEGMENT_SINK_BURST_S``: a number), the defaults where unset. ValueError when wrong."""
        env = os.environ if environ is None else environ
        values: dict[str, float | None] = {}
        for name, variable in _RATE_ENV.items():
            text = env.get(variable, "").strip()
            if text:
                try:
                    values[name] = _parse_rate(text, allow_off=name != "burst_s")
                except ValueError as exc:
                    raise ValueError(f"{variable}: {exc}") from None
        return cls(**values)  # type: ignore[arg-type]  # burst_s never None: allow_off=False

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as shown by ``GET /rate-limit``."""
        return {"requests_per_s": self.requests_per_s, "events_per_s": self.events_per_s, "burst_s": self.burst_s}


def _parse_rate(text: str, *, allow_off: bool = True) -> float | None:
    """A rate from the command line or the environment: a number, or ``off``/``none`` (no limit)."""
    if allow_off and text.strip().lower() in ("off", "none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number{' or off' if allow_off else ''}, not {text!r}") from None
    if not (0 < value < math.inf):
        raise ValueError(f"expected a finite number > 0, not {text!r}")
    return value


@dataclass
class _Bucket:
    """One source's tokens: requests and events, as of ``updated`` (the clock's time)."""

    requests: float
    events: float
    updated: float


class _RateLimiter:
    """Token buckets per write key under a RateLimit (not thread-safe: the sink holds its lock)."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _capacity(self, rate: float | None) -> float:
        return math.inf if rate is None else max(rate * self.limit.burst_s, 1.0)

    def take(self, write_key: str, events: int) -> float | None:
        """Count one request of ``events`` messages; None when it may pass, else the seconds until it would."""
        limit = self.limit
        now = self.clock()
        request_cap = self._capacity(limit.requests_per_s)
        event_cap = self._capacity(limit.events_per_s)
        bucket = self._buckets.get(write_key)
        if bucket is None:
            bucket = self._buckets[write_key] = _Bucket(request_cap, event_cap, now)
        elapsed = max(now - bucket.updated, 0.0)
        bucket.updated = now
        waits = [0.0]
        if limit.requests_per_s is not None:
            bucket.requests = min(request_cap, bucket.requests + elapsed * limit.requests_per_s)
            if bucket.requests < 1.0:
                waits.append((1.0 - bucket.requests) / limit.requests_per_s)
        if limit.events_per_s is not None and events > 0:
            bucket.events = min(event_cap, bucket.events + elapsed * limit.events_per_s)
            need = min(float(events), event_cap)  # a batch bigger than the bucket passes when it is full
            if bucket.events < need:
                waits.append((need - bucket.events) / limit.events_per_s)
        wait = max(waits)
        if wait > 0:
            return wait
        if limit.requests_per_s is not None:
            bucket.requests -= 1.0
        if limit.events_per_s is not None:
            bucket.events -= events
        return None


def _retry_after_header(value: float) -> str:
    """Integral values as delay-seconds (what Segment sends); fractions kept so tests can stay fast."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _basic_auth_key(header: str | None) -> str | None:
    """The write key from ``Authorization: Basic base64(key + ":")``; None when there is no header."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise _Rejected(401, "Authorization must be HTTP Basic with the write key as user name")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _Rejected(401, "malformed Basic credentials") from None
    user, sep, _password = decoded.partition(":")
    if not sep:
        raise _Rejected(401, 'malformed Basic credentials: expected base64("<writeKey>:")')
    return user or None


def _is_id(value: object) -> bool:
    """A usable userId / anonymousId: a string not blank once trimmed, or an integer."""
    if isinstance(value, str):
        return bool(value.strip(_ID_WHITESPACE))
    return isinstance(value, int) and not isinstance(value, bool)


def _non_empty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_message(msg: object, where: str, *, endpoint_type: str | None, size: int) -> dict[str, Any]:
    """Validate one message of ``size`` bytes as received; returns it (as a dict) or raises _Rejected(400)."""
    if not isinstance(msg, dict):
        raise _Rejected(400, f"{where}: a message must be a JSON object")
    mtype = msg.get("type")
    if endpoint_type is not None:
        if mtype is not None and mtype != endpoint_type:
            raise _Rejected(400, f'{where}: type "{mtype}" sent to /v1/{endpoint_type}')
        mtype = endpoint_type
    elif mtype is None:
        raise _Rejected(400, f'{where}: a batch item needs "type"')
    if mtype not in SINGLE_METHODS:
        raise _Rejected(400, f"{where}: unknown type {json.dumps(mtype)}")
    if "type" not in msg:
        msg = {**msg, "type": mtype}  # a single call's type is its endpoint
    if not (_is_id(msg.get("userId")) or _is_id(msg.get("anonymousId"))):
        raise _Rejected(400, f'{where}: {mtype} needs "userId" or "anonymousId"')
    if mtype == "track" and not _non_empty_str(msg.get("event")):
        raise _Rejected(400, f'{where}: track needs "event"')
    if mtype == "alias" and not _is_id(msg.get("previousId")):
        raise _Rejected(400, f'{where}: alias needs "previousId"')
    if mtype == "group" and not _is_id(msg.get("groupId")):
        raise _Rejected(400, f'{where}: group needs "groupId"')
    if "messageId" in msg:
        mid = msg["messageId"]
        if not isinstance(mid, str) or not mid or len(mid) > MAX_MESSAGE_ID_CHARS:
            limit = MAX_MESSAGE_ID_CHARS
            raise _Rejected(400, f'{where}: "messageId" must be a non-empty string of at most {limit} characters')
    for key in ("context", "integrations", "properties", "traits"):
        if key in msg and msg[key] is not None and not isinstance(msg[key], dict):
            raise _Rejected(400, f'{where}: "{key}" must be an object')
    if size > MAX_MESSAGE_BYTES:
        raise _Rejected(400, f"{where}: message is {size} bytes, over the 32 KB limit ({MAX_MESSAGE_BYTES} bytes)")
    return msg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _skip_ws(text: str, index: int) -> int:
    """The index of the first non-whitespace character at or after ``index``."""
    found = _JSON_WS.match(text, index)
    return index if found is None else found.end()


def _utf8_len(text: str, start: int, end: int) -> int:
    """UTF-8 bytes of ``text[start:end]`` (the text came from UTF-8, so it holds no lone surrogate)."""
    piece = text[start:end]
    return len(piece) if piece.isascii() else len(piece.encode("utf-8"))


def _decode_array_with_sizes(text: str, index: int) -> tuple[list[Any], list[int], int]:
    """Decode the JSON array at ``text[index] == "["``: its items, each item's UTF-8 size as written, the end."""
    items: list[Any] = []
    sizes: list[int] = []
    index = _skip_ws(text, index + 1)
    if text.startswith("]", index):
        return items, sizes, index + 1
    while True:
        start = index
        item, index = _DECODER.raw_decode(text, index)
        items.append(item)
        sizes.append(_utf8_len(text, start, index))
        index = _skip_ws(text, index)
        if text.startswith(",", index):
            index = _skip_ws(text, index + 1)
        elif text.startswith("]", index):
            return items, sizes, index + 1
        else:
            raise ValueError("expected , or ] in an array")


def _decode_body(text: str) -> tuple[Any, list[int] | None]:
    """Decode a request body as ``json.loads`` does (NaN and Infinity refused, the last of duplicate keys wins)
    and, when it is an object whose ``"batch"`` is an array, measure each item's UTF-8 bytes as written in the
    body. ValueError (or RecursionError) when it is not JSON."""
    index = _skip_ws(text, 0)
    if not text.startswith("{", index):
        value, index = _DECODER.raw_decode(text, index)
        sizes = None
    else:
        value, sizes = {}, None
        index = _skip_ws(text, index + 1)
        if text.startswith("}", index):
            index += 1
        else:
            while True:
                if not text.startswith('"', index):
                    raise ValueError("expected a member name")
                key, index = _DECODER.raw_decode(text, index)
                index = _skip_ws(text, index)
                if not text.startswith(":", index):
                    raise ValueError("expected :")
                index = _skip_ws(text, index + 1)
                if key == "batch" and text.startswith("[", index):
                    value[key], sizes, index = _decode_array_with_sizes(text, index)
                else:
                    value[key], index = _DECODER.raw_decode(text, index)
                    if key == "batch":
                        sizes = None
                index = _skip_ws(text, index)
                if text.startswith(",", index):
                    index = _skip_ws(text, index + 1)
                elif text.startswith("}", index):
                    index += 1
                    break
                else:
                    raise ValueError("expected , or } in an object")
    if _skip_ws(text, index) != len(text):
        raise ValueError("extra data after the JSON value")
    return value, sizes


@dataclass
class _Inspection:
    """What could be learnt from a tracking request (filled in as far as checking got)."""

    write_key: str | None = None
    message_count: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    dropped: bool = False


def _inspect(method: str, headers: Any, body: bytes, info: _Inspection) -> None:
    """Check a tracking request the way Segment does (a bit stricter); fills ``info`` or raises _Rejected."""
    with contextlib.suppress(_Rejected):
        info.write_key = _basic_auth_key(headers.get("Authorization"))
    media_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise _Rejected(400, "Content-Type must be application/json")
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body)
    elif encoding != "identity":
        raise _Rejected(400, f"unsupported Content-Encoding {encoding!r}")
    if len(body) > MAX_REQUEST_BYTES:
        raise _Rejected(400, f"request body is {len(body)} bytes, over the 500 KB limit ({MAX_REQUEST_BYTES} bytes)")
    try:
        payload, item_sizes = _decode_body(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Rejected(400, "invalid JSON") from None
    if not isinstance(payload, dict):
        raise _Rejected(400, "the body must be a JSON object")

    is_batch = method in BATCH_METHODS
    items = payload.get("batch") if is_batch else payload
    if is_batch and isinstance(items, list):
        info.message_count = len(items)
    elif not is_batch:
        info.message_count = 1

    header_key = _basic_auth_key(headers.get("Authorization"))
    body_key = payload.get("writeKey")
    if body_key is not None and not isinstance(body_key, str):
        raise _Rejected(400, '"writeKey" must be a string')
    body_key = body_key or None
    if header_key is None and body_key is None:
        info.write_key = None
        raise _Rejected(401, "missing write key")
    if header_key is not None and body_key is not None and header_key != body_key:
        info.write_key = header_key
        raise _Rejected(400, "the write key in the Authorization header and in the body differ")
    info.write_key = header_key or body_key

    if not is_batch:
        message = {k: v for k, v in payload.items() if k != "writeKey"}
        # A single call's message is the whole body as received (Segment: "32KB per normal API request").
        info.messages = [_check_message(message, f"/v1/{method}", endpoint_type=method, size=len(body))]
        return

    if not isinstance(items, list):
        raise _Rejected(400, '"batch" must be a list of messages')
    if len(items) > MAX_BATCH_MESSAGES:
        info.dropped = True  # Segment answers 200 and drops the whole batch
        return
    envelope: dict[str, Any] = {}
    for key in ("context", "integrations"):
        value = payload.get(key)
        if value is not None and not isinstance(value, dict):
            raise _Rejected(400, f'batch "{key}" must be an object')
        if value:
            envelope[key] = value
    sent_at = payload.get("sentAt")
    assert item_sizes is not None and len(item_sizes) == len(items)  # "batch" is the array that was measured
    messages = []
    for index, item in enumerate(items):
        checked = _check_message(item, f"batch[{index}]", endpoint_type=None, size=item_sizes[index])
        merged = {k: v for k, v in checked.items() if k != "writeKey"}
        for key, value in envelope.items():
            merged[key] = {**value, **(merged.get(key) or {})}
        if sent_at is not None and "sentAt" not in merged:
            merged["sentAt"] = sent_at
        messages.append(merged)
    info.messages = messages


def _gunzip(body: bytes) -> bytes:
    """Decompress a gzip body, refusing anything that inflates past the 500 KB request limit."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, MAX_REQUEST_BYTES + 1)
    except zlib.error:
        raise _Rejected(400, "invalid gzip body") from None
    if len(out) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
        raise _Rejected(400, f"decompressed request body is over the 500 KB limit ({MAX_REQUEST_BYTES} bytes)")
    if not inflater.eof or inflater.unused_data:
        raise _Rejected(400, "invalid gzip body")
    return out


def _log_line(region: str, message: dict[str, Any]) -> str:
    """One line per accepted message, e.g. ``us track "Experiment Viewed" anon=v1 msg=<id>``."""
    mtype = message.get("type", "?")
    parts = [region, str(mtype)]
    name = message.get("event") if mtype == "track" else message.get("name")
    if isinstance(name, str):
        parts.append(json.dumps(_printable(name)))
    if message.get("userId") is not None:
        parts.append(f"user={_printable(message['userId'])}")
    if message.get("anonymousId") is not None:
        parts.append(f"anon={_printable(message['anonymousId'])}")
    parts.append(f"msg={_printable(message.get('messageId', '-'))}")
    return " ".join(parts)


def _render_page(
    events: list[dict[str, Any]], total: int, request_count: int, faults: list[_Fault], limit: RateLimit
) -> str:
    """The debugger page: newest events first, everything escaped, write keys masked."""

    def esc(value: object) -> str:
        return html.escape("" if value is None else str(value), quote=True)

    rows = []
    for ev in events:
        msg = ev["message"]
        mtype = msg.get("type")
        name = msg.get("event") if mtype == "track" else msg.get("name")
        who = []
        if msg.get("userId") is not None:
            who.append(f"user {msg['userId']}")
        if msg.get("anonymousId") is not None:
            who.append(f"anon {msg['anonymousId']}")
        props = msg.get("properties") if "properties" in msg else msg.get("traits")
        props_json = json.dumps(props, ensure_ascii=False, sort_keys=True) if props is not None else ""
        if len(props_json) > 2000:
            props_json = props_json[:1999] + "…"
        rows.append(
            "<tr>"
            f"<td>{esc(ev['received_at'])}</td><td>{esc(ev['region'])}</td>"
            f"<td>{esc(_mask_key(ev['write_key']))}</td><td>{esc(mtype)}</td><td>{esc(name)}</td>"
            f"<td>{'<br>'.join(esc(w) for w in who)}</td><td><code>{esc(msg.get('messageId'))}</code></td>"
            f"<td><code>{esc(props_json)}</code></td>"
            "</tr>"
        )
    shown_faults = [{**f.as_dict(), "write_key": f.write_key and _mask_key(f.write_key)} for f in faults]
    fault_text = esc(json.dumps(shown_faults, ensure_ascii=False)) if faults else "none"
    limit_text = esc(json.dumps(limit.as_dict()))
    shown = f" (newest {len(events)} shown)" if len(events) < total else ""
    body = "\n".join(rows) or '<tr><td colspan="8">No events yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="2">
<title>Segment sink</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: 4px 6px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
code {{ font-size: 12px; word-break: break-all; }}
</style>
</head>
<body>
<h1>Segment sink</h1>
<p>{total} events{shown} from {request_count} requests. Armed faults: <code>{fault_text}</code>.
Rate limit per write key: <code>{limit_text}</code>.
JSON: <a href="/events">/events</a>, <a href="/requests">/requests</a>, <a href="/faults">/faults</a>,
<a href="/rate-limit">/rate-limit</a>.</p>
<table>
<thead><tr><th>received</th><th>region</th><th>write key</th><th>type</th><th>event</th>
<th>userId / anonymousId</th><th>messageId</th><th>properties / traits</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its sink, wraps TLS per connection and can drop open connections."""

    daemon_threads = True
    allow_reuse_address = True
    allow_reuse_port = False
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], sink: SegmentSink, ssl_context: ssl.SSLContext | None) -> None:
        self.sink = sink
        self.ssl_context = ssl_context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on DNS: skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def finish_request(self, request: Any, client_address: Any) -> None:
        conn: socket.socket = request
        self._track(conn, add=True)
        try:
            if self.ssl_context is not None:
                conn.settimeout(_SOCKET_TIMEOUT_S)
                self._track(conn, add=False)
                try:
                    conn = self.ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
                    self._track(conn, add=True)
                    conn.do_handshake()
                except (OSError, ValueError):
                    conn.close()
                    return
            super().finish_request(conn, client_address)
        finally:
            self._track(conn, add=False)
            if conn is not request:
                conn.close()

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(conn)
            else:
                self._open.discard(conn)

    def drop_connections(self) -> None:
        """Shut down every open client connection (idle keep-alive ones included)."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError, ValueError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exception(), ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    """The sink's server on an IPv6 host (``::1``)."""

    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """Routes one HTTP request; all state lives in the server's SegmentSink."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "SegmentSink/1.0"
    timeout = _SOCKET_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body go out in two writes: avoid the 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request (the sink's ``log`` callback gets one per accepted message)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing -----------------------------------------------------------------------------------------

    def _read_body(self, cap: int) -> bytes:
        """The request body (Content-Length or chunked); _Rejected(close=True) when over ``cap``."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(cap)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _Rejected(400, "invalid Content-Length", close=True) from None
        if length < 0:
            raise _Rejected(400, "invalid Content-Length", close=True)
        if length > cap:
            raise _Rejected(400, f"request body is {length} bytes, over the 500 KB limit", close=True)
        data = self.rfile.read(length)
        if len(data) < length:
            raise _Disconnected
        return data

    def _read_chunked(self, cap: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise _Disconnected
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _Rejected(400, "invalid chunked body", close=True) from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > cap:
                raise _Rejected(400, "request body is over the 500 KB limit", close=True)
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                raise _Disconnected
            chunks.append(chunk)
            self.rfile.readline(65537)  # the CRLF after the chunk

    def _send(
        self,
        status: int,
        body: bytes | None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        *,
        close: bool = False,
    ) -> None:
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if body is not None:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers=headers, close=close)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None, *, close: bool = False) -> None:
        self._json(status, {"success": False, "message": message}, headers, close=close)

    # -- routing ------------------------------------------------------------------------------------------

    def _dispatch(self, verb: str) -> None:
        sink = self.server.sink
        path = urlsplit(self.path).path
        in_region = next((r for r in REGIONS if path == f"/{r}" or path.startswith(f"/{r}/")), None)
        tracking = _TRACKING_PATH.fullmatch(path[3:]) if in_region else None
        method = tracking.group(1) if tracking else None
        cap = _READ_CAP if in_region else _CONTROL_BODY_CAP
        try:
            try:
                body = self._read_body(cap)
            except _Disconnected:
                self.close_connection = True
                return
            except _Rejected as rejected:
                if in_region:
                    sink._record_request(in_region, path, rejected.status, None, 0, rejected.message, _now())
                self._error(rejected.status, rejected.message, close=rejected.close)
                return

            if in_region:
                if method in TRACKING_METHODS and verb == "POST":
                    self._tracking(in_region, method, path, body)
                    return
                received_at = _now()
                write_key = None
                with contextlib.suppress(_Rejected):
                    write_key = _basic_auth_key(self.headers.get("Authorization"))
                if method in TRACKING_METHODS:
                    status, message = 405, f"{verb} not allowed on {path}: use POST"
                    self._error(status, message, {"Allow": "POST"})
                else:
                    status, message = 404, f"not found: {path}"
                    self._error(status, message)
                sink._record_request(in_region, path, status, write_key, 0, message, received_at)
                return

            route = _CONTROL_ROUTES.get(path.rstrip("/") or "/")
            if route is None:
                self._error(404, f"not found: {path}")
                return
            handler = route.get(verb)
            if handler is None:
                self._error(405, f"{verb} not allowed on {path}", {"Allow": ", ".join(sorted(route))})
                return
            handler(self, body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a sink bug: answer 500 instead of dropping the connection
            traceback.print_exc()
            with contextlib.suppress(OSError):
                self._error(500, f"sink internal error: {type(exc).__name__}: {exc}", close=True)

    def _tracking(self, region: str, method: str, path: str, body: bytes) -> None:
        sink = self.server.sink
        received_at = _now()
        info = _Inspection()
        rejected: _Rejected | None = None
        try:
            _inspect(method, self.headers, body, info)
        except _Rejected as exc:
            rejected = exc

        if sink.latency_s > 0:  # the simulated round trip of every request, before any fault
            sink._stopping.wait(sink.latency_s)
        fault = sink._take_fault(region, info.write_key, info.messages)
        if fault is not None:
            if fault.delay_s > 0:
                sink._stopping.wait(fault.delay_s)
            if fault.fails:
                assert fault.status is not None
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = _retry_after_header(fault.retry_after)
                message = f"injected fault {fault.status}"
                sink._record_request(
                    region, path, fault.status, info.write_key, info.message_count, message, received_at
                )
                self._error(fault.status, message, headers)
                return

        wait_s = sink._throttle(info.write_key, info.message_count)
        if wait_s is not None:
            seconds = str(max(1, math.ceil(wait_s)))  # whole seconds, as Segment sends them
            message = f"rate limit exceeded for this source: retry after {seconds} s"
            sink._record_request(region, path, 429, info.write_key, info.message_count, message, received_at)
            if sink._log is not None:
                sink._log(f"{region} {method} rate limited 429: {_mask_key(info.write_key)} retry after {seconds} s")
            self._error(429, message, {"Retry-After": seconds, "X-RateLimit-Reset": seconds})
            return

        if rejected is not None:
            sink._record_request(
                region,
                path,
                rejected.status,
                info.write_key,
                info.message_count,
                rejected.message,
                received_at,
            )
            if sink._log is not None:
                reason = _printable(rejected.message, 300)
                sink._log(f"{region} {method} rejected {rejected.status}: {reason}")
            self._error(rejected.status, rejected.message, close=rejected.close)
            return

        sink._accept(region, path, info, received_at)
        self._json(200, {"success": True})

    # -- control endpoints --------------------------------------------------------------------------------

    def _page(self, _body: bytes) -> None:
        page = self.server.sink._page().encode("utf-8")
        self._send(
            200,
            page,
            "text/html; charset=utf-8",
            {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
        )

    def _get_events(self, _body: bytes) -> None:
        query = parse_qs(urlsplit(self.path).query)
        region = query.get("region", [None])[0]
        write_key = query.get("write_key", [None])[0]
        self._json(200, self.server.sink.events(region=region, write_key=write_key))

    def _delete_events(self, _body: bytes) -> None:
        self.server.sink.clear()
        self._send(204, None)

    def _get_requests(self, _body: bytes) -> None:
        self._json(200, self.server.sink.requests())

    def _get_faults(self, _body: bytes) -> None:
        self._json(200, self.server.sink.faults())

    def _read_json(self, body: bytes) -> Any:
        """The control request's JSON (an empty body is ``{}``); None after answering 400."""
        try:
            return json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            self._error(400, "invalid JSON")
            return None

    def _post_faults(self, body: bytes) -> None:
        spec = self._read_json(body)
        if spec is None:
            return
        specs = spec if isinstance(spec, list) else [spec]
        faults = []
        for one in specs:
            if not isinstance(one, dict):
                self._error(400, "the body must be a JSON object (a fault) or a list of them")
                return
            unknown = set(one) - _FAULT_FIELDS
            if unknown:
                self._error(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
                return
            try:
                faults.append(
                    _make_fault(
                        one.get("status", 503),
                        one.get("count", 1),
                        one.get("delay_s", 0.0),
                        one.get("retry_after"),
                        one.get("match"),
                        one.get("write_key"),
                        one.get("region"),
                    )
                )
            except ValueError as exc:
                self._error(400, str(exc))
                return
        armed = [
            self.server.sink.set_fault(
                f.status, f.count, f.delay_s, f.retry_after, f.match, write_key=f.write_key, region=f.region
            )
            for f in faults
        ]
        self._json(200, armed if isinstance(spec, list) else armed[0])

    def _delete_faults(self, _body: bytes) -> None:
        self.server.sink.clear_faults()
        self._send(204, None)

    def _get_rate_limit(self, _body: bytes) -> None:
        self._json(200, self.server.sink.rate_limit.as_dict())

    def _post_rate_limit(self, body: bytes) -> None:
        spec = self._read_json(body)
        if spec is None:
            return
        if not isinstance(spec, dict):
            self._error(400, "the body must be a JSON object")
            return
        unknown = set(spec) - {"requests_per_s", "events_per_s", "burst_s"}
        if unknown:
            self._error(400, f"unknown rate limit fields: {', '.join(sorted(unknown))}")
            return
        try:
            limit = self.server.sink.set_rate_limit(
                requests_per_s=spec.get("requests_per_s", DEFAULT_REQUESTS_PER_S),
                events_per_s=spec.get("events_per_s"),
                burst_s=spec.get("burst_s", 1.0),
            )
        except (TypeError, ValueError) as exc:
            self._error(400, str(exc))
            return
        self._json(200, limit)

    def _delete_rate_limit(self, _body: bytes) -> None:
        self.server.sink.reset_rate_limit()
        self._send(204, None)


_FAULT_FIELDS = frozenset({"status", "count", "delay_s", "retry_after", "match", "write_key", "region"})
_CONTROL_ROUTES: dict[str, dict[str, Callable[[_Handler, bytes], None]]] = {
    "/": {"GET": _Handler._page},
    "/events": {"GET": _Handler._get_events, "DELETE": _Handler._delete_events},
    "/requests": {"GET": _Handler._get_requests},
    "/faults": {
        "GET": _Handler._get_faults,
        "POST": _Handler._post_faults,
        "DELETE": _Handler._delete_faults,
    },
    "/rate-limit": {
        "GET": _Handler._get_rate_limit,
        "POST": _Handler._post_rate_limit,
        "PUT": _Handler._post_rate_limit,
        "DELETE": _Handler._delete_rate_limit,
    },
}


class SegmentSink:
    """A local HTTP server that behaves like Segment's tracking API and records what it receives.

    Example::

        with SegmentSink(log=print) as sink:
            forwarder_base_url = sink.region_url("eu")       # f"{sink.url}/eu"
            ...
            assert [e["message"]["event"] for e in sink.events(region="eu")] == ["Experiment Viewed"]
            assert [r["status"] for r in sink.requests()] == [200]

    ``log``, when given, receives one line per accepted message (``us track "Experiment Viewed" anon=v1
    msg=<id>``) and one line per rejected tracking request (``us batch rejected 400: ...``).

    ``rate_limit`` is every source's limit (None: ``RateLimit.from_env()``, 1,000 requests/s per write key unless
    the environment says otherwise); ``clock`` (``time.monotonic``) is what its buckets refill by.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: tuple[str, str] | None = None,
        log: LogFn | None = None,
        latency_s: float = 0.0,
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.latency_s = 0.0
        self.set_latency(latency_s)
        self._requested_port = port
        self._tls_cert = tls_cert
        self._log = log
        self._cond = threading.Condition(threading.Lock())
        self._events: list[dict[str, Any]] = []
        self._requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._initial_rate_limit = RateLimit.from_env() if rate_limit is None else rate_limit
        self._limiter = _RateLimiter(self._initial_rate_limit, clock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread. Raises OSError with a clear message (e.g. port in use)."""
        if self._server is not None:
            raise RuntimeError("SegmentSink already started")
        context = None
        if self._tls_cert is not None:
            certfile, keyfile = self._tls_cert
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(certfile, keyfile)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                message = f"cannot load TLS certificate {certfile} / key {keyfile}: {reason}"
                raise OSError(exc.errno, message) from exc
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            server = server_cls((self.host, self._requested_port), self, context)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            message = f"cannot listen on {self.host}:{self._requested_port}: {reason}"
            raise OSError(exc.errno, message) from exc
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="segment-sink", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and free the port. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.drop_connections()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None:
            raise RuntimeError("SegmentSink not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` with tls_cert); wildcard hosts map to loopback."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self._tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    def region_url(self, region: str) -> str:
        """The Segment base URL of a region as served here: ``f"{url}/us"`` or ``f"{url}/eu"``."""
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, not {region!r}")
        return f"{self.url}/{region}"

    # -- recorded data ------------------------------------------------------------------------------------

    def events(self, *, region: str | None = None, write_key: str | None = None) -> list[dict[str, Any]]:
        """Copies of the recorded events, oldest first: ``{region, write_key, received_at, message}``."""
        with self._cond:
            selected = self._select(region, write_key)
            return copy.deepcopy(selected)

    def wait_for_events(
        self,
        count: int,
        timeout_s: float = 5.0,
        *,
        region: str | None = None,
        write_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching events arrived (or the timeout); returns them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._select(region, write_key)) >= count, timeout=timeout_s)
            return copy.deepcopy(self._select(region, write_key))

    def requests(self) -> list[dict[str, Any]]:
        """Every request under /us and /eu, oldest first, including rejected and faulted ones.

        Each: ``{region, path, status, write_key, message_count, received_at, error}``
        (``error`` is the answer's message when status is not 200, else None).
        """
        with self._cond:
            return [dict(r) for r in self._requests]

    def clear(self) -> None:
        """Forget recorded events and requests (armed faults and the rate limit stay)."""
        with self._cond:
            self._events.clear()
            self._requests.clear()

    # -- faults -------------------------------------------------------------------------------------------

    def set_fault(
        self,
        status: int | None = 503,
        count: int = 1,
        delay_s: float = 0.0,
        retry_after: float | None = None,
        match: dict[str, Any] | None = None,
        *,
        write_key: str | None = None,
        region: str | None = None,
    ) -> dict[str, Any]:
        """Arm a fault for the next ``count`` matching /v1 requests; returns it. ValueError on bad values.

        Each faulted request first waits ``delay_s``; then an error ``status`` is answered with a JSON error
        body (and ``Retry-After`` when ``retry_after`` is set) and records no events, while status 200/None
        lets the request proceed normally. The scope says which requests match (all when none is given):
        ``write_key``, that source's; ``region`` (``"us"``/``"eu"``), that region's; ``match``, those holding a
        message with those fields. The fault replaces an armed one of the same scope, others stay armed;
        ``count=0`` disarms that scope's fault::

            sink.set_fault(status=429, count=100, retry_after=1, write_key="K")   # only K is refused
            sink.set_fault(status=503, count=5, region="eu")                       # and /eu's next 5 requests
        """
        fault = _make_fault(status, count, delay_s, retry_after, match, write_key, region)
        with self._cond:
            self._faults = [f for f in self._faults if f.scope != fault.scope]
            if fault.count > 0:
                self._faults.append(fault)
            return fault.as_dict()

    def set_latency(self, seconds: float) -> None:
        """Make every tracking request (``POST /us|eu/v1/...``) wait ``seconds`` before it is answered, as a
        round trip to Segment would; faults come on top. 0 turns it off. ValueError unless finite and >= 0."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (0 <= seconds < math.inf):
            raise ValueError("latency must be a finite number of seconds >= 0")
        self.latency_s = float(seconds)

    def fault(self) -> dict[str, Any] | None:
        """The first armed fault (with its remaining count), or None when none is armed."""
        with self._cond:
            return self._faults[0].as_dict() if self._faults else None

    def faults(self) -> list[dict[str, Any]]:
        """Every armed fault, in the order they were armed (the order requests try them in)."""
        with self._cond:
            return [f.as_dict() for f in self._faults]

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._cond:
            self._faults = []

    # -- rate limit ---------------------------------------------------------------------------------------

    @property
    def rate_limit(self) -> RateLimit:
        """The rate limit every source is held to."""
        with self._cond:
            return self._limiter.limit

    def set_rate_limit(
        self,
        requests_per_s: float | None = DEFAULT_REQUESTS_PER_S,
        events_per_s: float | None = None,
        burst_s: float = 1.0,
    ) -> dict[str, Any]:
        """Hold every source (write key) to this limit from now on, with full buckets; returns it. None turns a
        bucket off. ValueError on bad values::

            sink.set_rate_limit(requests_per_s=2, burst_s=1)    # each write key: 2 requests, then 2 per second
        """
        limit = RateLimit(requests_per_s=requests_per_s, events_per_s=events_per_s, burst_s=burst_s)
        with self._cond:
            self._limiter = _RateLimiter(limit, self._limiter.clock)
        return limit.as_dict()

    def reset_rate_limit(self) -> None:
        """Back to the limit the sink was started with, with full buckets."""
        with self._cond:
            self._limiter = _RateLimiter(self._initial_rate_limit, self._limiter.clock)

    # -- internals used by the handler --------------------------------------------------------------------

    def _select(self, region: str | None, write_key: str | None) -> list[dict[str, Any]]:
        return [
            e
            for e in self._events
            if (region is None or e["region"] == region) and (write_key is None or e["write_key"] == write_key)
        ]

    def _take_fault(self, region: str, write_key: str | None, messages: list[dict[str, Any]]) -> _Fault | None:
        """The first armed fault this request matches, counted (disarmed at 0); a copy, or None."""
        with self._cond:
            fault = next((f for f in self._faults if f.applies(region, write_key, messages)), None)
            if fault is None:
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return dataclasses.replace(fault, count=1)

    def _throttle(self, write_key: str | None, events: int) -> float | None:
        """Seconds a request of this source must wait (429), or None when its rate limit lets it through."""
        if write_key is None:
            return None
        with self._cond:
            return self._limiter.take(write_key, events)

    def _record_request(
        self,
        region: str,
        path: str,
        status: int,
        write_key: str | None,
        message_count: int,
        error: str | None,
        received_at: str,
    ) -> None:
        with self._cond:
            self._requests.append(
                {
                    "region": region,
                    "path": path,
                    "status": status,
                    "write_key": write_key,
                    "message_count": message_count,
                    "received_at": received_at,
                    "error": error,
                }
            )

    def _accept(self, region: str, path: str, info: _Inspection, received_at: str) -> None:
        new: list[dict[str, Any]] = [
            {"region": region, "write_key": info.write_key, "received_at": received_at, "message": m}
            for m in info.messages
        ]
        with self._cond:
            self._requests.append(
                {
                    "region": region,
                    "path": path,
                    "status": 200,
                    "write_key": info.write_key,
                    "message_count": info.message_count,
                    "received_at": received_at,
                    "error": None,
                }
            )
            self._events.extend(new)
            self._cond.notify_all()
        if self._log is not None:
            if info.dropped:
                count = info.message_count
                self._log(f"{region} batch of {count} messages dropped (over {MAX_BATCH_MESSAGES})")
            for event in new:
                self._log(_log_line(region, event["message"]))

    def _page(self) -> str:
        with self._cond:
            newest = self._events[-_HTML_ROWS:][::-1]  # stored events are never mutated
            total = len(self._events)
            request_count = len(self._requests)
            faults = list(self._faults)
            limit = self._limiter.limit
        return _render_page(newest, total, request_count, faults, limit)


def _rate_argument(text: str) -> float | None:
    try:
        return _parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _burst_argument(text: str) -> float:
    try:
        value = _parse_rate(text, allow_off=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert value is not None
    return value


def main(argv: list[str] | None = None) -> int:
    """CLI: serve in the foreground until Ctrl-C / SIGTERM. Exit 0 when stopped, 2 when it cannot start."""
    parser = argparse.ArgumentParser(
        prog="python -m local_stack.segment_sink",
        description="Local stand-in for Segment's HTTP tracking API (regions under /us and /eu).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3001, help="port (default 3001; 0 picks a free one)")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (needs --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per received message")
    try:
        defaults = RateLimit.from_env()
    except ValueError as exc:
        parser.error(str(exc))
    parser.add_argument(
        "--requests-per-s",
        type=_rate_argument,
        default=defaults.requests_per_s,
        help="requests per second per write key, or off (default $SEGMENT_SINK_REQUESTS_PER_S, else 1000)",
    )
    parser.add_argument(
        "--events-per-s",
        type=_rate_argument,
        default=defaults.events_per_s,
        help="messages per second per write key, or off (default $SEGMENT_SINK_EVENTS_PER_S, else off)",
    )
    parser.add_argument(
        "--burst-s",
        type=_burst_argument,
        default=defaults.burst_s,
        help="seconds' worth of requests/messages a source may send at once (default $SEGMENT_SINK_BURST_S, else 1)",
    )
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    rate_limit = RateLimit(requests_per_s=args.requests_per_s, events_per_s=args.events_per_s, burst_s=args.burst_s)

    def emit(line: str) -> None:
        print(line, flush=True)

    sink = SegmentSink(
        host=args.host,
        port=args.port,
        tls_cert=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        log=None if args.quiet else emit,
        rate_limit=rate_limit,
    )
    try:
        sink.start()
    except OSError as exc:
        print(f"segment_sink: error: {exc.strerror or exc}", file=sys.stderr, flush=True)
        return 2

    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emit(f"Segment sink listening on {sink.url}")
    emit(f"  Segment base URLs: us {sink.region_url('us')}  eu {sink.region_url('eu')}")
    emit(f"  debugger page {sink.url}/   events {sink.url}/events   faults {sink.url}/faults")
    emit(f"  rate limit per write key {json.dumps(rate_limit.as_dict())}   {sink.url}/rate-limit")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()
    emit("Segment sink stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
