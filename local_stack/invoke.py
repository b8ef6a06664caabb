"""Invoke a function's handler in this process, the way Lambda would (tests and benchmarks).

::

    from local_stack.invoke import LambdaContext, invoke, load_module, sqs_record

    handler = load_module(ROOT / "functions/assignment/app.py", "app_assignment").handler   # a cold start
    handler({"Records": [sqs_record({"workspace_id": "demo", ...})]}, LambdaContext(timeout_s=30))   # not stopped

    run = invoke(handler, {"Records": [...]}, timeout_s=0.5)   # stopped at its deadline, as Lambda stops it
    run.timed_out, run.result, run.error, run.duration_s

The local stack itself runs functions in worker processes (``lambda_worker``), which it kills at their Timeout;
this is the in-process shortcut. ``invoke`` enforces the deadline with ``signal.setitimer(ITIMER_REAL)``: when it
passes, ``FunctionTimedOut`` (a BaseException: the handler's ``except Exception`` does not catch it) is raised in
the main thread wherever the handler is, a blocking socket read included. From then on the execution environment
is dead, as Lambda discards it:

* no more AWS call (botocore) or HTTP request (urllib3) leaves it: the handler's ``finally`` blocks may still run
  while the exception unwinds, and threads it started (e.g. a thread pool kept warm between invocations) may
  still be running, but every call they make from then on raises ``FunctionTimedOut`` instead of reaching AWS or
  Segment. A request already sent when the deadline passed still reaches its server (its bytes were sent);
* an AWS call in flight on the main thread when the deadline passes is completed first (AWS did it; the function
  never sees its answer), so that moto is never left in the middle of an operation;
* ``invoke`` refuses a handler that timed out before: load a fresh module (a cold start) instead.

Limitations: only the main thread can be interrupted. Called from another thread (tests that run execution
environments concurrently), ``invoke`` cannot stop the handler: it runs to its end and is then reported timed out
if it overran its deadline (what it did after the deadline is not undone). Pure computation in a ``finally``
block, or in a surviving thread, still runs after the deadline (it has no effect outside the process). The
interval timer is the process's only one (``invoke`` refuses to run while another one is armed).
Importing this module installs the two guards (botocore's ``BaseClient._make_api_call`` and urllib3's
``HTTPConnectionPool.urlopen``); they do nothing unless an invocation has timed out.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import json
import signal
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import botocore.client
import urllib3.connectionpool

_module_ids = itertools.count()

Handler = Callable[[Any, Any], Any]


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that the handlers and Powertools read."""

    timeout_s: float = 30.0
    function_name: str = "local-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local-function"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of the invocation's timeout."""
        return max(int((self.timeout_s - (time.monotonic() - self._started)) * 1000), 0)


class FunctionTimedOut(BaseException):
    """The invocation's deadline passed: raised in the handler (and in any call its environment makes after)."""


@dataclass(frozen=True, slots=True)
class Invocation:
    """What became of one invocation: the handler's ``result``, or the ``error`` it raised, or ``timed_out``."""

    result: Any = None
    error: Exception | None = None
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        """True when Lambda reports a function error (the handler raised or timed out)."""
        return self.timed_out or self.error is not None


@dataclass(slots=True)
class _Running:
    """The invocation in progress on the main thread."""

    armed: bool = True
    in_aws_call: bool = False
    pending: bool = False  # the deadline passed during an AWS call: raised when the call returns


_running: _Running | None = None
_unwinding = False  # the main thread unwinds a timed-out handler: nothing leaves it any more
_dead_handlers: weakref.WeakSet[Any] = weakref.WeakSet()
_dead_threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_environment_threads: weakref.WeakKeyDictionary[Any, set[threading.Thread]] = weakref.WeakKeyDictionary()


def invoke(
    handler: Handler, event: Any, timeout_s: float = 30.0, *, context: LambdaContext | None = None
) -> Invocation:
    """Run ``handler(event, context)`` and stop it when ``timeout_s`` has passed (see the module docstring).

    The context's ``get_remaining_time_in_millis()`` counts down the same deadline; with ``context`` given, its
    remaining time is the deadline (``timeout_s`` is then ignored). An exception the handler raises is returned
    as ``error``; a BaseException other than ``FunctionTimedOut`` (a simulated crash) goes on to the caller.
    """
    global _running, _unwinding
    handler = getattr(handler, "__lambda_handler__", handler)
    if handler in _dead_handlers:
        raise RuntimeError("this handler timed out before: Lambda discarded its environment; load a fresh one")
    context = context if context is not None else LambdaContext(timeout_s=timeout_s)
    deadline_s = context.get_remaining_time_in_millis() / 1000
    if threading.current_thread() is not threading.main_thread():
        return _invoke_unstoppable(handler, event, context, deadline_s)
    if _running is not None:
        raise RuntimeError("invoke() is already running an invocation")
    if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        raise RuntimeError("another ITIMER_REAL timer is armed in this process")
    threads_before = set(threading.enumerate())
    running = _Running()
    previous = signal.signal(signal.SIGALRM, _on_deadline)
    try:
        _running = running
        started = time.monotonic()
        result: Any = None
        error: Exception | None = None
        timed_out = False
        try:
            try:
                if deadline_s <= 0:
                    raise FunctionTimedOut
                signal.setitimer(signal.ITIMER_REAL, deadline_s)
                try:
                    result = handler(event, context)
                except Exception as exc:
                    error = exc
            finally:
                running.armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
        except FunctionTimedOut:
            timed_out = True
        duration_s = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _running = None
        _unwinding = False
        threads = _environment_threads.setdefault(handler, set())
        threads.update(thread for thread in threading.enumerate() if thread not in threads_before)
    if timed_out:
        _dead_handlers.add(handler)
        _dead_threads.update(thread for thread in threads if thread.is_alive())
        return Invocation(timed_out=True, duration_s=duration_s)
    return Invocation(result=result, error=error, duration_s=duration_s)


