"""DynamoDB as strict as AWS (``local_stack.moto_dynamodb``): batch limits, stale eventually consistent reads and
engine faults, in-process (``mock_aws``, as the component tests run it) and on the local stack's AWS endpoint
(moto's server, switched over HTTP and from the environment)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
import urllib3
from botocore.config import Config
from moto import mock_aws

from local_stack import moto_dynamodb
from local_stack.moto_dynamodb import (
    configure_from_environment,
    counters,
    engine_faults,
    make_strict,
    reset_counters,
    set_engine_faults,
    set_stale_reads,
    stale_reads,
)

TABLE, OTHER = "strict", "strict-other"
ONE_TRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})


def _create(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


@pytest.fixture(autouse=True)
def _settings_restored() -> Iterator[None]:
    """Every test starts and ends with stale reads and faults off (they are per process)."""
    set_stale_reads(0)
    set_engine_faults()
    reset_counters()
    yield
    set_stale_reads(0)
    set_engine_faults()
    reset_counters()


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A DynamoDB client on in-process moto with two tables (pk, sk)."""
    make_strict()
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1", config=ONE_TRY)
        _create(client, TABLE)
        _create(client, OTHER)
        yield client


def key(pk: str, sk: str = "s") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def put(pk: str, sk: str = "s", **attributes: str) -> dict[str, Any]:
    return {"PutRequest": {"Item": {**key(pk, sk), **{k: {"S": v} for k, v in attributes.items()}}}}


def count(client: Any, table: str = TABLE) -> int:
    return int(client.scan(TableName=table, ConsistentRead=True, Select="COUNT")["Count"])


