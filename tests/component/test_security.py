"""Security properties of what CloudFormation deploys: template.yaml after the real SAM transform.

The transform is aws-sam-translator 1.115.0, the one ``sam validate`` and ``sam build`` use, run in the SAM CLI's
own virtual environment (``.venv-sam``, created by ``make validate``/``make test``) in a subprocess. It is not
installed into ``.venv``: its pin ``pydantic~=2.13.3`` would downgrade the pydantic that moto's OpenAPI validator
uses there. The transform runs offline: local code paths are replaced by S3 URIs (as ``sam package`` does before
CloudFormation sees the template) and managed policy names resolve through a static map. ``AWS::LanguageExtensions``
(the ``Fn::ForEach`` loops) is expanded first by the local stack's ``expand_language_extensions``, as CloudFormation
expands it before the SAM transform.

Also a tool: ``python tests/component/test_security.py [--passthrough-metadata]`` prints the transformed template
(``make security`` scans it with checkov; with the flag, each SAM resource's Metadata, and so its checkov skips,
is copied to the resources generated from it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

TRANSFORM = r"""
import json, sys
import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

sys.path.insert(0, sys.argv[3])  # the repository: CloudFormation runs AWS::LanguageExtensions before the SAM transform
from local_stack.template import expand_language_extensions
template = expand_language_extensions(yaml_parse(open(sys.argv[1]).read()))
template["Transform"] = [name for name in template["Transform"] if name != "AWS::LanguageExtensions"]
for resource in template["Resources"].values():
    properties = resource.get("Properties", {})
    for kind, prop in (("AWS::Serverless::Function", "CodeUri"), ("AWS::Serverless::LayerVersion", "ContentUri")):
        if resource["Type"] == kind and isinstance(properties.get(prop), str):
            properties[prop] = "s3://bucket/" + properties[prop].strip("/")
managed = {  # names a template may list under Policies; resolved offline instead of by IAM ListPolicies
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSLambdaSQSQueueExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}
translator = Translator(None, Parser(), plugins=[], boto_session=boto3.session.Session(region_name="us-east-1"))
output = translator.translate(
    template, parameter_values={}, passthrough_metadata=sys.argv[2] == "1", get_managed_policy_map=lambda: managed
)
json.dump(output, sys.stdout)
"""

INGEST = {"IdentifyFunction": "Identify", "AssignmentFunction": "Assignment", "ConversionFunction": "Conversion"}
CONNECTION = "ConnectionFunction"
ROUTES = {
    ("post", "/v1/identify"): "IdentifyFunction",
    ("post", "/v1/assignments"): "AssignmentFunction",
    ("post", "/v1/conversions"): "ConversionFunction",
    ("put", "/v1/workspaces/{workspace_id}/segment"): CONNECTION,
    ("get", "/v1/workspaces/{workspace_id}/segment"): CONNECTION,
    ("delete", "/v1/workspaces/{workspace_id}/segment"): CONNECTION,
    ("post", "/v1/workspaces/{workspace_id}/segment/test"): CONNECTION,
    ("delete", "/v1/workspaces/{workspace_id}/visitors/{visitor_id}"): CONNECTION,
}
# The effective secret prefix: segment-forwarder/<stack name> unless the SecretPrefix parameter is set.
EFFECTIVE_PREFIX = {
    "Fn::If": ["StackSecretPrefix", {"Fn::Sub": "segment-forwarder/${AWS::StackName}"}, {"Ref": "SecretPrefix"}]
}
SECRETS_UNDER_PREFIX = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Prefix}/*",
        {"Prefix": EFFECTIVE_PREFIX},
    ]
}
DEDUP_TABLE = {"Fn::GetAtt": ["DedupTable", "Arn"]}
# Secrets Manager actions that change nothing; every other one writes (Create/Put/Update/Delete/Restore/Tag...).
SECRETS_OF_OTHER_STACKS = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${Prefix}/*/*",
        {"Prefix": EFFECTIVE_PREFIX},
    ]
}
SECRETS_READ_ACTIONS = {
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
    "secretsmanager:DescribeSecret",
    "secretsmanager:ListSecrets",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:GetResourcePolicy",
    "secretsmanager:GetRandomPassword",
}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SQS_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
# The only policies allowed to use Resource "*": AWS-managed ones that SAM attaches by itself.
ACCEPTED_MANAGED_POLICIES = {
    BASIC_EXECUTION: (
        "logs:CreateLogGroup, logs:CreateLogStream, logs:PutLogEvents on *: SAM attaches it to every function role "
        "so that the function can write its CloudWatch logs"
    ),
    SQS_EXECUTION: (
        "sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes (+ the logs actions) on *: SAM attaches it for "
        "an SQS event; Lambda's poller receives and deletes the batch with the function's role. No sqs:SendMessage, "
        "so 'send only to its own queues' still holds; SAM cannot scope it without replacing the whole role"
    ),
}


def sam_transform(passthrough_metadata: bool = False) -> dict[str, Any]:
    """template.yaml as CloudFormation expands it (JSON); skips the calling test if the SAM CLI venv is missing."""
    if not SAM_PYTHON.exists():
        pytest.skip(f"{SAM_PYTHON} missing: the SAM CLI venv holds the SAM translator; `make validate` creates it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", TRANSFORM, str(TEMPLATE), "1" if passthrough_metadata else "0", str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"SAM transform failed:\n{done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    return sam_transform()


@pytest.fixture(scope="module")
def resources(transformed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return transformed["Resources"]


def of_type(resources: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in resources.items() if r["Type"] == kind}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role's inline policies."""
    return [s for p in role["Properties"].get("Policies", []) for s in as_list(p["PolicyDocument"]["Statement"])]


