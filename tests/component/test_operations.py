"""What the template gives operators: the retry-horizon settings, the alarms (each with an action), the dashboard,
and that every custom metric an alarm or widget reads is named and dimensioned as the functions emit it.

The alarms and the dashboard are plain CloudFormation (SAM passes them through), so they are read from
template.yaml itself, with intrinsic functions resolved by the local stack's resolver; the metric names and
dimensions are checked against the EMF lines the real handler prints.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from local_stack.invoke import LambdaContext
from local_stack.template import Resource, Template

from .conftest import http_event, sqs_record

TEMPLATE = Template.load()
KINDS = {"Identify": "identify", "Assignment": "assignment", "Conversion": "conversion"}
FUNCTIONS = [*(f"{kind}Function" for kind in KINDS), "ConnectionFunction"]
EFFECTIVE_TOPIC = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
GLOBAL_ENV = TEMPLATE.document["Globals"]["Function"]["Environment"]["Variables"]
NAMESPACE = GLOBAL_ENV["POWERTOOLS_METRICS_NAMESPACE"]
SERVICE = GLOBAL_ENV["POWERTOOLS_SERVICE_NAME"]
# The custom metrics of the ingest functions (the README's Operations section): Count, except the two below.
CUSTOM_METRICS = {"Delivered", "Duplicate", "Skipped", "Queued", "Retry", "Rejected", "DeadLettered", "Unavailable"}
CUSTOM_METRICS |= {"SourceRefused"}
CUSTOM_METRICS |= {"SegmentLatency", "RetryAge"}


def alarms() -> dict[str, dict[str, Any]]:
    return {name: spec["Properties"] for name, spec in TEMPLATE.of_type("AWS::CloudWatch::Alarm").items()}


def metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: its single metric, or each MetricStat of its metric math."""
    if "MetricName" in alarm:
        return [{k: alarm.get(k) for k in ("Namespace", "MetricName", "Dimensions")}]
    return [query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query]


def created() -> dict[str, Resource]:
    """A stand-in for every resource, so that Ref / GetAtt / Sub resolve to recognisable names."""
    return {
        name: Resource(name, spec["Type"], f"{name}-ref", {"Arn": f"arn:{name}", "QueueName": f"{name}-name"})
        for name, spec in TEMPLATE.resources.items()
    }


def dashboard(template: Template = TEMPLATE) -> dict[str, Any]:
    [spec] = template.of_type("AWS::CloudWatch::Dashboard").values()
    return json.loads(template.resolve(spec["Properties"]["DashboardBody"], created()))


# -- the retry horizon's settings ----------------------------------------------------------------------------


def test_retry_parameters_and_their_constraints():
    parameters = TEMPLATE.document["Parameters"]
    expected = {
        "RetryHorizonMinutes": (4320, 1, 10080),
        "RetryBackoffCapSeconds": (900, 1, 43200),
        "MaximumConcurrency": (10, 2, 1000),
        "MaxReceiveCount": (1000, 1, 1000),
    }
    for name, (default, low, high) in expected.items():
        spec = parameters[name]
        assert (spec["Type"], spec["Default"], spec["MinValue"], spec["MaxValue"]) == ("Number", default, low, high)
    assert GLOBAL_ENV["RETRY_HORIZON_MINUTES"] == {"Ref": "RetryHorizonMinutes"}
    assert GLOBAL_ENV["RETRY_BACKOFF_CAP_SECONDS"] == {"Ref": "RetryBackoffCapSeconds"}


@pytest.mark.parametrize(
    "overrides", [{}, {"RetryHorizonMinutes": "2", "RetryBackoffCapSeconds": "5"}], ids=["defaults", "outage-drill"]
)
def test_max_receive_count_stays_a_safety_net_above_what_the_horizon_needs(overrides):
    values = Template.load(parameters=overrides).parameters
    horizon_s = int(values["RetryHorizonMinutes"]) * 60
    shortest_delay_s = int(values["RetryBackoffCapSeconds"]) / 2  # equal jitter: between cap/2 and cap
    receives_needed = horizon_s / shortest_delay_s + 20  # + the first doublings from 1 s up to the cap

    assert receives_needed < int(values["MaxReceiveCount"])


