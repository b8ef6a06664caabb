"""Child side of a local Lambda execution environment: one process runs one function, one invocation at a time.

Started by ``local_stack.lambda_pool`` (never by hand)::

    python -I -u local_stack/lambda_worker.py <request-fd> <response-fd> <handler> <code-dir> [<layer-dir> ...]

Like Lambda's Python runtime it puts the function's code directory and the layer first on ``sys.path``, imports
the handler module once (the INIT phase) and then serves invocations. Frames on the two pipes are a 4-byte
big-endian length followed by UTF-8 JSON:

    parent -> worker   {"event": {...}, "context": {"function_name", ..., "deadline_ms"}}
    worker -> parent   {"type": "ready"} | {"type": "init_error", "error": {...}}
                       {"type": "result", "result": ...} | {"type": "error", "error": {...}}

Errors use Lambda's shape ``{"errorType", "errorMessage", "stackTrace"}``. The worker's stdout/stderr carry the
function's own logs. It exits when the request pipe closes (the parent is gone). Only the standard library is
used here and ``local_stack`` is not importable: the function sees what it would see in Lambda.
"""

from __future__ import annotations

import decimal
import importlib
import json
import os
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")


class LambdaContext:
    """The context object Lambda passes to a Python handler (the attributes Powertools and user code read)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.function_name: str = fields["function_name"]
        self.function_version: str = fields.get("function_version", "$LATEST")
        self.invoked_function_arn: str = fields["invoked_function_arn"]
        self.memory_limit_in_mb: str = str(fields.get("memory_limit_in_mb", 128))
        self.aws_request_id: str = fields["aws_request_id"]
        self.log_group_name: str = fields.get("log_group_name", f"/aws/lambda/{self.function_name}")
        self.log_stream_name: str = fields.get("log_stream_name", "local")
        self.identity: Any = None
        self.client_context: Any = None
        self.tenant_id: str | None = None
        self._deadline_ms: int = int(fields["deadline_ms"])

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function times out (the parent kills the worker then)."""
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    payload = _read_exact(stream, _HEADER.unpack(header)[0])
    return None if payload is None else json.loads(payload)


def _write_frame(stream: BinaryIO, frame: dict[str, Any]) -> None:
    payload = json.dumps(frame, default=_json_default).encode("utf-8")
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


def _json_default(value: Any) -> Any:
    # Lambda's Python runtime serialises Decimal (what DynamoDB's resource API returns) as a number.
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": message if message is not None else str(exc),
        "stackTrace": traceback.format_exception(exc),
    }


def _load_handler(spec: str) -> Callable[[Any, LambdaContext], Any]:
    module_name, _, function_name = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise _InitError(
            _error(exc, "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}")
        ) from exc
    handler: object = getattr(module, function_name, None)
    if not callable(handler):
        message = f"Handler '{function_name}' missing on module '{module_name}'"
        raise _InitError({"errorType": "Runtime.HandlerNotFound", "errorMessage": message, "stackTrace": []})
    return handler


class _InitError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def main(argv: list[str]) -> int:
    """Serve invocations until the request pipe closes; 1 when the handler cannot be loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops the workers itself
    request_fd, response_fd, handler_spec, *paths = argv
    requests = os.fdopen(int(request_fd), "rb", buffering=0)
    responses = os.fdopen(int(response_fd), "wb", buffering=0)
    sys.path[:0] = paths
    try:
        handler = _load_handler(handler_spec)
    except _InitError as exc:
        _write_frame(responses, {"type": "init_error", "error": exc.error})
        return 1
    _write_frame(responses, {"type": "ready"})
    while True:
        frame = _read_frame(requests)
        if frame is None:
            return 0
        context = LambdaContext(frame["context"])
        try:
            result = handler(frame["event"], context)
        except Exception as exc:
            reply: dict[str, Any] = {"type": "error", "error": _error(exc)}
        else:
            reply = {"type": "result", "result": result}
        try:
            _write_frame(responses, reply)
        except (TypeError, ValueError) as exc:
            _write_frame(responses, {"type": "error", "error": _error(exc, "Runtime.MarshalError")})
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