def refused(call: Any, **params: Any) -> str:
    """The message of the ValidationException the call must raise."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**params)
    assert caught.value.response["Error"]["Code"] == "ValidationException", caught.value.response
    return str(caught.value.response["Error"]["Message"])


# -- batch limits -------------------------------------------------------------------------------------------------


def test_a_batch_write_of_26_requests_is_refused_whole(ddb):
    message = refused(ddb.batch_write_item, RequestItems={TABLE: [put(f"p{i}") for i in range(26)]})
    assert "Member must have length less than or equal to 25" in message
    assert count(ddb) == 0


def test_a_batch_write_of_26_requests_over_two_tables_is_refused_whole(ddb):
    items = {TABLE: [put(f"p{i}") for i in range(13)], OTHER: [put(f"p{i}") for i in range(13)]}
    assert refused(ddb.batch_write_item, RequestItems=items) == "Too many items requested for the BatchWriteItem call"
    assert count(ddb) == count(ddb, OTHER) == 0


def test_a_batch_write_of_25_requests_is_written(ddb):
    answer = ddb.batch_write_item(
        RequestItems={TABLE: [put(f"p{i}") for i in range(20)], OTHER: [put(f"q{i}") for i in range(5)]}
    )
    assert answer["UnprocessedItems"] == {}
    assert (count(ddb), count(ddb, OTHER)) == (20, 5)


@pytest.mark.parametrize(
    "requests",
    [
        [put("p", status="PENDING"), put("p", status="SENT")],  # one key, other attributes
        [put("p"), {"DeleteRequest": {"Key": key("p")}}],  # a put and a delete of one item
        [{"DeleteRequest": {"Key": key("p")}}, {"DeleteRequest": {"Key": key("p")}}],
    ],
    ids=["two-puts", "put-and-delete", "two-deletes"],
)
def test_a_batch_write_naming_one_item_twice_is_refused_whole(ddb, requests):
    message = refused(ddb.batch_write_item, RequestItems={TABLE: [put("other"), *requests]})
    assert message == "Provided list of item keys contains duplicates"
    assert count(ddb) == 0


def test_one_key_in_two_tables_is_no_duplicate(ddb):
    answer = ddb.batch_write_item(RequestItems={TABLE: [put("p")], OTHER: [put("p")]})
    assert answer["UnprocessedItems"] == {}
    assert (count(ddb), count(ddb, OTHER)) == (1, 1)


def test_a_batch_get_of_101_keys_is_refused(ddb):
    message = refused(ddb.batch_get_item, RequestItems={TABLE: {"Keys": [key(f"p{i}") for i in range(101)]}})
    assert "Member must have length less than or equal to 100" in message
    items = {TABLE: {"Keys": [key(f"p{i}") for i in range(60)]}, OTHER: {"Keys": [key(f"p{i}") for i in range(41)]}}
    assert refused(ddb.batch_get_item, RequestItems=items) == "Too many items requested for the BatchGetItem call"
    assert ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key(f"p{i}") for i in range(100)]}})["Responses"] == {
        TABLE: []
    }


# -- stale reads --------------------------------------------------------------------------------------------------


def status_read(client: Any, consistent: bool, pk: str = "p") -> str | None:
    item = client.get_item(TableName=TABLE, Key=key(pk), ConsistentRead=consistent).get("Item")
    return None if item is None else item["status"]["S"]


LAG_MS = 3_000  # reads take ~10 ms each in-process: the states of the last seconds stay within reach


def write_twice(client: Any, pause_s: float = 0.8) -> None:
    """p: absent, then PENDING for ``pause_s``, then SENT for ``pause_s``: with a lag of ``LAG_MS``, a stale read
    answers any of the three."""
    client.put_item(TableName=TABLE, Item={**key("p"), "status": {"S": "PENDING"}})
    time.sleep(pause_s)
    client.update_item(
        TableName=TABLE,
        Key=key("p"),
        UpdateExpression="SET #s = :sent",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":sent": {"S": "SENT"}},
    )
    time.sleep(pause_s)


def test_an_eventually_consistent_get_may_answer_an_older_version_or_absent(ddb):
    with stale_reads(lag_ms=LAG_MS, probability=1.0, seed=1):
        write_twice(ddb)
        seen = Counter(status_read(ddb, consistent=False) for _ in range(40))
    assert set(seen) == {None, "PENDING", "SENT"}, seen  # each state of the last second, absent too
    assert counters()["stale_reads"] >= seen["PENDING"] + seen[None]


def test_a_consistent_read_is_never_stale(ddb):
    with stale_reads(lag_ms=LAG_MS, probability=1.0, seed=2):
        write_twice(ddb)
        assert {status_read(ddb, consistent=True) for _ in range(40)} == {"SENT"}
        batch = ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key("p")], "ConsistentRead": True}})
        query = ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": "p"}},
            ConsistentRead=True,
        )
        scan = ddb.scan(TableName=TABLE, ConsistentRead=True)
    for items in (batch["Responses"][TABLE], query["Items"], scan["Items"]):
        assert [item["status"]["S"] for item in items] == ["SENT"]
    assert counters()["stale_reads"] == 0


def test_every_eventually_consistent_read_may_be_stale(ddb):
    def reads() -> dict[str, set[str | None]]:
        batch = ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key("p")]}})["Responses"][TABLE]
        query = ddb.query(
            TableName=TABLE, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
        )
        scan = ddb.scan(TableName=TABLE)["Items"]
        return {
            name: {item["status"]["S"] for item in items} or {None}
            for name, items in (("batch", batch), ("query", query["Items"]), ("scan", scan))
        }

    with stale_reads(lag_ms=LAG_MS, probability=1.0, seed=3):
        write_twice(ddb)
        seen: dict[str, set[str | None]] = {"batch": set(), "query": set(), "scan": set()}
        for _ in range(20):
            for name, states in reads().items():
                seen[name] |= states
    assert all(states == {None, "PENDING", "SENT"} for states in seen.values()), seen


def test_a_deleted_item_may_still_be_read_and_a_transaction_is_recorded(ddb):
    with stale_reads(lag_ms=LAG_MS, probability=1.0, seed=4):
        ddb.put_item(TableName=TABLE, Item={**key("p"), "status": {"S": "SENT"}})
        ddb.transact_write_items(
            TransactItems=[{"Put": {"TableName": TABLE, "Item": {**key("t"), "status": {"S": "T"}}}}]
        )
        time.sleep(0.8)
        ddb.delete_item(TableName=TABLE, Key=key("p"))
        time.sleep(0.8)
        deleted = Counter(status_read(ddb, consistent=False) for _ in range(30))
        created = Counter(status_read(ddb, consistent=False, pk="t") for _ in range(30))
    assert deleted["SENT"] and deleted[None], deleted
    assert created["T"] and created[None], created


def test_conditions_see_the_latest_version(ddb):
    with stale_reads(lag_ms=LAG_MS, probability=1.0, seed=5):
        write_twice(ddb)
        ddb.update_item(
            TableName=TABLE,
            Key=key("p"),
            UpdateExpression="SET n = :one",
            ConditionExpression="#s = :sent",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":sent": {"S": "SENT"}, ":one": {"N": "1"}},
        )
    assert status_read(ddb, consistent=True) == "SENT"


def test_past_the_lag_reads_are_current_and_off_means_never_stale(ddb):
    with stale_reads(lag_ms=150, probability=1.0, seed=6):
        write_twice(ddb, pause_s=0)
        time.sleep(0.3)
        assert {status_read(ddb, consistent=False) for _ in range(20)} == {"SENT"}
    write_twice(ddb, pause_s=0)
    assert {status_read(ddb, consistent=False) for _ in range(20)} == {"SENT"}
    assert counters()["stale_reads"] == 0


# -- engine faults ------------------------------------------------------------------------------------------------


def test_a_share_of_a_batch_write_comes_back_unprocessed_and_can_be_sent_again(ddb):
    requests = [put(f"p{i}") for i in range(25)]
    with engine_faults(unprocessed=0.4, seed=7):
        answer = ddb.batch_write_item(RequestItems={TABLE: requests})
        left = answer["UnprocessedItems"].get(TABLE, [])
        assert 0 < len(left) < 25
        assert count(ddb) == 25 - len(left)
        assert all(request in requests for request in left)
        for _ in range(20):
            if not left:
                break
            left = ddb.batch_write_item(RequestItems={TABLE: left})["UnprocessedItems"].get(TABLE, [])
    assert left == []
    assert count(ddb) == 25
    assert counters()["unprocessed"] > 0


def test_a_share_of_a_batch_get_comes_back_unprocessed(ddb):
    ddb.batch_write_item(RequestItems={TABLE: [put(f"p{i}", status="SENT") for i in range(20)]})
    keys = [key(f"p{i}") for i in range(20)]
    with engine_faults(unprocessed=0.4, seed=8):
        answer = ddb.batch_get_item(RequestItems={TABLE: {"Keys": keys, "ProjectionExpression": "pk, sk"}})
    found = answer["Responses"][TABLE]
    left = answer["UnprocessedKeys"][TABLE]
    assert 0 < len(left["Keys"]) < 20
    assert left["ProjectionExpression"] == "pk, sk"  # the rest of the request, to send again as it is
    assert {i["pk"]["S"] for i in found} | {k["pk"]["S"] for k in left["Keys"]} == {f"p{i}" for i in range(20)}
    assert not {i["pk"]["S"] for i in found} & {k["pk"]["S"] for k in left["Keys"]}


def test_a_batch_with_nothing_processed_is_throttled(ddb):
    with engine_faults(unprocessed=1.0), pytest.raises(botocore.exceptions.ClientError) as caught:
        ddb.batch_write_item(RequestItems={TABLE: [put("p")]})
    assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert count(ddb) == 0


def test_item_operations_are_throttled_and_the_control_plane_is_not(ddb):
    codes = Counter()
    with engine_faults(throttle=1.0, seed=9):
        for _ in range(10):
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                ddb.get_item(TableName=TABLE, Key=key("p"))
            codes[caught.value.response["Error"]["Code"]] += 1
        with pytest.raises(botocore.exceptions.ClientError):
            ddb.put_item(TableName=TABLE, Item=key("p"))
        assert ddb.describe_table(TableName=TABLE)["Table"]["TableName"] == TABLE
    assert set(codes) <= {"ProvisionedThroughputExceededException", "ThrottlingException"} and codes
    assert counters()["throttled"] == 11
    assert ddb.get_item(TableName=TABLE, Key=key("p")).get("Item") is None  # the throttled put wrote nothing


def test_boto3_retries_an_occasional_throttle(ddb):
    client = boto3.client("dynamodb", region_name="us-east-1", config=Config(retries={"max_attempts": 10}))
    with engine_faults(throttle=0.3, seed=10):
        for i in range(10):
            client.put_item(TableName=TABLE, Item=key(f"p{i}"))
    assert count(ddb) == 10
    assert counters()["throttled"] > 0


# -- from the environment and over HTTP ---------------------------------------------------------------------------


def test_settings_from_the_environment():
    configure_from_environment(
        {
            moto_dynamodb.STALE_READS_VARIABLE: "lag_ms=250, probability=0.5,seed=3",
            moto_dynamodb.FAULTS_VARIABLE: "throttle=0.02",
        }
    )
    assert moto_dynamodb.describe()["stale_reads"] == {"lag_ms": 250.0, "probability": 0.5, "seed": 3}
    assert moto_dynamodb.describe()["faults"] == {"throttle": 0.02, "unprocessed": 0.0, "seed": None}
    configure_from_environment({})  # unset: unchanged
    assert moto_dynamodb.describe()["stale_reads"]["lag_ms"] == 250.0
    for bad in ("lag=3", "lag_ms=x", "probability=2", "lag_ms"):
        with pytest.raises(ValueError, match=r"LOCAL_DYNAMODB_STALE_READS|probability"):
            configure_from_environment({moto_dynamodb.STALE_READS_VARIABLE: bad})


def test_python_m_local_stack_refuses_a_malformed_setting(monkeypatch, capsys):
    from local_stack.__main__ import main

    monkeypatch.setenv(moto_dynamodb.FAULTS_VARIABLE, "throttle=lots")
    assert main([]) == 2
    assert "LOCAL_DYNAMODB_FAULTS: throttle='lots' is not a number" in capsys.readouterr().err


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The local stack's AWS endpoint (moto's server) on a free port, started with stale reads from the
    environment."""
    from local_stack.stack import _MotoServer

    monkeypatch.setenv(moto_dynamodb.STALE_READS_VARIABLE, f"lag_ms={LAG_MS},probability=1")
    server = _MotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    urllib3.request("POST", f"{url}/moto-api/reset", timeout=10)
    try:
        yield url
    finally:
        server.close()


