"""``python -m soak`` (``make soak``): drive the local stack through load, crashes, a flapping Segment and a
connection change, then check every invariant and print the report. Exit status 0 when it passed, 1 otherwise.

::

    make soak                                        # 50 clients, 3,000 requests (a few minutes)
    make soak SOAK_ARGS="--requests 1000 --seed 7"   # shorter, reproducible workload
    .venv/bin/python -m soak --clients 64 --log /tmp/stack.log --dump /tmp/soak.json
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from .evidence import dump
from .run import SoakConfig, quick_config, run_soak


def main(argv: list[str] | None = None) -> int:
    """Run one soak; see the module docstring."""
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=defaults.clients, help="concurrent producers (default 50)")
    parser.add_argument("--requests", type=int, default=defaults.requests, help="requests in all (default 3000)")
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="cap on the driving time in seconds (default 900)"
    )
    parser.add_argument("--quick", action="store_true", help="the short soak of make test (400 requests, < 1 min)")
    parser.add_argument("--seed", type=int, default=None, help="workload seed (default: random, printed)")
    parser.add_argument("--workers", type=int, default=defaults.max_workers, help="workers per function (default 3)")
    parser.add_argument("--repeat-share", type=float, default=defaults.repeat_share, help="share of repeated bodies")
    parser.add_argument("--queue-share", type=float, default=defaults.queue_share, help="share sent through SQS")
    parser.add_argument(
        "--log", type=Path, help="write the local stack's log (a line per request, the functions' INFO lines) here"
    )
    parser.add_argument(
        "--dump", type=Path, help="write the evaluator's input here (re-check it with python -m soak.evidence FILE)"
    )
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 4:
        parser.error("--clients must be at least 1 and --requests at least 4 (one per phase)")

    log_file = args.log.open("w", encoding="utf-8") if args.log else None
    lock = threading.Lock()

    def stack_log(line: str) -> None:
        assert log_file is not None
        with lock:
            log_file.write(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {line}\n")

    base = quick_config() if args.quick else defaults
    config = replace(
        base,
        clients=args.clients,
        requests=args.requests if args.requests != defaults.requests or not args.quick else base.requests,
        duration_s=args.duration if args.duration != defaults.duration_s or not args.quick else base.duration_s,
        seed=args.seed,
        max_workers=args.workers,
        repeat_share=args.repeat_share,
        queue_share=args.queue_share,
        stack_log=stack_log if log_file else None,
    )
    try:
        report = run_soak(config, out=lambda line: print(line, flush=True))
    finally:
        if log_file is not None:
            log_file.close()
    print(report.format(), flush=True)
    if args.dump:
        dump(report.evidence(), args.dump)
        print(f"evidence written to {args.dump} (holds write keys: keep it local)", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
