"""Lambda's SQS event source mapping, locally: one poller thread per (function, queue) of the template.

::

    poller = SqsPoller(source, queue_url, queue_arn, sqs_client, invoke=pools[source.function].invoke, log=print)
    poller.start()          # long-polls, gathers a batch, invokes, deletes what succeeded
    poller.pause(); poller.resume()
    poller.stop()

As Lambda does:

* long-poll ``ReceiveMessage`` (at most 10 per call) and keep receiving until ``batch_size`` records, until
  ``batching_window_s`` has passed since the first record of the batch, or until the event reaches Lambda's 6 MB
  invocation payload (``MAX_INVOKE_REQUEST_BYTES``): a received record that would take the event over it is not
  put in this batch but released (visible again at once) for the next one;
* invoke the function with ``{"Records": [...]}``, each record in Lambda's shape (``messageId``,
  ``receiptHandle``, ``body``, ``attributes`` with ``ApproximateReceiveCount`` / ``SentTimestamp`` /
  ``ApproximateFirstReceiveTimestamp`` / ``SenderId``, ``messageAttributes`` as ``{"stringValue", "dataType", ...}``,
  ``md5OfBody``, ``eventSource`` ``aws:sqs``, ``eventSourceARN``, ``awsRegion``);
* with ``ReportBatchItemFailures``: delete every record not listed in ``batchItemFailures``; an answer that is not
  a valid report (unknown or empty ``itemIdentifier``, not an object) fails the whole batch;
* a function error, crash or timeout fails the whole batch: nothing is deleted;
* failed records reappear after the queue's visibility timeout; after ``maxReceiveCount`` receives the queue's
  redrive policy (enforced by the SQS endpoint itself) moves them to the dead-letter queue.

One line per batch goes to ``log``: ``AssignmentQueue: 3 records -> 2 ok, 1 retry``.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from .http_api import MAX_INVOKE_REQUEST_BYTES, payload_bytes
from .lambda_pool import FunctionUnavailable, InvocationError
from .template import SqsSource

MAX_RECEIVE = 10  # SQS ReceiveMessage limit
LONG_POLL_S = 1  # short enough for a prompt stop; moto wakes the poll as soon as a message arrives

LogFn = Callable[[str], None]
InvokeFn = Callable[[dict[str, Any]], Any]


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One SQS message from ReceiveMessage as the record Lambda hands the function."""
    attributes = {
        name: message.get("Attributes", {})[name]
        for name in (
            "ApproximateReceiveCount",
            "SentTimestamp",
            "SenderId",
            "ApproximateFirstReceiveTimestamp",
            "SequenceNumber",
            "MessageGroupId",
            "MessageDeduplicationId",
            "AWSTraceHeader",
        )
        if name in message.get("Attributes", {})
    }
    message_attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        converted: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "StringValue" in value:
            converted["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        message_attributes[name] = converted
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_ids(result: Any, message_ids: set[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures answer lists; None when the answer fails the whole batch."""
    if result is None:
        return set()
    if not isinstance(result, dict):
        return None
    failures = result.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            return None
        failed.add(identifier)
    return failed


class SqsPoller:
    """Feeds one function the records of one queue; see the module docstring."""

    def __init__(
        self,
        source: SqsSource,
        queue_url: str,
        queue_arn: str,
        sqs: Any,
        invoke: InvokeFn,
        log: LogFn | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.source = source
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self._sqs = sqs
        self._invoke = invoke
        self._log = log
        self._region = region
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._running = True
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name=f"poller-{source.queue}", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current receive or batch (a running invocation is waited for, up to ``timeout_s``)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def pause(self, timeout_s: float = 40.0) -> None:
        """Stop receiving and wait until the batch in hand (if any) is finished."""
        self.request_pause()
        self.wait_paused(timeout_s)

    def request_pause(self) -> None:
        """Stop receiving after the current receive or batch (``wait_paused`` waits for it)."""
        with self._cond:
            self._running = False

    def wait_paused(self, timeout_s: float = 40.0) -> None:
        """Wait until no batch is in hand after ``request_pause``."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=timeout_s)

    def resume(self) -> None:
        """Receive again after ``pause``."""
        with self._cond:
            self._running = True
            self._cond.notify_all()

    def _emit(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    # -- polling --------------------------------------------------------------------------------------------

    def _receive(self, count: int, wait_s: int) -> list[dict[str, Any]]:
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_s,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = answer.get("Messages", [])
        return messages

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._running or self._stop.is_set())
                if self._stop.is_set():
                    return
                self._busy = True
            try:
                batch = self._gather()
                if batch and not self._stop.is_set():
                    self._process(batch)
            except Exception as exc:  # the endpoint went away (stopping) or refused; keep the poller alive
                if not self._stop.is_set():
                    self._emit(f"{self.source.queue}: poll failed ({type(exc).__name__}: {exc}); retrying")
                    self._stop.wait(1.0)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _gather(self) -> list[dict[str, Any]]:
        size = self.source.batch_size
        batch = self._receive(min(MAX_RECEIVE, size), LONG_POLL_S)
        if not batch:
            return []
        batch, overflow = self._fit(batch)
        window_end = time.monotonic() + self.source.batching_window_s
        while len(batch) < size and not overflow and not self._stop.is_set():
            left = window_end - time.monotonic()
            if left <= 0:
                break
            more = self._receive(min(MAX_RECEIVE, size - len(batch)), 1 if left >= 1 else 0)
            batch, overflow = self._fit(batch + more)
            if not more and left < 1:
                self._stop.wait(min(left, 0.05))
        self._release(overflow)
        return batch

    def _fit(self, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The leading messages whose records fit one invocation's payload, and the rest."""
        used = payload_bytes({"Records": []})
        for index, message in enumerate(messages):
            used += payload_bytes(lambda_record(message, self.queue_arn, self._region)) + (1 if index else 0)
            if used > MAX_INVOKE_REQUEST_BYTES and index:
                return messages[:index], messages[index:]
        return messages, []

    def _release(self, messages: list[dict[str, Any]]) -> None:
        """Make received messages that did not fit the batch visible again at once (for the next batch)."""
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start : start + MAX_RECEIVE]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)
            ]
            with contextlib.suppress(Exception):  # not released: it comes back after the visibility timeout
                self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)

    def _process(self, messages: list[dict[str, Any]]) -> None:
        records = [lambda_record(m, self.queue_arn, self._region) for m in messages]
        ids = {r["messageId"] for r in records}
        started = time.monotonic()
        failed: set[str] | None
        try:
            result = self._invoke({"Records": records})
        except (InvocationError, FunctionUnavailable) as exc:
            reason = f"{exc.error_type}: {exc.message}" if isinstance(exc, InvocationError) else str(exc)
            self._emit(f"{self.source.queue}: {_records(len(records))} -> function error ({reason}); all retry")
            return
        if self.source.report_batch_item_failures:
            failed = failed_ids(result, ids)
            if failed is None:
                self._emit(
                    f"{self.source.queue}: {_records(len(records))} -> invalid batchItemFailures answer; all retry"
                )
                return
        else:
            failed = set()
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        elapsed_ms = round((time.monotonic() - started) * 1000)
        self._emit(
            f"{self.source.queue}: {_records(len(records))} -> {len(done)} ok, {len(failed)} retry {elapsed_ms}ms"
        )

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), MAX_RECEIVE):
            chunk = messages[start : start + MAX_RECEIVE]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            with contextlib.suppress(Exception):  # an undeleted record comes back: at-least-once, as in Lambda
                self._sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
