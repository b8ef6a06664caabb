"""The cost report (sections 5-8, results.json) over synthetic runs: every table renders, the results carry the
cost, latency and target keys of results.json. No handler runs here (the benchmark itself is ``make bench``)."""

import json
from collections import Counter

import pytest

from bench.costreport import CostReport
from bench.costrun import STACKS, CostRunParameters
from bench.metering import AwsCall, Invocation, OutputStats
from bench.throughput import Run, http_event, sqs_event
from bench.workload import WORKLOADS, generate_workload


def _invocations(workload, path):
    """One invocation per batch (SQS) or per record (HTTP): two concurrent claims, then a mark."""
    found = []
    t = 0.0
    for batch in workload.batches:
        events = [sqs_event(batch.bodies)] if path == "sqs" else [http_event("/v1/x", b) for b in batch.bodies]
        for event in events:
            calls = [
                AwsCall("dynamodb", "UpdateItem", t, t + 0.006),
                AwsCall("dynamodb", "UpdateItem", t + 0.001, t + 0.007),
                AwsCall("dynamodb", "BatchWriteItem", t + 0.060, t + 0.066),
            ]
            answer = (
                {"batchItemFailures": []} if path == "sqs" else {"statusCode": 200, "body": '{"status": "delivered"}'}
            )
            output = OutputStats(function_bytes=400, function_lines=1, emf_bytes=600, emf_lines=1)
            found.append(Invocation("assignment", event, answer, 0.1, calls, output))
            t += 1
    return found


@pytest.fixture(scope="module")
def report():
    measured = {}
    for name in WORKLOADS:
        measured[name] = {}
        for key, path, _ in STACKS:
            workload = generate_workload(name, 7, f"{name}-{key}", 3, 10)
            invocations = _invocations(workload, path)
            ledger = {
                "UpdateItem": {"wru": 2.0 * len(invocations), "wru_failed": 0.5, "rru": 0, "largest_item": 540},
                "BatchWriteItem": {"wru": 1.0 * len(invocations), "rru": 0, "largest_item": 560},
                "BatchGetItem": {"wru": 0, "rru": 0.5 * len(invocations), "largest_item": 0},
            }
            measured[name][key] = Run(
                key, path, workload, 3.0, invocations, ledger, [{"status": 200}] * 3, workload.messages,
                answers=Counter(),
            )  # fmt: skip
    return CostReport(measured, CostRunParameters(batches=3), memory_mb=256)


def test_every_section_renders(report):
    text = "\n".join(
        [
            *(report.cost_table(name) for name in WORKLOADS),
            report.price_table(),
            report.units_table(),
            report.latency_table(),
            report.targets_table(),
        ]
    )
    assert "DynamoDB write units" in text and "BatchGetItem" in text and "8. Targets" in text


def test_results_carry_the_cost_latency_and_target_keys(report):
    results = json.loads(json.dumps(report.results()))

    for name in ("mixed", "steady", "launch"):
        assert {"ours", "typical"} <= set(results[name]["cost_usd_per_million"])
        assert {"ours", "floor"} <= set(results[name]["write_units_per_event"])
    latency = results["latency"]
    assert (latency["aws_ms"], latency["segment_ms"]) == (5.0, 50.0)
    assert set(latency["sqs_events_per_s"]) == {"ours", "typical", "tuned"}
    assert latency["http_sequential_aws_requests"] == {"ours": 2}  # two overlapping claims, then the mark
    assert latency["http_p50_ms"]["ours"] == pytest.approx(100)
    assert len(results["targets"]) == 4
