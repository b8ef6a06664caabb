"""The client against real 503 answers of the local stack: Segment down and the queue unreachable.

The functions of this stack are given a ``QUEUE_URL`` that names no queue (outside their IAM policy too, so the
send is refused with AccessDenied, as it would be on AWS), so an HTTP call that cannot deliver
cannot queue either and is answered ``503 unavailable`` ("neither delivered nor queued; retry"). Segment is made to
refuse with ``Retry-After: 10``, longer than the function's delivery budget, so each refused call costs one
Segment request. The client retries those 503s; the conversion's event id keeps the retries to one event.
"""

from __future__ import annotations

import pytest

from segment_forwarder_client import RetryPolicy, Status, UnavailableError
from tests.support.stack_client import events_of, new_id, signed_client

pytestmark = pytest.mark.integration

STACK_OVERRIDES = {"environment": {"QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"}}
# A queue outside the functions' policies: as on AWS, the send is refused with AccessDenied, the unreachable queue
# this module drills.
IAM_EXPECTED_DENIALS = {("ConversionFunction", "sqs:SendMessage"): "QUEUE_URL names a queue outside the policy"}
URL = "https://shop.example.com/pricing"


def conversions(stack, visitor: str) -> list[dict]:
    return [e["message"] for e in events_of(stack, visitor) if e["message"].get("event") == "Conversion Triggered"]


def test_503s_are_retried_until_segment_is_back_and_the_conversion_is_forwarded_once(stack):
    visitor = new_id("v")
    refused_before = sum(r["status"] == 503 for r in stack.sink.requests())
    stack.sink.set_fault(status=503, count=2, retry_after=10)

    result = signed_client(stack).conversion("demo", visitor, "c-buy", "CLICK", URL)

    assert result.status == Status.DELIVERED
    assert result.attempts >= 2
    assert sum(r["status"] == 503 for r in stack.sink.requests()) - refused_before == 2
    [track] = conversions(stack, visitor)
    assert track["messageId"] in result.message_ids


def test_after_the_last_attempt_the_503_is_raised_with_the_apis_code_and_the_call_can_be_made_again(stack):
    visitor = new_id("v")
    stack.sink.set_fault(status=503, count=10_000, retry_after=10)
    client = signed_client(stack, retry=RetryPolicy(max_attempts=2, base_s=0.05))
    try:
        with pytest.raises(UnavailableError) as raised:
            client.conversion("demo", visitor, "c-buy", "CLICK", URL, event_id="order-1")
    finally:
        stack.sink.clear_faults()

    assert (raised.value.status, raised.value.code, raised.value.attempts) == (503, "unavailable", 2)
    assert conversions(stack, visitor) == []
    # The caller's own retry later, with the same event id, forwards it once; a third call is a duplicate.
    assert client.conversion("demo", visitor, "c-buy", "CLICK", URL, event_id="order-1").status == Status.DELIVERED
    assert client.conversion("demo", visitor, "c-buy", "CLICK", URL, event_id="order-1").status == Status.DUPLICATE
    assert len(conversions(stack, visitor)) == 1
