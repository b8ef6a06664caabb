"""IAM on the local stack: each function's AWS calls are allowed only by its policy in the template.

Each check runs on a stack with the check off (``lax``: what the local stack did before, every call allowed) and
on (``strict``), so each test shows the rule failing on the lax stack's behaviour and holding on the strict one.
Both stacks run a copy of template.yaml whose ConversionFunction lacks ``dynamodb:UpdateItem``, which its code
needs: the function's own calls, made in its worker with its own key, are what the check holds to the policy.
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.iam import (
    MANAGED_POLICIES,
    AwsRequest,
    EvaluatorError,
    IamCheck,
    PolicyEvaluator,
    evaluator_unavailable,
    function_policies,
    session_report,
    targets,
)
from local_stack.stack import LocalStack
from local_stack.template import ACCOUNT_ID, Resource, Template
from tests.support.stack_client import TOKEN, Api, events_of, new_id, register_connected_keys, wait_for

ROOT = Path(__file__).resolve().parents[2]
IDENTIFY = "IdentifyFunction"
CONVERSION = "ConversionFunction"
TABLE_ARN = f"arn:aws:dynamodb:us-east-1:{ACCOUNT_ID}:table/segment-forwarder-local-DedupTable"
ROLE = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/segment-forwarder-local-{{0}}Role/segment-forwarder-local-{{0}}"
# IAM_TEST_LAX=1 runs the strict tests on a stack without the check: each must then fail (the rule is what they test).
LAX_EVERYWHERE = os.environ.get("IAM_TEST_LAX") == "1"


def _template_without_conversion_update_item(folder: Path) -> Path:
    """template.yaml (expanded: its loops write the three ingest functions once) with ConversionFunction's DedupState
    statement lacking dynamodb:UpdateItem, and code paths made absolute, so that the copy runs the repository's
    functions. Written as JSON, which a YAML loader reads as well."""
    document = copy.deepcopy(Template.load().document)
    for spec in document["Resources"].values():
        properties = spec.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str):
                properties[key] = f"{ROOT}/{properties[key]}"
    statement = document["Resources"][CONVERSION]["Properties"]["Policies"][0]["Statement"][0]
    statement["Action"] = [action for action in statement["Action"] if action != "dynamodb:UpdateItem"]
    path = folder / "template.yaml"
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")
    actions = Template.load(path).functions()[CONVERSION]["Properties"]["Policies"][0]["Statement"][0]["Action"]
    assert actions == ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"]
    return path


@dataclass(frozen=True)
class Run:
    """A stack and whether the tests hold it to the IAM rule (``strict``) or show the lax behaviour."""

    stack: LocalStack
    strict: bool

    @property
    def iam(self) -> IamCheck:
        """The stack's IAM check (fails the test when the stack has none)."""
        assert self.stack.iam is not None, "the strict stack runs without its IAM check"
        return self.stack.iam


@pytest.fixture(scope="module", params=["lax", "strict"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    template = _template_without_conversion_update_item(tmp_path_factory.mktemp("iam"))
    with LocalStack(
        api_port=0,
        sink_port=0,
        aws_port=0,
        token=TOKEN,
        template_path=template,
        iam_check=request.param == "strict" and not LAX_EVERYWHERE,
        log=print,
    ) as started:
        if started.iam is not None:
            started.iam.provoked = True  # denials on purpose; calls with the functions' keys made by the tests
        register_connected_keys(started)
        yield Run(started, strict=request.param == "strict")


def _denied(call: Any) -> ClientError | None:
    """The AccessDenied error of ``call()``, None when it succeeded."""
    try:
        call()
    except ClientError as error:
        if "AccessDenied" in error.response["Error"]["Code"]:
            return error
        raise
    return None


def _message(function: str, action: str, resource: str) -> str:
    return (
        f"User: {ROLE.format(function)} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def test_a_function_may_not_call_an_action_its_policy_lacks(run):
    dynamodb = run.stack.function_client(IDENTIFY, "dynamodb")
    key = {"pk": {"S": new_id("pk")}, "sk": {"S": "x"}}

    error = _denied(lambda: dynamodb.delete_item(TableName=run.stack.table_name, Key=key))

    if not run.strict:
        assert error is None  # lax: the identify function deleted from the table
        return
    assert error is not None, "the identify function's policy has no dynamodb:DeleteItem"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["Error"]["Message"] == _message(IDENTIFY, "dynamodb:DeleteItem", TABLE_ARN)


def test_a_function_may_not_read_a_secret_outside_its_prefix(run):
    other = f"another-stack/{new_id('ws')}"
    arn = run.stack.client("secretsmanager").create_secret(Name=other, SecretString="{}")["ARN"]
    secrets = run.stack.function_client(IDENTIFY, "secretsmanager")

    error = _denied(lambda: secrets.get_secret_value(SecretId=other))

    if not run.strict:
        assert error is None
        return
    assert error is not None
    assert error.response["Error"] == {
        "Code": "AccessDeniedException",
        "Message": _message(IDENTIFY, "secretsmanager:GetSecretValue", arn),  # the ARN with moto's random suffix
    }


def test_a_function_may_not_send_to_another_functions_queue(run):
    sqs = run.stack.function_client(IDENTIFY, "sqs")
    queue = run.stack.queue_url("AssignmentQueue")
    queue_arn = run.stack.resources["AssignmentQueue"].attributes["Arn"]

    error = _denied(lambda: sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "1", "MessageBody": "{}"}]))

    if not run.strict:
        assert error is None
        return
    assert error is not None  # SendMessageBatch is authorised as sqs:SendMessage, on the queue's ARN
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Message"] == _message(IDENTIFY, "sqs:SendMessage", queue_arn)


