"""Invoke a function's handler in this process, the way Lambda would (tests and benchmarks).

::

    from local_stack.invoke import LambdaContext, load_module, sqs_record

    handler = load_module(ROOT / "functions/assignment/app.py", "app_assignment").handler   # a cold start
    handler({"Records": [sqs_record({"workspace_id": "demo", ...})]}, LambdaContext(timeout_s=30))

The local stack itself runs functions in worker processes (``lambda_worker``); this is the in-process shortcut.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_module_ids = itertools.count()


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that the handlers and Powertools read."""

    timeout_s: float = 30.0
    function_name: str = "local-function"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local-function"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of the invocation's timeout."""
        return max(int((self.timeout_s - (time.monotonic() - self._started)) * 1000), 0)


def load_module(path: Path, prefix: str) -> Any:
    """Import a handler file as a fresh module (a new execution environment: module state starts cold)."""
    spec = importlib.util.spec_from_file_location(f"{prefix}_{next(_module_ids)}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqs_record(body: str | dict, *, message_id: str | None = None, receive_count: int = 1) -> dict:
    """One SQS record as Lambda's event source mapping delivers it."""
    text = body if isinstance(body, str) else json.dumps(body)
    now = str(int(time.time() * 1000))
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "handle",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": now,
            "ApproximateFirstReceiveTimestamp": now,
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:queue",
        "awsRegion": "us-east-1",
    }
