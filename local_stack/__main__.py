"""``python -m local_stack`` (``make run``): the whole forwarder in the foreground until Ctrl-C.

::

    make run                                        # API :3000, Segment sink :3001, AWS endpoint (moto) :4566
    LOCAL_API_PORT=8000 make run                    # other ports: LOCAL_API_PORT, LOCAL_SINK_PORT, LOCAL_AWS_PORT
    LOCAL_API_TOKEN=secret make run                 # bearer token of the API (default local-dev-token)
    SEGMENT_WRITE_KEY=... SEGMENT_REGION=eu make run   # connect workspace "demo" to the real Segment
    LOCAL_PARAMETERS='RetryHorizonMinutes=2,RetryBackoffCapSeconds=5' make run   # template parameters (drills)
    python -m local_stack --verbose                 # the functions' INFO logs too (default: warnings and errors)
    LOCAL_DYNAMODB_STALE_READS='lag_ms=500,probability=0.5' make run   # eventually consistent reads may be stale
    LOCAL_DYNAMODB_FAULTS='throttle=0.02,unprocessed=0.1' make run     # DynamoDB throttles, leaves batches partial

``LOCAL_PARAMETERS`` overrides template parameters (``Name=Value`` pairs separated by commas, every other parameter
at its default); an unknown name, a malformed pair or a value the parameter's constraints refuse stops the start.
The banner lists the overrides. ``LOCAL_DYNAMODB_STALE_READS`` and ``LOCAL_DYNAMODB_FAULTS`` (see
``local_stack.moto_dynamodb``) can also be switched while it runs: ``POST <AWS endpoint>/_local/dynamodb``.

Exit status: 0 after Ctrl-C / SIGTERM, 2 when it cannot start (a port in use, a bad setting).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from types import FrameType


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{variable}={raw!r} is not a port number (1-65535)")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    """Run the local stack in the foreground; see the module docstring."""
    process_started = time.monotonic()
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        # Only a flag: an exception raised at an arbitrary point of start() could leave a lock or a server half-made.
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from .moto_dynamodb import configure_from_environment
    from .stack import DEFAULT_TOKEN, PORT_VARIABLES, LocalStack, PortInUseError  # moto, boto3: most of the start-up
    from .template import ParameterError, Template, parse_overrides

    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description="The Segment forwarder on this machine: HTTP API, functions, SQS pollers, Segment sink, moto.",
        epilog="Ports: " + ", ".join(f"{var} ({what})" for what, var in PORT_VARIABLES.values()),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the functions' INFO logs")
    args = parser.parse_args(argv)

    lock = threading.Lock()

    def log(line: str) -> None:
        with lock:
            print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)

    try:
        api_port = _port(PORT_VARIABLES["api"][1], 3000)
        sink_port = _port(PORT_VARIABLES["sink"][1], 3001)
        aws_port = _port(PORT_VARIABLES["aws"][1], 4566)
        region = os.environ.get("SEGMENT_REGION", "us").strip().lower() or "us"
        if region not in ("us", "eu"):
            raise ValueError(f"SEGMENT_REGION={region!r} must be us or eu")
        overrides = parse_overrides(os.environ.get("LOCAL_PARAMETERS", ""))
        Template.load().check_overrides(overrides)
        configure_from_environment()  # a malformed setting stops the start here, with its name
    except ParameterError as exc:
        print(f"local_stack: error: LOCAL_PARAMETERS: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"local_stack: error: {exc}", file=sys.stderr)
        return 2
    if stop.is_set():
        return 0

    stack = LocalStack(
        api_port=api_port,
        sink_port=sink_port,
        aws_port=aws_port,
        token=os.environ.get("LOCAL_API_TOKEN") or DEFAULT_TOKEN,
        parameters=({} if args.verbose else {"ApplicationLogLevel": "WARN"}) | overrides,
        segment_write_key=os.environ.get("SEGMENT_WRITE_KEY") or None,
        segment_region=region,
        log=log,
    )
    print("Starting the local stack from template.yaml ...", flush=True)
    try:
        stack.start()
    except PortInUseError as exc:
        print(f"local_stack: error: {exc}", file=sys.stderr)
        return 2
    if not stop.is_set():
        print(stack.banner(ready_s=time.monotonic() - process_started, overrides=overrides), flush=True)
    # A timed wait: the kernel may deliver Ctrl-C to another thread, and only a waking main thread runs the handler.
    while not stop.wait(0.2):
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stopping = time.monotonic()
    stack.stop()
    print(f"Stopped in {time.monotonic() - stopping:.1f}s.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
