"""Batch calls of the HTTP API: many bodies of one kind in as few requests as the route's limits allow.

::

    from segment_forwarder_client import ForwarderClient, assignment_body

    client = ForwarderClient(api_url)
    items = client.assignment_many([assignment_body("acme", f"v-{i}", "t-checkout", "b") for i in range(250)])
    for item in items:                         # one BatchItem per body, in the order given
        if item.ok:
            item.result.status                 # Status.DELIVERED, DUPLICATE, SKIPPED or QUEUED
        else:
            item.error.status, item.error.code # 400 invalid_value (this body only), or 503 after the retries
            item.body                          # the body as sent, with the event_id a retry must keep

    client.identify_many(bodies); client.conversion_many(bodies); client.ingest_many("conversion", bodies)

Each route takes ``{"batch": [body, ...]}``: at most ``MAX_BATCH_BODIES`` bodies and ``MAX_BATCH_BYTES`` of JSON per
request, answered with one result per body. The bodies are sent in requests within both limits, in order; a body too
large for any request (over 500 KB alone) is refused here without being sent (``PayloadTooLargeError``, attempts 0).

Retries: only what may succeed later is sent again, as a smaller batch, with the client's ``RetryPolicy`` (the
rounds are its attempts; a round waits for the longest ``Retry-After`` of its answers): a body answered 503 (neither
delivered nor queued), and every body of a request that failed as a whole with 429, a 5xx or no answer. A body
refused alone (400, 413) is never sent again, nor are the bodies of a request refused as a whole (401/403, a 4xx):
each gets that error. Nothing is raised for what a body or a request met; every body gets a ``BatchItem``. Every
conversion gets its ``event_id`` once, before the first request, and keeps it in every retry (``item.event_id``),
so a body whose first answer was lost is forwarded once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3

from .bodies import ROUTES, Kind, encode_body, with_event_id
from .errors import ForwarderError, PayloadTooLargeError, TransportError, error_from_answer
from .results import IngestResult, Status
from .retry import parse_retry_after

if TYPE_CHECKING:
    from .client import ForwarderClient

MAX_BATCH_BODIES = 100
MAX_BATCH_BYTES = 500 * 1024
_HEAD, _COMMA, _TAIL = b'{"batch":[', b",", b"]}"


@dataclass(frozen=True, slots=True)
class BatchItem:
    """What became of one body of a batch call: its ``result``, or the ``error`` it ended with."""

    index: int
    """Its position in the bodies given."""
    body: Mapping[str, Any]
    """The body as sent (a conversion with its ``event_id``): what to send again, as it is, after a retryable error."""
    result: IngestResult | None = None
    error: ForwarderError | None = None
    """``retryable`` says whether sending the body again later may succeed (503, 429, no answer)."""

    @property
    def ok(self) -> bool:
        """Whether the body was accepted (delivered, duplicate, skipped or queued)."""
        return self.result is not None

    @property
    def event_id(self) -> str | None:
        """The conversion's ``event_id`` as sent (None for other kinds)."""
        value = self.body.get("event_id")
        return value if isinstance(value, str) else None


def envelope(encoded: Sequence[bytes]) -> bytes:
    """The request body of a batch of encoded bodies: ``{"batch":[...]}``."""
    return _HEAD + _COMMA.join(encoded) + _TAIL


def envelope_bytes(sizes: Sequence[int]) -> int:
    """The size of ``envelope`` of bodies of these sizes."""
    return len(_HEAD) + sum(sizes) + max(len(sizes) - 1, 0) * len(_COMMA) + len(_TAIL)


def chunks(
    sizes: Sequence[int], *, max_bodies: int = MAX_BATCH_BODIES, max_bytes: int = MAX_BATCH_BYTES
) -> list[range]:
    """Consecutive runs of body positions whose envelopes hold at most ``max_bodies`` and ``max_bytes`` each (every
    size must fit alone)."""
    runs: list[range] = []
    start, size = 0, envelope_bytes([])
    for index, body_size in enumerate(sizes):
        extra = body_size + (len(_COMMA) if index > start else 0)
        if index > start and (index - start >= max_bodies or size + extra > max_bytes):
            runs.append(range(start, index))
            start, size, extra = index, envelope_bytes([]), body_size
        size += extra
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs


