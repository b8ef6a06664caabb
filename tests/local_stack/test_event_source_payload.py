"""Lambda's SQS event source keeps each invocation within Lambda's 6 MB payload (``local_stack.sqs_poller``).

Lambda gathers records until the batch size, the batching window, or 6 MB of payload, whichever comes first: ten
messages of 900 KB (a queue takes up to 1 MiB each) never reach a function as one 9 MB event. In-process moto.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_stack.http_api import MAX_INVOKE_REQUEST_BYTES, payload_bytes
from local_stack.sqs_poller import SqsPoller
from local_stack.strict_sqs import make_strict
from local_stack.template import SqsSource

make_strict()


@pytest.fixture
def sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.session.Session().client("sqs")


def test_a_batch_never_exceeds_lambdas_6_mb_payload_and_what_did_not_fit_comes_in_the_next(sqs):
    url = sqs.create_queue(QueueName="big", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bodies = {json.dumps({"n": n, "pad": "x" * 900_000}) for n in range(10)}
    for body in sorted(bodies):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    events: list[int] = []
    seen: list[str] = []
    lock = threading.Lock()

    def invoke(event: dict[str, Any]) -> Any:
        with lock:
            events.append(payload_bytes(event))
            seen.extend(record["body"] for record in event["Records"])
        return {"batchItemFailures": []}

    source = SqsSource("F", "BigQueue", batch_size=10, batching_window_s=1.0, report_batch_item_failures=True)
    poller = SqsPoller(source, url, arn, sqs, invoke=invoke)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while len(seen) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()

    assert sorted(seen) == sorted(bodies)  # each once: released records were not lost nor held 60 s
    assert len(events) >= 2
    assert all(size <= MAX_INVOKE_REQUEST_BYTES for size in events), events
