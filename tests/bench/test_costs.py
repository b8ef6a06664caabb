"""The cost section's arithmetic (bench/costs.py, bench/prices.py)."""

import pytest

from bench.costs import (
    COMPONENTS,
    Usage,
    api_gateway_units,
    billed_ms,
    cost_per_million,
    platform_log_bytes,
    sqs_request_units,
)
from bench.prices import MONTHLY, PRICES
from local_stack.lambda_logging import LambdaLogging


def test_each_component_is_priced_per_million_events():
    usage = Usage(
        events=200,
        dynamodb_write_units=600,  # 3 per event
        dynamodb_read_units=100,
        lambda_invocations=20,
        lambda_billed_ms=8_000,  # 2 GB-s at 256 MB
        sqs_requests=60,
        api_requests=0,
        secrets_calls=2,
        log_bytes_function=200 * 500,
        log_bytes_emf=20 * 600,
        log_bytes_platform=20 * 250,
    )
    usd = cost_per_million(usage)

    assert list(usd) == [key for key, _ in COMPONENTS]
    assert usd["dynamodb_writes"] == pytest.approx(3 * 0.625)
    assert usd["dynamodb_reads"] == pytest.approx(0.5 * 0.125)
    assert usd["lambda_duration"] == pytest.approx(2 * 0.0000133334 / 200 * 1e6)
    assert usd["lambda_requests"] == pytest.approx(0.1 * 0.20)
    assert usd["sqs_requests"] == pytest.approx(0.3 * 0.40)
    assert usd["api_requests"] == 0
    assert usd["secrets_calls"] == pytest.approx(0.01 * 5)
    assert usd["logs_function"] == pytest.approx(500 / 1024**3 * 0.50 * 1e6)
    assert sum(usd.values()) == pytest.approx(sum(usd[k] for k, _ in COMPONENTS))


def test_no_events_no_cost_per_event():
    with pytest.raises(ValueError):
        cost_per_million(Usage())


def test_billing_steps():
    assert billed_ms(0.0001) == 1
    assert billed_ms(0.0121) == 13
    assert sqs_request_units(0) == 1
    assert sqs_request_units(64 * 1024) == 1
    assert sqs_request_units(64 * 1024 + 1) == 2
    assert api_gateway_units(600 * 1024) == 2


def test_lambda_writes_three_lines_per_invocation():
    assert 230 < platform_log_bytes(12.3) < 300


def test_lambdas_own_lines_follow_the_logging_config():
    json_info = platform_log_bytes(12.3, logging=LambdaLogging("JSON", system_level="INFO"))

    assert platform_log_bytes(12.3, logging=LambdaLogging("JSON", system_level="WARN")) == 0
    assert platform_log_bytes(12.3, logging=LambdaLogging("JSON", system_level="DEBUG")) == json_info
    assert 600 < json_info < 900  # start, runtimeDone (with its spans) and report as JSON records
    assert platform_log_bytes(12.3, logging=LambdaLogging()) == platform_log_bytes(12.3)  # Lambda's defaults: text


def test_every_price_is_dated_positive_and_sourced():
    for price in [*PRICES.values(), *MONTHLY.values()]:
        assert price.usd > 0 and price.per > 0
        assert price.source.startswith("https://aws.amazon.com/")
    assert PRICES["dynamodb_write"].usd_per_unit == pytest.approx(0.625e-6)  # as in shared/aws-notes.md
