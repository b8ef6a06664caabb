"""Well-behaved producers: the HTTP API with a bearer token and the SQS queues with boto3, retrying like a real
client (transport errors and 5xx, exponential backoff with jitter, the same body every time).

Each call returns the ``soak.invariants.Request`` the evaluator needs (outcome, times, message ids, how many
attempts were uncertain) and counts what it saw in a shared ``Tally``::

    tally = Tally()
    http = HttpProducer(stack.api_url, token, tally, clock=soak_clock)
    request = http.send(job)                  # Request("assignment", body, "delivered", sent_at, answered_at, ids)
    queue = QueueProducer(sqs_client, {"assignment": queue_url, ...}, tally, clock=soak_clock)
    request = queue.send(job)                 # Request(..., outcome="consumed")
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError

from .invariants import Kind, Outcome, Request
from .workload import Job

ROUTES = {"identify": "/v1/identify", "assignment": "/v1/assignments", "conversion": "/v1/conversions"}
MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 3.0
ANSWERED: dict[str, Outcome] = {
    "delivered": "delivered",
    "duplicate": "duplicate",
    "skipped": "skipped",
    "queued": "queued",
}

Clock = Callable[[], float]


@dataclass
class Tally:
    """What every producer saw, attempt by attempt (thread-safe through ``add``)."""

    http_statuses: Counter[int] = field(default_factory=Counter)  # every HTTP answer, retried ones included
    outcomes: Counter[str] = field(default_factory=Counter)  # final outcome per request
    transport_errors: Counter[str] = field(default_factory=Counter)  # exception names, HTTP and SQS
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(
        self,
        *,
        status: int | None = None,
        outcome: str | None = None,
        error: str | None = None,
        retry: bool = False,
    ) -> None:
        """Count one observation."""
        with self.lock:
            if status is not None:
                self.http_statuses[status] += 1
            if outcome is not None:
                self.outcomes[outcome] += 1
            if error is not None:
                self.transport_errors[error] += 1
            if retry:
                self.retries += 1


def backoff_s(attempt: int, rng: random.Random) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to 0.2 s, then 0.4 s, ... at most 3 s."""
    return rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))


class HttpProducer:
    """One platform client of the HTTP API (a keep-alive connection pool of its own)."""

    def __init__(self, base_url: str, token: str, tally: Tally, clock: Clock, rng: random.Random) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http = urllib3.PoolManager(maxsize=1, retries=False, timeout=urllib3.Timeout(connect=5, read=60))
        self._tally = tally
        self._clock = clock
        self._rng = rng

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        """One call with retries (the connection routes); the final (status, JSON body or None), 0 if none came."""
        response, _uncertain = self._call(method, path, None if body is None else json.dumps(body).encode())
        if response is None:
            return 0, None
        return response.status, (json.loads(response.data) if response.data else None)

    def send(self, job: Job) -> Request:
        """POST the job's body to its route until an answer below 500; the Request as the producer saw it."""
        sent_at = self._clock()
        response, uncertain = self._call("POST", ROUTES[job.kind], json.dumps(job.body).encode())
        if response is None:
            self._tally.add(outcome="failed")
            return Request(job.kind, job.body, "failed", sent_at, None, (), uncertain, label=job.label)
        return self._answered(job, response, sent_at, uncertain)

    def _call(self, method: str, path: str, data: bytes | None) -> tuple[Any, int]:
        """Send until an answer below 500: (the answer or None, attempts that ended uncertain)."""
        uncertain = 0
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = self._http.request(method, self._base_url + path, body=data, headers=self._headers)
            except urllib3.exceptions.HTTPError as exc:
                self._tally.add(error=type(exc).__name__, retry=attempt < MAX_ATTEMPTS)
            else:
                self._tally.add(status=response.status, retry=response.status >= 500 and attempt < MAX_ATTEMPTS)
                if response.status < 500:
                    return response, uncertain
            uncertain += 1
            if attempt < MAX_ATTEMPTS:
                time.sleep(backoff_s(attempt, self._rng))
        return None, uncertain

    def _answered(self, job: Job, response: Any, sent_at: float, uncertain: int) -> Request:
        answered_at = self._clock()
        try:
            answer = json.loads(response.data)
        except ValueError:
            answer = {}
        status = answer.get("status") if isinstance(answer, dict) else None
        outcome: Outcome = ANSWERED.get(str(status), "rejected") if response.status < 300 else "rejected"
        self._tally.add(outcome=outcome)
        ids = tuple(answer.get("message_ids", ())) if outcome == "delivered" else ()
        return Request(job.kind, job.body, outcome, sent_at, answered_at, ids, uncertain, label=job.label)


class QueueProducer:
    """One platform client that publishes to the ingest queues (boto3 without its own retries: ours count)."""

    def __init__(
        self, sqs: Any, queue_urls: Mapping[Kind, str], tally: Tally, clock: Clock, rng: random.Random
    ) -> None:
        self._sqs = sqs
        self._queue_urls = queue_urls
        self._tally = tally
        self._clock = clock
        self._rng = rng

    def send(self, job: Job) -> Request:
        """SendMessage with the job's body until SQS accepts it."""
        sent_at = self._clock()
        body = json.dumps(job.body)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self._sqs.send_message(QueueUrl=self._queue_urls[job.kind], MessageBody=body)
            except (BotoCoreError, ClientError, OSError) as exc:
                self._tally.add(error=f"sqs {type(exc).__name__}", retry=attempt < MAX_ATTEMPTS)
                if attempt < MAX_ATTEMPTS:
                    time.sleep(backoff_s(attempt, self._rng))
                continue
            self._tally.add(outcome="consumed")
            return Request(job.kind, job.body, "consumed", sent_at, None, (), attempt - 1, label=job.label)
        self._tally.add(outcome="failed")
        return Request(job.kind, job.body, "failed", sent_at, None, (), MAX_ATTEMPTS, label=job.label)
