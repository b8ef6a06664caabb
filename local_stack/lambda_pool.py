"""Parent side of the local Lambda execution environments: a small pool of worker processes per function.

::

    spec = FunctionSpec(name="AssignmentFunction", code_dir=Path("functions/assignment"), handler="app.handler",
                        timeout_s=30, memory_mb=256, environment={...}, layer_dirs=(Path("layers/forwarder"),))
    pool = FunctionPool(spec, max_workers=3, log=print)
    pool.start()                                   # spawns the first worker (INIT runs in the background)
    pool.wait_ready(timeout_s=20)                  # None, or the init error text
    result = pool.invoke({"Records": [...]})       # the handler's JSON answer
    pool.stop()

Each worker (``lambda_worker.py``) is a separate Python process with the function's environment only, its code
directory and the layers first on ``sys.path``; it handles one invocation at a time, like one Lambda execution
environment. The pool lends an idle worker per invocation and starts another (up to ``max_workers``) when all are
busy. An invocation gets a context whose ``get_remaining_time_in_millis()`` counts down the function's Timeout;
a worker that overruns it is killed, as Lambda does. ``invoke`` raises:

* ``InvocationError``: the handler raised (kind ``error``), the worker died (``crash``) or overran its timeout
  (``timeout``); a dead or killed worker is replaced by a fresh one on the next invocation;
* ``FunctionUnavailable``: the function cannot start (for instance its module does not import yet). INIT is tried
  again on a later invocation (at most every ``retry_init_s``), so code that appears later is picked up.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

WORKER_SCRIPT = Path(__file__).with_name("lambda_worker.py")
_HEADER = struct.Struct(">I")
_STANDARD_LOG_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "sampling_rate",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "xray_trace_id",
        "kind",
    }
)

# With metrics disabled locally, Powertools still warns on every invocation that it has nothing to publish.
_QUIET_METRICS_WARNING = "ignore:No application metrics to publish:UserWarning"

LogFn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """What a worker needs to run one function of the template."""

    name: str  # logical id, e.g. "AssignmentFunction"
    code_dir: Path
    handler: str  # "module.function", e.g. "app.handler"
    timeout_s: float
    memory_mb: int
    environment: dict[str, str]  # the complete environment of the worker process
    layer_dirs: tuple[Path, ...] = ()
    function_name: str = ""  # physical name shown in the context; defaults to ``name``
    region: str = "us-east-1"
    account_id: str = "123456789012"

    @property
    def physical_name(self) -> str:
        """The function's name as its context reports it."""
        return self.function_name or self.name


class InvocationError(Exception):
    """An invocation that produced no result: ``kind`` is ``error``, ``crash`` or ``timeout``."""

    def __init__(self, kind: str, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.kind = kind
        self.error_type = error_type
        self.message = message


class _NotDelivered(Exception):
    """The worker was gone before it got the event: the invocation did not start."""


class FunctionUnavailable(Exception):
    """The function cannot be started (its INIT failed); ``reason`` says why."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"{function} cannot start: {reason}")
        self.function = function
        self.reason = reason


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def format_log_line(function: str, line: str) -> str:
    """A worker's output line for the console: Powertools JSON logs condensed to ``level message key=value``."""
    prefix = f"  [{function}]"
    text = line.rstrip("\n")
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict) and "message" in record and "level" in record:
            extras = " ".join(
                f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
                for key, value in record.items()
                if key not in _STANDARD_LOG_KEYS and value is not None
            )
            return f"{prefix} {record['level']} {record['message']}{' ' + extras if extras else ''}"
    return f"{prefix} {text}"