def test_source_queues_outlive_the_longest_horizon_and_keep_the_visibility_timeout():
    longest_horizon_s = TEMPLATE.document["Parameters"]["RetryHorizonMinutes"]["MaxValue"] * 60
    timeout_s = TEMPLATE.document["Globals"]["Function"]["Timeout"]
    for kind in KINDS:
        queue = TEMPLATE.resources[f"{kind}Queue"]["Properties"]
        dlq = TEMPLATE.resources[f"{kind}DeadLetterQueue"]["Properties"]
        assert queue["MessageRetentionPeriod"] == dlq["MessageRetentionPeriod"] == 14 * 86_400  # SQS's maximum
        assert queue["MessageRetentionPeriod"] >= 2 * longest_horizon_s
        assert queue["VisibilityTimeout"] == 180 >= 6 * timeout_s


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "AlarmEmail",
            ["", "oncall@example.com", "a.b+pager@ops.example.co.uk"],
            ["oncall", "a b@example.com", "@x.y"],
        ),
        (
            "AlarmTopicArn",
            ["", "arn:aws:sns:eu-west-1:123456789012:pager", "arn:aws-us-gov:sns:us-gov-west-1:123456789012:p.fifo"],
            ["pager", "arn:aws:sqs:eu-west-1:123456789012:pager", "arn:aws:sns:eu-west-1:1234:pager"],
        ),
    ],
)
def test_alarm_destination_parameters_take_an_address_or_nothing(name, good, bad):
    spec = TEMPLATE.document["Parameters"][name]
    pattern = re.compile(spec["AllowedPattern"])

    assert spec["Default"] == ""
    assert [value for value in good if not pattern.fullmatch(value)] == []
    assert [value for value in bad if pattern.fullmatch(value)] == []


# -- paging ---------------------------------------------------------------------------------------------------


def test_every_alarm_notifies_the_effective_topic_and_says_what_to_do():
    names = set()
    for logical_id, alarm in alarms().items():
        assert alarm["AlarmActions"] == [EFFECTIVE_TOPIC], logical_id
        assert alarm["OKActions"] == [EFFECTIVE_TOPIC], logical_id
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        description = " ".join(TEMPLATE.resolve(alarm["AlarmDescription"], {}).split())
        assert 80 < len(description) <= 1024, logical_id  # CloudWatch's limit is 1024 characters
        name = TEMPLATE.resolve(alarm["AlarmName"], {})
        assert name.startswith("segment-forwarder-local-") and len(name) <= 255
        names.add(name)
    assert len(names) == len(alarms())


