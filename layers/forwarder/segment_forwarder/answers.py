"""What the HTTP caller is told of an event forwarded now (pure)::

    match http_answer(outcome):
        case Answered(body=body, copy=copy):
            ...200 with ``body``; queue a copy too when ``copy``...
        case Handoff(reason=reason):
            ...not delivered now: queue it (202 ``{"status": "queued"}``), or 503 when it could not be...

An event that needs no queueing now (delivered, duplicate, skipped) is answered at once; one not ``complete``
(a fact it needs is not recorded SENT yet) is answered all the same, and a copy goes on the queue: it comes back
until every fact is recorded. Anything else (a retry, a permanent Segment refusal) is handed to the queue, which
ends it in the dead-letter queue with its reason if it never succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .facts import Outcome


@dataclass(frozen=True, slots=True)
class Answered:
    """Answer 200 with ``body``; ``copy``: queue a copy of the event too (it is not complete)."""

    body: dict[str, Any]
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Handoff:
    """Not delivered now: the queue takes the event over (``reason``: why, for the log)."""

    reason: str


def http_answer(outcome: Outcome) -> Answered | Handoff:
    """The answer of an event forwarded on the HTTP path, from its outcome::

    http_answer(Outcome("delivered", ("m-1",)))            # Answered({"status": "delivered", "message_ids": ["m-1"]})
    http_answer(Outcome("skipped", reason="no_consent"))   # Answered({"status": "skipped", "reason": "no_consent"})
    http_answer(Outcome("retry", reason="in_flight"))      # Handoff("in_flight")
    """
    copy = not outcome.complete
    if outcome.status == "delivered":
        return Answered({"status": "delivered", "message_ids": list(outcome.message_ids)}, copy)
    if outcome.status == "duplicate":
        return Answered({"status": "duplicate"}, copy)
    if outcome.status == "skipped":
        return Answered({"status": "skipped", "reason": outcome.reason}, copy)
    return Handoff(outcome.reason)
