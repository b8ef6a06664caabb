"""What the benchmark measures in its own process, at the product's boundaries only.

::

    recorder = AwsRecorder(); recorder.install()      # every botocore API call of this process, timed
    recorder.latency_s = 0.005                        # slept before each HTTP attempt to AWS (before-send)
    meter = Meter(recorder)
    invocation = meter.invoke("assignment", handler, event)
    invocation.seconds, invocation.calls, invocation.output.function_bytes, invocation.sequential_aws_requests

- **AWS calls**: ``BaseClient._make_api_call`` is wrapped once (service, operation, start and end time, the SQS
  payload's billed requests); the added latency is a botocore ``before-send`` handler registered on each client
  the first time it calls, so it is paid per HTTP attempt (retries included), in the calling thread.
- **Output**: the process's file descriptors 1 and 2 are pointed at a temporary file for the duration of each
  invocation, as Lambda captures a function's stdout and stderr into CloudWatch Logs. Lines that are JSON objects
  with an ``_aws`` key are EMF metric lines (Powertools prints them); the rest are the function's log lines. Lines
  the function's LoggingConfig makes Lambda drop (below the application log level, in the JSON format; an EMF line
  has no level, so INFO) are counted apart (``dropped_bytes``): never ingested, never billed.
- **Sequential AWS requests** of an invocation: the largest number of its AWS calls that ran one after another
  (pairwise disjoint time windows, ``sequential_chain``). Calls that overlap ran concurrently and count once; a
  call that starts after another ended counts again, whatever thread made it.

Nothing here reads the product's code or state: it sees what crosses botocore and the process's output.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import botocore.client

from bench.costs import sqs_request_units
from local_stack.invoke import LambdaContext
from local_stack.lambda_logging import LambdaLogging

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


# -- AWS calls ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwsCall:
    """One botocore API call: its time window (``time.perf_counter``) and, for SQS, its billed requests."""

    service: str
    operation: str
    started: float
    ended: float
    sqs_units: int = 0

    @property
    def name(self) -> str:
        """``dynamodb:UpdateItem``."""
        return f"{self.service}:{self.operation}"


def _attribute_bytes(attributes: dict[str, Any] | None) -> int:
    """Bytes SQS counts for message attributes: name, type and value of each."""
    total = 0
    for name, value in (attributes or {}).items():
        data = value.get("StringValue") or value.get("BinaryValue") or b""
        total += len(name.encode()) + len(str(value.get("DataType", "")).encode())
        total += len(data) if isinstance(data, bytes) else len(str(data).encode("utf-8"))
    return total


def sqs_payload_bytes(operation: str, params: dict[str, Any]) -> int:
    """The payload SQS bills for a send (bodies and message attributes); 0 for other operations."""
    if operation == "SendMessage":
        return len(str(params.get("MessageBody", "")).encode("utf-8")) + _attribute_bytes(
            params.get("MessageAttributes")
        )
    if operation == "SendMessageBatch":
        return sum(
            len(str(entry.get("MessageBody", "")).encode("utf-8")) + _attribute_bytes(entry.get("MessageAttributes"))
            for entry in params.get("Entries", [])
        )
    return 0


class AwsRecorder:
    """Records every botocore API call of this process, and sleeps ``latency_s`` before each HTTP attempt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[AwsCall] = []
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()
        self.latency_s = 0.0
        self._installed = False

    def install(self) -> None:
        """Wrap ``BaseClient._make_api_call`` (once per process)."""
        if self._installed:
            return
        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        recorder = self

        def recorded(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            recorder._hook(client)
            service = client.meta.service_model.service_name
            units = sqs_request_units(sqs_payload_bytes(operation_name, api_params)) if service == "sqs" else 0
            started = time.perf_counter()
            try:
                return original(client, operation_name, api_params)
            finally:
                call = AwsCall(service, operation_name, started, time.perf_counter(), units)
                with recorder._lock:
                    recorder._calls.append(call)

        botocore.client.BaseClient._make_api_call = recorded  # type: ignore[attr-defined]
        self._installed = True

    def _hook(self, client: Any) -> None:
        if client in self._hooked:
            return
        self._hooked.add(client)
        client.meta.events.register("before-send", self._sleep)

    def _sleep(self, **_: Any) -> None:
        if self.latency_s > 0:
            time.sleep(self.latency_s)

    def take(self) -> list[AwsCall]:
        """The calls since the last ``take``, in the order they ended; forgets them."""
        with self._lock:
            calls, self._calls = self._calls, []
            return calls


def sequential_chain[T](items: Iterable[T], window: Callable[[T], tuple[float, float]]) -> list[T]:
    """The longest run of ``items`` whose time windows (start, end) are pairwise disjoint, i.e. that ran one after
    another (greedy by end time, which is optimal for intervals).

    >>> calls = [(0, 5), (1, 6), (2, 7), (8, 13)]          # three concurrent claims, then a mark
    >>> sequential_chain(calls, lambda call: call)
    [(0, 5), (8, 13)]
    """
    chain: list[T] = []
    last_end = float("-inf")
    for item in sorted(items, key=lambda i: window(i)[1]):
        start, end = window(item)
        if start >= last_end:
            chain.append(item)
            last_end = end
    return chain


def covered_seconds(windows: Iterable[tuple[float, float]]) -> float:
    """The length of the union of time windows (start, end): time covered by at least one of them.

    >>> covered_seconds([(0, 5), (1, 6), (2, 7), (8, 13)])  # three concurrent claims, then a mark
    12
    """
    total: float = 0
    current: tuple[float, float] | None = None
    for start, end in sorted(windows):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = (start, end)
        else:
            current = (current[0], max(current[1], end))
    if current is not None:
        total += current[1] - current[0]
    return total


# -- output -------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class OutputStats:
    """What an invocation wrote to stdout and stderr, split into log lines and EMF metric lines."""

    function_bytes: int = 0
    function_lines: int = 0
    emf_bytes: int = 0
    emf_lines: int = 0
    metrics: set[tuple[str, str, tuple[tuple[str, str], ...]]] = field(default_factory=set)
    dropped_bytes: int = 0  # lines Lambda does not send on (the LoggingConfig's application log level)
    dropped_lines: int = 0

    @classmethod
    def of(cls, data: bytes, logging: LambdaLogging | None = None) -> OutputStats:
        """Split captured output into lines (each counted with its newline); with ``logging``, the lines Lambda
        drops under it are counted as dropped only."""
        stats = cls()
        for line in data.splitlines(keepends=True):
            if logging is not None and not logging.keeps(line):
                stats.dropped_bytes += len(line)
                stats.dropped_lines += 1
                continue
            emf = _emf(line)
            if emf is None:
                stats.function_bytes += len(line)
                stats.function_lines += 1
            else:
                stats.emf_bytes += len(line)
                stats.emf_lines += 1
                stats.metrics |= emf
        return stats


def _emf(line: bytes) -> set[tuple[str, str, tuple[tuple[str, str], ...]]] | None:
    """The metrics (namespace, name, dimension values) of an EMF line; None when the line is not EMF."""
    if not line.lstrip().startswith(b"{") or b'"_aws"' not in line:
        return None
    try:
        document = json.loads(line)
    except ValueError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("_aws"), dict):
        return None
    found = set()
    for directive in document["_aws"].get("CloudWatchMetrics", []):
        for dimensions in directive.get("Dimensions", []) or [[]]:
            values = tuple((name, str(document.get(name, ""))) for name in dimensions)
            for metric in directive.get("Metrics", []):
                found.add((str(directive.get("Namespace", "")), str(metric.get("Name", "")), values))
    return found


