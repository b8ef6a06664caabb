"""The local HTTP API: API Gateway HTTP API (payload format 2.0) in front of the functions' worker pools.

::

    routes = [Route.parse("POST", "/v1/assignments", "AssignmentFunction"), ...]   # from Template.http_routes()
    api = HttpApi(routes, invoke=lambda function, event: pools[function].invoke(event), token="local-dev-token",
                  credentials=("testing", "testing"), port=3000, log=print).start()
    api.url            # "http://127.0.0.1:3000"
    api.stop()

What API Gateway does before and after the function, as a client sees it:

* a request over 10 MB: ``413 {"message":"Request Entity Too Large"}`` (the body is not read);
* a request within 10 MB whose event (the payload-2.0 JSON, base64 bodies included) is over Lambda's 6 MB
  synchronous request payload (``MAX_INVOKE_REQUEST_BYTES``): Lambda refuses the invocation
  (``RequestEntityTooLargeException``) and the function does not run: ``413 {"message":"Request Entity Too
  Large"}``;
* no route for the method and path (paths are matched exactly, ``{name}`` matches one segment):
  ``404 {"message":"Not Found"}``;
* authentication, before the function runs (it does not run when refused):

  - ``Authorization: AWS4-HMAC-SHA256 ...``: SigV4 for service ``execute-api``, verified as API Gateway's IAM
    authorization does, against the local dummy credentials (``local_stack/sigv4.py``); a refusal is ``403`` with
    API Gateway's message and ``x-amzn-ErrorType`` (e.g. "The request signature we calculated does not match the
    signature you provided. ...", "Signature expired: ...");
  - ``Authorization: Bearer <token>``: the local token; another token, an empty one or another scheme:
    ``401 {"message":"Unauthorized"}``;
  - no ``Authorization`` header: ``403 {"message":"Forbidden"}``, API Gateway's answer to an unsigned request on
    an IAM-authorized route;

* otherwise one payload-2.0 event (``version``, ``routeKey``, ``rawPath``, ``rawQueryString``, ``cookies``,
  lower-cased ``headers``, ``queryStringParameters``, ``requestContext``, ``pathParameters``, ``body``,
  ``isBase64Encoded``: base64 when the body is not UTF-8 text) is passed to the function and its
  ``{statusCode, headers, cookies, body, isBase64Encoded}`` answer is returned as is; an answer without
  ``statusCode`` is sent as a 200 JSON body, as the 2.0 format infers;
* the function raised, crashed, timed out (its own ``Timeout``), answered something that is no response, or
  answered more than Lambda's 6 MB response payload (``MAX_INVOKE_RESPONSE_BYTES``, its JSON as serialised):
  ``500 {"message":"Internal Server Error"}``, as HTTP APIs answer any failed Lambda integration (REST APIs
  answer 502 "Internal server error"; HTTP APIs do not);
* no answer within the integration timeout (``integration_timeout_s``: 30 s, the most an HTTP API allows, even
  when the function's own Timeout is longer): ``503 {"message":"Service Unavailable"}``; the function is not
  stopped by that, it runs on until it ends or reaches its own Timeout, as in Lambda;
* a function that cannot start (its code does not import, a local-stack answer): ``503`` with
  ``{"message", "error": {"code": "function_unavailable", "message", "field": null}}``.

One line per request goes to ``log``: ``POST /v1/assignments 200 delivered 2 msg 14ms``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from .lambda_pool import FunctionUnavailable, InvocationError
from .segment_sink import LISTEN_BACKLOG
from .sigv4 import SigV4Identity, SigV4Refusal, SigV4Verifier, is_sigv4

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
# Lambda's synchronous invocation payloads: "Request must be smaller than 6291456 bytes for the InvokeFunction
# operation"; a response may be 100 bytes more ("Response payload size exceeded maximum allowed payload size
# (6291556 bytes)"). Measured as compact UTF-8 JSON: the least any serialiser makes of the value.
MAX_INVOKE_REQUEST_BYTES = 6 * 1024 * 1024
MAX_INVOKE_RESPONSE_BYTES = MAX_INVOKE_REQUEST_BYTES + 100
INTEGRATION_TIMEOUT_S = 30.0  # an HTTP API's maximum (and default) integration timeout; 50 ms is its minimum
MIN_INTEGRATION_TIMEOUT_S = 0.05
FUNCTION_FAILED = (500, "Internal Server Error")  # an HTTP API's answer when the Lambda integration fails
INTEGRATION_TIMED_OUT = (503, "Service Unavailable")  # its answer when the integration timeout passes first
_DRAIN_LIMIT = 4 * MAX_BODY_BYTES  # a larger refused body is not read at all: the connection is closed
ACCOUNT_ID = "123456789012"
API_ID = "localapi01"
_JSON = "application/json"
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)\+?\}")

InvokeFn = Callable[[str, dict[str, Any]], Any]
LogFn = Callable[[str], None]


class _BadRequest(Exception):
    """A request API Gateway itself refuses (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP API route: ``METHOD /path/{param}`` to a function."""

    method: str
    path: str
    function: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, method: str, path: str, function: str) -> Route:
        """Compile a route of the template (``{name}`` matches one path segment)."""
        regex = ""
        last = 0
        for match in _PARAM.finditer(path):
            regex += re.escape(path[last : match.start()]) + f"(?P<{match.group(1)}>[^/]+)"
            last = match.end()
        regex += re.escape(path[last:])
        return cls(method.upper(), path, function, re.compile(f"^{regex}$"))

    @property
    def key(self) -> str:
        """API Gateway's routeKey, e.g. ``POST /v1/assignments``."""
        return f"{self.method} {self.path}"

    def match(self, method: str, raw_path: str) -> dict[str, str] | None:
        """Path parameters (URL-decoded) when this route takes the request, else None."""
        if method != self.method:
            return None
        found = self.pattern.match(raw_path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def _json_answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"content-type": _JSON}, "body": json.dumps(body)}


