"""What Segment accepts, the forwarder accepts: any JSON within 32 KB per message, measured as it is sent.

Bodies go through both paths of the real handlers (moto, the sink over HTTP). The forwarder's requests pass
through a recording proxy on their way to the sink, so the tests see the bytes that are sent: compact JSON in
UTF-8, non-ASCII text as is, each message within 32 KB as sent, and a body refused exactly when one of its
messages would not be.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from segment_forwarder import LIBRARY
from tests.component.conftest import LambdaContext, sqs_record

LIMIT = 32 * 1024
PATHS = ["http", "sqs"]
ASSIGNMENT = {"workspace_id": "ws-us", "test_id": "t-1", "variant_id": "a"}


class _Recorder(ThreadingHTTPServer):
    """A proxy in front of the sink that keeps the raw body of every request it forwards."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream
        self.bodies: list[bytes] = []
        self.pool = urllib3.PoolManager()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Forward(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(body)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        answer = self.server.pool.request(
            "POST", self.server.upstream + self.path, body=body, headers=headers, retries=False
        )
        self.send_response(answer.status)
        for name in ("Content-Type", "Retry-After"):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.data)))
        self.end_headers()
        self.wfile.write(answer.data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder(stack) -> Iterator[_Recorder]:
    server = _Recorder(stack.sink.url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def send(stack, recorder: _Recorder, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One assignment body over ``path``, sent as producers send it (compact UTF-8); (status, answer) over HTTP,
    (200, {"parked": [...]}) or (200, {}) over SQS."""
    handler = stack.handler("assignment", SEGMENT_US_ENDPOINT=f"{recorder.url}/us")
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if path == "http":
        return stack.post("assignment", text, handler, raw=True)
    answer = handler({"Records": [sqs_record(text)]}, LambdaContext())
    assert answer == {"batchItemFailures": []}
    parked = [
        {name: value["StringValue"] for name, value in m["MessageAttributes"].items()}
        for m in stack.drain("assignment", dead=True)
    ]
    return 200, {"parked": parked} if parked else {}


def sent_messages(recorder: _Recorder) -> list[tuple[dict[str, Any], int]]:
    """Each message sent, with its size as sent; the request bodies are checked to be compact UTF-8 JSON, so a
    message's size as sent is that of its compact UTF-8 encoding."""
    found = []
    for body in recorder.bodies:
        envelope = json.loads(body.decode("utf-8"))  # strict UTF-8: raises on anything else
        assert body == json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for message in envelope["batch"]:
            found.append((message, len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())))
    return found


def visitor() -> str:
    return f"v-{uuid.uuid4().hex[:12]}"


# -- Segment's shapes are accepted ---------------------------------------------------------------------------

WIDE = [
    ("65-keys", {f"k{i}": i for i in range(65)}),
    ("500-keys", {f"k{i}": i for i in range(500)}),
    ("101-items", {"items": list(range(101))}),
    ("2000-items", {"items": [1] * 2000}),
    ("20-kb-string", {"page": {"title": "t" * 20_000}}),
    ("long-key", {"k" * 1000: 1}),
    ("empty-key", {"": "a key JSON allows"}),
    ("32-levels", {"a": json.loads('{"a":' * 30 + "1" + "}" * 30)}),  # the body 1, context 2, the deepest 32
    ("integer-beyond-2-53", {"n": 2**60}),
    ("long-user-agent", {"userAgent": "Mozilla/5.0 " + "(x) " * 1000}),
]


@pytest.mark.parametrize(("name", "context"), WIDE, ids=[case[0] for case in WIDE])
def test_a_context_segment_accepts_is_delivered_as_given(stack, recorder, name, context):
    body = {**ASSIGNMENT, "visitor_id": visitor(), "context": context}

    status, answer = send(stack, recorder, "http", body)

    assert (status, answer["status"]) == (200, "delivered"), answer
    [track] = stack.tracks("Experiment Viewed")
    assert track["context"] == {**context, "library": LIBRARY}


def test_over_sqs_too_a_context_segment_accepts_is_delivered_as_given(stack, recorder):
    context = {name: context for name, context in WIDE if name in ("65-keys", "101-items", "20-kb-string")}
    body = {**ASSIGNMENT, "visitor_id": visitor(), "context": context}

    assert send(stack, recorder, "sqs", body) == (200, {})
    [track] = stack.tracks("Experiment Viewed")
    assert track["context"] == {**context, "library": LIBRARY}


# -- non-ASCII text counts as the UTF-8 bytes it is sent as -----------------------------------------------------

FRENCH = "Été à Noël, ça a déçu où l'on s'était décidé. "  # 57 bytes in UTF-8, 101 with \u escapes
ACCENTED = "éèêëàâçôûîïù"  # 2 bytes each in UTF-8, 6 as a \u escape
JAPANESE = "日本語のテキストです。"  # 3 bytes each in UTF-8, 6 as a \u escape
TEXTS = [
    ("french-12-kb", FRENCH * 215),  # 12,255 bytes in UTF-8 (over the 8 KB strings had), 21,715 with \u escapes
    ("accented-12-kb", ACCENTED * 512),  # 12,288 bytes in UTF-8, 36,864 with \u escapes
    ("japanese-12-kb", JAPANESE * 372),  # 12,276 bytes in UTF-8, 24,552 with \u escapes
    ("japanese-20-kb", JAPANESE * 620),  # 20,460 bytes in UTF-8, 40,920 with \u escapes
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("name", "text"), TEXTS, ids=[case[0] for case in TEXTS])
def test_non_ascii_text_is_measured_and_sent_as_utf8(stack, recorder, path, name, text):
    body = {**ASSIGNMENT, "visitor_id": visitor(), "context": {"page": {"title": text}}}

    status, answer = send(stack, recorder, path, body)

    assert status == 200 and answer.get("parked") is None, answer
    [track] = stack.tracks("Experiment Viewed")
    assert track["context"]["page"]["title"] == text
    sent = {message["type"]: (message, size) for message, size in sent_messages(recorder)}
    utf8 = len(text.encode("utf-8"))
    assert set(sent) == {"identify", "track"}
    assert all(utf8 < size <= LIMIT for _, size in sent.values())  # the text in its UTF-8 bytes, within 32 KB
    assert text.encode("utf-8") in recorder.bodies[0]  # sent as is, not as \u escapes
    message, size = sent["track"]
    escaped = len(json.dumps(message, separators=(",", ":")).encode())  # the measure with \u escapes
    assert escaped - size == len(json.dumps(text).encode()) - 2 - utf8  # differs by the escapes alone


@pytest.mark.parametrize("path", PATHS)
def test_a_body_is_accepted_exactly_when_its_messages_are_within_32_kb_as_sent(stack, recorder, path):
    # A probe measures the messages of a body with a 1,000-byte title; the title that brings the largest to
    # exactly 32,768 bytes as sent is accepted and delivered, one byte more is refused with 413 and not sent.
    def body(title_bytes: int) -> dict[str, Any]:
        title = "x" * (title_bytes % 2) + "é" * (title_bytes // 2)
        return {**ASSIGNMENT, "visitor_id": visitor(), "context": {"page": {"title": title}}}

    send(stack, recorder, path, body(1_000))
    title_bytes = 1_000 + LIMIT - max(size for _, size in sent_messages(recorder))
    stack.sink.clear()
    recorder.bodies.clear()

    status, answer = send(stack, recorder, path, body(title_bytes))

    assert status == 200 and answer.get("parked") is None, answer
    assert max(size for _, size in sent_messages(recorder)) == LIMIT
    assert len(json.dumps(body(title_bytes), ensure_ascii=False).encode()) < LIMIT
    recorder.bodies.clear()

    status, answer = send(stack, recorder, path, body(title_bytes + 1))

    if path == "http":
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (413, "payload_too_large", "body")
    else:
        [reason] = answer["parked"]
        assert (reason["error_code"], reason["error_field"]) == ("payload_too_large", "body")
    assert recorder.bodies == []


# -- the guards that protect the forwarder ---------------------------------------------------------------------

GUARDS = [
    # 33 levels: the body is level 1, context level 2, the 31st nested "a" level 33
    ("33-levels", {"a": json.loads('{"a":' * 31 + "1" + "}" * 31)}, "context" + ".a" * 31, "nests deeper than 32"),
    ("10001-values", {"values": [0] * 10_000}, "context.values", "more than 10000 values"),
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("name", "context", "field", "says"), GUARDS, ids=[case[0] for case in GUARDS])
def test_a_body_beyond_the_guards_is_refused_naming_the_field(stack, recorder, path, name, context, field, says):
    body = {**ASSIGNMENT, "visitor_id": visitor(), "context": context}
    assert len(json.dumps(body).encode()) < LIMIT  # far under 32 KB: refused for its shape alone

    status, answer = send(stack, recorder, path, body)

    if path == "http":
        assert (status, answer["error"]["code"], answer["error"]["field"]) == (400, "invalid_value", field)
        assert says in answer["error"]["message"]
    else:
        [reason] = answer["parked"]
        assert (reason["error_code"], reason["error_field"]) == ("invalid_value", field)
        assert says in reason["error_message"]
    assert recorder.bodies == []
