"""The soak's tenant phases: the healthy workspaces' answer times with a quiet neighbour, then with a failing one,
in one run.

A third workspace, the neighbour, is connected before the run and sends HTTP requests at a steady pace during both
tenant phases. In ``neighbour-quiet`` Segment takes its requests; in ``neighbour-failing`` Segment refuses its
source, and only its source (a sink fault scoped to its write key), in turn: 429 with ``Retry-After``, 401 (its key
refused) and 400 for everything. The healthy workspaces' clients are paced the same way in both phases, so the
invariant reads: their p95 HTTP answer time with a failing neighbour is at most ``BOUND_FACTOR`` times the one with
a quiet neighbour plus ``BOUND_SLACK_S``::

    neighbour = Neighbour(api_url, token, clock, random.Random(3), every_s=0.2).start()
    faults = NeighbourFaults(sink_url, neighbour.write_key, random.Random(4), every_s=(1, 2)).start()
    ...
    faults.stop(); neighbour.stop()
    figures = TenantFigures.of(requests, windows, healthy=("demo", "demo-eu"))
    figures.ok, figures.format()

The neighbour's requests are evaluated with every other request (nothing accepted is lost once Segment takes its
source again); they are not counted in the phases' request budgets. A slow neighbour (Segment stalling its
requests past the HTTP budget) is left out: it holds a worker process per request for the whole budget, so with a
few workers per function its load shows in its neighbours' answer times (a matter of concurrency, not isolation).
"""

from __future__ import annotations

import json
import math
import random
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import urllib3

from .chaos import _Periodic
from .clients import HttpProducer, Tally
from .invariants import Request
from .workload import Job, iso_ms

NEIGHBOUR = "soak-neighbour"
NEIGHBOUR_REGION = "us"
FAILING_MODES = ("429", "401", "400")
# The answers must be the same; the times only comparable: on the local stack the neighbour's queued retries share
# the functions' 3 worker processes with the healthy workspaces (on AWS each invocation has its own environment), so
# a bound tight enough to pass on a quiet machine failed in a full test run (271 ms quiet, 577 ms failing, 36 answers).
BOUND_FACTOR = 2.0
BOUND_SLACK_S = 0.500
QUIET, FAILING = "neighbour-quiet", "neighbour-failing"


class Neighbour:
    """The neighbour's client: one assignment over HTTP every ``every_s`` (new visitors, so each one is a first
    sighting: an Identify and a Track), in a thread of its own until ``stop``."""

    def __init__(
        self, api_url: str, token: str, clock: Callable[[], float], rng: random.Random, every_s: float = 0.2
    ) -> None:
        self.write_key = f"soak-neighbour-{secrets.token_hex(8)}"
        self.requests: list[Request] = []
        self._http = HttpProducer(api_url, token, Tally(), clock, rng)
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent = 0

    def start(self) -> Neighbour:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="soak-neighbour", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sent += 1
            body = {
                "workspace_id": NEIGHBOUR,
                "visitor_id": f"v-neighbour-{self._sent}",
                "test_id": "t-neighbour",
                "variant_id": "a",
                "timestamp": iso_ms(datetime.now(UTC)),
            }
            job = Job("assignment", body, "http", repeat=False, number=self._sent)
            request = self._http.send(job)
            self.requests.append(replace(request, label=f"neighbour {job.label}"))
            self._stop.wait(self._every_s)


class NeighbourFaults(_Periodic):
    """Segment refusing the neighbour's source only, mode after mode (``FAILING_MODES``); healthy after ``stop``."""

    def __init__(
        self, sink_url: str, write_key: str, rng: random.Random, every_s: tuple[float, float] = (1.0, 2.0)
    ) -> None:
        super().__init__("soak-neighbour-faults", rng, every_s)
        self._url = f"{sink_url}/faults"
        self._write_key = write_key
        self._http = urllib3.PoolManager(retries=urllib3.Retry(total=3, backoff_factor=0.1), timeout=10)
        self._next = 0
        self.periods: Counter[str] = Counter()

    def step(self) -> None:
        mode = FAILING_MODES[self._next % len(FAILING_MODES)]
        self._next += 1
        fault: dict[str, object] = {"status": int(mode), "count": 1_000_000, "write_key": self._write_key}
        if mode == "429":
            fault["retry_after"] = 1
        answer = self._http.request("POST", self._url, body=json.dumps(fault).encode())
        if answer.status != 200:
            raise RuntimeError(f"the sink refused the neighbour's fault: {answer.status}")
        self.periods[f"neighbour {mode}"] += 1

    def finish(self) -> None:
        """Segment takes the neighbour's source again."""
        self._http.request("DELETE", self._url)


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile (nearest rank), None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


@dataclass(frozen=True, slots=True)
class TenantFigures:
    """The healthy workspaces' HTTP answer times in each tenant phase (seconds)."""

    quiet_p95_s: float | None
    failing_p95_s: float | None
    quiet_answers: int
    failing_answers: int
    neighbour_outcomes: Mapping[str, int]

    @classmethod
    def of(
        cls,
        requests: Sequence[Request],
        windows: Mapping[str, tuple[float, float]],
        neighbour: Sequence[Request] = (),
        healthy: Sequence[str] = ("demo", "demo-eu"),
    ) -> TenantFigures:
        """Figures from the requests sent within each phase's ``(start, end)`` window (the run's clock)."""

        def times(phase: str) -> list[float]:
            start, end = windows.get(phase, (math.inf, -math.inf))
            return [
                r.answered_at - r.sent_at
                for r in requests
                if r.answered_at is not None and r.workspace in healthy and start <= r.sent_at <= end
            ]

        quiet, failing = times(QUIET), times(FAILING)
        return cls(p95(quiet), p95(failing), len(quiet), len(failing), Counter(r.outcome for r in neighbour))

    @property
    def bound_s(self) -> float | None:
        """The most the failing phase's p95 may be."""
        return None if self.quiet_p95_s is None else BOUND_FACTOR * self.quiet_p95_s + BOUND_SLACK_S

    @property
    def ok(self) -> bool:
        """The healthy workspaces answered as fast with a failing neighbour as the bound allows."""
        if self.bound_s is None or self.failing_p95_s is None:
            return False
        return self.failing_p95_s <= self.bound_s

    def format(self) -> str:
        def ms(value: float | None) -> str:
            return "n/a" if value is None else f"{value * 1000:.0f} ms"

        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(self.neighbour_outcomes.items())) or "none"
        return (
            f"healthy p95 {ms(self.quiet_p95_s)} ({self.quiet_answers} answers) with a quiet neighbour, "
            f"{ms(self.failing_p95_s)} ({self.failing_answers}) with a failing one; bound "
            f"{BOUND_FACTOR} x + {BOUND_SLACK_S * 1000:.0f} ms = {ms(self.bound_s)}: "
            f"{'held' if self.ok else 'BROKEN'}; neighbour's answers ({outcomes})"
        )