def test_what_the_policy_grants_is_allowed_and_recorded(run):
    dynamodb = run.stack.function_client(IDENTIFY, "dynamodb")
    secrets = run.stack.function_client(IDENTIFY, "secretsmanager")
    sqs = run.stack.function_client(IDENTIFY, "sqs")
    item = {"pk": {"S": new_id("pk")}, "sk": {"S": "x"}}

    dynamodb.put_item(TableName=run.stack.table_name, Item=item)
    dynamodb.batch_get_item(RequestItems={run.stack.table_name: {"Keys": [item]}})
    secret = secrets.get_secret_value(SecretId=f"{run.stack.secret_prefix}/demo")
    sqs.send_message(QueueUrl=run.stack.dlq_url("IdentifyQueue"), MessageBody="{}")

    if not run.strict:
        return
    decided = {(d.function, d.action, d.resource): d.allowed for d in run.iam.decisions()}
    assert decided[(IDENTIFY, "dynamodb:PutItem", TABLE_ARN)] is True
    assert decided[(IDENTIFY, "dynamodb:BatchGetItem", TABLE_ARN)] is True
    assert decided[(IDENTIFY, "secretsmanager:GetSecretValue", secret["ARN"])] is True
    dlq_arn = run.stack.resources["IdentifyDeadLetterQueue"].attributes["Arn"]
    assert decided[(IDENTIFY, "sqs:SendMessage", dlq_arn)] is True


def test_the_stacks_own_credentials_are_not_checked(run):
    before = len(run.iam.decisions()) if run.strict else 0
    key = {"pk": {"S": new_id("pk")}, "sk": {"S": "x"}}

    run.stack.client("dynamodb").delete_item(TableName=run.stack.table_name, Key=key)  # no function may

    if run.strict:
        assert len(run.iam.decisions()) == before  # nothing decided, nothing recorded


def test_the_functions_own_calls_are_held_to_its_policy(run):
    api = Api(run.stack.api_url, TOKEN)
    visitor = new_id("v")
    body = {
        "workspace_id": "demo",
        "visitor_id": visitor,
        "conversion_id": "c-signup",
        "conversion_type": "CLICK",
        "origin_url": "https://shop.example.com/pricing",
    }

    status, answer = api.post("/v1/conversions", body)

    if not run.strict:
        assert (status, answer["status"]) == (200, "delivered")  # lax: the missing grant goes unnoticed
        wait_for(lambda: events_of(run.stack, visitor))
        return
    assert (status, answer.get("status")) != (200, "delivered")
    denied = {(d.function, d.action, d.resource) for d in run.iam.denials()}
    assert (CONVERSION, "dynamodb:UpdateItem", TABLE_ARN) in denied
    time.sleep(0.5)
    assert events_of(run.stack, visitor) == []