def _gateway_error(status: int, message: str) -> dict[str, Any]:
    return _json_answer(status, {"message": message})


def summarize(status: int, body: bytes) -> str:
    """A short reading of an answer for the log line: ``delivered 2 msg``, ``invalid_type visitor_id``."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("status"), str):
        parts = [data["status"]]
        if isinstance(data.get("message_ids"), list):
            parts.append(f"{len(data['message_ids'])} msg")
        if isinstance(data.get("reason"), str):
            parts.append(data["reason"])
        return " ".join(parts)
    error = data.get("error")
    if isinstance(error, dict):
        return " ".join(str(error[k]) for k in ("code", "field") if error.get(k))
    if "connected" in data:
        return f"connected={json.dumps(data['connected'])}"
    if isinstance(data.get("message_id"), str):
        return f"test message {data['message_id']}"
    message = data.get("message")
    return message if isinstance(message, str) else ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], api: HttpApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "local-api-gateway"

    def version_string(self) -> str:
        """The Server header."""
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: HttpApi logs one line per request itself."""

    def _handle(self) -> None:
        started = time.monotonic()
        api = self.server.api
        split = urlsplit(self.path)
        raw_path, raw_query = split.path or "/", split.query
        try:
            answer = api.handle(self, raw_path, raw_query)
        except _BadRequest as exc:
            self.close_connection = True
            answer = _encode_answer(_gateway_error(exc.status, exc.message))
        except Exception as exc:  # a bug of the local stack itself: answer like API Gateway, keep serving
            api.emit(f"  local API error: {type(exc).__name__}: {exc}")
            self.close_connection = True
            answer = _encode_answer(_gateway_error(500, "Internal Server Error"))
        status, body = self._send(answer)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        summary = summarize(status, body)
        api.emit(f"{self.command} {raw_path} {status}{' ' + summary if summary else ''} {elapsed_ms}ms")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, ...) is routed like the others: no route, so 404 as API Gateway.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked), refusing more than 10 MB without reading it."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(400, "Bad Request") from None
        if length < 0:
            raise _BadRequest(400, "Bad Request")
        if length > MAX_BODY_BYTES:
            if length <= _DRAIN_LIMIT:  # read and drop it, so the client sees the answer instead of a reset
                while length > 0:
                    chunk = self.rfile.read(min(length, 1 << 20))
                    if not chunk:
                        break
                    length -= len(chunk)
            raise _BadRequest(413, "Request Entity Too Large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "Bad Request") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BadRequest(413, "Request Entity Too Large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send(self, answer: dict[str, Any]) -> tuple[int, bytes]:
        status = int(answer["statusCode"])
        body = answer.get("body_bytes", b"")
        self.send_response(status)
        headers: dict[str, str] = answer.get("headers", {})
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(name, value)
        if not any(name.lower() == "content-type" for name in headers) and body:
            self.send_header("Content-Type", _JSON)
        for cookie in answer.get("cookies", []):
            self.send_header("Set-Cookie", cookie)
        request_id = answer.get("request_id") or base64.b64encode(secrets.token_bytes(12)).decode().rstrip("=")
        self.send_header("apigw-requestid", request_id)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        return status, body


def _encode_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """Turn a payload-2.0 response (already checked) into status, headers, cookies and body bytes."""
    body = answer.get("body")
    if body is None:
        raw = b""
    elif answer.get("isBase64Encoded"):
        raw = base64.b64decode(str(body))
    else:
        raw = str(body).encode("utf-8", "surrogatepass")
    headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
    if "content-type" not in {k.lower() for k in headers}:
        headers["content-type"] = _JSON
    return {
        "statusCode": answer["statusCode"],
        "headers": headers,
        "cookies": [str(c) for c in answer.get("cookies") or []],
        "body_bytes": raw,
    }


def payload_bytes(value: Any) -> int:
    """The size Lambda holds against its payload limits: the UTF-8 bytes of the value's compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def to_http_answer(result: Any) -> dict[str, Any] | None:
    """The function's result as API Gateway reads a 2.0 response; None when it is malformed."""
    if isinstance(result, dict) and "statusCode" in result:
        status = result["statusCode"]
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            return None
        headers = result.get("headers")
        if headers is not None and not isinstance(headers, dict):
            return None
        cookies = result.get("cookies")
        if cookies is not None and not isinstance(cookies, list):
            return None
        try:
            return _encode_answer(result)
        except ValueError:
            return None
    # Format 2.0 infers a response: any JSON without statusCode is a 200 JSON body.
    return _encode_answer({"statusCode": 200, "body": json.dumps(result)})


class HttpApi:
    """API Gateway HTTP API on a loopback port; see the module docstring."""

    def __init__(
        self,
        routes: list[Route],
        invoke: InvokeFn,
        token: str,
        credentials: tuple[str, str],
        host: str = "127.0.0.1",
        port: int = 3000,
        log: LogFn | None = None,
        region: str = "us-east-1",
        integration_timeout_s: float = INTEGRATION_TIMEOUT_S,
    ) -> None:
        if not MIN_INTEGRATION_TIMEOUT_S <= integration_timeout_s <= INTEGRATION_TIMEOUT_S:
            raise ValueError(
                f"an HTTP API's integration timeout is {MIN_INTEGRATION_TIMEOUT_S:g} to {INTEGRATION_TIMEOUT_S:g} s,"
                f" not {integration_timeout_s!r}"
            )
        self.integration_timeout_s = integration_timeout_s
        self.routes = routes
        self._invoke = invoke
        self._token = token
        self._verifier = SigV4Verifier(credentials[0], credentials[1], region)
        self.host = host
        self._requested_port = port
        self._log = log
        self._region = region
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a daemon thread; OSError (e.g. port in use) when it cannot bind."""
        self._server = _Server((self.host, self._requested_port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="http-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port. Safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("HttpApi not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def emit(self, line: str) -> None:
        """Log one line (when a log function was given)."""
        if self._log is not None:
            self._log(line)

    # -- requests -------------------------------------------------------------------------------------------

    def _authenticate(
        self, request: _Handler, raw_path: str, raw_query: str, body: bytes
    ) -> SigV4Identity | dict[str, Any] | None:
        """The SigV4 caller, None for the right bearer token, or the gateway's refusal (an answer)."""
        header = request.headers.get("Authorization")
        if not header:
            return _encode_answer(_gateway_error(403, "Forbidden"))
        if is_sigv4(header):
            headers: dict[str, list[str]] = {}
            for name, value in request.headers.items():
                headers.setdefault(name.lower(), []).append(value)
            outcome = self._verifier.verify(request.command, raw_path, raw_query, headers, body)
            if isinstance(outcome, SigV4Refusal):
                answer = _encode_answer(_gateway_error(outcome.status, outcome.message))
                answer["headers"]["x-amzn-ErrorType"] = outcome.error_type
                return answer
            return outcome
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self._token.encode()):
            return None
        return _encode_answer(_gateway_error(401, "Unauthorized"))

    def handle(self, request: _Handler, raw_path: str, raw_query: str) -> dict[str, Any]:
        """Answer one request (status, headers, cookies, body bytes, request id)."""
        request_id = base64.b64encode(secrets.token_bytes(12)).decode().rstrip("=")
        body = request.read_body()
        route, params = self._route(request.command, raw_path)
        if route is None:
            answer = _encode_answer(_gateway_error(404, "Not Found"))
        else:
            caller = self._authenticate(request, raw_path, raw_query, body)
            if isinstance(caller, dict):
                answer = caller
            else:
                event = self._event(request, route, params or {}, raw_path, raw_query, body, request_id, caller)
                answer = self._call(route, event)
        answer["request_id"] = request_id
        return answer

    def _route(self, method: str, raw_path: str) -> tuple[Route | None, dict[str, str] | None]:
        for route in self.routes:
            params = route.match(method, raw_path)
            if params is not None:
                return route, params
        return None, None

    def _call(self, route: Route, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the route's function and wait for it at most the integration timeout."""
        size = payload_bytes(event)
        if size > MAX_INVOKE_REQUEST_BYTES:
            self.emit(f"  [{route.function}] event of {size} bytes: over Lambda's request payload limit, not invoked")
            return _encode_answer(_gateway_error(413, "Request Entity Too Large"))
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                outcome["result"] = self._invoke(route.function, event)
            except BaseException as exc:  # handed to the request's thread below
                outcome["error"] = exc
            finally:
                done.set()

        # The invocation runs in its own thread: when the integration timeout passes first, API Gateway answers
        # while the function runs on (until it ends or reaches its own Timeout).
        threading.Thread(target=run, name=f"invoke-{route.function}", daemon=True).start()
        if not done.wait(self.integration_timeout_s):
            self.emit(
                f"  [{route.function}] no answer within the integration timeout ({self.integration_timeout_s:g} s)"
            )
            return _encode_answer(_gateway_error(*INTEGRATION_TIMED_OUT))
        error = outcome.get("error")
        if isinstance(error, InvocationError):
            self.emit(f"  [{route.function}] invocation failed: {error.error_type}: {error.message}")
            return _encode_answer(_gateway_error(*FUNCTION_FAILED))
        if isinstance(error, FunctionUnavailable):
            detail = {"code": "function_unavailable", "message": str(error), "field": None}
            return _encode_answer(_json_answer(503, {"message": "Service Unavailable", "error": detail}))
        if error is not None:
            raise error
        result = outcome.get("result")
        size = payload_bytes(result)
        if size > MAX_INVOKE_RESPONSE_BYTES:
            self.emit(f"  [{route.function}] Function.ResponseSizeTooLarge: a response of {size} bytes")
            return _encode_answer(_gateway_error(*FUNCTION_FAILED))
        answer = to_http_answer(result)
        if answer is None:
            self.emit(f"  [{route.function}] malformed Lambda response: {json.dumps(result)[:200]}")
            return _encode_answer(_gateway_error(*FUNCTION_FAILED))
        return answer

    def _event(
        self,
        request: _Handler,
        route: Route,
        params: dict[str, str],
        raw_path: str,
        raw_query: str,
        body: bytes,
        request_id: str,
        caller: SigV4Identity | None,
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in request.headers.items():
            lower = name.lower()
            if lower == "cookie":
                cookies.extend(part.strip() for part in value.split(";") if part.strip())
                continue
            headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
        source_ip = request.client_address[0]
        headers.setdefault("x-forwarded-for", source_ip)
        headers.setdefault("x-forwarded-port", str(self.port))
        headers.setdefault("x-forwarded-proto", "http")
        headers.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
        now = datetime.now(UTC)
        path = unquote(raw_path)  # an HTTP API gives the path decoded (pathParameters too, each decoded once)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.key,
            "rawPath": path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": API_ID,
                "domainName": headers.get("host", f"{self.host}:{self.port}"),
                "domainPrefix": headers.get("host", self.host).split(".", 1)[0],
                "http": {
                    "method": request.command,
                    "path": path,
                    "protocol": request.request_version,
                    "sourceIp": source_ip,
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": request_id,
                "routeKey": route.key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if caller is not None:  # what an IAM-authorized route adds (payload 2.0)
            user_id = "AIDALOCALSTACKCALLER"
            event["requestContext"]["authorizer"] = {
                "iam": {
                    "accessKey": caller.access_key,
                    "accountId": ACCOUNT_ID,
                    "callerId": user_id,
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": f"arn:aws:iam::{ACCOUNT_ID}:user/local",
                    "userId": user_id,
                }
            }
        if cookies:
            event["cookies"] = cookies
        if raw_query:
            query: dict[str, str] = {}
            for name, value in parse_qsl(raw_query, keep_blank_values=True):
                query[name] = f"{query[name]},{value}" if name in query else value
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event


def port_is_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound now (as a server with SO_REUSEADDR would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
