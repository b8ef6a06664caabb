"""What each event costs in AWS and Segment requests: one conditional write and one mark per new fact, nothing
written for a repeat on the SQS path (read SENT), one Segment request per workspace per batch. Nothing is
remembered between calls (an erase made elsewhere must be seen at once): a repeat over HTTP costs its failed
claims, and a new fact of a visitor whose IDENTIFY the call does not hold costs one consistent read of that item
after the claims. AWS calls are counted at botocore's API-call boundary (``aws_faults.calls``)."""

from __future__ import annotations

from tests.component.conftest import LambdaContext, on_both_engines, sqs_record

pytestmark = on_both_engines

ASSIGNMENT = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}


def test_new_assignment_for_an_unseen_visitor(stack, aws_faults):
    handler = stack.handler("assignment")
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-warm"}, handler)  # warm: connection cached
    aws_faults.calls.clear()
    stack.sink.clear()

    status, body = stack.post("assignment", ASSIGNMENT, handler)

    assert (status, body["status"]) == (200, "delivered")
    # claim ASSIGN#t-1 and IDENTIFY (concurrently: one round trip), one BatchWriteItem marking both SENT
    assert dict(aws_faults.calls) == {"dynamodb:UpdateItem": 2, "dynamodb:BatchWriteItem": 1}
    assert len(stack.sink.requests()) == 1


def test_a_repeat_in_a_warm_function_costs_its_claims_as_in_a_cold_one(stack, aws_faults):
    handler = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, handler)
    aws_faults.calls.clear()
    stack.sink.clear()

    assert stack.post("assignment", ASSIGNMENT, handler) == (200, {"status": "duplicate"})

    # no memory of SENT facts (it could not learn of an erase): both claims fail, answering SENT; one round trip
    # (dynalite leaves the item out of a failed condition: one consistent read each)
    reads = {"dynamodb:GetItem": 2} if stack.engine == "dynalite" else {}
    assert dict(aws_faults.calls) == {"dynamodb:UpdateItem": 2, **reads}
    assert stack.sink.requests() == []


def test_a_new_fact_of_a_known_visitor_reads_its_identify_again_after_the_claims(stack, aws_faults):
    handler = stack.handler("assignment")
    stack.post("assignment", ASSIGNMENT, handler)
    aws_faults.calls.clear()

    status, body = stack.post("assignment", {**ASSIGNMENT, "test_id": "t-2"}, handler)

    assert (status, body["status"], len(body["message_ids"])) == (200, "delivered", 1)
    # claims of IDENTIFY (SENT) and ASSIGN#t-2 (claimed), one round trip; IDENTIFY read again (an erase may have
    # come between the two claims), then the mark (dynalite: the failed IDENTIFY claim's item read consistently)
    reads = {"dynamodb:GetItem": 1} if stack.engine == "dynalite" else {}
    assert dict(aws_faults.calls) == {
        "dynamodb:UpdateItem": 2,
        "dynamodb:BatchGetItem": 1,
        "dynamodb:BatchWriteItem": 1,
        **reads,
    }


def test_a_new_fact_of_a_known_visitor_over_sqs(stack, aws_faults):
    handler = stack.handler("assignment")
    handler({"Records": [sqs_record(ASSIGNMENT)]}, LambdaContext())
    aws_faults.calls.clear()

    assert handler({"Records": [sqs_record({**ASSIGNMENT, "test_id": "t-2"})]}, LambdaContext()) == {
        "batchItemFailures": []
    }

    # the consistent read settles IDENTIFY (SENT); ASSIGN#t-2 is claimed, IDENTIFY read again, the fact marked
    assert dict(aws_faults.calls) == {
        "dynamodb:BatchGetItem": 2,
        "dynamodb:UpdateItem": 1,
        "dynamodb:BatchWriteItem": 1,
    }


def test_a_repeat_over_http_in_a_cold_function_costs_its_claims(stack, aws_faults):
    stack.post("assignment", ASSIGNMENT, stack.handler("assignment"))
    cold = stack.handler("assignment")
    cold({"Records": []}, LambdaContext())  # its runtime, with the connection read, before counting
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "v-other"}, cold)
    aws_faults.calls.clear()

    assert stack.post("assignment", ASSIGNMENT, cold) == (200, {"status": "duplicate"})

    # both claims fail, answering with the items (SENT): no read first on the HTTP path (one round trip). dynalite
    # leaves the item out of a failed condition: the store reads it (a consistent GetItem per failed claim).
    reads = {"dynamodb:GetItem": 2} if stack.engine == "dynalite" else {}
    assert dict(aws_faults.calls) == {"dynamodb:UpdateItem": 2, **reads}


