"""Fuzz the running local API from its OpenAPI document with schemathesis (bounded, deterministic).

Every operation of ``openapi.json`` gets generated requests (valid and invalid bodies, path parameters, other
methods) sent with the bearer token; every answer must be a non-5xx that conforms to the document (status,
content type, body schema), invalid requests must be refused, and requests the document accepts must be accepted.
The run size is printed at the end of the module (``-s`` shows it); ``MAX_EXAMPLES`` bounds it per operation.

Two checks are narrowed, each for a stated reason:

* ``unsupported_method`` (405 for a method the document does not list) is off: API Gateway HTTP APIs answer
  ``404 {"message":"Not Found"}`` to a method without a route, and the local stack does the same.
* ``positive_data_acceptance`` applies only to bodies that really are valid: bodies that break the rules the
  document states in prose (timestamp at most 1 hour ahead and a real date, origin_url an absolute http(s) URL,
  ids and a consent category not blank once trimmed)
  are still sent and checked for everything else. Python's ``jsonschema`` (the pattern semantics the functions
  use) decides what the schema accepts.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance, unsupported_method

from local_stack.stack import LocalStack
from tests.support.stack_client import TOKEN

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).resolve().parents[2] / "layers/forwarder/segment_forwarder/openapi.json"
MAX_EXAMPLES = 40
RUN: Counter[str] = Counter()
NOT_REALLY_POSITIVE: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()

DOCUMENT = json.loads(OPENAPI.read_text(encoding="utf-8"))
schema = schemathesis.openapi.from_path(str(OPENAPI))


def _body_schema(case: schemathesis.Case) -> dict[str, Any] | None:
    operation = DOCUMENT["paths"].get(case.path, {}).get(case.method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return None if content is None else {"components": DOCUMENT["components"], **content["schema"]}


IDS = ("visitor_id", "segment_anonymous_id", "user_id", "test_id", "variant_id", "conversion_id", "event_id")


def _breaks_limits(node: Any) -> bool:
    """The limits the document's description states (its own reading here, not the product's code): 32 levels,
    10,000 values, no unpaired surrogate, numbers a double can hold (generated bodies are far under 32 KB)."""
    return _depth(node) > 32 or _values(node) > 10_000 or _breaks_values(node)


def _depth(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


def _values(node: Any) -> int:
    if isinstance(node, dict):
        return 1 + sum(_values(v) for v in node.values())
    if isinstance(node, list):
        return 1 + sum(_values(v) for v in node)
    return 1


def _breaks_values(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_has_surrogate(k) or _breaks_values(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_breaks_values(v) for v in node)
    if isinstance(node, str):
        return _has_surrogate(node)
    if isinstance(node, float):
        return node != node or node in (float("inf"), float("-inf"))
    if isinstance(node, int) and not isinstance(node, bool):
        return abs(node) > sys.float_info.max
    return False


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip().strip("\ufeff").strip()


def _breaks_prose_rules(body: dict[str, Any]) -> bool:
    """The rules the API states beyond the schema: the limits; ids and a consent category not blank once trimmed;
    a timestamp that is a real instant from 1970 to 1 h ahead; origin_url absolute."""
    if _breaks_limits(body):
        return True
    if any(_blank(body.get(name)) for name in IDS):
        return True
    settings = body.get("settings")
    if isinstance(settings, dict) and _blank(settings.get("consent_category")):
        return True
    timestamp = body.get("timestamp")
    if isinstance(timestamp, str):
        try:
            moment = datetime.fromisoformat(timestamp).astimezone(UTC)
        except (ValueError, OverflowError):
            return True
        if not datetime(1970, 1, 1, tzinfo=UTC) <= moment <= datetime.now(UTC) + timedelta(hours=1):
            return True
    url = body.get("origin_url")
    if isinstance(url, str):
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            return True
        host = parts.netloc.rsplit("@", 1)[-1]
        if not parts.hostname or host.endswith(":") or any(c.isspace() for c in host):
            return True
    return False


def _really_positive(case: schemathesis.Case) -> bool:
    body_schema = _body_schema(case)
    if body_schema is None or not isinstance(case.body, dict):
        return True
    return jsonschema.Draft4Validator(body_schema).is_valid(case.body) and not _breaks_prose_rules(case.body)


@pytest.fixture(scope="module", autouse=True)
def _report_run_size() -> Iterator[None]:
    yield
    total = sum(RUN.values())
    per_operation = ", ".join(f"{name} {count}" for name, count in sorted(RUN.items()) if count > 1)
    others = sum(count for count in RUN.values() if count == 1)
    print(
        f"\nschemathesis: {total} requests, {len(RUN)} method/path pairs ({per_operation}; {others} others once); "
        f"statuses {dict(sorted(STATUSES.items()))}; "
        f"'positive' bodies that were not valid: {sum(NOT_REALLY_POSITIVE.values())}"
    )


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_to_the_openapi_document(case: schemathesis.Case, stack: LocalStack) -> None:
    label = f"{case.method} {case.path}"
    RUN[label] += 1
    excluded = [unsupported_method]
    if case.meta is not None and case.meta.generation.mode.is_positive and not _really_positive(case):
        NOT_REALLY_POSITIVE[label] += 1
        excluded.append(positive_data_acceptance)
    response = case.call_and_validate(
        base_url=stack.api_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=excluded,
    )
    STATUSES[response.status_code] += 1
