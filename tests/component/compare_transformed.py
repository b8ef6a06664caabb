"""Compare template.yaml's SAM transform with another revision's: same logical ids, types and properties.

A tool for template refactors (rewriting template.yaml must not change what CloudFormation deploys):

    .venv/bin/python tests/component/compare_transformed.py cd7a903      # a git revision's template.yaml
    .venv/bin/python tests/component/compare_transformed.py old.yaml      # or a file

Both templates go through the transform ``make security`` scans (``AWS::LanguageExtensions`` expanded by the local
stack, then the real SAM translator, with each SAM resource's Metadata passed through) and, independently, through
SAM CLI's own port of ``AWS::LanguageExtensions`` followed by the same translator. It prints every logical id whose
type, properties, Metadata, Condition or policies differ (resources, outputs, parameters, conditions), and exits 1
when anything differs.
"""

from __future__ import annotations

import json
import os
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

# The same transform with SAM CLI's expansion of AWS::LanguageExtensions instead of the local stack's.
SAM_CLI_TRANSFORM = TRANSFORM.replace(
    "from local_stack.template import expand_language_extensions\n"
    "template = expand_language_extensions(yaml_parse(open(sys.argv[1]).read()))\n",
    "from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions\n"
    "template = expand_language_extensions(yaml_parse(open(sys.argv[1]).read()), parameter_values={}, enabled=True)"
    ".expanded_template\n"
    'template.setdefault("Transform", ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"])\n',
)
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


def differences(old: dict[str, Any], new: dict[str, Any], sections: tuple[str, ...]) -> list[str]:
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
        for label, script in (("local stack expansion", TRANSFORM), ("SAM CLI expansion", SAM_CLI_TRANSFORM)):
            old, new = transform(old_path, script), transform(ROOT / "template.yaml", script)
            print(f"{label}: {len(old['Resources'])} resources before, {len(new['Resources'])} after")
            found += [f"{label}: {line}" for line in differences(old, new, SECTIONS)]
    print("\n".join(found) if found else "same logical ids, types, properties and metadata")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
