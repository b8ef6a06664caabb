"""A local stand-in for Segment's HTTP tracking API (the "Segment sink" of the local stack).

A small real HTTP server (stdlib only) that enforces the rules of Segment's tracking API strictly enough
for a forwarder's mistakes to show up: Basic auth with the write key (or ``writeKey`` in the body), the
500 KB request / 32 KB message limits and their 400s, ``{"success": true}`` for accepted requests, the
silent drop of batches over 2,500 messages, and gzip bodies. It serves both regions, under ``/us`` and
``/eu``, records what arrived, can be told to fail or stall the next requests, and shows a small
debugger page at ``/``.

Usage from Python (tests, the local stack, the benchmarks)::

    from local_stack.segment_sink import SegmentSink

    with SegmentSink() as sink:                      # port 0: any free port, released on exit
        base_us = sink.region_url("us")              # "http://127.0.0.1:<port>/us": the forwarder's base URL
        ...                                          # POST {base_us}/v1/batch as the forwarder does
        sink.events()                                # [{"region", "write_key", "received_at", "message"}]
        sink.requests()                              # every request under /us and /eu, failed ones included
        sink.set_fault(status=503, count=2, retry_after=1)   # the next two /v1 requests answer 503
        sink.set_fault(status=None, delay_s=0.5)     # the next /v1 request stalls 0.5 s, then proceeds
        sink.set_latency(0.05)                       # every tracking request waits 50 ms first (network + Segment)
        sink.clear()

From a shell (foreground, Ctrl-C stops it)::

    python -m local_stack.segment_sink --host 127.0.0.1 --port 3001
    curl -s localhost:3001/events                    # JSON; ?region=us and ?write_key=... filter
    curl -s -X POST localhost:3001/faults -d '{"status": 503, "count": 2}'
    curl -s -X DELETE localhost:3001/faults
    open http://127.0.0.1:3001/                       # the debugger page, refreshing every 2 s
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import html
import json
import math
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from segment_forwarder.messages import MAX_MESSAGE_BYTES, message_size, usable_id

__all__ = [
    "LISTEN_BACKLOG",
    "MAX_BATCH_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MAX_MESSAGE_ID_CHARS",
    "MAX_REQUEST_BYTES",
    "REGIONS",
    "SegmentSink",
    "main",
]

MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID_CHARS = 100
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
    """An armed fault: the next ``count`` /v1 requests stall ``delay_s`` then answer ``status``.

    With ``match``, only requests holding a message whose fields equal all of ``match`` (e.g.
    ``{"anonymousId": "v-bad"}``) are faulted (and counted): as Segment refuses a whole batch for one bad message.
    """

    status: int | None
    count: int
    delay_s: float
    retry_after: float | None
    match: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON form, as shown by ``GET /faults``."""
        return {
            "status": self.status,
            "count": self.count,
            "delay_s": self.delay_s,
            "retry_after": self.retry_after,
            "match": self.match,
        }

    def applies(self, messages: list[dict[str, Any]]) -> bool:
        """Whether a request with these messages is faulted."""
        if self.match is None:
            return True
        return any(all(m.get(k) == v for k, v in self.match.items()) for m in messages)

    @property
    def fails(self) -> bool:
        """True when the faulted request is answered with an error (not just delayed)."""
        return self.status not in (None, 200)


