"""A soak's evidence on disk: the evaluator's whole input, to re-check or dissect a run without re-running it.

::

    python -m soak --dump /tmp/soak.json             # writes it after the run (write keys included: keep it local)
    python -m soak.evidence /tmp/soak.json           # evaluates it again, prints the violations
    python -m soak.evidence /tmp/soak.json v-demo-7  # ... and every request and message of that visitor

``load`` returns the arguments of ``soak.invariants.evaluate``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from .invariants import Connection, Parked, Request, evaluate


def dump(evidence: dict[str, Any], path: Path) -> None:
    """Write ``SoakReport.evidence()`` as JSON (infinite times as null)."""
    connections = [{**c, "at": None if math.isinf(c["at"]) else c["at"]} for c in evidence["connections"]]
    path.write_text(json.dumps({**evidence, "connections": connections}, indent=1), encoding="utf-8")


def load(
    path: Path,
) -> tuple[list[Request], list[dict[str, Any]], list[Connection], list[Parked], float, list[str]]:
    """(requests, sink_events, connections, parked, cache_s, crashed) from a file ``dump`` wrote."""
    data = json.loads(path.read_text(encoding="utf-8"))
    requests = [Request(**{**r, "message_ids": tuple(r["message_ids"])}) for r in data["requests"]]
    connections = [Connection(**{**c, "at": -math.inf if c["at"] is None else c["at"]}) for c in data["connections"]]
    parked = [Parked(**p) for p in data["parked"]]
    return requests, data["sink_events"], connections, parked, float(data["cache_s"]), list(data.get("crashed", []))


def main(argv: list[str]) -> int:
    """Re-evaluate a dump; with a visitor id, show everything about that visitor. 0 when no violation."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    requests, sink_events, connections, parked, cache_s, crashed = load(Path(argv[0]))
    result = evaluate(requests, sink_events, connections, parked, cache_s=cache_s, crashed=crashed)
    for violation in result.violations:
        print(violation)
    for visitor in argv[1:]:
        print(f"-- requests of {visitor}, by time sent")
        for request in sorted((r for r in requests if r.visitor == visitor), key=lambda r: r.sent_at):
            print(
                f"{request.sent_at:8.3f} -> {request.answered_at or 0:8.3f} {request.label:>11} {request.outcome:9} "
                f"uncertain={request.uncertain_attempts} ids={list(request.message_ids)} {json.dumps(request.body)}"
            )
        print(f"-- messages of {visitor}, as received")
        for record in sink_events:
            message = record["message"]
            if message.get("anonymousId") == visitor:
                shown = {k: v for k, v in message.items() if k not in ("context", "sentAt")}
                print(
                    f"{record['received_at']} {record['region']} …{str(record['write_key'])[-4:]} {json.dumps(shown)}"
                )
    print(f"{len(result.violations)} violations")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
