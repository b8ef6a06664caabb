"""Section 3 of the benchmark: import time of each handler module vs ``import boto3`` alone, in fresh processes.

Each measurement is a new interpreter that times ``import boto3`` and then the module's import with
``time.perf_counter`` (interpreter start-up is not included): the sum is the module's whole import (it imports
boto3 itself), the second part what it adds to boto3, measured in the same process so that machine noise
largely cancels out. The handler's own directory comes first on ``sys.path`` and ``layers/forwarder``
second, as ``/var/task`` and ``/opt/python`` do on Lambda; dependencies come from this virtualenv, with their
bytecode caches warm. Targets are measured round-robin so that drift affects them alike::

    timings = measure(runs=5)        # [ImportTiming(label, samples_ms)], boto3 first
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "forwarder"
HANDLERS = ("identify", "assignment", "conversion", "connection")
# boto3 first, then the module: the second figure is what the module costs beyond boto3, in the same process.
_CODE = (
    "import time\nt0 = time.perf_counter()\nimport boto3\nt1 = time.perf_counter()\nimport {module}\n"
    "t2 = time.perf_counter()\nprint(t2 - t0, t2 - t1)\n"
)


@dataclass(frozen=True, slots=True)
class Target:
    """One import to time: ``module`` imported with ``cwd`` first on sys.path and ``pythonpath`` after it."""

    label: str
    module: str
    cwd: Path
    pythonpath: tuple[Path, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class ImportTiming:
    """Samples of one target, in milliseconds: the whole import, and the part after boto3 was imported."""

    target: Target
    samples_ms: list[float]
    beyond_boto3_ms: list[float]

    @property
    def median_ms(self) -> float:
        """Median of the whole import."""
        return statistics.median(self.samples_ms)

    @property
    def median_beyond_boto3_ms(self) -> float:
        """Median of what the module adds to boto3 (measured in the same process)."""
        return statistics.median(self.beyond_boto3_ms)


def targets() -> list[Target]:
    """boto3 alone, then every function's ``app.py``, then the typical stack's module."""
    found = [Target("import boto3 (alone)", "boto3", Path(tempfile.gettempdir()))]
    for name in HANDLERS:
        found.append(Target(f"functions/{name}/app.py", "app", ROOT / "functions" / name, (LAYER,)))
    found.append(
        Target(
            "bench/typical_app.py (typical stack)",
            "typical_app",
            ROOT / "bench",
            note="creates its DynamoDB client at import",
        )
    )
    return found


def _environment(target: Target) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_ENDPOINT"))}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING",
        POWERTOOLS_SERVICE_NAME="segment-forwarder",
        IDEMPOTENCY_TABLE="idempotency",
    )
    if target.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(path) for path in target.pythonpath)
    return env


def time_import(target: Target) -> tuple[float, float]:
    """Milliseconds one fresh interpreter spends importing the target: in all, and beyond boto3."""
    answer = subprocess.run(  # noqa: S603 - our own interpreter, a fixed import snippet
        [sys.executable, "-c", _CODE.format(module=target.module)],
        cwd=target.cwd,
        env=_environment(target),
        capture_output=True,
        text=True,
        check=False,
    )
    if answer.returncode != 0:
        raise RuntimeError(f"importing {target.label} failed: {answer.stderr.strip().splitlines()[-1:]}")
    total, beyond = (float(x) * 1000 for x in answer.stdout.strip().splitlines()[-1].split())
    return total, beyond


def measure(runs: int = 5) -> list[ImportTiming]:
    """Median-ready samples per target; one untimed round first (bytecode caches)."""
    chosen = targets()
    for target in chosen:
        time_import(target)
    samples: dict[str, list[tuple[float, float]]] = {target.label: [] for target in chosen}
    for _ in range(runs):
        for target in chosen:
            samples[target.label].append(time_import(target))
    return [
        ImportTiming(target, [s[0] for s in samples[target.label]], [s[1] for s in samples[target.label]])
        for target in chosen
    ]
