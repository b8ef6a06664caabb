"""What goes wrong in production, on purpose: killed execution environments, a flapping Segment, a busy DynamoDB,
a connection changed under load. Each runs in a thread of its own while a soak phase lasts::

    killer = Killer(stack.worker_pids, ["IdentifyFunction", ...], random.Random(1), every_s=(0.5, 1.5)).start()
    flapper = SegmentFlapper(stack.sink.url, random.Random(2), every_s=(1, 3), slow_delay_s=1.5).start()
    busy = DynamoDbFaults(stack.aws_endpoint, random.Random(3), throttle=0.02, unprocessed=0.05).start()
    ...
    killer.stop(); flapper.stop(); busy.stop()  # the sink and DynamoDB are healthy again after stop()
    killer.kills                                # Counter({"AssignmentFunction": 4, ...})
    flapper.periods                             # Counter({"failing 503": 2, "slow": 3, "healthy": 2})
    busy.periods                                # Counter({"faults": 3, "healthy": 2})
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Self

import urllib3

from local_stack.moto_dynamodb import CONTROL_PATH as DYNAMODB_CONTROL_PATH

FAILURES = (503, 500, 429)


class _Periodic:
    """A daemon thread that calls ``step`` at once and after each random pause in ``every_s`` until ``stop``."""

    def __init__(self, name: str, rng: random.Random, every_s: tuple[float, float]) -> None:
        self._rng = rng
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.errors: list[str] = []  # steps that failed (the soak reports them and fails)

    def start(self) -> Self:
        """Begin: the first step at once, then one after each pause."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop stepping and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=30)
        self.finish()

    def _loop(self) -> None:
        self._step()
        while not self._stop.wait(self._rng.uniform(*self._every_s)):
            self._step()

    def _step(self) -> None:
        try:
            self.step()
        except Exception as exc:  # a broken trouble maker must not pass for a quiet phase
            self.errors.append(f"{self._thread.name}: {type(exc).__name__}: {exc}")

    def step(self) -> None:
        """One action (subclasses)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Undo what must not outlive the phase (subclasses)."""


class Killer(_Periodic):
    """SIGKILLs a random worker process (execution environment) of a random function, as a crash would."""

    def __init__(
        self,
        worker_pids: Callable[[str], list[int]],
        functions: Sequence[str],
        rng: random.Random,
        every_s: tuple[float, float] = (0.5, 1.5),
    ) -> None:
        super().__init__("soak-killer", rng, every_s)
        self._worker_pids = worker_pids
        self._functions = list(functions)
        self.kills: Counter[str] = Counter()

    def step(self) -> None:
        """Kill one live worker, if the chosen function has one."""
        function = self._rng.choice(self._functions)
        pids = self._worker_pids(function)
        if not pids:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._rng.choice(pids), signal.SIGKILL)
            self.kills[function] += 1


class SegmentFlapper(_Periodic):
    """Switches the sink between failing (503/500/429), slow (``slow_delay_s`` per request) and healthy.

    ``slow_delay_s=None`` leaves the slow mode out (failing and healthy only).

    Uses the sink's fault switch over HTTP (``POST /faults``, ``DELETE /faults``), as an operator would.
    """

    def __init__(
        self,
        sink_url: str,
        rng: random.Random,
        every_s: tuple[float, float] = (1.0, 3.0),
        slow_delay_s: float | None = 1.5,
    ) -> None:
        super().__init__("soak-segment-flapper", rng, every_s)
        self._url = f"{sink_url}/faults"
        self._slow_delay_s = slow_delay_s or 0.0
        self._http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.1), timeout=10)
        self._modes = ("failing", "slow", "healthy") if slow_delay_s else ("failing", "healthy")
        self._next = 0
        self.periods: Counter[str] = Counter()

    def step(self) -> None:
        """Enter the next mode: failing, slow, healthy, failing, ..."""
        mode = self._modes[self._next % len(self._modes)]
        self._next += 1
        if mode == "failing":
            status = self._rng.choice(FAILURES)
            fault: dict[str, object] = {"status": status, "count": 1_000_000}
            if status == 429:
                fault["retry_after"] = 0.5
            self._set(fault)
            self.periods[f"failing {status}"] += 1
        elif mode == "slow":
            self._set({"status": None, "count": 1_000_000, "delay_s": self._slow_delay_s})
            self.periods["slow"] += 1
        else:
            self._http.request("DELETE", self._url)
            self.periods["healthy"] += 1

    def _set(self, fault: dict[str, object]) -> None:
        answer = self._http.request("POST", self._url, body=json.dumps(fault).encode())
        if answer.status != 200:
            raise RuntimeError(f"the sink refused the fault {fault}: {answer.status} {answer.data[:200]!r}")

    def finish(self) -> None:
        """Leave the sink healthy."""
        self._http.request("DELETE", self._url)


class DynamoDbFaults(_Periodic):
    """Switches DynamoDB's engine faults (moto's, on the local stack's AWS endpoint) on and off: while on, a share
    ``throttle`` of the item operations is throttled and a share ``unprocessed`` of each batch's entries comes back
    unprocessed, as a busy table answers.

    Uses the endpoint's switch over HTTP (``POST /_local/dynamodb``, ``local_stack.moto_dynamodb``).
    """

    def __init__(
        self,
        aws_endpoint: str,
        rng: random.Random,
        every_s: tuple[float, float] = (1.0, 3.0),
        throttle: float = 0.02,
        unprocessed: float = 0.05,
    ) -> None:
        super().__init__("soak-dynamodb-faults", rng, every_s)
        self._url = f"{aws_endpoint}{DYNAMODB_CONTROL_PATH}"
        self._faults = {"throttle": throttle, "unprocessed": unprocessed}
        self._http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.1), timeout=10)
        self._on = False
        self.periods: Counter[str] = Counter()

    def step(self) -> None:
        """Faults on, off, on, ..."""
        self._on = not self._on
        self._set(self._faults if self._on else {"throttle": 0, "unprocessed": 0})
        self.periods["faults" if self._on else "healthy"] += 1

    def _set(self, faults: dict[str, float]) -> None:
        answer = self._http.request("POST", self._url, body=json.dumps({"faults": faults}).encode())
        if answer.status != 200:
            raise RuntimeError(f"the AWS endpoint refused the faults {faults}: {answer.status} {answer.data[:200]!r}")

    def finish(self) -> None:
        """Leave DynamoDB healthy."""
        self._set({"throttle": 0, "unprocessed": 0})


def dynamodb_switch(aws_endpoint: str, body: dict[str, object] | None = None) -> dict[str, object]:
    """``POST`` (``body`` given) or ``GET`` the local stack's DynamoDB switch: its settings and counters after."""
    url = f"{aws_endpoint}{DYNAMODB_CONTROL_PATH}"
    if body is None:
        answer = urllib3.request("GET", url, timeout=10)
    else:
        answer = urllib3.request("POST", url, body=json.dumps(body).encode(), timeout=10)
    if answer.status != 200:
        raise RuntimeError(f"the AWS endpoint answered {answer.status} {answer.data[:200]!r} at {url}")
    state: dict[str, object] = json.loads(answer.data)
    return state
