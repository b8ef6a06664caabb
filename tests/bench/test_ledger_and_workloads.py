"""The endpoint's DynamoDB ledger (bench/aws_endpoint.py) over moto in-process, and the workloads' shapes."""

import pytest

from bench.workload import WORKLOADS, generate, generate_workload, priming


@pytest.fixture(scope="module")
def dynamodb():
    import boto3
    from moto import mock_aws

    from bench.aws_endpoint import DynamoDBLedger

    ledger = DynamoDBLedger()
    ledger.install()
    with mock_aws():
        client = boto3.client(
            "dynamodb", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        client.create_table(
            TableName="facts",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ledger.take()
        yield client, ledger


def key(sk):
    return {"pk": {"S": "WS#a#V#v"}, "sk": {"S": sk}}


def test_writes_are_billed_on_the_larger_version_and_failed_conditions_count(dynamodb):
    client, ledger = dynamodb
    client.put_item(TableName="facts", Item={**key("big"), "content": {"S": "x" * 1500}})  # 2 units
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName="facts", Item=key("big"), ConditionExpression="attribute_not_exists(pk)")  # 2
    client.update_item(TableName="facts", Key=key("big"), UpdateExpression="REMOVE content")  # 2: before was big
    client.batch_write_item(RequestItems={"facts": [{"PutRequest": {"Item": key(str(i))}} for i in range(3)]})
    client.delete_item(TableName="facts", Key=key("0"))

    entries = ledger.take()

    assert entries["PutItem"]["wru"] == 4 and entries["PutItem"]["wru_failed"] == 2
    assert entries["PutItem"]["failed_conditions"] == 1
    assert entries["UpdateItem"]["wru"] == 2
    assert (entries["BatchWriteItem"]["items"], entries["BatchWriteItem"]["wru"]) == (3, 3)
    assert entries["DeleteItem"]["wru"] == 1
    assert entries["PutItem"]["largest_item"] > 1500


def test_reads_are_billed_per_item_and_consistency(dynamodb):
    client, ledger = dynamodb
    client.get_item(TableName="facts", Key=key("1"))
    client.batch_get_item(RequestItems={"facts": {"Keys": [key("1"), key("absent")], "ConsistentRead": True}})

    entries = ledger.take()

    assert entries["GetItem"]["rru"] == 0.5
    assert entries["BatchGetItem"]["rru"] == 2.0  # 1 per key, found or not


def test_mixed_is_the_stream_it_always_was():
    workload = generate(7, "run")
    assert (workload.events, workload.duplicates, workload.new_facts, workload.messages) == (300, 78, 357, 310)
    assert workload.warmup == []


@pytest.mark.parametrize("name", [w for w in WORKLOADS if w != "mixed"])
def test_steady_and_launch_start_from_known_visitors(name):
    workload = generate_workload(name, 7, "t")
    repeats = workload.duplicates / workload.events
    assert workload.warmup and workload.events == 300
    if name == "steady":
        assert 0.75 <= repeats <= 0.9 and workload.new_visitors / workload.events <= 0.15
    else:
        assert repeats <= 0.35 and workload.new_facts >= workload.events * 0.8
        assignments = [b for batch in workload.batches if batch.kind == "assignment" for b in batch.bodies]
        assert sum(b["test_id"] == "t-launch" for b in assignments) > len(assignments) / 2


def test_priming_gives_every_function_every_workspace():
    workload = priming(7, "p")
    assert [batch.kind for batch in workload.batches] == ["identify", "assignment", "conversion"]
    assert all(len({b["workspace_id"] for b in batch.bodies}) == 3 for batch in workload.batches)
