"""What a busy A/B-testing platform sends: the soak's request bodies, with repeats and colliding facts.

Ids come from small pools so that facts collide across clients, paths and workspaces: visitors (a few of them
with the same id in both workspaces), user ids, tests, variants and conversions. A share of the jobs re-send an
earlier body unchanged (a platform's retry or replay)::

    workload = Workload(random.Random(7), repeat_share=0.4, queue_share=0.3)
    job = workload.next_job(now=datetime.now(UTC))
    job.kind, job.body, job.path, job.repeat        # "assignment", {...}, "http" | "sqs", False
    job.label                                       # "#1 http"

Deterministic for a given seed (the bodies' timestamps are the ``now`` passed in).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .invariants import Kind

Path = Literal["http", "sqs"]

WORKSPACES = ("demo", "demo-eu")  # the local stack's connected workspaces
SHARED_VISITORS = 8  # visitor ids that exist in both workspaces (isolation: same id, different facts)
VISITORS_PER_WORKSPACE = 48
USERS = 24
TESTS = ("t-checkout", "t-pricing", "t-banner")
VARIANTS = ("a", "b", "c")
# conversion_id -> (conversion_type, one_per_visitor, with event_id)
CONVERSIONS: dict[str, tuple[str, bool, bool]] = {
    "c-signup": ("CLICK", True, False),
    "c-thanks": ("PAGE_VIEW", True, False),
    "c-purchase": ("PROGRAMMATIC", False, True),
    "c-click": ("CLICK", False, False),
}
KIND_WEIGHTS: dict[Kind, int] = {"identify": 25, "assignment": 40, "conversion": 35}


def iso_ms(moment: datetime) -> str:
    """``2026-11-29T12:00:00.123Z`` (what a producer would send; Segment keeps milliseconds)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Job:
    """One request to make: its kind, body, path (HTTP route or SQS queue), whether it repeats a body, its number."""

    kind: Kind
    body: dict[str, Any]
    path: Path
    repeat: bool
    number: int

    @property
    def label(self) -> str:
        """Unique name of the job in reports, e.g. ``#17 sqs``."""
        return f"#{self.number} {self.path}"


class Workload:
    """Thread-safe generator of jobs; see the module docstring."""

    def __init__(self, rng: random.Random, *, repeat_share: float = 0.4, queue_share: float = 0.3) -> None:
        self._rng = rng
        self._repeat_share = repeat_share
        self._queue_share = queue_share
        self._history: list[tuple[Kind, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._event_ids = 0
        self._jobs = 0

    def next_job(self, now: datetime) -> Job:
        """The next job: a repeat of an earlier body (``repeat_share``) or a new one stamped ``now``."""
        with self._lock:
            self._jobs += 1
            rng = self._rng
            path: Path = "sqs" if rng.random() < self._queue_share else "http"
            if self._history and rng.random() < self._repeat_share:
                kind, body = rng.choice(self._history)
                return Job(kind, dict(body), path, repeat=True, number=self._jobs)
            kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
            body = self._new_body(kind, now)
            self._history.append((kind, body))
            return Job(kind, dict(body), path, repeat=False, number=self._jobs)

    def _visitor(self, workspace: str) -> str:
        index = self._rng.randrange(VISITORS_PER_WORKSPACE)
        if index < SHARED_VISITORS:
            return f"v-shared-{index}"
        return f"v-{workspace}-{index}"

    def _new_body(self, kind: Kind, now: datetime) -> dict[str, Any]:
        rng = self._rng
        workspace = rng.choices(WORKSPACES, weights=(60, 40))[0]
        visitor = self._visitor(workspace)
        body: dict[str, Any] = {"workspace_id": workspace, "visitor_id": visitor}
        if rng.random() < 0.35:  # a known user: mostly the visitor's own, sometimes another (a shared device)
            own = sum(map(ord, visitor)) % USERS
            body["user_id"] = f"u-{own if rng.random() < 0.85 else rng.randrange(USERS)}"
        if rng.random() < 0.9:  # otherwise the time of receipt
            body["timestamp"] = iso_ms(now)
        body["context"] = {"ip": f"192.0.2.{rng.randrange(1, 255)}", "userAgent": "soak/1.0", "locale": "en-US"}
        if kind == "assignment":
            test = rng.choice(TESTS)
            usual = VARIANTS[sum(map(ord, visitor + test)) % len(VARIANTS)]
            variant = usual if rng.random() < 0.8 else rng.choice(VARIANTS)  # re-bucketing: a rival variant
            body |= {"test_id": test, "variant_id": variant}
            if rng.random() < 0.5:
                body |= {"test_name": f"Test {test}", "variant_name": f"Variant {variant.upper()}"}
        elif kind == "conversion":
            conversion = rng.choice(list(CONVERSIONS))
            conversion_type, one_per_visitor, with_event_id = CONVERSIONS[conversion]
            body |= {
                "conversion_id": conversion,
                "conversion_type": conversion_type,
                "origin_url": f"https://shop.example/{rng.choice(('cart', 'checkout', 'home'))}",
            }
            if one_per_visitor:
                body["one_per_visitor"] = True
            if with_event_id:
                self._event_ids += 1
                body["event_id"] = f"evt-{self._event_ids}"
        return body