class OutputCapture:
    """Points file descriptors 1 and 2 at a temporary file while an invocation runs (``with capture: ...``),
    then hands back what was written (``capture.data``)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for every invocation, closed by close()
        self._saved: tuple[int, int] | None = None
        self.data = b""

    def close(self) -> None:
        """Delete the temporary file."""
        self._file.close()

    def __enter__(self) -> OutputCapture:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._file.seek(0)
        self._file.truncate()
        self._saved = (os.dup(1), os.dup(2))
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *_: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        assert self._saved is not None
        for fd, saved in zip((1, 2), self._saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = None
        self._file.seek(0)
        self.data = self._file.read()


# -- invocations --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Invocation:
    """One handler call: what it answered, how long it took, which AWS calls it made, what it printed."""

    function: str
    event: dict[str, Any]
    answer: dict[str, Any]
    seconds: float
    calls: list[AwsCall]
    output: OutputStats
    cpu_seconds: float = 0.0  # CPU time of this whole process during the call (all its threads)

    @property
    def sequential_chain(self) -> list[AwsCall]:
        """The AWS calls the invocation waited for one after another (``sequential_chain``)."""
        return sequential_chain(self.calls, lambda call: (call.started, call.ended))

    @property
    def sequential_aws_requests(self) -> int:
        """How many AWS calls the invocation waited for one after another."""
        return len(self.sequential_chain)

    @property
    def sequential_aws_seconds(self) -> float:
        """Seconds in the AWS calls of that chain (the invocation waited at least that long for AWS)."""
        return sum(call.ended - call.started for call in self.sequential_chain)

    @property
    def aws_wait_seconds(self) -> float:
        """Seconds during which at least one AWS call was outstanding (the union of the calls' windows): all the
        time the invocation spent waiting for AWS, concurrent calls included however long the endpoint took to
        serve them."""
        return covered_seconds((call.started, call.ended) for call in self.calls)


class Meter:
    """Invokes handlers one at a time as Lambda would, measuring each call at the boundaries."""

    def __init__(self, recorder: AwsRecorder) -> None:
        self.recorder = recorder
        self._capture = OutputCapture()

    def invoke(
        self,
        function: str,
        handler: Handler,
        event: dict[str, Any],
        timeout_s: float = 30.0,
        logging: LambdaLogging | None = None,
    ) -> Invocation:
        """Call ``handler(event, context)`` with its output captured; the wall time is the Lambda duration. With
        ``logging`` (the function's LoggingConfig), the output is what Lambda keeps of it."""
        self.recorder.take()
        context = LambdaContext(timeout_s=timeout_s)
        with self._capture:
            cpu_started = time.process_time()
            started = time.perf_counter()
            answer = handler(event, context)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
        return Invocation(
            function,
            event,
            answer,
            seconds,
            self.recorder.take(),
            OutputStats.of(self._capture.data, logging),
            cpu_seconds,
        )


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` percentile (0..1) of ``values``, nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(max(1, math.ceil(share * len(ordered))), len(ordered))
    return ordered[rank - 1]
