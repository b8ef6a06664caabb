"""Compare template.yaml's SAM transform with another revision's: same logical ids, types and properties.

A tool for template refactors (rewriting template.yaml must not change what CloudFormation deploys):

    .venv/bin/python tests/component/compare_transformed.py cd7a903      # a git revision's template.yaml
    .venv/bin/python tests/component/compare_transformed.py old.yaml      # or a file

Both templates go through the transform ``make security`` scans (``AWS::LanguageExtensions`` expanded by the local
stack, then the real SAM translator, with each SAM resource's Metadata passed through; the local stack's expansion
is checked against SAM CLI's own in tests/local_stack/test_template.py). A ``Fn::Sub`` whose variables
are literal strings counts as the string it makes. It prints every logical id whose type, properties, Metadata,
Condition or policies differ (resources, outputs, parameters, conditions), and exits 1 when anything differs: a
refactor gives a reason for each line it prints.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from tests.component.test_security import TRANSFORM  # noqa: E402

SECTIONS = ("Parameters", "Mappings", "Conditions", "Rules", "Resources", "Outputs")


def transform(template: Path, script: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAM_CLI_TELEMETRY": "0",
    }
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", script, str(template), "1", str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"SAM transform of {template} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


_VARIABLE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def normalized(value: Any) -> Any:
    """``Fn::Sub`` with a variable map of literal strings written as the one string it makes (a loop writes
    ``!Sub ["${AWS::StackName}-${Name}-queue-age", {Name: identify}]`` where a hand-written block had
    ``!Sub "${AWS::StackName}-identify-queue-age"``: the same value), and a Sub without variables as its text."""
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: normalized(item) for key, item in value.items()}
    sub = value.get("Fn::Sub") if len(value) == 1 else None
    if isinstance(sub, list) and len(sub) == 2 and isinstance(sub[0], str) and isinstance(sub[1], dict):
        literal = {name: text for name, text in sub[1].items() if isinstance(text, str)}
        text = _VARIABLE.sub(lambda match: literal.get(match.group(1), match.group(0)), sub[0])
        rest = {name: item for name, item in sub[1].items() if name not in literal}
        sub = [text, rest] if rest else text
    if isinstance(sub, str):
        return sub if "${" not in sub else {"Fn::Sub": sub}
    return value


def differences(old: dict[str, Any], new: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
    old, new = normalized(old), normalized(new)
    found = []
    for section in sections:
        before, after = old.get(section, {}), new.get(section, {})
        for name in sorted(set(before) | set(after)):
            if name not in after:
                found.append(f"{section}.{name}: removed")
            elif name not in before:
                found.append(f"{section}.{name}: added")
            elif before[name] != after[name]:
                found.append(f"{section}.{name}: differs in {', '.join(paths(before[name], after[name]))}")
    return found


def paths(before: Any, after: Any, at: str = "") -> list[str]:
    """Where two values differ, as dotted paths (``Properties.AlarmName``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        return [p for k in keys for p in paths(before.get(k), after.get(k), f"{at}.{k}" if at else k)]
    return [at or "(value)"]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        old_path = Path(argv[0])
        if not old_path.exists():
            old_path = Path(tmp) / "template.yaml"
            shown = subprocess.run(
                ["git", "show", f"{argv[0]}:template.yaml"], cwd=ROOT, capture_output=True, text=True, check=True
            )
            old_path.write_text(shown.stdout, encoding="utf-8")
        found = []
        old, new = transform(old_path, TRANSFORM), transform(ROOT / "template.yaml", TRANSFORM)
        print(f"{len(old['Resources'])} resources before, {len(new['Resources'])} after")
        found += differences(old, new, SECTIONS)
    print("\n".join(found) if found else "same logical ids, types, properties and metadata")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