def test_unused_grants_are_named_after_the_template(run):
    if not run.strict:
        pytest.skip("the lax stack decides nothing")
    item = {"pk": {"S": new_id("pk")}, "sk": {"S": "x"}}
    run.stack.function_client(IDENTIFY, "dynamodb").put_item(TableName=run.stack.table_name, Item=item)
    run.stack.function_client(IDENTIFY, "sqs").send_message(
        QueueUrl=run.stack.dlq_url("IdentifyQueue"), MessageBody="{}"
    )

    unused = {str(grant) for grant in run.iam.unused_grants()}

    assert (
        "ConnectionFunction secretsmanager:RestoreSecret on secret:segment-forwarder/segment-forwarder-local/*"
        in unused
    )
    assert "IdentifyFunction dynamodb:PutItem on DedupTable" not in unused
    assert "IdentifyFunction sqs:SendMessage on IdentifyDeadLetterQueue" not in unused
    assert "IdentifyFunction sqs:SendMessage on IdentifyQueue" in unused  # the DLQ's use is not the queue's
    run.iam.provoked = False
    try:
        report = list(session_report([run.iam]))
    finally:
        run.iam.provoked = True
    assert re.fullmatch(r"IAM: \d+ AWS calls of functions checked on 1 local stack\(s\), \d+ denied; .*", report[0])
    assert any(line.startswith("IAM: denied: ConversionFunction dynamodb:UpdateItem on ") for line in report)
    assert report[-1].startswith("IAM: granted but never used: ")
    assert "ConnectionFunction secretsmanager:RestoreSecret on secret:" in report[-1]


# -- the policies are those CloudFormation deploys ------------------------------------------------------------------


def _fake_created(template: Template) -> dict[str, Resource]:
    created = {}
    for logical_id in template.of_type("AWS::DynamoDB::Table"):
        name = template.physical_name(logical_id)
        created[logical_id] = Resource(
            logical_id, "table", name, {"Arn": f"arn:aws:dynamodb:us-east-1:{ACCOUNT_ID}:table/{name}"}
        )
    for logical_id in template.of_type("AWS::SQS::Queue"):
        name = template.physical_name(logical_id)
        arn = f"arn:aws:sqs:us-east-1:{ACCOUNT_ID}:{name}"
        created[logical_id] = Resource(
            logical_id, "queue", f"http://q/{ACCOUNT_ID}/{name}", {"Arn": arn, "QueueName": name}
        )
    return created


@pytest.mark.parametrize("parameters", [{}, {"SecretPrefix": "shared/connections"}], ids=["default", "prefix"])
def test_the_checked_policies_are_the_roles_the_sam_transform_generates(parameters):
    from tests.component.test_security import sam_transform  # skips without the SAM CLI venv

    transformed = sam_transform()
    ours = Template.load(parameters=parameters)
    theirs = Template(transformed, parameters=parameters)
    created = _fake_created(ours)

    for function in ours.functions():
        role = transformed["Resources"][f"{function}Role"]["Properties"]
        expected_inline = [
            {"name": policy["PolicyName"], "policy": theirs.resolve(policy["PolicyDocument"], created)}
            for policy in role.get("Policies", [])
        ]
        expected_managed = {str(theirs.resolve(arn, created)) for arn in role.get("ManagedPolicyArns", [])}
        policies = function_policies(ours, function, created)
        inline = [p for p in policies if not any(arn.endswith("/" + p["name"]) for arn in MANAGED_POLICIES)]
        managed = {arn for arn in MANAGED_POLICIES if any(arn.endswith("/" + p["name"]) for p in policies)}

        assert inline == expected_inline, function
        assert managed == expected_managed, function


# -- requests to (action, resource) -------------------------------------------------------------------------------


def _request(service: str, operation: str, params: dict[str, Any]) -> AwsRequest:
    return AwsRequest("ASIAEXAMPLE", "us-east-1", service, operation, params, "/", True)


def _no_secret(region: str, secret_id: str) -> str | None:
    return None


TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/"
QUEUE_URL = "http://127.0.0.1:4566/123456789012/q1"
QUEUE = "arn:aws:sqs:us-east-1:123456789012:q1"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"