class Worker:
    """One worker process (one execution environment)."""

    def __init__(self, spec: FunctionSpec, log: LogFn | None) -> None:
        self.spec = spec
        self._log = log
        request_r, self._request_w = os.pipe()
        self._response_r, response_w = os.pipe()
        paths = [str(spec.code_dir), *(str(p) for p in spec.layer_dirs)]
        command = [
            sys.executable,
            "-I",
            "-u",
            "-W",
            _QUIET_METRICS_WARNING,
            str(WORKER_SCRIPT),
            str(request_r),
            str(response_w),
            spec.handler,
        ]
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
                [*command, *paths],
                env=spec.environment,
                cwd=str(spec.code_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(request_r, response_w),
                # Its own process group: a terminal's Ctrl-C reaches the stack, which stops the workers itself
                # (a worker also exits when the stack is gone: its request pipe closes).
                process_group=0,
            )
        finally:
            os.close(request_r)
            os.close(response_w)
        self._requests: BinaryIO = os.fdopen(self._request_w, "wb", buffering=0)
        self._responses: BinaryIO = os.fdopen(self._response_r, "rb", buffering=0)
        self._output = threading.Thread(target=self._pump_output, name=f"{spec.name}-output", daemon=True)
        self._output.start()
        self.broken = False

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def _pump_output(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            if self._log is not None:
                self._log(format_log_line(self.spec.name, raw.decode("utf-8", "replace")))
        self.process.stdout.close()

    # -- frames ---------------------------------------------------------------------------------------------

    def _read_exact(self, size: int, deadline: float | None) -> bytes | None:
        """``size`` bytes, None on EOF; TimeoutError at ``deadline`` (monotonic)."""
        chunks = []
        while size:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._responses], [], [], left)[0]:
                    raise TimeoutError
            chunk = self._responses.read(size)
            if not chunk:
                return None
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float | None) -> dict[str, Any] | None:
        header = self._read_exact(_HEADER.size, deadline)
        if header is None:
            return None
        payload = self._read_exact(_HEADER.unpack(header)[0], deadline)
        return None if payload is None else json.loads(payload)

    def _crashed(self) -> InvocationError:
        self.broken = True
        try:
            returncode = self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = self.process.returncode
        return InvocationError("crash", "Runtime.ExitError", f"the worker process {_describe_exit(returncode)}")

    # -- lifecycle ------------------------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float) -> str | None:
        """Wait for INIT to finish: None when ready, else the error text (the worker is then unusable)."""
        try:
            frame = self._read_frame(time.monotonic() + timeout_s)
        except TimeoutError:
            self.kill()
            return f"Runtime.InitTimeout: INIT took longer than {timeout_s:g} s"
        if frame is None:
            return f"Runtime.ExitError: {self._crashed().message} during INIT"
        if frame.get("type") == "ready":
            return None
        self.broken = True
        error = frame.get("error", {})
        return f"{error.get('errorType', 'Runtime.Unknown')}: {error.get('errorMessage', '')}"

    def invoke(self, event: Any, request_id: str) -> Any:
        """Run one invocation; raises InvocationError (the worker is then marked broken unless the handler raised)."""
        spec = self.spec
        started = time.time()
        deadline_ms = int((started + spec.timeout_s) * 1000)
        arn = f"arn:aws:lambda:{spec.region}:{spec.account_id}:function:{spec.physical_name}"
        frame = {
            "event": event,
            "context": {
                "function_name": spec.physical_name,
                "function_version": "$LATEST",
                "invoked_function_arn": arn,
                "memory_limit_in_mb": spec.memory_mb,
                "aws_request_id": request_id,
                "log_group_name": f"/aws/lambda/{spec.physical_name}",
                "log_stream_name": f"local/[$LATEST]{self.pid}",
                "deadline_ms": deadline_ms,
            },
        }
        payload = json.dumps(frame).encode("utf-8")
        try:
            self._requests.write(_HEADER.pack(len(payload)) + payload)
        except OSError:
            self._crashed()
            raise _NotDelivered from None
        try:
            reply = self._read_frame(time.monotonic() + spec.timeout_s)
        except TimeoutError:
            self.kill()
            raise InvocationError(
                "timeout", "Sandbox.Timedout", f"Task timed out after {spec.timeout_s:.2f} seconds"
            ) from None
        if reply is None:
            raise self._crashed()
        if reply.get("type") == "result":
            return reply.get("result")
        error = reply.get("error", {})
        raise InvocationError("error", str(error.get("errorType", "Error")), str(error.get("errorMessage", "")))

    def kill(self) -> None:
        """Kill the process at once (a timed-out execution environment)."""
        self.broken = True
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._close()

    def close_requests(self) -> None:
        """Close the request pipe: an idle worker exits by itself (first step of ``stop``)."""
        with contextlib.suppress(OSError):
            self._requests.close()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Close the request pipe (the worker exits by itself), then terminate / kill if it lingers."""
        self.close_requests()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._close()

    def _close(self) -> None:
        for stream in (self._requests, self._responses):
            with contextlib.suppress(OSError):
                stream.close()
        self._output.join(timeout=2)


@dataclass(slots=True)
class _PoolState:
    idle: list[Worker] = field(default_factory=list)
    busy: set[Worker] = field(default_factory=set)
    starting: int = 0
    init_error: str | None = None
    init_failed_at: float = 0.0


class FunctionPool:
    """Up to ``max_workers`` execution environments of one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        max_workers: int = 3,
        log: LogFn | None = None,
        init_timeout_s: float = 20.0,
        retry_init_s: float = 2.0,
    ) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.spec = spec
        self.max_workers = max_workers
        self._log = log
        self._init_timeout_s = init_timeout_s
        self._retry_init_s = retry_init_s
        self._cond = threading.Condition()
        self._state = _PoolState()
        self._pending: Worker | None = None
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the first worker; its INIT runs while other pools start (see ``wait_ready``)."""
        worker = Worker(self.spec, self._log)
        with self._cond:
            self._state.starting += 1
            self._pending = worker

    def wait_ready(self, timeout_s: float | None = None) -> str | None:
        """Finish the INIT begun by ``start``: None when the function runs, else why it cannot (yet)."""
        with self._cond:
            worker, self._pending = self._pending, None
        if worker is not None:
            ready = self._finish_start(worker, timeout_s or self._init_timeout_s)
            if ready is not None:
                with self._cond:
                    self._state.idle.append(ready)
                    self._cond.notify_all()
        return self.init_error

    @property
    def init_error(self) -> str | None:
        """Why the last INIT failed, or None."""
        with self._cond:
            return self._state.init_error

    def pids(self) -> list[int]:
        """Process ids of the live workers (idle and busy)."""
        with self._cond:
            return [w.pid for w in [*self._state.idle, *self._state.busy]]

    def begin_stop(self) -> None:
        """Refuse new invocations and ask every worker to exit (``stop`` waits for them)."""
        with self._cond:
            self._stopped = True
            workers = [*self._state.idle, *self._state.busy]
            if self._pending is not None:
                workers.append(self._pending)
            self._cond.notify_all()
        for worker in workers:
            worker.close_requests()

    def stop(self) -> None:
        """Stop every worker: idle ones exit at once, busy ones get a moment, then are terminated."""
        self.begin_stop()
        with self._cond:
            workers = [*self._state.idle, *self._state.busy]
            if self._pending is not None:
                workers.append(self._pending)
                self._pending = None
            self._state.idle.clear()
            self._state.busy.clear()
        for worker in workers:
            worker.stop(timeout_s=1.0)

    # -- invocations ----------------------------------------------------------------------------------------

    def invoke(self, event: Any, request_id: str | None = None) -> Any:
        """Invoke the function once with ``event``; see the module docstring for the errors."""
        request_id = request_id or str(uuid.uuid4())
        for _attempt in range(2):
            worker = self._acquire()
            try:
                return worker.invoke(event, request_id)
            except _NotDelivered:
                continue  # an idle environment that had died: the event goes to a fresh one
            finally:
                self._release(worker)
        raise InvocationError("crash", "Runtime.ExitError", "no worker could take the event")

    def _finish_start(self, worker: Worker, timeout_s: float) -> Worker | None:
        error = worker.wait_ready(timeout_s)
        with self._cond:
            self._state.starting -= 1
            if error is None and not self._stopped:
                self._state.init_error = None
                self._cond.notify_all()
                return worker
            if error is not None:
                self._state.init_error = error
                self._state.init_failed_at = time.monotonic()
            self._cond.notify_all()
        worker.stop(timeout_s=0.5)
        return None

    def _acquire(self) -> Worker:
        if self._pending is not None:
            self.wait_ready()
        with self._cond:
            while True:
                if self._stopped:
                    raise FunctionUnavailable(self.spec.name, "the local stack is stopping")
                while self._state.idle:
                    worker = self._state.idle.pop()
                    if worker.process.poll() is None:
                        self._state.busy.add(worker)
                        return worker
                    worker.broken = True
                    threading.Thread(target=worker.stop, args=(0.5,), daemon=True).start()  # died while idle
                total = len(self._state.busy) + self._state.starting
                if total < self.max_workers:
                    failed_recently = (
                        self._state.init_error is not None
                        and time.monotonic() - self._state.init_failed_at < self._retry_init_s
                    )
                    if failed_recently:
                        raise FunctionUnavailable(self.spec.name, self._state.init_error or "")
                    self._state.starting += 1
                    break
                self._cond.wait(timeout=1.0)
        worker = Worker(self.spec, self._log)
        ready = self._finish_start(worker, self._init_timeout_s)
        if ready is None:
            raise FunctionUnavailable(self.spec.name, self.init_error or "the local stack is stopping")
        with self._cond:
            self._state.busy.add(ready)
        return ready

    def _release(self, worker: Worker) -> None:
        with self._cond:
            self._state.busy.discard(worker)
            keep = not worker.broken and not self._stopped
            if keep:
                self._state.idle.append(worker)
            self._cond.notify_all()
        if not keep:
            worker.stop(timeout_s=0.5)
            if self._log is not None and not self._stopped:
                exit_text = _describe_exit(worker.process.poll())
                self._log(
                    f"  [{self.spec.name}] worker {worker.pid} discarded ({exit_text}); the next one starts fresh"
                )