def role_of(resources: dict[str, dict[str, Any]], function: str) -> dict[str, Any]:
    role_ref = resources[function]["Properties"]["Role"]
    assert role_ref == {"Fn::GetAtt": [f"{function}Role", "Arn"]}, f"{function}: unexpected role {role_ref}"
    return resources[f"{function}Role"]


def grants(role: dict[str, Any], service: str, effect: str = "Allow") -> list[tuple[str, Any]]:
    """(action, resource) pairs the role's inline policies allow (or, with ``effect="Deny"``, deny) for one service."""
    pairs = []
    for statement in statements(role):
        if statement.get("Effect") != effect:
            continue
        for action in as_list(statement["Action"]):
            if action.split(":")[0] == service:
                pairs += [(action, resource) for resource in as_list(statement["Resource"])]
    return pairs


# -- the HTTP API ---------------------------------------------------------------------------------------------


def test_every_route_requires_iam_auth(resources):
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    for api in of_type(resources, "AWS::ApiGatewayV2::Api").values():
        body = api["Properties"]["Body"]
        schemes = body["components"]["securitySchemes"]
        assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
        assert set(schemes) == {"AWS_IAM"}, "no other authorizer may exist"
        assert "security" not in body or body["security"] == [{"AWS_IAM": []}]
        for path, operations in body["paths"].items():
            for method, operation in operations.items():
                routes[(method, path)] = operation
    # Routes declared as resources (none today: SAM puts them in the Body), if ever added.
    for name, route in of_type(resources, "AWS::ApiGatewayV2::Route").items():
        assert route["Properties"].get("AuthorizationType") == "AWS_IAM", f"{name} is not IAM-authorised"
    assert set(routes) == set(ROUTES), "a route was added or removed: cover it here"
    for key, operation in routes.items():
        assert operation.get("security") == [{"AWS_IAM": []}], f"{key} does not require SigV4"
        assert ROUTES[key] in json.dumps(operation["x-amazon-apigateway-integration"]["uri"])