def _invoke_unstoppable(handler: Handler, event: Any, context: LambdaContext, deadline_s: float) -> Invocation:
    """Outside the main thread no signal can stop the handler: it runs to its end, and an invocation that ended
    after its deadline is reported timed out (its result discarded, its environment dead) all the same."""
    started = time.monotonic()
    error: Exception | None
    try:
        result = handler(event, context)
    except Exception as exc:
        result, error = None, exc
    else:
        error = None
    duration_s = time.monotonic() - started
    if duration_s > deadline_s:
        _dead_handlers.add(handler)
        return Invocation(timed_out=True, duration_s=duration_s)
    return Invocation(result=result, error=error, duration_s=duration_s)


def enforced(handler: Handler) -> Handler:
    """``handler`` with its context's deadline enforced by ``invoke``: called as before (``handler(event,
    context)``), it returns the result or raises what the handler raised, and raises ``FunctionTimedOut`` when the
    deadline passed. ``invoke`` accepts the wrapper too (it unwraps it)."""

    @functools.wraps(handler)
    def call(event: Any, context: Any) -> Any:
        run = invoke(handler, event, context=context if isinstance(context, LambdaContext) else None)
        if run.timed_out:
            raise FunctionTimedOut(f"Task timed out after {run.duration_s:.2f} seconds")
        if run.error is not None:
            raise run.error
        return run.result

    call.__lambda_handler__ = handler  # type: ignore[attr-defined]
    return call


def _on_deadline(_signum: int, _frame: FrameType | None) -> None:
    global _unwinding
    running = _running
    if running is None or not running.armed:
        return
    running.armed = False
    if running.in_aws_call:
        running.pending = True  # raised once AWS has answered (see _guarded_api_call)
        return
    _unwinding = True
    raise FunctionTimedOut


def _refuse_if_dead() -> None:
    if threading.current_thread() in _dead_threads or (
        _unwinding and threading.current_thread() is threading.main_thread()
    ):
        raise FunctionTimedOut("the invocation timed out: its execution environment sends nothing more")


def _guard_api_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        global _unwinding
        _refuse_if_dead()
        running = _running
        if running is None or threading.current_thread() is not threading.main_thread() or running.in_aws_call:
            return original(self, operation_name, api_params)
        running.in_aws_call = True
        try:
            return original(self, operation_name, api_params)
        finally:
            running.in_aws_call = False
            if running.pending:
                running.pending = False
                _unwinding = True
                raise FunctionTimedOut  # the deadline passed during the call: its answer is lost

    guarded.__invoke_guard__ = True  # type: ignore[attr-defined]
    return guarded


def _guard_urlopen(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        _refuse_if_dead()
        return original(self, *args, **kwargs)

    guarded.__invoke_guard__ = True  # type: ignore[attr-defined]
    return guarded


def _install_guards() -> None:
    client = botocore.client.BaseClient
    # _make_api_call: the one method every client's operations go through; private, so botocore-stubs lack it
    if not getattr(client._make_api_call, "__invoke_guard__", False):  # type: ignore[attr-defined]
        client._make_api_call = _guard_api_call(client._make_api_call)  # type: ignore[attr-defined]
    pool = urllib3.connectionpool.HTTPConnectionPool
    if not getattr(pool.urlopen, "__invoke_guard__", False):
        pool.urlopen = _guard_urlopen(pool.urlopen)  # type: ignore[method-assign]


_install_guards()


def load_module(path: Path, prefix: str) -> Any:
    """Import a handler file as a fresh module (a new execution environment: module state starts cold)."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{next(_module_ids)}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqs_record(body: str | dict[str, Any], *, message_id: str | None = None, receive_count: int = 1) -> dict[str, Any]:
    """One SQS record as Lambda's event source mapping delivers it."""
    text = body if isinstance(body, str) else json.dumps(body)
    now = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now,
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
        "awsRegion": "us-east-1",
    }
