"""``python -m soak`` (``make soak``): drive the local stack through load, crashes, a flapping Segment and a
connection change, then check every invariant and print the report. Exit status 0 when it passed, 1 otherwise.

::

    make soak                                         # 50 clients, 3,000 requests (about two minutes)
    make soak SOAK_ARGS="--requests 1000 --seed 7"    # shorter; the same workload for the same seed
    .venv/bin/python -m soak --quick                  # the short soak of make test (under a minute)
    .venv/bin/python -m soak --log /tmp/stack.log --dump /tmp/soak.json   # evidence for a violation
    .venv/bin/python -m soak --quick --stale-lag-ms 0 --dynamodb-throttle 0 --dynamodb-unprocessed 0   # DynamoDB tame
"""

from __future__ import annotations

import argparse
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .evidence import dump
from .run import SoakConfig, quick_config, run_soak


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m soak", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short soak of make test (320 requests)")
    parser.add_argument("--clients", type=int, help="concurrent producers (default 50)")
    parser.add_argument("--requests", type=int, help="requests in all (default 3000; --quick 320)")
    parser.add_argument("--duration", type=float, help="cap on the driving time in seconds (default 900)")
    parser.add_argument("--seed", type=int, help="workload seed (default: random, printed)")
    parser.add_argument("--workers", type=int, help="execution environments per function (default 3)")
    parser.add_argument("--repeat-share", type=float, help="share of requests that repeat a body (default 0.4)")
    parser.add_argument("--queue-share", type=float, help="share of requests sent through SQS (default 0.3)")
    parser.add_argument("--no-slow-segment", action="store_true", help="Segment flaps between failing and healthy")
    parser.add_argument(
        "--stale-lag-ms", type=float, help="eventually consistent reads may be this old (default 1000; 0: never stale)"
    )
    parser.add_argument("--stale-probability", type=float, help="how often such a read is stale (default 0.5)")
    parser.add_argument(
        "--dynamodb-throttle", type=float, help="share of DynamoDB calls throttled while it is busy (default 0.02)"
    )
    parser.add_argument(
        "--dynamodb-unprocessed",
        type=float,
        help="share of batch entries left unprocessed while DynamoDB is busy (default 0.05; 0 and 0: never busy)",
    )
    parser.add_argument("--log", type=Path, help="write the stack's log (a line per request and per event) here")
    parser.add_argument("--dump", type=Path, help="write the evaluator's input here (see python -m soak.evidence)")
    return parser


def config_from(args: argparse.Namespace) -> SoakConfig:
    """The SoakConfig the options ask for (unset options keep the profile's values)."""
    base = quick_config() if args.quick else SoakConfig()
    given = {
        "clients": args.clients,
        "requests": args.requests,
        "duration_s": args.duration,
        "seed": args.seed,
        "max_workers": args.workers,
        "repeat_share": args.repeat_share,
        "queue_share": args.queue_share,
        "stale_lag_ms": args.stale_lag_ms,
        "stale_probability": args.stale_probability,
        "dynamodb_throttle": args.dynamodb_throttle,
        "dynamodb_unprocessed": args.dynamodb_unprocessed,
    }
    config = replace(base, **{name: value for name, value in given.items() if value is not None})
    return replace(config, slow_segment=not args.no_slow_segment)


def main(argv: list[str] | None = None) -> int:
    """Run one soak; see the module docstring."""
    parser = _parser()
    args = parser.parse_args(argv)
    config = config_from(args)
    if config.clients < 1 or config.requests < 4:
        parser.error("--clients must be at least 1 and --requests at least 4 (one per phase)")
    log_file: TextIO | None = args.log.open("w", encoding="utf-8") if args.log else None
    lock = threading.Lock()

    def stack_log(line: str) -> None:
        assert log_file is not None
        with lock:
            log_file.write(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {line}\n")

    try:
        report = run_soak(
            replace(config, stack_log=stack_log if log_file else None), out=lambda x: print(x, flush=True)
        )
    finally:
        if log_file is not None:
            log_file.close()
    print(report.format(), flush=True)
    if args.dump:
        dump(report.evidence(), args.dump)
        print(f"evidence written to {args.dump} (it holds write keys: keep it local)", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