def test_only_the_api_routes_may_invoke_the_functions(resources):
    permissions = of_type(resources, "AWS::Lambda::Permission")
    assert len(permissions) == len(ROUTES)
    for name, permission in permissions.items():
        props = permission["Properties"]
        assert props["Principal"] == "apigateway.amazonaws.com", name
        arn, variables = props["SourceArn"]["Fn::Sub"]
        assert variables["__ApiId__"] == {"Ref": "ForwarderApi"}, f"{name} is not limited to this API"
        method, path = arn.split("/", 2)[-1].split("/", 1)
        path = path.replace("*", "{workspace_id}", 1).replace("*", "{visitor_id}", 1)  # path parameters become *
        route = (method.lower(), "/" + path)
        assert ROUTES[route] == props["FunctionName"]["Ref"], f"{name} is not one route's"


# -- IAM ------------------------------------------------------------------------------------------------------


def test_managed_policies_are_only_the_accepted_aws_ones(resources):
    for function in [*INGEST, CONNECTION]:
        managed = role_of(resources, function)["Properties"].get("ManagedPolicyArns", [])
        assert set(managed) <= set(ACCEPTED_MANAGED_POLICIES), f"{function}: unreviewed managed policy {managed}"
        expected = {BASIC_EXECUTION, SQS_EXECUTION} if function in INGEST else {BASIC_EXECUTION}
        assert set(managed) == expected, function


def test_no_inline_statement_has_a_wildcard_action_or_resource(resources):
    roles = of_type(resources, "AWS::IAM::Role")
    assert set(roles) == {f"{f}Role" for f in [*INGEST, CONNECTION]}
    for name, role in roles.items():
        for statement in statements(role):
            assert statement["Effect"] in ("Allow", "Deny")
            assert "NotAction" not in statement and "NotResource" not in statement, name
            if statement["Effect"] == "Deny":  # a deny only takes away: a wildcard action there is no grant
                continue
            for action in as_list(statement["Action"]):
                assert action != "*" and not action.endswith(":*"), f"{name}: wildcard action {action}"
                assert "*" not in action, f"{name}: wildcard action {action}"
            for resource in as_list(statement["Resource"]):
                assert resource != "*", f"{name}: Resource '*' in {statement.get('Sid')}"


@pytest.mark.parametrize("function", INGEST)
def test_ingest_function_reads_secrets_only_under_the_prefix_and_writes_none(resources, function):
    secret_grants = grants(role_of(resources, function), "secretsmanager")
    assert secret_grants == [("secretsmanager:GetSecretValue", SECRETS_UNDER_PREFIX)]


def test_only_the_connection_function_writes_secrets_and_only_under_the_prefix(resources):
    writers = {}
    for function in [*INGEST, CONNECTION]:
        for action, resource in grants(role_of(resources, function), "secretsmanager"):
            assert resource == SECRETS_UNDER_PREFIX, f"{function}: {action} outside <prefix>/*"
            if action not in SECRETS_READ_ACTIONS:
                writers.setdefault(function, set()).add(action)
    assert set(writers) == {CONNECTION}
    assert writers[CONNECTION] == {
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:DeleteSecret",
        "secretsmanager:RestoreSecret",
    }


@pytest.mark.parametrize("function", [*INGEST, CONNECTION])
def test_no_function_reaches_secrets_deeper_than_a_workspace_under_the_prefix(resources, function):
    # With SecretPrefix=segment-forwarder (a stack deployed before per-stack prefixes), <prefix>/* would also match
    # segment-forwarder/<another stack>/<workspace>: the deny keeps every role to names one level under the prefix.
    role = role_of(resources, function)
    allowed = {action for action, _ in grants(role, "secretsmanager")}
    denied = grants(role, "secretsmanager", effect="Deny")
    assert denied and all(resource == SECRETS_OF_OTHER_STACKS for _, resource in denied)
    denied_actions = {action for action, _ in denied}
    assert denied_actions == {"secretsmanager:*"} or allowed <= denied_actions


