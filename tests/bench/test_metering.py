"""What the benchmark measures at the boundaries (bench/metering.py)."""

import json
import os
import sys

from bench.metering import (
    AwsCall,
    Invocation,
    OutputCapture,
    OutputStats,
    covered_seconds,
    percentile,
    sequential_chain,
    sqs_payload_bytes,
)
from local_stack.lambda_logging import LambdaLogging


def test_overlapping_calls_count_once_and_later_ones_again():
    claims = [(0.0, 5.0), (0.5, 6.0), (1.0, 5.5)]
    assert len(sequential_chain(claims, lambda w: w)) == 1
    assert len(sequential_chain([*claims, (6.5, 9.0)], lambda w: w)) == 2
    assert len(sequential_chain([*claims, (6.5, 9.0), (9.0, 10.0)], lambda w: w)) == 3
    # a long call beside two short sequential ones: the invocation waited for two one after another
    assert len(sequential_chain([(0, 10), (1, 4), (5, 9)], lambda w: w)) == 2
    assert sequential_chain([], lambda w: w) == []


def test_aws_wait_is_all_the_time_a_request_was_outstanding():
    # three concurrent claims served one at a time (as moto does), then a mark: the chain has 2 calls, but the
    # invocation waited from the first claim's start to the last claim's end, and for the mark
    calls = [
        AwsCall("dynamodb", "UpdateItem", 0.00, 0.02),
        AwsCall("dynamodb", "UpdateItem", 0.00, 0.04),
        AwsCall("dynamodb", "UpdateItem", 0.00, 0.06),
        AwsCall("dynamodb", "BatchWriteItem", 0.07, 0.08),
    ]
    invocation = Invocation("assignment", {}, {}, 0.1, calls, OutputStats())
    assert invocation.sequential_aws_requests == 2
    assert abs(invocation.sequential_aws_seconds - 0.03) < 1e-9  # the chain's shortest claim and the mark
    assert abs(invocation.aws_wait_seconds - 0.07) < 1e-9
    assert covered_seconds([]) == 0
    assert covered_seconds([(0, 5), (1, 6), (2, 7), (8, 13)]) == 12
    assert covered_seconds([(0, 1), (1, 2)]) == 2


def test_output_is_split_into_log_lines_and_emf_lines():
    emf = {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {"Namespace": "SF", "Dimensions": [["kind", "service"]], "Metrics": [{"Name": "Delivered"}]}
            ],
        },
        "kind": "assignment",
        "service": "sf",
        "Delivered": [1.0],
    }
    log = b'{"level":"INFO","message":"delivered"}\n'
    line = json.dumps(emf).encode() + b"\n"
    stats = OutputStats.of(log + line + b"plain text\n")

    assert (stats.function_lines, stats.function_bytes) == (2, len(log) + len(b"plain text\n"))
    assert (stats.emf_lines, stats.emf_bytes) == (1, len(line))
    assert stats.metrics == {("SF", "Delivered", (("kind", "assignment"), ("service", "sf")))}


def test_lines_lambda_drops_under_the_logging_config_are_not_counted():
    emf = json.dumps({"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "Delivered": 1}).encode() + b"\n"
    debug, warning = b'{"level":"DEBUG","message":"delivered"}\n', b'{"level":"WARNING","message":"parked"}\n'
    output = debug + emf + warning

    at_info = OutputStats.of(output, LambdaLogging("JSON", application_level="INFO"))
    at_warn = OutputStats.of(output, LambdaLogging("JSON", application_level="WARN"))
    text = OutputStats.of(output, LambdaLogging())

    assert (at_info.function_bytes, at_info.emf_bytes, at_info.dropped_bytes) == (len(warning), len(emf), len(debug))
    assert (at_warn.function_bytes, at_warn.emf_bytes, at_warn.dropped_lines) == (len(warning), 0, 2)
    assert (text.function_bytes, text.emf_bytes, text.dropped_bytes) == (len(debug + warning), len(emf), 0)


def test_capture_takes_what_reaches_file_descriptors_1_and_2(capsys):
    capture = OutputCapture()
    try:
        with capsys.disabled(), capture:  # sys.stdout / sys.stderr: the process's own streams, as in the bench
            print("to stdout")
            print("to stderr", file=sys.stderr)
            os.write(1, b"raw\n")
        assert sorted(capture.data.splitlines()) == [b"raw", b"to stderr", b"to stdout"]
        with capture:
            pass
        assert capture.data == b""
    finally:
        capture.close()


def test_sqs_payload_counts_bodies_and_attributes():
    attributes = {"delivery_id": {"DataType": "String", "StringValue": "abc"}}
    assert sqs_payload_bytes("SendMessage", {"MessageBody": "héllo", "MessageAttributes": attributes}) == 6 + 11 + 6 + 3
    assert sqs_payload_bytes("SendMessageBatch", {"Entries": [{"MessageBody": "ab"}, {"MessageBody": "c"}]}) == 3
    assert sqs_payload_bytes("DeleteMessageBatch", {"Entries": [{"Id": "1"}]}) == 0


def test_percentile_is_nearest_rank():
    assert percentile([5, 1, 3, 2, 4], 0.5) == 3
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.95) == 95