def test_repeats_over_sqs_in_a_cold_function_cost_one_read_and_no_write(stack, aws_faults):
    records = [sqs_record({**ASSIGNMENT, "visitor_id": f"v-{i}"}) for i in range(10)]
    assert stack.handler("assignment")({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    cold = stack.handler("assignment")
    cold({"Records": [sqs_record({**ASSIGNMENT, "visitor_id": "v-warm-up"})]}, LambdaContext())
    aws_faults.calls.clear()

    again = [sqs_record({**ASSIGNMENT, "visitor_id": f"v-{i}"}) for i in range(10)]
    assert cold({"Records": again}, LambdaContext()) == {"batchItemFailures": []}

    # 20 facts read SENT with one consistent BatchGetItem (IDENTIFY included: it holds the erasure, so the read
    # must see every write before it); no claim, no mark, nothing sent
    assert dict(aws_faults.calls) == {"dynamodb:BatchGetItem": 1}


def test_unconnected_workspace_costs_one_secret_read_per_cache_period(stack, aws_faults):
    handler = stack.handler("assignment")
    for visitor in range(5):
        stack.post("assignment", {**ASSIGNMENT, "workspace_id": "nobody", "visitor_id": f"v-{visitor}"}, handler)

    assert dict(aws_faults.calls) == {"secretsmanager:GetSecretValue": 1}


def test_sqs_batch_of_ten_for_two_workspaces(stack, aws_faults):
    handler = stack.handler("assignment")
    handler({"Records": [sqs_record({**ASSIGNMENT, "visitor_id": "warm"})]}, LambdaContext())
    aws_faults.calls.clear()
    stack.sink.clear()
    records = [
        sqs_record({**ASSIGNMENT, "workspace_id": "ws-us" if i % 2 else "ws-eu", "visitor_id": f"v-{i}"})
        for i in range(10)
    ]

    assert handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}

    assert len(stack.sink.requests()) == 2  # one per workspace
    # one read of the 20 facts, 20 claims (ASSIGN + IDENTIFY per event), one BatchWriteItem marking them SENT;
    # one more UpdateItem: ws-eu's first health tally in this environment is written at once (ws-us's waits a minute)
    assert dict(aws_faults.calls) == {
        "dynamodb:BatchGetItem": 1,
        "dynamodb:UpdateItem": 20 + 1,
        "dynamodb:BatchWriteItem": 1,
        "secretsmanager:GetSecretValue": 1,
    }


def test_http_batch_of_ten_for_two_workspaces_costs_what_an_sqs_batch_does_without_the_read(stack, aws_faults):
    handler = stack.handler("assignment")
    stack.post("assignment", {"batch": [{**ASSIGNMENT, "visitor_id": "warm"}]}, handler)
    aws_faults.calls.clear()
    stack.sink.clear()
    batch = [{**ASSIGNMENT, "workspace_id": "ws-us" if i % 2 else "ws-eu", "visitor_id": f"v-{i}"} for i in range(10)]

    status, body = stack.post("assignment", {"batch": batch}, handler)

    assert status == 200
    assert [result["status"] for result in body["results"]] == ["delivered"] * 10
    assert len(stack.sink.requests()) == 2  # one per workspace
    # the HTTP path's two round trips: 20 claims at once (ASSIGN + IDENTIFY per event), then one BatchWriteItem
    # marking them SENT; no read first, nothing queued. One more UpdateItem: ws-eu's first health tally in this
    # environment is written at once (ws-us's waits a minute)
    assert dict(aws_faults.calls) == {
        "dynamodb:UpdateItem": 20 + 1,
        "dynamodb:BatchWriteItem": 1,
        "secretsmanager:GetSecretValue": 1,
    }


def test_http_batch_repeats_cost_their_failed_claims_and_nothing_else(stack, aws_faults):
    handler = stack.handler("assignment")
    batch = [{**ASSIGNMENT, "visitor_id": f"v-{i}"} for i in range(10)]
    stack.post("assignment", {"batch": batch}, handler)
    aws_faults.calls.clear()
    stack.sink.clear()

    assert stack.post("assignment", {"batch": batch}, handler) == (200, {"results": [{"status": "duplicate"}] * 10})

    # no memory of SENT facts (an erase made elsewhere must be seen at once): each of the 20 claims fails, answering
    # SENT, in one round trip; no read first, no mark, no Segment request (dynalite: each failed claim read again)
    reads = {"dynamodb:GetItem": 20} if stack.engine == "dynalite" else {}
    assert dict(aws_faults.calls) == {"dynamodb:UpdateItem": 20, **reads}
    assert stack.sink.requests() == []


def test_http_batch_segment_outage_costs_one_send_message_batch_per_ten_bodies(stack, aws_faults):
    handler = stack.handler("assignment", HTTP_DELIVERY_BUDGET_SECONDS="1")
    stack.post("assignment", {**ASSIGNMENT, "visitor_id": "warm"}, handler)
    stack.sink.set_fault(status=503, count=100)
    aws_faults.calls.clear()

    status, body = stack.post(
        "assignment", {"batch": [{**ASSIGNMENT, "visitor_id": f"v-{i}"} for i in range(25)]}, handler
    )

    assert status == 200
    assert body["results"] == [{"status": "queued"}] * 25
    # 50 claims, released (one UpdateItem each) once Segment refused, and the failures' health tally (written at
    # once); 3 SendMessageBatch requests (10 + 10 + 5 messages), never one SendMessage per body
    assert dict(aws_faults.calls) == {"dynamodb:UpdateItem": 50 + 50 + 1, "sqs:SendMessageBatch": 3}
