"""The cost section's arithmetic: what a run consumed (``Usage``) → US dollars per million events, per component.

::

    usage = Usage(events=300, dynamodb_write_units=900, lambda_invocations=30, lambda_billed_ms=9000, ...)
    dollars = cost_per_million(usage)            # {"dynamodb_writes": 1.875, "lambda_duration": 0.1, ...}
    sum(dollars.values())                        # the total per million events

Pure: every quantity comes from the run (``bench.metering``); the few modelled ones (SQS requests of the event
source, Lambda's own log lines under the function's LoggingConfig) are computed by the helpers here, each documented
where it is made.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass

from bench.prices import PRICES, Price
from local_stack.lambda_logging import LambdaLogging

MILLION = 1_000_000
GB = 1024**3  # AWS's "GB" of data (binary); with 1e9 the log lines would be 7% dearer
SQS_CHUNK_BYTES = 64 * 1024  # each 64 KB chunk of a request's payload is billed as one request
API_GATEWAY_STEP_BYTES = 512 * 1024  # HTTP API meters each request in 512 KB steps

# (key, label): the components in the order the tables print them.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("dynamodb_writes", "DynamoDB write units"),
    ("dynamodb_reads", "DynamoDB read units"),
    ("lambda_duration", "Lambda duration (GB-s)"),
    ("lambda_requests", "Lambda requests"),
    ("sqs_requests", "SQS requests"),
    ("api_requests", "API Gateway requests"),
    ("secrets_calls", "Secrets Manager calls"),
    ("logs_function", "Logs: function lines"),
    ("logs_emf", "Logs: EMF metric lines"),
    ("logs_platform", "Logs: Lambda START/END/REPORT"),
)


@dataclass(slots=True)
class Usage:
    """What one run of a workload through one stack consumed; ``events`` is the events it was given."""

    events: int = 0
    dynamodb_write_units: float = 0.0
    dynamodb_read_units: float = 0.0
    lambda_invocations: int = 0
    lambda_billed_ms: int = 0  # sum over invocations of each one's duration rounded up to the millisecond
    lambda_memory_mb: int = 256
    sqs_requests: float = 0.0  # in billed requests (64 KB chunks)
    api_requests: float = 0.0  # in billed requests (512 KB steps)
    secrets_calls: int = 0
    log_bytes_function: int = 0
    log_bytes_emf: int = 0
    log_bytes_platform: int = 0

    @property
    def gb_seconds(self) -> float:
        """Lambda GB-seconds: billed milliseconds at the configured memory."""
        return self.lambda_billed_ms / 1000 * self.lambda_memory_mb / 1024


def cost_per_million(usage: Usage, prices: dict[str, Price] = PRICES) -> dict[str, float]:
    """US dollars per million events, per component of ``COMPONENTS`` (all keys present, zeros included)."""
    if usage.events <= 0:
        raise ValueError("a cost per event needs at least one event")
    usd = {
        "dynamodb_writes": usage.dynamodb_write_units * prices["dynamodb_write"].usd_per_unit,
        "dynamodb_reads": usage.dynamodb_read_units * prices["dynamodb_read"].usd_per_unit,
        "lambda_duration": usage.gb_seconds * prices["lambda_gb_second"].usd_per_unit,
        "lambda_requests": usage.lambda_invocations * prices["lambda_request"].usd_per_unit,
        "sqs_requests": usage.sqs_requests * prices["sqs_request"].usd_per_unit,
        "api_requests": usage.api_requests * prices["api_gateway_request"].usd_per_unit,
        "secrets_calls": usage.secrets_calls * prices["secrets_api_call"].usd_per_unit,
        "logs_function": usage.log_bytes_function / GB * prices["logs_ingested_gb"].usd_per_unit,
        "logs_emf": usage.log_bytes_emf / GB * prices["logs_ingested_gb"].usd_per_unit,
        "logs_platform": usage.log_bytes_platform / GB * prices["logs_ingested_gb"].usd_per_unit,
    }
    return {key: usd[key] / usage.events * MILLION for key, _ in COMPONENTS}


# -- modelled quantities ------------------------------------------------------------------------------------------


def billed_ms(seconds: float) -> int:
    """Lambda's billed duration of one invocation: rounded up to the millisecond (at least 1)."""
    return max(1, math.ceil(seconds * 1000))


def sqs_request_units(payload_bytes: int) -> int:
    """Billed SQS requests of one API request carrying ``payload_bytes``: one per started 64 KB, at least 1."""
    return max(1, math.ceil(payload_bytes / SQS_CHUNK_BYTES))


def api_gateway_units(request_bytes: int) -> int:
    """Billed HTTP API requests of one request: one per started 512 KB, at least 1."""
    return max(1, math.ceil(request_bytes / API_GATEWAY_STEP_BYTES))


LAMBDA_DEFAULTS = LambdaLogging()  # text format, INFO and INFO: a function without a LoggingConfig


def platform_log_bytes(
    duration_ms: float, memory_mb: int = 256, max_memory_used_mb: int = 100, logging: LambdaLogging = LAMBDA_DEFAULTS
) -> int:
    """Bytes of the records Lambda itself writes per (warm, successful) invocation under ``logging``, the
    function's LoggingConfig (Lambda's defaults unless given). The memory used is not measured here; 3 digits.

    - Text format (Lambda's default): the START, END and REPORT lines.
    - JSON format, system log level INFO or DEBUG: the same three as JSON records, ``platform.start``,
      ``platform.runtimeDone`` (with its response spans) and ``platform.report``, in the shapes of Lambda's
      Telemetry API schema, which the JSON format writes.
    - JSON format, system log level WARN: none (all three are INFO records).
    """
    if not logging.writes_platform_records:
        return 0
    request_id = str(uuid.uuid4())
    billed = billed_ms(duration_ms / 1000)
    if logging.log_format == "Text":
        lines = (
            f"START RequestId: {request_id} Version: $LATEST\n"
            f"END RequestId: {request_id}\n"
            f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: "
            f"{billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {max_memory_used_mb} MB\t\n"
        )
        return len(lines.encode("utf-8"))
    time = "2025-06-01T12:00:00.000Z"
    records = [
        {"time": time, "type": "platform.start", "record": {"requestId": request_id, "version": "$LATEST"}},
        {
            "time": time,
            "type": "platform.runtimeDone",
            "record": {
                "requestId": request_id,
                "status": "success",
                "spans": [
                    {"name": "responseLatency", "start": time, "durationInMs": round(duration_ms, 3)},
                    {"name": "responseDuration", "start": time, "durationInMs": 0.045},
                ],
                "metrics": {"durationMs": round(duration_ms, 3), "producedBytes": 53},
            },
        },
        {
            "time": time,
            "type": "platform.report",
            "record": {
                "requestId": request_id,
                "metrics": {
                    "durationMs": round(duration_ms, 3),
                    "billedDurationMs": billed,
                    "memorySizeMB": memory_mb,
                    "maxMemoryUsedMB": max_memory_used_mb,
                },
                "status": "success",
            },
        },
    ]
    return sum(len(json.dumps(record, separators=(",", ":")).encode("utf-8")) + 1 for record in records)
