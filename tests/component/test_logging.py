"""What the functions' log groups receive: Lambda's advanced logging controls as the template sets them (JSON lines
filtered by level, no per-invocation platform records), and what the real handler writes under them: nothing for
an event that went well, a line for every one that did not, and the EMF metric lines Lambda keeps.

Lambda's filter is applied to what the handler prints as Lambda applies it (``LambdaLogging.keeps``: a line is at
the level its JSON names, INFO without one), whatever level the logger of this test process runs at.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_stack.lambda_logging import APPLICATION_LEVELS, SYSTEM_LEVELS, LambdaLogging
from local_stack.template import Template
from segment_forwarder.config import FunctionConfig
from tests.component.conftest import FUNCTIONS, sqs_record
from tests.component.test_security import of_type, sam_transform

TEMPLATE = Template.load()
PARAMETERS = TEMPLATE.document["Parameters"]


def assignment(visitor: str) -> dict[str, str]:
    return {"workspace_id": "ws-us", "visitor_id": visitor, "test_id": "t-1", "variant_id": "a"}


def kept_lines(output: str, logging: LambdaLogging) -> list[dict[str, Any]]:
    """The JSON lines of ``output`` that Lambda sends on to CloudWatch Logs under ``logging``."""
    return [json.loads(line) for line in output.splitlines() if line.strip() and logging.keeps(line)]


# -- the template -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return sam_transform()["Resources"]


def test_every_function_logs_json_filtered_at_the_templates_two_levels(resources):
    functions = of_type(resources, "AWS::Lambda::Function")
    assert set(functions) == set(TEMPLATE.functions())
    for name, function in functions.items():
        properties = function["Properties"]
        assert properties["LoggingConfig"] == {
            "LogFormat": "JSON",
            "ApplicationLogLevel": {"Ref": "ApplicationLogLevel"},
            "SystemLogLevel": {"Ref": "SystemLogLevel"},
        }, name
        # the logger follows Lambda's level (AWS_LAMBDA_LOG_LEVEL); a level of its own could only disagree
        assert not {"POWERTOOLS_LOG_LEVEL", "LOG_LEVEL"} & set(properties["Environment"]["Variables"]), name
        # Lambda's default group, /aws/lambda/<function>, is the stack's own (30 days' retention), not a new one
        [group] = [
            group["Properties"]
            for group in of_type(resources, "AWS::Logs::LogGroup").values()
            if group["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
        ]
        assert group["RetentionInDays"] == 30, name


def test_the_defaults_are_a_production_stacks():
    assert PARAMETERS["ApplicationLogLevel"]["Default"] == "INFO"  # the EMF metric lines are INFO to Lambda
    assert PARAMETERS["SystemLogLevel"]["Default"] == "WARN"  # no START/END/REPORT per invocation
    assert float(PARAMETERS["DeliveredLogSampleRate"]["Default"]) == 0
    assert set(PARAMETERS["ApplicationLogLevel"]["AllowedValues"]) <= set(APPLICATION_LEVELS)
    assert set(PARAMETERS["SystemLogLevel"]["AllowedValues"]) <= set(SYSTEM_LEVELS)
    # the code's default is the template's: a function without the variable samples as a deployed one does
    assert FunctionConfig().delivered_log_sample_rate == FunctionConfig.from_env({}).delivered_log_sample_rate == 0
    for function in TEMPLATE.functions():
        assert TEMPLATE.logging_config(function).environment() == {
            "AWS_LAMBDA_LOG_FORMAT": "JSON",
            "AWS_LAMBDA_LOG_LEVEL": "INFO",
        }
        assert not TEMPLATE.logging_config(function).writes_platform_records


def test_the_levels_are_parameters():
    template = Template(TEMPLATE.document, parameters={"ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"})

    logging = template.logging_config("AssignmentFunction")

    assert logging == LambdaLogging("JSON", application_level="DEBUG", system_level="INFO")
    assert logging.environment()["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"
    assert logging.writes_platform_records


# -- the handler under them -------------------------------------------------------------------------------------


def test_with_the_defaults_an_event_that_went_well_writes_no_line_and_a_failed_one_does(stack, function_logs):
    logging = stack.template.logging_config(FUNCTIONS["assignment"])
    handler = stack.handler("assignment")  # the template's environment and defaults, nothing else
    delivered = [sqs_record(assignment(f"v-ok-{i}")) for i in range(40)]

    batch = stack.invoke_sqs("assignment", delivered, handler=handler)
    # its Track refused while its Identify is accepted: parked (a source refusing everything is retried instead)
    stack.sink.set_fault(status=400, count=100, match={"type": "track"})
    refused = stack.invoke_sqs("assignment", [sqs_record(assignment("v-refused"))], handler=handler)

    assert batch.retried == [] and refused.retried == []
    assert len(stack.tracks("Experiment Viewed")) == 40
    lines = kept_lines(function_logs.getvalue(), logging)
    assert [line for line in lines if str(line.get("visitor_id", "")).startswith("v-ok")] == []
    refused_lines = [line for line in lines if line.get("visitor_id") == "v-refused"]
    assert [line["message"] for line in refused_lines] == ["rejected"]
    assert [line["level"] for line in lines if line["message"] == "dead-lettered"] == ["WARNING"]


def test_raised_to_debug_every_event_has_its_line(stack, function_logs):
    logging = LambdaLogging("JSON", application_level="DEBUG", system_level="WARN")
    handler = stack.handler("assignment", DELIVERED_LOG_SAMPLE_RATE="1")

    stack.invoke_sqs("assignment", [sqs_record(assignment(f"v-ok-{i}")) for i in range(3)], handler=handler)

    lines = kept_lines(function_logs.getvalue(), logging)
    delivered = sorted(line["visitor_id"] for line in lines if line["message"] == "delivered")
    assert delivered == ["v-ok-0", "v-ok-1", "v-ok-2"]


def test_the_metric_lines_survive_the_default_level_and_would_not_survive_warn(stack, capsys):
    logging = stack.template.logging_config(FUNCTIONS["assignment"])
    handler = stack.handler("assignment", POWERTOOLS_METRICS_DISABLED="false")

    stack.invoke_sqs("assignment", [sqs_record(assignment("v-counted"))], handler=handler)

    emf = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf and all("Delivered" in json.loads(line) for line in emf)
    assert all(logging.keeps(line) for line in emf)
    warn = LambdaLogging("JSON", application_level="WARN", system_level="WARN")
    assert not any(warn.keeps(line) for line in emf)  # why ApplicationLogLevel stays INFO on a deployed stack
