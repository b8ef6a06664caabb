"""Tests of the producer client (``client/``) on its own: a scripted gateway over real HTTP, botocore's Stubber.

``gateway`` is a small HTTP server that checks every request's SigV4 signature with the local stack's verifier
(service ``execute-api``, ``testing``/``testing``, ``us-east-1``), records it and answers from a script: a status
with a JSON body and headers, a stall before answering, or a connection closed without an answer. Once the script
is used up it answers ``200 {"status": "delivered", ...}``. A step's body may be a function of the request's JSON
(``answer(200, lambda sent: {...})``), for answers that depend on what was sent. A request whose signature fails is
answered 403, so a test that expects success notices::

    gateway.script(answer(503, {"error": {...}}), close(), stall(1.0))
    client = ForwarderClient(gateway.url, region="us-east-1", credentials=("testing", "testing"))
    gateway.requests()       # [Received(method, path, headers, body, json, arrived), ...]
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from local_stack.sigv4 import SigV4Refusal, SigV4Verifier

DELIVERED = {"status": "delivered", "message_ids": ["m-1"]}


@dataclass(frozen=True)
class Step:
    """One scripted reaction: answer (after ``stall_s``), or close the connection without answering."""

    status: int = 200
    body: Any = field(default_factory=lambda: DELIVERED)
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0
    close: bool = False


def answer(status: int, body: Any = None, **headers: str) -> Step:
    return Step(status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()})


def close() -> Step:
    return Step(close=True)


def stall(seconds: float, then: Step | None = None) -> Step:
    base = then or Step()
    return Step(status=base.status, body=base.body, headers=base.headers, stall_s=seconds)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ScriptedGateway:
    def __init__(self) -> None:
        self._verifier = SigV4Verifier("testing", "testing", "us-east-1")
        self._lock = threading.Lock()
        self._script: list[Step] = []
        self._received: list[Received] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                gateway._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ScriptedGateway:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *steps: Step) -> None:
        with self._lock:
            self._script = list(steps)

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        path, _, query = request.path.partition("?")
        with self._lock:
            self._received.append(
                Received(request.command, request.path, {k: v[0] for k, v in headers.items()}, body, arrived)
            )
            step = self._script.pop(0) if self._script else Step()
        outcome = self._verifier.verify(request.command, path, query, headers, body)
        if isinstance(outcome, SigV4Refusal):
            step = answer(403, {"message": outcome.message}, x_amzn_ErrorType=outcome.error_type)
        if step.stall_s:
            time.sleep(step.stall_s)
        if step.close:
            request.close_connection = True
            request.connection.close()
            return
        reply = step.body(json.loads(body) if body else None) if callable(step.body) else step.body
        data = json.dumps(reply).encode() if reply is not None else b""
        request.send_response(step.status)
        for name, value in step.headers.items():
            request.send_header(name, value)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


@pytest.fixture
def gateway() -> Iterator[ScriptedGateway]:
    server = ScriptedGateway().start()
    yield server
    server.stop()