@pytest.mark.parametrize("function", INGEST)
def test_ingest_function_sends_only_to_its_own_queue_and_dlq_and_backs_off_only_its_own_records(resources, function):
    kind = INGEST[function]
    sqs = grants(role_of(resources, function), "sqs")
    arn = {queue: json.dumps({"Fn::GetAtt": [queue, "Arn"]}) for queue in (f"{kind}Queue", f"{kind}DeadLetterQueue")}
    assert {action for action, _ in sqs} == {"sqs:SendMessage", "sqs:ChangeMessageVisibility"}
    sends = sorted(json.dumps(r) for action, r in sqs if action == "sqs:SendMessage")
    assert sends == sorted(arn.values())
    # ChangeMessageVisibility (the retry backoff) on the queue the function consumes, not on its DLQ nor elsewhere
    assert [json.dumps(r) for action, r in sqs if action == "sqs:ChangeMessageVisibility"] == [arn[f"{kind}Queue"]]
    source = resources[f"{function}Queue"]["Properties"]
    assert source["EventSourceArn"] == {"Fn::GetAtt": [f"{kind}Queue", "Arn"]}
    assert source["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "MaximumConcurrency"}}


def test_dynamodb_actions_only_on_the_dedup_table(resources):
    for function in [*INGEST, CONNECTION]:
        dynamodb = grants(role_of(resources, function), "dynamodb")
        assert all(resource == DEDUP_TABLE for _, resource in dynamodb), function
    # the connection function reads a workspace's health buckets and erases a visitor's facts: nothing else
    assert {action for action, _ in grants(role_of(resources, CONNECTION), "dynamodb")} == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
    }


def test_the_connection_function_erases_with_deletes_and_may_put_only_content_free_tombstones(resources):
    # BatchWriteItem (which includes PutRequest) would let it forge any fact; PutItem is bound to a tombstone's
    # attributes: no status, content or message id, so what it writes is never a fact
    role = role_of(resources, CONNECTION)
    erasure = [s for s in statements(role) if "dynamodb:PutItem" in as_list(s["Action"])]
    assert [as_list(s["Action"]) for s in erasure] == [["dynamodb:PutItem"]]
    condition = erasure[0]["Condition"]
    assert condition["ForAllValues:StringEquals"]["dynamodb:Attributes"] == [
        "pk",
        "sk",
        "erased_at",
        "generation",
        "expires_at",
    ]
    assert not any("BatchWriteItem" in a or "UpdateItem" in a for s in statements(role) for a in as_list(s["Action"]))


def test_each_role_touches_only_its_services(resources):
    for function in [*INGEST, CONNECTION]:
        services = {a.split(":")[0] for s in statements(role_of(resources, function)) for a in as_list(s["Action"])}
        assert services == (
            {"dynamodb", "sqs", "secretsmanager"} if function in INGEST else {"dynamodb", "secretsmanager"}
        )


# -- stacks never share secrets ------------------------------------------------------------------------------


def test_the_secret_prefix_defaults_to_one_per_stack_and_every_use_spells_the_same(transformed, resources):
    parameter = transformed["Parameters"]["SecretPrefix"]
    assert parameter["Default"] == ""
    assert transformed["Conditions"]["StackSecretPrefix"] == {"Fn::Equals": [{"Ref": "SecretPrefix"}, ""]}
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        assert function["Properties"]["Environment"]["Variables"]["SECRET_PREFIX"] == EFFECTIVE_PREFIX, name
    assert transformed["Outputs"]["SecretPrefix"]["Value"] == EFFECTIVE_PREFIX
    # Every secretsmanager grant is under the effective prefix (the tests above check each role's grants).
    grants_seen = [r for f in [*INGEST, CONNECTION] for _, r in grants(role_of(resources, f), "secretsmanager")]
    assert grants_seen and all(r == SECRETS_UNDER_PREFIX for r in grants_seen)


