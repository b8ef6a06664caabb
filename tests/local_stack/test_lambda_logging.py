"""Lambda's handling of a function's logs under its LoggingConfig, as the local stack and the bench apply it."""

from __future__ import annotations

import json

import pytest

from local_stack.lambda_logging import LambdaLogging, line_level

JSON_INFO = LambdaLogging("JSON", application_level="INFO", system_level="WARN")


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ('{"level": "DEBUG", "message": "delivered"}', "DEBUG"),
        ('{"level": "debug", "msg": "my debug log"}', "DEBUG"),  # the documentation's own example
        ('{"level": "WARNING", "message": "dead-lettered"}', "WARN"),  # Python's spelling, as Powertools writes it
        ('{"level": "CRITICAL"}', "FATAL"),
        ('{"_aws": {"CloudWatchMetrics": []}, "Delivered": 1}', "INFO"),  # EMF: no level
        ('{"level": "LOUD"}', "INFO"),  # not a level
        ('{"level": 40}', "INFO"),
        ("Traceback (most recent call last):", "INFO"),  # not JSON
        ("[1, 2]", "INFO"),
        (b'{"level": "ERROR"}', "ERROR"),
    ],
)
def test_a_line_is_at_the_level_its_json_names_else_info(line, level):
    assert line_level(line) == level


def test_json_keeps_lines_at_or_above_the_application_level():
    lines = {name: json.dumps({"level": name, "message": "m"}) for name in ("DEBUG", "INFO", "WARNING", "ERROR")}
    warn = LambdaLogging("JSON", application_level="WARN")

    assert [name for name, line in lines.items() if JSON_INFO.keeps(line)] == ["INFO", "WARNING", "ERROR"]
    assert [name for name, line in lines.items() if warn.keeps(line)] == ["WARNING", "ERROR"]
    assert not warn.keeps('{"_aws": {}, "Delivered": 1}')


def test_text_format_filters_nothing_and_writes_the_platform_lines():
    text = LambdaLogging()  # Lambda's defaults

    assert text.keeps('{"level": "DEBUG"}') and text.keeps("anything")
    assert text.writes_platform_records
    assert text.environment() == {"AWS_LAMBDA_LOG_FORMAT": "Text"}


def test_json_sets_the_level_variable_and_warn_drops_the_platform_records():
    assert JSON_INFO.environment() == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}
    assert not JSON_INFO.writes_platform_records
    assert LambdaLogging("JSON", system_level="INFO").writes_platform_records
    assert LambdaLogging("JSON", system_level="DEBUG").writes_platform_records


@pytest.mark.parametrize(
    "config",
    [{"log_format": "Json"}, {"application_level": "WARNING"}, {"system_level": "ERROR"}],
)
def test_values_lambda_does_not_accept_are_refused(config):
    with pytest.raises(ValueError, match="is not one of"):
        LambdaLogging(**config)