def test_the_alarms_cover_dead_letters_age_stalls_503s_function_failures_and_api_5xx():
    expected = {"ApiServerErrorsAlarm", "ConnectionFunctionErrorsAlarm", "ConnectionFunctionThrottlesAlarm"}
    for kind in KINDS:
        expected |= {
            f"{kind}DeadLetterArrivalAlarm",
            f"{kind}QueueAgeAlarm",
            f"{kind}RetryHorizonAlarm",
            f"{kind}DeliveryStalledAlarm",
            f"{kind}UnavailableAlarm",
            f"{kind}SourceRefusedAlarm",
            f"{kind}FunctionErrorsAlarm",
            f"{kind}FunctionThrottlesAlarm",
        }
    assert set(alarms()) == expected
    for function in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            [stat] = metric_stats(alarms()[f"{function}{metric}Alarm"])
            assert (stat["Namespace"], stat["MetricName"]) == ("AWS/Lambda", metric)
            assert stat["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    [api] = metric_stats(alarms()["ApiServerErrorsAlarm"])
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5xx")
    assert api["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "ForwarderApi"}}]


def test_metric_math_alarms_are_well_formed():
    math = {name: alarm for name, alarm in alarms().items() if "Metrics" in alarm}
    assert len(math) == 4 * len(KINDS)  # arrivals, queue age, retry age, stalls
    for name, alarm in math.items():
        queries = alarm["Metrics"]
        ids = [query["Id"] for query in queries]
        assert all(re.fullmatch(r"[a-z][a-zA-Z0-9_]*", i) for i in ids) and len(set(ids)) == len(ids), name
        assert [query["ReturnData"] for query in queries].count(True) == 1, name
        assert len([q for q in queries if "MetricStat" in q]) <= 10, name
        [returned] = [query for query in queries if query["ReturnData"]]
        expression = TEMPLATE.resolve(returned["Expression"], {})
        used = set(re.findall(r"\b[a-z][a-zA-Z0-9_]*\b", expression))
        assert used and used <= set(ids) - {returned["Id"]}, (name, expression)
        assert "Namespace" not in alarm and "MetricName" not in alarm, name


@pytest.mark.parametrize("kind", KINDS)
def test_new_dead_letters_alarm_once_instead_of_for_fourteen_days(kind):
    alarm = alarms()[f"{kind}DeadLetterArrivalAlarm"]
    stats = {query["Id"]: query["MetricStat"] for query in alarm["Metrics"] if "MetricStat" in query}
    [expression] = [query["Expression"] for query in alarm["Metrics"] if query["ReturnData"]]

    dlq = {"Name": "QueueName", "Value": {"Fn::GetAtt": [f"{kind}DeadLetterQueue", "QueueName"]}}
    assert {i: (s["Metric"]["MetricName"], s["Stat"]) for i, s in stats.items()} == {
        "sent": ("NumberOfMessagesSent", "Sum"),  # what the function parks (SendMessage)
        "visible": ("ApproximateNumberOfMessagesVisible", "Maximum"),  # + moves by the redrive policy ...
        "inflight": ("ApproximateNumberOfMessagesNotVisible", "Maximum"),  # ... that a peek does not hide
    }
    assert all(stat["Metric"]["Dimensions"] == [dlq] for stat in stats.values())
    # A rise of the content, not its level: one old message does not hold the alarm.
    assert expression == "(FILL(sent, 0) > 0) OR (DIFF(FILL(visible + inflight, 0)) > 0)"
    # Any 1 of the last 20 minutes: an idle queue's first datapoints arrive up to 15 minutes late.
    assert {stat["Period"] for stat in stats.values()} == {60}
    assert (alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"]) == (1, 20)


@pytest.mark.parametrize("kind", KINDS)
def test_age_alarms_fire_at_80_percent_of_the_horizon_in_force(kind):
    drill = Template.load(parameters={"RetryHorizonMinutes": "2"})
    for name, metric_id in ((f"{kind}QueueAgeAlarm", "age"), (f"{kind}RetryHorizonAlarm", "retryage")):
        alarm = drill.resources[name]["Properties"]
        [returned] = [query for query in alarm["Metrics"] if query["ReturnData"]]

        assert drill.resolve(returned["Expression"], {}) == f"{metric_id} / (60 * 2)"
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0.8, "GreaterThanThreshold")


def test_the_topic_is_created_only_without_an_existing_one_and_cloudwatch_may_use_its_key():
    own = Template.load()
    existing = Template.load(parameters={"AlarmTopicArn": "arn:aws:sns:us-east-1:123456789012:pager"})
    key = own.resources["AlarmTopicKey"]["Properties"]

    assert own.condition("CreateAlarmTopic") and not existing.condition("CreateAlarmTopic")
    assert own.resources["AlarmTopic"]["Condition"] == own.resources["AlarmTopicKey"]["Condition"] == "CreateAlarmTopic"
    # Not alias/aws/sns: CloudWatch alarms cannot use the AWS managed key, so they could not publish.
    assert own.resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    [for_alarms] = [s for s in key["KeyPolicy"]["Statement"] if s["Principal"].get("Service")]
    assert for_alarms["Principal"]["Service"] == "cloudwatch.amazonaws.com"
    assert set(for_alarms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert key["EnableKeyRotation"] is True
    subscription = own.resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "SubscribeAlarmEmail"
    assert subscription["Properties"]["TopicArn"] == EFFECTIVE_TOPIC
    assert not own.condition("SubscribeAlarmEmail")
    assert Template.load(parameters={"AlarmEmail": "oncall@example.com"}).condition("SubscribeAlarmEmail")


def test_outputs_name_the_alarm_topic_and_the_dashboard():
    outputs = TEMPLATE.document["Outputs"]

    assert outputs["AlarmTopicArn"]["Value"] == EFFECTIVE_TOPIC
    assert outputs["DashboardName"]["Value"] == {"Ref": "OperationsDashboard"}
    assert "#dashboards/dashboard/${OperationsDashboard}" in outputs["DashboardUrl"]["Value"]["Fn::Sub"]


# -- the dashboard --------------------------------------------------------------------------------------------


def widget_metrics(body: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Metric rows (namespace, name, dimension pairs...) of each metric widget, by title; expressions left out."""
    found: dict[str, list[list[Any]]] = {}
    for widget in body["widgets"]:
        if widget["type"] == "metric":
            rows = widget["properties"]["metrics"]
            found[widget["properties"]["title"]] = [
                [v for v in row if not isinstance(v, dict)] for row in rows if isinstance(row[0], str)
            ]
    return found


def test_the_dashboard_shows_outcomes_queues_ages_latency_functions_and_the_api():
    body = dashboard(Template.load(parameters={"RetryHorizonMinutes": "2"}))
    metrics = widget_metrics(body)
    rows = [tuple(row) for widget_rows in metrics.values() for row in widget_rows]

    for kind, name in KINDS.items():
        dims = ("service", SERVICE, "kind", name)
        outcomes = metrics[f"{name}: outcomes per minute"]
        assert {row[1] for row in outcomes} == CUSTOM_METRICS - {"SegmentLatency", "RetryAge"}
        assert all(row[0] == NAMESPACE and tuple(row[2:]) == dims for row in outcomes)
        assert (NAMESPACE, "SegmentLatency", *dims) in rows
        for queue in (f"{kind}Queue-name", f"{kind}DeadLetterQueue-name"):
            for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
                assert ("AWS/SQS", metric, "QueueName", queue) in rows
        for metric in ("Duration", "Errors", "Throttles"):
            assert ("AWS/Lambda", metric, "FunctionName", f"{kind}Function-ref") in rows
    assert ("AWS/Lambda", "Errors", "FunctionName", "ConnectionFunction-ref") in rows
    for metric in ("Count", "4xx", "5xx", "Latency", "IntegrationLatency"):
        assert ("AWS/ApiGateway", metric, "ApiId", "ForwarderApi-ref") in rows
    [ages] = [
        w
        for w in body["widgets"]
        if w["properties"].get("title") == "identify: age (minutes) against the retry horizon"
    ]
    assert ages["properties"]["annotations"]["horizontal"][0]["value"] == 2
    [status] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(status["properties"]["alarms"]) == {f"arn:{name}" for name in alarms()}


def test_every_custom_metric_read_by_an_alarm_or_the_dashboard_has_the_functions_dimensions():
    read = [stat for alarm in alarms().values() for stat in metric_stats(alarm) if stat["Namespace"] == NAMESPACE]
    read += [
        {"Namespace": row[0], "MetricName": row[1], "Dimensions": [{"Name": n, "Value": v} for n, v in pairs(row[2:])]}
        for rows in widget_metrics(dashboard()).values()
        for row in rows
        if row[0] == NAMESPACE
    ]
    assert len(read) > 40
    for stat in read:
        assert stat["MetricName"] in CUSTOM_METRICS
        dimensions = {d["Name"]: d["Value"] for d in stat["Dimensions"]}
        assert set(dimensions) == {"service", "kind"} and dimensions["service"] == SERVICE
        assert dimensions["kind"] in KINDS.values()


def pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


# -- what the functions really emit (Powertools EMF on stdout) -------------------------------------------------


def emf_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def emitted(lines: list[dict[str, Any]]) -> dict[str, tuple[str, dict[str, str]]]:
    """metric name -> (namespace, {dimension: value}) of every metric in the EMF lines."""
    found = {}
    for line in lines:
        for directive in line["_aws"]["CloudWatchMetrics"]:
            [dimension_names] = directive["Dimensions"]
            for metric in directive["Metrics"]:
                found[metric["Name"]] = (directive["Namespace"], {name: line[name] for name in dimension_names})
    return found


@pytest.mark.parametrize("kind", KINDS.values())
def test_the_handler_emits_what_the_alarms_and_dashboard_read(stack, capsys, kind):
    handler = stack.handler(kind, POWERTOOLS_METRICS_DISABLED="false")
    body = {"workspace_id": "ws-us", "visitor_id": f"v-emf-{kind}"}
    if kind == "assignment":
        body |= {"test_id": "t-1", "variant_id": "b"}
    if kind == "conversion":
        body |= {"conversion_id": "c-1", "conversion_type": "CLICK", "origin_url": "https://example.com/"}

    assert handler(http_event(kind, body), LambdaContext())["statusCode"] == 200
    metrics = emitted(emf_lines(capsys.readouterr().out))

    assert "Delivered" in metrics
    for name, (namespace, dimensions) in metrics.items():
        assert namespace == NAMESPACE, name
        assert dimensions == {"service": SERVICE, "kind": kind}, name


def test_a_503_emits_unavailable_with_the_dimensions_its_alarm_reads(stack, capsys):
    stack.sink.set_fault(status=500, count=100)
    handler = stack.handler(
        "assignment",
        POWERTOOLS_METRICS_DISABLED="false",
        HTTP_DELIVERY_BUDGET_SECONDS="1",
        QUEUE_URL=stack.queue_url("assignment") + "-gone",
    )
    body = {"workspace_id": "ws-us", "visitor_id": "v-503", "test_id": "t-1", "variant_id": "b"}

    assert handler(http_event("assignment", body), LambdaContext())["statusCode"] == 503
    metrics = emitted(emf_lines(capsys.readouterr().out))

    [stat] = metric_stats(alarms()["AssignmentUnavailableAlarm"])
    alarm_dimensions = {d["Name"]: d["Value"] for d in stat["Dimensions"]}
    assert metrics["Unavailable"] == (stat["Namespace"], alarm_dimensions)


def test_a_source_refusing_everything_emits_source_refused_with_the_dimensions_its_alarm_reads(stack, capsys):
    stack.sink.set_fault(status=401, count=100, write_key="key-us-0001")
    handler = stack.handler("assignment", POWERTOOLS_METRICS_DISABLED="false")
    body = {"workspace_id": "ws-us", "visitor_id": "v-refused", "test_id": "t-1", "variant_id": "b"}

    assert handler({"Records": [sqs_record(body)]}, LambdaContext())["batchItemFailures"] != []
    metrics = emitted(emf_lines(capsys.readouterr().out))

    [stat] = metric_stats(alarms()["AssignmentSourceRefusedAlarm"])
    alarm_dimensions = {d["Name"]: d["Value"] for d in stat["Dimensions"]}
    assert metrics["SourceRefused"] == (stat["Namespace"], alarm_dimensions)