@pytest.mark.parametrize(
    ("stack_name", "parameter", "prefix"),
    [
        ("segment-forwarder", "", "segment-forwarder/segment-forwarder"),
        ("segment-forwarder-staging", "", "segment-forwarder/segment-forwarder-staging"),
        ("segment-forwarder-staging", "acme/prod-forwarder", "acme/prod-forwarder"),
    ],
)
def test_two_stacks_read_and_write_different_secrets_unless_told_otherwise(stack_name, parameter, prefix):
    from local_stack.template import Template

    template = Template.load(TEMPLATE, parameters={"SecretPrefix": parameter}, stack_name=stack_name)
    resolved = template.resolve(SECRETS_UNDER_PREFIX, {})

    assert template.secret_prefix == prefix
    assert resolved == f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{prefix}/*"
    env = template.resolve(template.document["Globals"]["Function"]["Environment"]["Variables"]["SECRET_PREFIX"], {})
    assert env == prefix


def test_outputs_name_the_api_and_every_queue_and_dlq_by_arn(transformed):
    outputs = {name: output["Value"] for name, output in transformed["Outputs"].items()}

    assert outputs["ApiId"] == {"Ref": "ForwarderApi"}
    assert outputs["ApiExecuteArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${ForwarderApi}/*"
    }
    for kind in INGEST.values():
        for queue in (f"{kind}Queue", f"{kind}DeadLetterQueue"):
            assert outputs[f"{queue}Arn"] == {"Fn::GetAtt": [queue, "Arn"]}
            assert outputs[f"{queue}Url"] == {"Ref": queue}


def test_the_readmes_two_caller_policies_cover_every_route_once_and_split_ingest_from_connections():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    policies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", readme, re.S) if "execute-api:Invoke" in b]
    assert len(policies) == 2
    routes_of = []
    for policy in policies:
        routes = []
        for statement in policy["Statement"]:
            if statement["Action"] == "execute-api:Invoke":
                for arn in statement["Resource"]:
                    method, path = re.fullmatch(
                        r"arn:aws:execute-api:REGION:ACCOUNT:API_ID/\*/([A-Z]+)(/.*)", arn
                    ).groups()
                    path = path.replace("/workspaces/*", "/workspaces/{workspace_id}")
                    routes.append((method.lower(), path.replace("/visitors/*", "/visitors/{visitor_id}")))
        routes_of.append(routes)
    ingest, admin = routes_of
    assert sorted(ingest + admin) == sorted(ROUTES), "the policies must name every route exactly once"
    assert {ROUTES[r] for r in ingest} == set(INGEST)
    assert {ROUTES[r] for r in admin} == {CONNECTION}
    [queues] = [s for s in policies[0]["Statement"] if s["Action"] == "sqs:SendMessage"]
    assert len(queues["Resource"]) == 3


# -- data at rest and configuration ---------------------------------------------------------------------------


def test_table_and_queues_are_encrypted_at_rest(resources):
    assert resources["DedupTable"]["Properties"].get("SSESpecification") == {"SSEEnabled": True}
    queues = of_type(resources, "AWS::SQS::Queue")
    assert len(queues) == 6
    for name, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, f"{name} is not SSE-SQS encrypted"


def test_no_secret_in_any_function_environment(resources):
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        for variable, value in variables.items():
            if variable != "SECRET_PREFIX":
                assert not any(word in variable for word in ("KEY", "SECRET", "TOKEN", "PASSWORD")), (name, variable)
            assert "write_key" not in json.dumps(value).lower(), (name, variable)


def test_every_function_calls_segment_over_https(resources):
    for name, function in of_type(resources, "AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["SEGMENT_US_ENDPOINT"] == "https://api.segment.io", name
        assert variables["SEGMENT_EU_ENDPOINT"] == "https://events.eu1.segmentapis.com", name


if __name__ == "__main__":
    json.dump(sam_transform(passthrough_metadata="--passthrough-metadata" in sys.argv[1:]), sys.stdout, indent=1)
