"""What each event costs in AWS and Segment requests (the floor: one conditional write per new fact,
one Segment request per workspace per batch). AWS calls are counted at botocore's API-call boundary."""

from __future__ import annotations

from collections import Counter

import botocore.client
import pytest

from tests.component.conftest import LambdaContext, sqs_record

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


@pytest.fixture
def aws_calls(monkeypatch):
    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(self, operation_name, api_params):
        calls[f"{self.meta.service_model.service_name}:{operation_name}"] += 1
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    return calls


def test_new_assignment_for_an_unseen_visitor(stack, aws_calls):
    handler = stack.handler("assignment")
    stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-warm"}, handler=stack.handler("identify"))
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-warm"}, handler)  # warm: connection cached
    aws_calls.clear()
    stack.sink.clear()

    answer_status, body = stack.post("assignment", ASSIGNMENT, handler)
    assert answer_status == 200

    assert body["status"] == "delivered"
    # claim ASSIGN#t-1 and IDENTIFY (concurrently), one BatchWriteItem marking both SENT; the secret is cached
    assert dict(aws_calls) == {"dynamodb:UpdateItem": 2, "dynamodb:BatchWriteItem": 1}
    assert len(stack.sink.requests()) == 1


def test_duplicate_assignment(stack, aws_calls):
    handler = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, handler)
    aws_calls.clear()
    stack.sink.clear()

    answer_status, body = stack.post("assignment", ASSIGNMENT, handler)
    assert answer_status == 200

    assert body == {"status": "duplicate"}
    # both claims (ASSIGN#t-1, IDENTIFY) fail and answer with the old items: nothing to send or mark
    assert dict(aws_calls) == {"dynamodb:UpdateItem": 2}
    assert stack.sink.requests() == []


def test_unconnected_workspace_costs_one_secret_read_per_cache_period(stack, aws_calls):
    handler = stack.handler("assignment")
    for visitor in range(5):
        stack.post("assignment", {**ASSIGNMENT, "workspace_id": "nobody", "visitor_id": f"v-{visitor}"}, handler)

    assert dict(aws_calls) == {"secretsmanager:GetSecretValue": 1}


def test_sqs_batch_of_ten_for_two_workspaces(stack, aws_calls):
    handler = stack.handler("assignment")
    handler({"Records": [sqs_record({**ASSIGNMENT, "visitor_id": "warm"})]}, LambdaContext())
    aws_calls.clear()
    stack.sink.clear()
    records = [
        sqs_record({**ASSIGNMENT, "workspace_id": "ws-us" if i % 2 else "ws-eu", "visitor_id": f"v-{i}"})
        for i in range(10)
    ]

    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    assert len(stack.sink.requests()) == 2  # one per workspace
    # 20 claims (ASSIGN + IDENTIFY per event), 20 facts marked SENT in one BatchWriteItem (25 a request)
    assert dict(aws_calls) == {
        "dynamodb:UpdateItem": 20,
        "dynamodb:BatchWriteItem": 1,
        "secretsmanager:GetSecretValue": 1,
    }