def test_the_aws_endpoint_takes_its_settings_from_the_environment_and_over_http(endpoint):
    control = f"{endpoint}{moto_dynamodb.CONTROL_PATH}"
    assert json.loads(urllib3.request("GET", control).data)["stale_reads"]["lag_ms"] == LAG_MS
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=ONE_TRY,
    )
    _create(client, TABLE)
    write_twice(client)
    assert {status_read(client, consistent=False) for _ in range(30)} == {None, "PENDING", "SENT"}
    assert {status_read(client, consistent=True) for _ in range(10)} == {"SENT"}

    answer = urllib3.request("POST", control, body=json.dumps({"faults": {"throttle": 1}, "reset_counters": True}))
    assert answer.status == 200
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.get_item(TableName=TABLE, Key=key("p"))
    assert caught.value.response["Error"]["Code"] in ("ProvisionedThroughputExceededException", "ThrottlingException")
    assert json.loads(urllib3.request("GET", control).data)["counters"]["throttled"] == 1

    assert urllib3.request("POST", control, body=b'{"faults": {"throttle": 7}}').status == 400
    assert urllib3.request("POST", control, body=b'{"nonsense": 1}').status == 400
    off = json.loads(urllib3.request("DELETE", control).data)
    assert off["stale_reads"]["lag_ms"] == 0 and off["faults"]["throttle"] == 0
    assert {status_read(client, consistent=False) for _ in range(10)} == {"SENT"}
