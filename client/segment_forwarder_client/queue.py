"""``QueueProducer``: the SQS path. Bodies go onto each function's queue with ``SendMessageBatch``, ten at a time.

::

    from segment_forwarder_client import QueueProducer, assignment_body, conversion_body

    producer = QueueProducer({
        "identify": "<IdentifyQueueUrl output>",
        "assignment": "<AssignmentQueueUrl output>",
        "conversion": "<ConversionQueueUrl output>",
    })
    sent = producer.send("assignment", [assignment_body("acme", "v-1", "t-checkout", "b"), ...])
    sent[0].message_id                      # SQS's MessageId
    producer.send("conversion", [conversion_body("acme", "v-1", "c-signup", "CLICK", "https://shop.example.com/")])

    # the local stack (make run): its AWS endpoint and dummy credentials
    # QueueProducer(urls, region="us-east-1", credentials=("testing", "testing"), endpoint_url="http://127.0.0.1:4566")

The message body is exactly the HTTP route's body; the queue's function validates it (a body that fails is parked in
the queue's dead-letter queue with the reason). Every conversion body gets an ``event_id`` unless it has one, before
the first attempt, so a resend after an ambiguous failure (a timeout after SQS stored the batch) is forwarded once.

Batches hold at most 10 messages and 256 KiB. Entries SQS reports failed without its being the sender's fault, and
whole requests that fail with a throttle, a 5xx or a transport error, are retried with the client's
``RetryPolicy`` (capped exponential backoff, full jitter); entries SQS refuses as sent (``SenderFault``) are not.
``send`` returns the ``SentMessage`` of every body, or raises ``QueueSendError`` listing what was sent and what was
not (``FailedMessage`` with SQS's code and message), so nothing is dropped silently.

The caller needs ``sqs:SendMessage`` on the queues (the README shows the policy). Credentials and region: as for
``ForwarderClient`` (given, else botocore's default chain; the region of an ``sqs.<region>.amazonaws.com`` URL).
``sqs_client=`` takes an existing boto3/botocore SQS client instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ._aws import CredentialsLike, resolve_credentials, resolve_region
from .bodies import KINDS, Kind, encode_body, with_event_id
from .errors import QueueSendError
from .results import FailedMessage, SentMessage
from .retry import DEFAULT_RETRY, RetryPolicy

MAX_BATCH_MESSAGES = 10
MAX_BATCH_BYTES = 256 * 1024
# Whole-request errors worth another attempt (besides HTTP 5xx and transport errors).
_RETRYABLE_CODES = {
    "RequestThrottled",
    "ThrottlingException",
    "Throttling",
    "AWS.SimpleQueueService.RequestThrottled",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "KmsThrottled",
    "KMS.ThrottlingException",
}


class QueueProducer:
    """Sends ingest bodies to the forwarder's queues; see the module docstring."""

    def __init__(
        self,
        queue_urls: Mapping[str, str],
        *,
        region: str | None = None,
        credentials: CredentialsLike | None = None,
        endpoint_url: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        sqs_client: Any = None,
    ) -> None:
        """``queue_urls``: kind (``identify``, ``assignment``, ``conversion``) -> queue URL (the stack's outputs)."""
        unknown = set(queue_urls) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; use {list(KINDS)}")
        self.queue_urls = dict(queue_urls)
        self.retry = retry
        if sqs_client is not None:
            self._sqs = sqs_client
            return
        session = botocore.session.get_session()
        some_url = next(iter(self.queue_urls.values()), "")
        resolved = resolve_credentials(session, credentials)
        frozen = resolved.get_frozen_credentials() if credentials is not None else None
        self._sqs = session.create_client(
            "sqs",
            region_name=resolve_region(session, region, some_url, "sqs"),
            endpoint_url=endpoint_url,
            aws_access_key_id=frozen.access_key if frozen else None,
            aws_secret_access_key=frozen.secret_key if frozen else None,
            aws_session_token=frozen.token if frozen else None,
            # One attempt per request: the retries are this class's (one schedule for partial and whole failures).
            config=Config(connect_timeout=3.05, read_timeout=10, retries={"mode": "standard", "max_attempts": 1}),
        )

    def send(self, kind: Kind, bodies: Iterable[Mapping[str, Any]]) -> list[SentMessage]:
        """Put every body on the ``kind`` queue; their ``SentMessage`` in order, or ``QueueSendError``."""
        if kind not in self.queue_urls:
            raise ValueError(f"no queue URL for {kind!r}; known: {sorted(self.queue_urls)}")
        url = self.queue_urls[kind]
        prepared = [with_event_id(kind, body) for body in bodies]
        sent: dict[int, SentMessage] = {}
        failed: dict[int, FailedMessage] = {}
        for batch in _batches([encode_body(body) for body in prepared]):
            self._send_batch(url, batch, prepared, sent, failed)
        if failed:
            raise QueueSendError(
                f"{len(failed)} of {len(prepared)} messages were not put on the {kind} queue "
                f"(first: {next(iter(failed.values())).code})",
                sent=[sent[i] for i in sorted(sent)],
                failed=[failed[i] for i in sorted(failed)],
                code=next(iter(failed.values())).code,
            )
        return [sent[i] for i in range(len(prepared))]

    def _send_batch(
        self,
        url: str,
        batch: dict[int, str],
        bodies: list[dict[str, Any]],
        sent: dict[int, SentMessage],
        failed: dict[int, FailedMessage],
    ) -> None:
        """Send one batch (index -> JSON body), retrying what may succeed later; record each outcome."""
        pending = dict(batch)
        started = time.monotonic()
        attempt = 0
        while pending:
            attempt += 1
            last: tuple[str, str] = ("", "")
            try:
                answer = self._sqs.send_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(index), "MessageBody": body} for index, body in pending.items()]
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                last = (str(error.get("Code", "ClientError")), str(error.get("Message", exc)))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if status < 500 and last[0] not in _RETRYABLE_CODES:
                    for index in pending:
                        failed[index] = _failed(bodies[index], last, sender_fault=True)
                    return
            except BotoCoreError as exc:  # no answer: connection refused or reset, timeout
                last = (type(exc).__name__, str(exc))
            else:
                for entry in answer.get("Successful", []):
                    index = int(entry["Id"])
                    body = bodies[index]
                    sent[index] = SentMessage(body, entry["MessageId"], body.get("event_id"))
                    pending.pop(index, None)
                for entry in answer.get("Failed", []):
                    index = int(entry["Id"])
                    last = (str(entry.get("Code", "")), str(entry.get("Message", "")))
                    if entry.get("SenderFault"):
                        failed[index] = _failed(bodies[index], last, sender_fault=True)
                        pending.pop(index, None)
            if not pending:
                return
            delay = self.retry.next_delay(attempt, time.monotonic() - started)
            if delay is None:
                for index in pending:
                    failed[index] = _failed(bodies[index], last, sender_fault=False)
                return
            time.sleep(delay)


def _failed(body: dict[str, Any], reason: tuple[str, str], *, sender_fault: bool) -> FailedMessage:
    event_id = body.get("event_id")
    return FailedMessage(
        body, reason[0], reason[1], sender_fault=sender_fault, event_id=event_id if isinstance(event_id, str) else None
    )


def _batches(messages: list[str]) -> Iterable[dict[int, str]]:
    """Index -> body groups of at most 10 messages and 256 KiB (a single larger body goes alone; SQS judges it)."""
    batch: dict[int, str] = {}
    size = 0
    for index, message in enumerate(messages):
        length = len(message.encode("utf-8"))
        if batch and (len(batch) == MAX_BATCH_MESSAGES or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = {}, 0
        batch[index] = message
        size += length
    if batch:
        yield batch
