"""``make bench`` / ``python -m bench``: the benchmark tables, measured in one run.

1. throughput of a stream of SQS batches: the forwarder's functions vs the *typical stack* (``typical_app``),
   on the same moto endpoint and Segment sink, warm, median of ``--runs``;
2. AWS requests per event (counted at botocore), DynamoDB write units (the endpoint's ledger) and Segment
   requests per batch (counted by the sink), with the floor;
3. cold start: import time of each handler module vs ``import boto3`` alone, in fresh processes;
4. size of each built function and of the layer (``.aws-sam/build``);
5. US dollars per million events at AWS list prices (``bench/prices.py``), per component, for the forwarder over
   SQS and HTTP and the typical stack (library defaults and tuned), on three workloads (``mixed``, ``steady``,
   ``launch``: ``bench/workload.py``), with simulated latency (5 ms per AWS request, 50 ms per Segment request);
6. DynamoDB request units per event against the floor (a claim and a mark per new fact);
7. latency: SQS throughput of the three stacks and the forwarder's HTTP latency and sequential AWS requests;
8. issue 11's targets: met or not, the figure, what bounds it.

Sections 5-8 come from one measurement (``bench.costrun``) and also go to ``--results`` (``.bench/results.json``).
Progress goes to stderr, the tables to stdout. Options: ``--runs``, ``--batches``, ``--batch-size``, ``--seed``,
``--import-runs``, ``--sections`` (e.g. ``34``), ``--tuned`` (adds the typical stack with a short
``upload_interval`` to sections 1-2), ``--aws-latency-ms`` / ``--segment-latency-ms`` (added per request in
sections 1-2), ``--cost-aws-latency-ms`` / ``--cost-segment-latency-ms`` / ``--cost-batches`` / ``--cost-http-batches``
(sections 5-8).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "forwarder"))  # segment_forwarder, as the layer provides it on Lambda

from bench import coldstart, costrun, package_size  # noqa: E402
from bench.costreport import CostReport  # noqa: E402
from bench.report import ratio, size, table  # noqa: E402
from bench.throughput import Run, Stack, StackEnvironment  # noqa: E402
from bench.workload import Workload, generate  # noqa: E402

TUNED_UPLOAD_INTERVAL_S = costrun.TUNED_UPLOAD_INTERVAL_S
WARMUP_BATCHES = 3
RESULTS = ROOT / ".bench" / "results.json"


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- sections 1 and 2 --------------------------------------------------------------------------------------------


def run_throughput(
    env: StackEnvironment, args: argparse.Namespace
) -> tuple[list[Stack], dict[str, list[Run]], Workload]:
    """Warm up every stack, then run the workload ``args.runs`` times per stack, interleaved."""
    env.set_latency(args.aws_latency_ms / 1000, args.segment_latency_ms / 1000)
    stacks: list[Stack] = []
    try:
        stacks += [env.ours(), env.typical("typical", "typical stack (library defaults)")]
        if args.tuned:
            label = f"typical, upload_interval={TUNED_UPLOAD_INTERVAL_S:g} s"
            stacks.append(env.typical("tuned", label, TUNED_UPLOAD_INTERVAL_S))
        for stack in stacks:
            _progress(f"warming up {stack.label}")
            env.run(stack, generate(args.seed, f"warm-{stack.key}", WARMUP_BATCHES, args.batch_size))
        results: dict[str, list[Run]] = {stack.key: [] for stack in stacks}
        for run in range(args.runs):
            for stack in stacks:
                workload = generate(args.seed, f"{stack.key}-{run}", args.batches, args.batch_size)
                result = env.run(stack, workload)
                results[stack.key].append(result)
                _progress(f"run {run + 1}/{args.runs} {stack.label}: {result.events_per_s:.0f} events/s")
    finally:
        env.set_latency(0, 0)
        for stack in stacks:
            stack.close()
    return stacks, results, generate(args.seed, "expected", args.batches, args.batch_size)


def _median_rate(results: list[Run]) -> float:
    return statistics.median(r.events_per_s for r in results)


def throughput_table(stacks: list[Stack], results: dict[str, list[Run]], workload: Workload) -> str:
    """Section 1."""
    ours = _median_rate(results["ours"])
    rows = []
    for stack in stacks:
        runs = results[stack.key]
        rate = _median_rate(runs)
        ms_per_batch = statistics.median(r.seconds / r.batches * 1000 for r in runs)
        flush_share = sum(r.flush_seconds for r in runs) / sum(r.seconds for r in runs)
        rows.append(
            [
                stack.label if stack.key != "ours" else "segment-forwarder (ours)",
                f"{rate:.0f}",
                " / ".join(f"{r.events_per_s:.0f}" for r in runs),
                f"{ms_per_batch:.0f}",
                f"{flush_share:.0%}" if stack.key != "ours" else "-",
                "1.0x" if stack.key == "ours" else ratio(ours, rate),
            ]
        )
    notes = []
    for stack in stacks:
        runs = results[stack.key]
        delivered = sorted({r.segment_messages for r in runs})
        check = "as expected" if delivered == [workload.messages] else f"EXPECTED {workload.messages}"
        failed = sum(r.first_failures for r in runs)
        unfinished = sum(r.unfinished for r in runs)
        notes.append(
            f"{stack.key}: Segment messages per run {'/'.join(map(str, delivered))} ({check}); records reported failed "
            f"and redelivered: {failed} in {len(runs)} runs" + (f", {unfinished} never finished" if unfinished else "")
        )
    title = (
        f"1. Throughput: {len(workload.batches)} SQS batches x {len(workload.batches[0].bodies)} records "
        f"({workload.events} events, {workload.duplicates / workload.events:.0%} duplicates, "
        f"{workload.workspaces} workspaces), warm, median of {len(results['ours'])} runs"
    )
    notes.append(
        "typical: Powertools BatchProcessor, @idempotent_function per record (body hash) and per visitor (first"
    )
    notes.append("Identify), segment-analytics-python Client per workspace (sync_mode=False), flushed per invocation.")
    notes.append("in flush(): share of the time spent in Client.flush(); its consumer thread sends a batch when its")
    notes.append(
        "upload_interval window (0.5 s by default) closes."
        + ("" if "tuned" in results else f" --tuned adds a row with {TUNED_UPLOAD_INTERVAL_S:g} s.")
    )
    header = ["stack", "events/s", "runs (events/s)", "ms/batch", "in flush()", "ours faster"]
    return table(title, header, rows, notes)


def requests_table(stacks: list[Stack], results: dict[str, list[Run]], workload: Workload) -> str:
    """Section 2."""
    operations = sorted({op for runs in results.values() for r in runs for op in r.aws_calls})
    header = ["per event (mean of all runs)", *[s.key for s in stacks]]
    rows: list[list[str] | None] = []

    def per_event(stack: Stack, value: float) -> str:
        events = sum(r.events for r in results[stack.key])
        return f"{value / events:.2f}" if value else "-"

    for op in operations:
        rows.append([op, *[per_event(s, sum(r.aws_calls[op] for r in results[s.key])) for s in stacks]])
    rows.append(None)
    rows.append(
        ["AWS requests", *[per_event(s, sum(sum(r.aws_calls.values()) for r in results[s.key])) for s in stacks]]
    )
    rows.append(
        [
            "DynamoDB write units (by item size)",
            *[per_event(s, sum(r.units("wru") for r in results[s.key])) for s in stacks],
        ]
    )
    floor_writes = f"{workload.new_facts / workload.events:.2f}"
    rows.append(["floor: 1 conditional write per new fact", *[floor_writes for _ in stacks]])
    rows.append(None)
    rows.append(["per SQS batch", *["" for _ in stacks]])
    rows.append(
        [
            "Segment requests",
            *[
                f"{sum(len(r.segment_requests) for r in results[s.key]) / sum(r.batches for r in results[s.key]):.2f}"
                for s in stacks
            ],
        ]
    )
    floor_segment = f"{workload.segment_floor / len(workload.batches):.2f}"
    rows.append(["floor: 1 per workspace with news", *[floor_segment for _ in stacks]])
    failed = [sum(r.segment_failed_requests for r in results[s.key]) for s in stacks]
    if any(failed):
        rows.append(["Segment requests answered non-200", *[str(n) for n in failed]])
    title = (
        f"2. Requests: {workload.events} events = {workload.events - workload.duplicates} with news + "
        f"{workload.duplicates} duplicates; {workload.new_facts} new facts, {workload.messages} Segment messages"
    )
    notes = [
        "AWS requests counted at botocore's BaseClient._make_api_call; Segment requests by the sink.",
        "DynamoDB write units: the endpoint's ledger, per item by the larger of its size before and after the",
        "write; failed conditional writes included (they are billed too). Issue 11's floor (a claim and a mark",
        "per new fact) is in section 6.",
    ]
    return table(title, header, rows, notes)


# -- sections 3 and 4 --------------------------------------------------------------------------------------------


def coldstart_table(timings: list[coldstart.ImportTiming]) -> str:
    """Section 3."""
    boto3_ms = timings[0].median_ms
    rows = []
    for timing in timings:
        is_boto3 = timing is timings[0]
        rows.append(
            [
                timing.target.label,
                f"{timing.median_ms:.0f}",
                f"{min(timing.samples_ms):.0f}-{max(timing.samples_ms):.0f}",
                "-" if is_boto3 else f"+{timing.median_beyond_boto3_ms:.0f}",
                "1.0x" if is_boto3 else ratio(timing.median_ms, boto3_ms),
            ]
        )
    runs = len(timings[0].samples_ms)
    notes = [
        "Fresh interpreter per sample, import statements only (interpreter start-up excluded), warm bytecode",
        "caches. beyond boto3: the module's import after boto3 was imported, in the same process (less noisy).",
        "The forwarder creates its boto3 clients at the first invocation (not counted); the typical stack",
        "creates its DynamoDB client at import (counted).",
    ]
    header = ["module", "import ms", "min-max", "beyond boto3", "x boto3"]
    return table(f"3. Cold start: import time, median of {runs} fresh processes each", header, rows, notes)


def size_table(sizes: list[package_size.PackageSize] | None) -> str:
    """Section 4."""
    title = "4. Built package size (.aws-sam/build, sam build output)"
    if sizes is None:
        return f"{title}\n  no build found: run make build"
    rows: list[list[str] | None] = []
    for item in sizes:
        state = "STALE: run make build" if item.stale else ""
        rows.append([item.name, str(item.files), size(item.bytes), size(item.zip_bytes), state])
        for part, part_bytes in sorted(item.parts.items(), key=lambda kv: -kv[1]):
            rows.append([f"  {part}", "", size(part_bytes), "", ""])
    notes = ["zipped: deflate zip made here, as deployed. Lambda limits: 50 MB zipped, 250 MB unzipped."]
    return table(title, ["artifact", "files", "unzipped", "zipped", ""], rows, notes)


# -- main ---------------------------------------------------------------------------------------------------------


def summary(
    results: dict[str, list[Run]] | None,
    workload: Workload | None,
    timings: list[coldstart.ImportTiming] | None,
    sizes: list[package_size.PackageSize] | None,
    report: CostReport | None,
) -> str:
    """The one-line summary of what was measured."""
    parts = []
    if results and workload:
        ours, typical = _median_rate(results["ours"]), _median_rate(results["typical"])

        def aws(key: str) -> float:
            return sum(sum(r.aws_calls.values()) for r in results[key]) / sum(r.events for r in results[key])

        def seg(key: str) -> float:
            return sum(len(r.segment_requests) for r in results[key]) / sum(r.batches for r in results[key])

        parts.append(f"{ours:.0f} vs {typical:.0f} events/s ({ratio(ours, typical)}) against the typical stack")
        parts.append(f"{aws('ours'):.2f} vs {aws('typical'):.2f} AWS requests/event")
        floor = workload.segment_floor / len(workload.batches)
        parts.append(f"{seg('ours'):.2f} vs {seg('typical'):.2f} Segment requests/batch (floor {floor:.2f})")
    if report:
        costs = ", ".join(
            f"{name} ${report.total(name, 'ours'):.2f} vs ${report.total(name, 'typical'):.2f}"
            for name in report.measured
        )
        parts.append(f"US$ per million events, ours vs typical: {costs}")
    if timings:
        beyond = max(t.median_beyond_boto3_ms for t in timings[1:5])
        parts.append(f"handlers import boto3 ({timings[0].median_ms:.0f} ms) + <= {beyond:.0f} ms")
    if sizes:
        layer = sizes[-1]
        parts.append(f"layer {size(layer.zip_bytes)} zipped, functions {size(max(s.zip_bytes for s in sizes[:-1]))}")
    return "Summary: " + "; ".join(parts) + "."


def write_results(report: CostReport, args: argparse.Namespace, path: Path) -> None:
    """Write ``report.results()`` with the run's circumstances to ``path`` (JSON)."""
    document = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "moto": version("moto")},
        "seed": args.seed,
        **report.results(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and print their tables."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="measured runs per stack (median reported)")
    parser.add_argument("--batches", type=int, default=30, help="SQS batches per run")
    parser.add_argument("--batch-size", type=int, default=10, help="records per SQS batch")
    parser.add_argument("--seed", type=int, default=7, help="workload seed")
    parser.add_argument("--import-runs", type=int, default=5, help="fresh processes per import measurement")
    parser.add_argument("--sections", default="12345678", help="sections to run, e.g. 34")
    parser.add_argument(
        "--tuned",
        action="store_true",
        help=f"sections 1-2: add the typical stack with upload_interval={TUNED_UPLOAD_INTERVAL_S:g} s",
    )
    parser.add_argument("--aws-latency-ms", type=float, default=0, help="sections 1-2: added before every AWS request")
    parser.add_argument("--segment-latency-ms", type=float, default=0, help="sections 1-2: added to Segment requests")
    parser.add_argument("--cost-aws-latency-ms", type=float, default=5, help="sections 5-8: per AWS request")
    parser.add_argument("--cost-segment-latency-ms", type=float, default=50, help="sections 5-8: per Segment request")
    parser.add_argument("--cost-batches", type=int, default=30, help="sections 5-8: SQS batches per workload")
    parser.add_argument(
        "--cost-http-batches", type=int, default=20, help="sections 5-8: batches whose records go over HTTP"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="sections 5-8: the JSON results file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    sections = set(args.sections)

    sizes = timings = results = workload = stacks = report = None
    if "4" in sections:
        _progress("measuring the built packages")
        sizes = package_size.measure()
    if "3" in sections:
        _progress(f"timing imports ({args.import_runs} fresh processes per module)")
        timings = coldstart.measure(args.import_runs)
    if sections & set("125678"):
        env = StackEnvironment.start()
        try:
            if sections & {"1", "2"}:
                stacks, results, workload = run_throughput(env, args)
            if sections & set("5678"):
                parameters = costrun.CostRunParameters(
                    aws_ms=args.cost_aws_latency_ms,
                    segment_ms=args.cost_segment_latency_ms,
                    batches=args.cost_batches,
                    batch_size=args.batch_size,
                    seed=args.seed,
                    http_batches=args.cost_http_batches,
                )
                report = CostReport(costrun.measure(env, parameters, _progress), parameters, env.memory_mb)
        finally:
            env.stop()

    cpus = os.cpu_count() or 0
    print(
        f"segment-forwarder benchmark: Python {platform.python_version()}, {cpus} CPUs, "
        f"moto {version('moto')} (ThreadedMotoServer, own process), Segment sink in-process, seed {args.seed}"
    )
    if args.aws_latency_ms or args.segment_latency_ms:
        print(
            f"sections 1-2, added latency: {args.aws_latency_ms:g} ms per AWS request (slept by the caller), "
            f"{args.segment_latency_ms:g} ms per Segment request (sink)"
        )
    blocks = []
    if stacks and results and workload:
        if "1" in sections:
            blocks.append(throughput_table(stacks, results, workload))
        if "2" in sections:
            blocks.append(requests_table(stacks, results, workload))
    if timings:
        blocks.append(coldstart_table(timings))
    if "4" in sections:
        blocks.append(size_table(sizes))
    if report:
        if "5" in sections:
            blocks.extend(report.cost_table(name) for name in report.measured)
            blocks.append(report.price_table())
        if "6" in sections:
            blocks.append(report.units_table())
        if "7" in sections:
            blocks.append(report.latency_table())
        if "8" in sections:
            blocks.append(report.targets_table())
        write_results(report, args, args.results)
    for block in blocks:
        print()
        print(block)
    print()
    print(summary(results, workload, timings, sizes, report))
    if report:
        print(f"results: {args.results}")
    print(f"(measured in {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
