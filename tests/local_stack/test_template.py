"""The local stack's reading of template.yaml: ``Fn::ForEach`` and ``Fn::FindInMap`` expanded as CloudFormation's
``AWS::LanguageExtensions`` transform does, and the three ingest kinds, written once, expanded to the resources the
rest of the system names (IdentifyFunction, AssignmentQueue, ConversionDeadLetterQueue...)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local_stack.template import ROOT, TEMPLATE_PATH, Template, expand_language_extensions

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
KINDS = {"Identify": "identify", "Assignment": "assignment", "Conversion": "conversion"}
PER_KIND = (
    "Queue",
    "DeadLetterQueue",
    "DeadLetterArrivalAlarm",
    "QueueAgeAlarm",
    "RetryHorizonAlarm",
    "DeliveryStalledAlarm",
    "UnavailableAlarm",
    "SourceRefusedAlarm",
    "FunctionErrorsAlarm",
    "FunctionThrottlesAlarm",
    "Function",
    "LogGroup",
)


def loop_template(resources: dict[str, Any], **sections: Any) -> dict[str, Any]:
    return {"Transform": ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"], "Resources": resources, **sections}


def test_a_loop_repeats_its_fragment_with_the_identifier_replaced_in_keys_strings_and_refs() -> None:
    document = loop_template(
        {
            "Fn::ForEach::Q": [
                "K",
                ["A", "B-1"],
                {
                    "&{K}Queue": {
                        "Type": "AWS::SQS::Queue",
                        "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-${K}"}, "Tag": {"Ref": "K"}},
                    }
                },
            ]
        }
    )
    assert expand_language_extensions(document)["Resources"] == {
        "AQueue": {"Type": "AWS::SQS::Queue", "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-A"}, "Tag": "A"}},
        "B1Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-B-1"}, "Tag": "B-1"},
        },
    }
    assert "Fn::ForEach::Q" in document["Resources"], "the template itself is left as written"


def test_nested_loops_find_in_map_and_sub_named_refs_resolve() -> None:
    document = loop_template(
        {
            "Fn::ForEach::Outer": [
                "F",
                ["A", "B"],
                {
                    "Fn::ForEach::Inner": [
                        "M",
                        ["X", "Y"],
                        {
                            "${F}${M}": {
                                "Type": "T",
                                "Properties": {
                                    "Name": {"Fn::FindInMap": ["Names", {"Ref": "F"}, "name"]},
                                    "Of": {"Ref": {"Fn::Sub": "${F}Queue"}},
                                    "Arn": {"Fn::GetAtt": [{"Fn::Sub": "${F}Queue"}, "Arn"]},
                                },
                            }
                        },
                    ]
                },
            ]
        },
        Mappings={"Names": {"A": {"name": "a"}, "B": {"name": "b"}}},
    )
    resources = expand_language_extensions(document)["Resources"]
    assert sorted(resources) == ["AX", "AY", "BX", "BY"]
    assert resources["BY"]["Properties"] == {
        "Name": "b",
        "Of": {"Ref": "BQueue"},
        "Arn": {"Fn::GetAtt": ["BQueue", "Arn"]},
    }


def test_a_comma_delimited_list_parameter_is_a_collection() -> None:
    document = loop_template(
        {"Fn::ForEach::Q": ["K", {"Ref": "Names"}, {"${K}Queue": {"Type": "AWS::SQS::Queue"}}]},
        Parameters={"Names": {"Type": "CommaDelimitedList", "Default": "A, B"}},
    )
    assert sorted(expand_language_extensions(document)["Resources"]) == ["AQueue", "BQueue"]
    assert sorted(expand_language_extensions(document, {"Names": "C"})["Resources"]) == ["CQueue"]


@pytest.mark.parametrize(
    ("loop", "problem"),
    [
        (["K", ["A", "A"], {"${K}Queue": {}}], "declared twice"),
        (["K", ["A"], {"Queue": {}}], "does not use"),
        (["K", ["A"]], "must be"),
        (["K", {"Fn::Split": [",", "A,B"]}, {"${K}Queue": {}}], "collection"),
    ],
)
def test_a_malformed_loop_is_refused(loop: list[Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        expand_language_extensions(loop_template({"Fn::ForEach::Q": loop}))


def test_a_template_without_the_transform_is_left_alone() -> None:
    document = {"Resources": {"Fn::ForEach::Q": ["K", ["A"], {"${K}Queue": {}}]}}
    assert expand_language_extensions(document) is document


def test_template_yaml_expands_to_every_ingest_resource_once_per_kind() -> None:
    template = Template.load()
    assert "AWS::LanguageExtensions" in template.source["Transform"]
    expected = {f"{kind}{suffix}" for kind in KINDS for suffix in PER_KIND}
    assert expected <= set(template.resources)
    assert {"ConnectionFunctionErrorsAlarm", "ConnectionFunctionThrottlesAlarm"} <= set(template.resources)
    assert not [name for name in template.resources if "$" in name or "Fn::" in name]
    outputs = {f"{kind}{name}" for kind in KINDS for name in ("QueueUrl", "QueueArn", "DeadLetterQueueUrl")}
    assert outputs <= set(template.document["Outputs"])


def test_the_kinds_differ_only_in_name_route_code_and_description() -> None:
    template = Template.load()
    assert template.http_routes()[:3] == [
        ("POST", "/v1/identify", "IdentifyFunction"),
        ("POST", "/v1/assignments", "AssignmentFunction"),
        ("POST", "/v1/conversions", "ConversionFunction"),
    ]
    assert template.kinds() == list(KINDS.values())
    for kind, name in KINDS.items():
        assert template.queues_of(name) == (f"{kind}Queue", f"{kind}DeadLetterQueue")
        function = template.functions()[f"{kind}Function"]["Properties"]
        assert function["CodeUri"] == f"functions/{name}/"
        assert function["Environment"]["Variables"] == {
            "QUEUE_URL": {"Ref": f"{kind}Queue"},
            "DLQ_URL": {"Ref": f"{kind}DeadLetterQueue"},
        }
        alarm = template.resolve(template.resources[f"{kind}QueueAgeAlarm"]["Properties"]["AlarmName"], {})
        assert alarm == f"segment-forwarder-local-{name}-queue-age"
    descriptions = {template.functions()[f"{kind}Function"]["Properties"]["Description"] for kind in KINDS}
    assert len(descriptions) == 3


@pytest.mark.skipif(not SAM_PYTHON.exists(), reason="the SAM CLI venv (.venv-sam) is missing")
def test_the_expansion_matches_the_sam_clis_own() -> None:
    """SAM CLI's port of the AWS::LanguageExtensions transform (which also resolves parameter defaults and pseudo
    parameters, so only the shape and the loop-made values are compared) yields the same resources and outputs."""
    script = (
        "import json, sys\n"
        "from samtranslator.yaml_helper import yaml_parse\n"
        "from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions\n"
        "template = yaml_parse(open(sys.argv[1]).read())\n"
        "print(json.dumps(expand_language_extensions(template, parameter_values={}, enabled=True).expanded_template))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
    }
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(TEMPLATE_PATH)], capture_output=True, text=True, env=env, check=True
    )
    theirs: dict[str, Any] = json.loads(done.stdout)
    ours = Template.load().document
    for section in ("Resources", "Outputs"):
        assert {k: v.get("Type") for k, v in theirs[section].items()} == {
            k: v.get("Type") for k, v in ours[section].items()
        }
    for kind in KINDS:
        for key in ("CodeUri", "Description", "Environment"):
            function = f"{kind}Function"
            assert theirs["Resources"][function]["Properties"][key] == ours["Resources"][function]["Properties"][key]
        assert (
            theirs["Resources"][f"{kind}Function"]["Properties"]["Events"]["Http"]
            == ours["Resources"][f"{kind}Function"]["Properties"]["Events"]["Http"]
        )


def test_the_template_stays_short() -> None:
    assert len(Path(TEMPLATE_PATH).read_text(encoding="utf-8").splitlines()) < 700
