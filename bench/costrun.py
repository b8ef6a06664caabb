"""Sections 5-8 of the benchmark, measuring: every workload through every stack and path, with simulated latency.

::

    env = StackEnvironment.start()
    measured = measure(env, CostRunParameters(aws_ms=5, segment_ms=50), progress=print)
    measured["steady"]["ours"]                  # Run of the steady workload through the forwarder's SQS path
    usage_of(measured["steady"]["ours"], 256)   # Usage: the quantities the dollars are computed from

For each workload (``mixed``, ``steady``, ``launch``) and each of ``STACKS`` (the forwarder over SQS and over
HTTP, the typical stack with its library defaults and tuned), in this order:

1. the workload's warm-up (steady, launch) runs through *another* execution environment of the same stack (the
   facts returning visitors find were recorded by environments long gone: nothing of it stays in the measured
   environment's memory), without added latency, unmeasured;
2. a new execution environment of the stack is primed with a batch per function of other visitors, one of each
   workspace (connections cached, pools open: a busy environment), unmeasured;
3. the workload runs with the added latency (AWS per HTTP attempt, Segment per request), measured.

Each run uses its own visitor ids (the workload's tag), so no run sees another's facts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.costs import Usage, api_gateway_units, billed_ms, cost_per_million, platform_log_bytes, sqs_request_units
from bench.throughput import Run, Stack, StackEnvironment
from bench.workload import WORKLOADS, Workload, generate_workload, priming

TUNED_UPLOAD_INTERVAL_S = 0.05
WARMUP_UPLOAD_INTERVAL_S = 0.01  # the typical stack's warm-up environment: only its records matter

# (key, path, label): the columns of the cost tables.
STACKS: tuple[tuple[str, str, str], ...] = (
    ("ours", "sqs", "ours (SQS)"),
    ("typical", "sqs", "typical"),
    ("tuned", "sqs", "typical tuned"),
    ("ours_http", "http", "ours (HTTP)"),
)


@dataclass(frozen=True, slots=True)
class CostRunParameters:
    """What the cost sections run: latencies added, workload size, seed."""

    aws_ms: float = 5.0
    segment_ms: float = 50.0
    batches: int = 30  # SQS batches per workload
    batch_size: int = 10
    seed: int = 7
    http_batches: int = 20  # the HTTP path sends the records of this many batches (one request each: the slow part)


def measure(
    env: StackEnvironment, parameters: CostRunParameters, progress: Callable[[str], None]
) -> dict[str, dict[str, Run]]:
    """Run every workload through every stack of ``STACKS``; the runs by workload, then stack key."""
    yesterday = {
        "ours": env.ours("ours-yesterday", "segment-forwarder (warm-up environment)"),
        "typical": env.typical("typical-yesterday", "typical (warm-up environment)", WARMUP_UPLOAD_INTERVAL_S),
    }
    try:
        return _measure_all(env, parameters, progress, yesterday)
    finally:
        for stack in yesterday.values():
            stack.close()


def _measure_all(
    env: StackEnvironment, parameters: CostRunParameters, progress: Callable[[str], None], yesterday: dict[str, Stack]
) -> dict[str, dict[str, Run]]:
    measured: dict[str, dict[str, Run]] = {}
    for name in WORKLOADS:
        measured[name] = {}
        for key, path, label in STACKS:
            batches = parameters.http_batches if path == "http" else parameters.batches
            workload = generate_workload(name, parameters.seed, f"{name}-{key}", batches, parameters.batch_size)
            setup_started = time.perf_counter()
            stack = _new_stack(env, key)
            env.set_latency(0, 0)
            if workload.warmup:
                warmup = Workload("warmup", batches=workload.warmup)
                warmup.events = sum(len(batch.bodies) for batch in workload.warmup)
                env.run(yesterday["ours" if key.startswith("ours") else "typical"], warmup)
            env.run(stack, priming(parameters.seed, f"prime-{name}-{key}"))
            setup_s = time.perf_counter() - setup_started
            env.set_latency(parameters.aws_ms / 1000, parameters.segment_ms / 1000)
            try:
                run = env.run_http(stack, workload) if path == "http" else env.run(stack, workload)
            finally:
                env.set_latency(0, 0)
                stack.close()
            measured[name][key] = run
            progress(
                f"{name} workload, {label}: {run.events_per_s:.0f} events/s, {_usd(run, env.memory_mb):.3f} US$ per "
                f"million events (run {run.seconds:.0f} s, warm-up and priming {setup_s:.0f} s)"
            )
    return measured


def _new_stack(env: StackEnvironment, key: str) -> Stack:
    if key.startswith("ours"):
        return env.ours(key, "segment-forwarder")
    if key == "tuned":
        return env.typical("tuned", f"typical, upload_interval={TUNED_UPLOAD_INTERVAL_S:g} s", TUNED_UPLOAD_INTERVAL_S)
    return env.typical("typical", "typical stack (library defaults)")


def _usd(run: Run, memory_mb: int) -> float:
    return sum(cost_per_million(usage_of(run, memory_mb)).values())


# -- usage ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqsRequests:
    """A run's billed SQS requests by who makes them."""

    producer: int  # SendMessageBatch of each workload batch (modelled: SQS path only)
    event_source: int  # ReceiveMessage per invocation + DeleteMessageBatch of its successes (modelled)
    function: int  # the function's own calls (measured at botocore): queueing, visibility changes, the DLQ

    @property
    def total(self) -> int:
        """All of them."""
        return self.producer + self.event_source + self.function