def _make_fault(status: object, count: object, delay_s: object, retry_after: object, match: object = None) -> _Fault:
    """Validate fault parameters (ValueError with a readable message when wrong)."""
    if match is not None and (not isinstance(match, dict) or not match):
        raise ValueError("match must be null or a non-empty object of message fields")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not (status == 200 or 400 <= status <= 599)
    ):
        raise ValueError("status must be null, 200 or an error status 400-599")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError("count must be an integer >= 0")
    if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or not (0 <= delay_s < math.inf):
        raise ValueError("delay_s must be a finite number >= 0")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or not (0 <= retry_after < math.inf)
    ):
        raise ValueError("retry_after must be null or a finite number >= 0")
    return _Fault(
        status=status,
        count=count,
        delay_s=float(delay_s),
        retry_after=None if retry_after is None else float(retry_after),
        match=match,
    )


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
        return usable_id(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _non_empty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_message(msg: object, where: str, *, endpoint_type: str | None) -> dict[str, Any]:
    """Validate one message; returns it (as a dict) or raises _Rejected(400)."""
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
    size = message_size(msg)  # the product's own measure: the official clients' JSON
    if size > MAX_MESSAGE_BYTES:
        raise _Rejected(400, f"{where}: message is {size} bytes, over the 32 KB limit")
    return msg


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
    if len(body) > MAX_REQUEST_BYTES:
        raise _Rejected(400, f"request body is {len(body)} bytes, over the 500 KB limit")
    encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        body = _gunzip(body)
    elif encoding != "identity":
        raise _Rejected(400, f"unsupported Content-Encoding {encoding!r}")
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
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
        info.messages = [_check_message(message, f"/v1/{method}", endpoint_type=method)]
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
    messages = []
    for index, item in enumerate(items):
        checked = _check_message(item, f"batch[{index}]", endpoint_type=None)
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
        raise _Rejected(400, "decompressed request body is over the 500 KB limit")
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


def _render_page(events: list[dict[str, Any]], total: int, request_count: int, fault: _Fault | None) -> str:
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
    fault_text = "none" if fault is None else esc(json.dumps(fault.as_dict()))
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
<p>{total} events{shown} from {request_count} requests. Armed fault: <code>{fault_text}</code>.
JSON: <a href="/events">/events</a>, <a href="/requests">/requests</a>, <a href="/faults">/faults</a>.</p>
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
        fault = sink._take_fault(info.messages)
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
        self._json(200, self.server.sink.fault())

    def _post_faults(self, body: bytes) -> None:
        try:
            spec = json.loads(body.decode("utf-8") or "{}") if body.strip() else {}
        except (UnicodeDecodeError, ValueError):
            self._error(400, "invalid JSON")
            return
        if not isinstance(spec, dict):
            self._error(400, "the body must be a JSON object")
            return
        unknown = set(spec) - {"status", "count", "delay_s", "retry_after", "match"}
        if unknown:
            self._error(400, f"unknown fault fields: {', '.join(sorted(unknown))}")
            return
        try:
            armed = self.server.sink.set_fault(
                status=spec.get("status", 503),
                count=spec.get("count", 1),
                delay_s=spec.get("delay_s", 0.0),
                retry_after=spec.get("retry_after"),
                match=spec.get("match"),
            )
        except ValueError as exc:
            self._error(400, str(exc))
            return
        self._json(200, armed)

    def _delete_faults(self, _body: bytes) -> None:
        self.server.sink.clear_faults()
        self._send(204, None)


_CONTROL_ROUTES: dict[str, dict[str, Callable[[_Handler, bytes], None]]] = {
    "/": {"GET": _Handler._page},
    "/events": {"GET": _Handler._get_events, "DELETE": _Handler._delete_events},
    "/requests": {"GET": _Handler._get_requests},
    "/faults": {
        "GET": _Handler._get_faults,
        "POST": _Handler._post_faults,
        "DELETE": _Handler._delete_faults,
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
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: tuple[str, str] | None = None,
        log: LogFn | None = None,
        latency_s: float = 0.0,
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
        self._fault: _Fault | None = None
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
        server_cls = _Server
        if ":" in self.host:
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
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
        """Forget recorded events and requests (the armed fault stays)."""
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
    ) -> dict[str, Any]:
        """Arm a fault for the next ``count`` /v1 requests; returns it. ValueError on bad values.

        Each faulted request first waits ``delay_s``; then an error ``status`` is answered with a JSON error
        body (and ``Retry-After`` when ``retry_after`` is set) and records no events, while status 200/None
        lets the request proceed normally. With ``match``, only requests holding a message with those fields
        are faulted.
        """
        fault = _make_fault(status, count, delay_s, retry_after, match)
        with self._cond:
            self._fault = fault if fault.count > 0 else None
            return fault.as_dict()

    def set_latency(self, seconds: float) -> None:
        """Make every tracking request (``POST /us|eu/v1/...``) wait ``seconds`` before it is answered, as a
        round trip to Segment would; faults come on top. 0 turns it off. ValueError unless finite and >= 0."""
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (0 <= seconds < math.inf):
            raise ValueError("latency must be a finite number of seconds >= 0")
        self.latency_s = float(seconds)

    def fault(self) -> dict[str, Any] | None:
        """The armed fault (remaining count), or None."""
        with self._cond:
            return None if self._fault is None else self._fault.as_dict()

    def clear_faults(self) -> None:
        """Disarm any fault."""
        with self._cond:
            self._fault = None

    # -- internals used by the handler --------------------------------------------------------------------

    def _select(self, region: str | None, write_key: str | None) -> list[dict[str, Any]]:
        return [
            e
            for e in self._events
            if (region is None or e["region"] == region) and (write_key is None or e["write_key"] == write_key)
        ]

    def _take_fault(self, messages: list[dict[str, Any]]) -> _Fault | None:
        with self._cond:
            fault = self._fault
            if fault is None or not fault.applies(messages):
                return None
            fault.count -= 1
            if fault.count <= 0:
                self._fault = None
            return _Fault(fault.status, 1, fault.delay_s, fault.retry_after, fault.match)

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
        new = [
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
            fault = self._fault
        return _render_page(newest, total, request_count, fault)


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
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    def emit(line: str) -> None:
        print(line, flush=True)

    sink = SegmentSink(
        host=args.host,
        port=args.port,
        tls_cert=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        log=None if args.quiet else emit,
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
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sink.stop()
    emit("Segment sink stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