@pytest.mark.parametrize(
    ("service", "operation", "params", "expected"),
    [
        ("dynamodb", "PutItem", {"TableName": "t"}, [("dynamodb:PutItem", TABLE + "t")]),
        ("dynamodb", "Query", {"TableName": "t", "IndexName": "i"}, [("dynamodb:Query", TABLE + "t/index/i")]),
        (
            "dynamodb",
            "BatchWriteItem",
            {"RequestItems": {"a": [], "b": []}},
            [("dynamodb:BatchWriteItem", TABLE + "a"), ("dynamodb:BatchWriteItem", TABLE + "b")],
        ),
        (
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"Put": {"TableName": "a"}}, {"ConditionCheck": {"TableName": "b"}}]},
            [("dynamodb:PutItem", TABLE + "a"), ("dynamodb:ConditionCheckItem", TABLE + "b")],
        ),
        ("dynamodb", "ListTables", {}, [("dynamodb:ListTables", "*")]),
        ("sqs", "SendMessageBatch", {"QueueUrl": QUEUE_URL}, [("sqs:SendMessage", QUEUE)]),
        ("sqs", "ChangeMessageVisibilityBatch", {"QueueUrl": QUEUE_URL}, [("sqs:ChangeMessageVisibility", QUEUE)]),
        ("sqs", "DeleteMessageBatch", {"QueueUrl": QUEUE_URL}, [("sqs:DeleteMessage", QUEUE)]),
        ("sqs", "GetQueueUrl", {"QueueName": "q1"}, [("sqs:GetQueueUrl", QUEUE)]),
        (
            "secretsmanager",
            "GetSecretValue",
            {"SecretId": "p/ws"},
            [("secretsmanager:GetSecretValue", SECRET + "p/ws")],
        ),
        (
            "secretsmanager",
            "BatchGetSecretValue",
            {"SecretIdList": ["p/a"]},
            [("secretsmanager:BatchGetSecretValue", "*"), ("secretsmanager:GetSecretValue", SECRET + "p/a")],
        ),
    ],
)
def test_requests_are_authorised_as_aws_names_their_actions_and_resources(service, operation, params, expected):
    assert targets(_request(service, operation, params), _no_secret) == expected


def test_an_existing_secret_is_authorised_by_its_full_arn_and_a_new_one_with_a_suffix():
    full = SECRET + "p/ws-AbCdEf"

    def lookup(region: str, secret_id: str) -> str | None:
        return full if secret_id in ("p/ws", full, SECRET + "p/ws") else None

    for secret_id in ("p/ws", full, SECRET + "p/ws"):
        assert targets(_request("secretsmanager", "DescribeSecret", {"SecretId": secret_id}), lookup) == [
            ("secretsmanager:DescribeSecret", full)
        ]
    [(action, arn)] = targets(_request("secretsmanager", "CreateSecret", {"Name": "p/new"}), lookup)
    assert action == "secretsmanager:CreateSecret"
    assert re.fullmatch(re.escape(SECRET + "p/new-") + "[A-Za-z]{6}", arn)


def test_the_query_protocol_names_its_action_in_the_form():
    from local_stack.iam import parse_request

    environ = {
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=ASIAKEY/20250101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
    }
    request = parse_request(environ, f"Action=SendMessage&QueueUrl={QUEUE_URL}&MessageBody=x".encode())

    assert request is not None and not request.json_protocol
    assert (request.access_key_id, request.service, request.operation) == ("ASIAKEY", "sqs", "SendMessage")
    assert targets(request, _no_secret) == [("sqs:SendMessage", QUEUE)]


# -- the evaluator ----------------------------------------------------------------------------------------------


def test_the_evaluator_is_iam_simulate_and_refuses_what_iam_does_not_know():
    evaluator = PolicyEvaluator.shared()
    policy = json.dumps(
        [
            {
                "name": "p",
                "policy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET + "p/*"},
                        {
                            "Effect": "Deny",
                            "Action": "secretsmanager:GetSecretValue",
                            "Resource": SECRET + "p/blocked-*",
                        },
                    ],
                },
            }
        ]
    )
    principal = ROLE.format("F")

    assert evaluator.decide(principal, "secretsmanager:GetSecretValue", SECRET + "p/ws-AbCdEf", policy)[0] == "Allowed"
    assert (
        evaluator.decide(principal, "secretsmanager:GetSecretValue", SECRET + "q/ws-AbCdEf", policy)[0]
        == "ImplicitlyDenied"
    )
    assert (
        evaluator.decide(principal, "secretsmanager:GetSecretValue", SECRET + "p/blocked-x", policy)[0]
        == "ExplicitlyDenied"
    )
    # No IAM action is called SendMessageBatch: the batch forms must be mapped to their single forms.
    assert evaluator.decide(principal, "sqs:SendMessageBatch", QUEUE, policy)[0] == "Error"


def test_without_the_evaluator_the_reason_is_told(tmp_path):
    reason = evaluator_unavailable(tmp_path)

    assert (
        reason is not None
        and "@cloud-copilot/iam-simulate is not installed" in reason
        and "make iam-evaluator" in reason
    )
    with pytest.raises(EvaluatorError, match="make iam-evaluator"):
        PolicyEvaluator(node_dir=tmp_path)