class _Round:
    """One request's answer: per-body results, or the error the request met as a whole."""

    __slots__ = ("failure", "headers", "results", "retry_after")

    def __init__(
        self,
        results: list[Any] | None,
        headers: Mapping[str, str] | None,
        failure: ForwarderError | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.results = results
        self.headers = headers
        self.failure = failure
        self.retry_after = retry_after


def send_batches(client: ForwarderClient, kind: Kind, bodies: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
    """Send ``bodies`` to ``kind``'s route in batches; one ``BatchItem`` per body, in order (see the module)."""
    if kind not in ROUTES:
        raise ValueError(f"kind must be one of {sorted(ROUTES)}, not {kind!r}")
    sent = [with_event_id(kind, body) for body in bodies]
    encoded = [encode_body(body).encode("utf-8") for body in sent]
    items: list[BatchItem | None] = [None] * len(sent)
    for index, data in enumerate(encoded):
        if envelope_bytes([len(data)]) > MAX_BATCH_BYTES:
            message = f"the body is {len(data)} bytes: over what a batch request holds ({MAX_BATCH_BYTES} bytes)"
            error = PayloadTooLargeError(message, status=413, code="payload_too_large", field="body", attempts=0)
            items[index] = BatchItem(index, sent[index], error=error)
    pending = [index for index, item in enumerate(items) if item is None]
    started = time.monotonic()
    attempt = 0
    while pending:
        attempt += 1
        retry: dict[int, ForwarderError] = {}
        waits: list[float] = []
        for run in chunks([len(encoded[index]) for index in pending]):
            positions = [pending[offset] for offset in run]
            answer = _post(client, kind, envelope([encoded[index] for index in positions]), attempt)
            if answer.retry_after is not None:
                waits.append(answer.retry_after)
            event_ids = [sent[index].get("event_id") if kind == "conversion" else None for index in positions]
            for index, outcome in zip(positions, _outcomes(answer, event_ids, attempt), strict=True):
                if isinstance(outcome, ForwarderError) and outcome.retryable:
                    retry[index] = outcome
                elif isinstance(outcome, ForwarderError):
                    items[index] = BatchItem(index, sent[index], error=outcome)
                else:
                    items[index] = BatchItem(index, sent[index], result=outcome)
        pending = sorted(retry)
        if not pending:
            break
        delay = client.retry.next_delay(attempt, time.monotonic() - started, max(waits, default=None))
        if delay is None:
            for index in pending:
                items[index] = BatchItem(index, sent[index], error=retry[index])
            break
        time.sleep(delay)
    return [item for item in items if item is not None]


def _post(client: ForwarderClient, kind: Kind, payload: bytes, attempt: int) -> _Round:
    """One signed request of a batch, not retried here."""
    url = client.api_url + ROUTES[kind]
    try:
        response = client._http.request(
            "POST",
            url,
            body=payload,
            headers=client._signed_headers("POST", url, payload),
            timeout=client._timeout,
            retries=False,
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        message = f"no answer from POST {url}: {type(exc).__name__}: {exc}"
        return _Round(None, None, TransportError(message, retryable=True, attempts=attempt))
    parsed = _json(response.data)
    if response.status >= 300:
        failure = error_from_answer(response.status, parsed, response.headers, attempt)
        return _Round(None, response.headers, failure, parse_retry_after(response.headers.get("Retry-After")))
    results = parsed.get("results") if isinstance(parsed, dict) else None
    if not isinstance(results, list):
        message = f"unexpected answer to a batch of POST {ROUTES[kind]}: {str(parsed)[:200]}"
        return _Round(None, response.headers, ForwarderError(message, status=response.status, attempts=attempt))
    return _Round(results, response.headers)


def _outcomes(answer: _Round, event_ids: Sequence[Any], attempt: int) -> list[IngestResult | ForwarderError]:
    """Each body's outcome in a request's answer (the request's error for all when it failed as a whole)."""
    count = len(event_ids)
    if answer.failure is not None:
        return [answer.failure] * count
    results = answer.results or []
    if len(results) != count:
        message = f"a batch of {count} bodies answered with {len(results)} results"
        return [ForwarderError(message, attempts=attempt)] * count
    headers = answer.headers or {}
    return [_outcome(result, headers, event_id, attempt) for result, event_id in zip(results, event_ids, strict=True)]


def _outcome(result: Any, headers: Mapping[str, str], event_id: Any, attempt: int) -> IngestResult | ForwarderError:
    data = result if isinstance(result, dict) else {}
    error = data.get("error")
    if isinstance(error, dict):
        status = error.get("status")
        return error_from_answer(status if isinstance(status, int) else 500, {"error": error}, headers, attempt)
    try:
        status_value = Status(str(data.get("status")))
    except ValueError:
        return ForwarderError(f"unexpected result in a batch answer: {str(result)[:200]}", attempts=attempt)
    ids = data.get("message_ids")
    reason = data.get("reason")
    return IngestResult(
        status=status_value,
        message_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
        reason=reason if isinstance(reason, str) else None,
        event_id=event_id if isinstance(event_id, str) else None,
        attempts=attempt,
        request_id=headers.get("apigw-requestid"),
    )


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data[:200].decode("utf-8", "replace")}