def sqs_requests(run: Run) -> SqsRequests:
    """The SQS requests of a run: measured for the function, modelled for the producer and the event source.

    Producer: one ``SendMessageBatch`` per workload batch (64 KB chunks of its bodies). Event source (Lambda's
    pollers): per SQS invocation one ``ReceiveMessage`` (64 KB chunks of the records' bodies) and one
    ``DeleteMessageBatch`` when at least one record succeeded; records reported failed stay and come back
    (another invocation). The pollers' empty long polls while a queue is idle are a monthly cost, not per event.
    """
    function = sum(call.sqs_units for invocation in run.invocations for call in invocation.calls)
    if run.path != "sqs":
        return SqsRequests(0, 0, function)
    producer = sum(
        sqs_request_units(sum(len(json.dumps(body).encode()) for body in batch.bodies))
        for batch in run.workload.batches
    )
    event_source = 0
    for invocation in run.invocations:
        records = invocation.event["Records"]
        event_source += sqs_request_units(sum(len(record["body"].encode()) for record in records))
        if len(records) > len(invocation.answer.get("batchItemFailures", [])):
            event_source += 1
    return SqsRequests(producer, event_source, function)


def usage_of(run: Run, memory_mb: int) -> Usage:
    """What a run consumed, as the cost arithmetic's ``Usage``."""
    usage = Usage(events=run.events, lambda_memory_mb=memory_mb)
    usage.dynamodb_write_units = run.units("wru")
    usage.dynamodb_read_units = run.units("rru")
    usage.lambda_invocations = len(run.invocations)
    usage.lambda_billed_ms = sum(billed_ms(invocation.seconds) for invocation in run.invocations)
    usage.sqs_requests = sqs_requests(run).total
    if run.path == "http":
        usage.api_requests = sum(api_gateway_units(_request_bytes(invocation.event)) for invocation in run.invocations)
    usage.secrets_calls = sum(
        1 for invocation in run.invocations for call in invocation.calls if call.service == "secretsmanager"
    )
    usage.log_bytes_function = sum(invocation.output.function_bytes for invocation in run.invocations)
    usage.log_bytes_emf = sum(invocation.output.emf_bytes for invocation in run.invocations)
    usage.log_bytes_platform = sum(
        platform_log_bytes(invocation.seconds * 1000, memory_mb, logging=run.logging_of(invocation.function))
        for invocation in run.invocations
    )
    return usage


def _request_bytes(event: dict[str, Any]) -> int:
    headers = sum(len(name) + len(value) + 4 for name, value in event.get("headers", {}).items())
    return len(str(event.get("body", "")).encode()) + headers
