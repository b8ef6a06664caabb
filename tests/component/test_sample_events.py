"""The sample events in events/ (for ``sam local invoke -e``) are valid input of the real handlers."""

from __future__ import annotations

import json

import pytest

from tests.component.conftest import ROOT, LambdaContext


@pytest.mark.parametrize("kind", ["identify", "assignment", "conversion"])
def test_sample_http_event_is_delivered(stack, kind):
    stack.connect("demo", "demo-key-0001")
    event = json.loads((ROOT / "events" / f"{kind}-http.json").read_text())

    answer = stack.handler(kind)(event, LambdaContext())

    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["status"] == "delivered"


@pytest.mark.parametrize("kind", ["identify", "assignment", "conversion"])
def test_sample_sqs_event_is_consumed_whole(stack, kind):
    stack.connect("demo", "demo-key-0001")
    event = json.loads((ROOT / "events" / f"{kind}-sqs.json").read_text())

    answer = stack.handler(kind)(event, LambdaContext())

    assert answer == {"batchItemFailures": []}
    assert len(stack.sink.requests()) == 1  # both records in one batch
    assert stack.drain(kind, dead=True) == []
