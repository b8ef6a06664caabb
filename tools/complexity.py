"""The complexity gate: ruff's mccabe (C90) and pylint-refactor (PLR) rules over the whole repository, held to a
baseline that can only shrink.

    python -m tools.complexity            # the check (`make lint`); exit 1 on any difference from the baseline
    python -m tools.complexity --update   # rewrite the baseline from the code as it is (after a fix, a move, a merge)
    python -m tools.complexity --summary  # violations per rule and the worst functions

The rules are C90 and PLR but PLR2004 (see ``IGNORED``); the thresholds are ruff's, set in pyproject.toml
(``[tool.ruff.lint.mccabe]``, ``[tool.ruff.lint.pylint]``). Each line of ``tools/complexity_baseline.txt`` is one
violation allowed as it stands today::

    layers/forwarder/segment_forwarder/facts.py:C901:plan_call:17

path, rule, the function's qualified name (``<module>`` outside any), and the measure ruff reports for the size
rules (complexity, branches, statements, returns, arguments: ``(17 > 10)``), else the number of occurrences in that
function. The check fails on a violation the baseline does not list, on one whose measure grew, and on a listed one
that is gone or smaller (so the improvement is recorded and cannot come back unseen). ``--update`` prints what it
added, so a growing baseline shows in review.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "tools" / "complexity_baseline.txt"
RULES = ("C90", "PLR")
# PLR2004 (a literal in a comparison, ``status == 429``) is no measure of complexity, and the literal reads better
# than a constant in most of our places (HTTP statuses, protocol limits); the rest of PLR is held.
IGNORED = ("PLR2004",)
_MEASURE = re.compile(r"\((\d+) > \d+\)")
_HEADER = """\
# The complexity baseline: violations of ruff's C90 and PLR rules allowed as they stand; it may only shrink.
# path:rule:function:measure. Checked by `python -m tools.complexity` (make lint); rewritten by --update.
"""

Violations = dict[str, int]  # "path:rule:function" -> measure (or count)


def measure(root: Path = ROOT) -> Violations:
    """The repository's C90/PLR violations now, keyed ``path:rule:function``."""
    command = [sys.executable, "-m", "ruff", "check", "--select", ",".join(RULES), "--ignore", ",".join(IGNORED)]
    answer = subprocess.run(  # noqa: S603 - our own interpreter and ruff, fixed arguments
        [*command, "--output-format", "json", "--exit-zero", "."], cwd=root, capture_output=True, text=True, check=True
    )
    found: Violations = {}
    for violation in json.loads(answer.stdout):
        path = Path(violation["filename"]).resolve().relative_to(root).as_posix()
        function = enclosing_function(root / path, violation["location"]["row"])
        key = f"{path}:{violation['code']}:{function}"
        size = _MEASURE.search(violation["message"])
        if size:  # two functions of one qualified name (redefinitions): the larger counts
            found[key] = max(found.get(key, 0), int(size.group(1)))
        else:
            found[key] = found.get(key, 0) + 1
    return found


def enclosing_function(path: Path, row: int) -> str:
    """Qualified name of the innermost function or class around line ``row`` (``Outer.method``), else ``<module>``."""
    best, best_start = "<module>", 0
    for start, end, name in _scopes(path):
        if start <= row <= end and start >= best_start:
            best, best_start = name, start
    return best


@functools.cache
def _scopes(path: Path) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every def and class; a def starts at ``def`` (not its decorators),
    which is where ruff reports it."""
    scopes: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                scopes.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return tuple(scopes)


def read_baseline(path: Path = BASELINE) -> Violations:
    """The baseline file as ``path:rule:function`` -> measure (empty when there is no file)."""
    if not path.exists():
        return {}
    entries: Violations = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.rpartition(":")
            entries[key] = int(value)
    return entries


def write_baseline(found: Violations, path: Path = BASELINE) -> None:
    """Write ``found`` as the baseline, sorted (one line per violation)."""
    lines = [f"{key}:{value}" for key, value in sorted(found.items())]
    path.write_text(_HEADER + "\n".join(lines) + "\n", encoding="utf-8")


def compare(baseline: Violations, found: Violations) -> list[str]:
    """Every difference between the baseline and what the code has now, one line each (empty: the gate passes).

    >>> compare({"a.py:C901:f": 12}, {"a.py:C901:f": 12})
    []
    >>> compare({"a.py:C901:f": 12}, {"a.py:C901:f": 11})
    ['shrank: a.py:C901:f: 12 -> 11  (run --update to record it)']
    """
    problems = []
    for key in sorted(baseline.keys() | found.keys()):
        before, now = baseline.get(key), found.get(key)
        if before is None:
            problems.append(f"new:    {key}:{now}  (simplify it; the baseline only shrinks)")
        elif now is None:
            problems.append(f"gone:   {key}:{before}  (fixed or moved: run --update to record it)")
        elif now > before:
            problems.append(f"grew:   {key}: {before} -> {now}  (simplify it; the baseline only shrinks)")
        elif now < before:
            problems.append(f"shrank: {key}: {before} -> {now}  (run --update to record it)")
    return problems


def summary(found: Violations, worst: int = 10) -> str:
    """Violations per rule, and the functions with the highest complexity (C901)."""
    per_rule = Counter(key.split(":")[1] for key in found)
    lines = [f"{count:4} {rule}" for rule, count in sorted(per_rule.items())]
    lines.append(f"{sum(per_rule.values()):4} in all")
    complex_ = sorted(((v, k) for k, v in found.items() if ":C901:" in k), reverse=True)[:worst]
    lines += ["worst (C901):", *(f"  {value:3} {key.replace(':C901', '')}" for value, key in complex_)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The check (exit 1 on a difference), or ``--update`` / ``--summary``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m tools.complexity", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite the baseline from the code as it is")
    parser.add_argument("--summary", action="store_true", help="violations per rule and the worst functions")
    args = parser.parse_args(argv)
    found = measure()
    if args.summary:
        print(summary(found))
        return 0
    baseline = read_baseline()
    problems = compare(baseline, found)
    if args.update:
        write_baseline(found)
        for key, value in sorted(found.items()):  # what it allows beyond the former baseline: shown, and in the diff
            if value > baseline.get(key, 0):
                print(f"now allowed: {key}:{value}")
        print(f"{BASELINE.relative_to(ROOT)}: {len(found)} entries ({len(found) - len(baseline):+d})")
        return 0
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"complexity gate: {len(problems)} difference(s) from {BASELINE.relative_to(ROOT)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
