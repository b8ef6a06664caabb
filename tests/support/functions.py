"""The functions' entry points as Lambda loads them: ``load_app("assignment").handler`` is a cold start of
``functions/assignment/app.py`` (a fresh module each call)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from local_stack.invoke import load_module

ROOT = Path(__file__).resolve().parents[2]


def load_app(name: str) -> Any:
    """Import ``functions/<name>/app.py`` as a fresh module: a new execution environment (cold start)."""
    return load_module(ROOT / "functions" / name / "app.py", f"app_{name}")
