"""Python producer of the Segment forwarder: the HTTP API with SigV4 and safe retries, and the SQS queues.

::

    from segment_forwarder_client import ForwarderClient, QueueProducer, Status, assignment_body, conversion_body

    client = ForwarderClient(api_url)                 # the stack's ApiUrl; credentials from the default chain
    result = client.assignment("acme", "v-1", "t-checkout", "b")
    assert result.status in (Status.DELIVERED, Status.DUPLICATE, Status.QUEUED, Status.SKIPPED)

    items = client.assignment_many([assignment_body("acme", f"v-{i}", "t-checkout", "b") for i in range(250)])
    assert all(item.ok for item in items)             # one BatchItem per body, in order (batch.py)

    producer = QueueProducer({"conversion": conversion_queue_url})
    producer.send("conversion", [conversion_body("acme", "v-1", "c-signup", "CLICK", "https://shop.example.com/")])

Every conversion carries an ``event_id`` (given, or generated once per call or body), so retries never forward it
twice. Dependencies: botocore and urllib3 only. See ``client``, ``batch``, ``queue``, ``retry``, ``errors`` and
``bodies``.
"""

from ._version import __version__
from .batch import BatchItem
from .bodies import (
    ConversionType,
    Kind,
    assignment_body,
    conversion_body,
    format_timestamp,
    identify_body,
    new_event_id,
    with_event_id,
)
from .client import ForwarderClient
from .errors import (
    ApiError,
    AuthError,
    ConfigurationError,
    ForwarderError,
    InvalidRequestError,
    NotConnectedError,
    PayloadTooLargeError,
    QueueSendError,
    ThrottledError,
    TransportError,
    UnavailableError,
)
from .queue import QueueProducer
from .results import Connection, ConnectionTest, FailedMessage, IngestResult, SentMessage, Status, VisitorErasure
from .retry import RetryPolicy, parse_retry_after

__all__ = [
    "ApiError",
    "AuthError",
    "BatchItem",
    "ConfigurationError",
    "Connection",
    "ConnectionTest",
    "ConversionType",
    "FailedMessage",
    "ForwarderClient",
    "ForwarderError",
    "IngestResult",
    "InvalidRequestError",
    "Kind",
    "NotConnectedError",
    "PayloadTooLargeError",
    "QueueProducer",
    "QueueSendError",
    "RetryPolicy",
    "SentMessage",
    "Status",
    "ThrottledError",
    "TransportError",
    "UnavailableError",
    "VisitorErasure",
    "__version__",
    "assignment_body",
    "conversion_body",
    "format_timestamp",
    "identify_body",
    "new_event_id",
    "parse_retry_after",
    "with_event_id",
]
