"""Request validation against the OpenAPI document (``openapi.json``, the one source of truth).

Schemas are compiled with fastjsonschema on first use per route, so a function compiles only its own::

    from segment_forwarder.validation import parse_body

    body = parse_body("AssignmentRequest", raw_bytes)  # dict[str, Any], or raises RequestError(400/413, ...)

Beyond the schema, two rules JSON Schema cannot state are checked here: a timestamp at most one hour in the
future that is also a real date, and an ``origin_url`` with a host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fastjsonschema

from .errors import RequestError
from .events import parse_timestamp

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MAX_BODY_BYTES = 32 * 1024
MAX_FUTURE = timedelta(hours=1)


@cache
def openapi_document() -> dict[str, Any]:
    """The parsed OpenAPI document shipped with the package."""
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


def _inline_refs(node: Any, components: dict[str, Any]) -> Any:
    """Replace ``#/components/schemas/X`` references by the schemas they name (the document has no cycles)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return _inline_refs(components[ref.rsplit("/", 1)[1]], components)
        return {k: _inline_refs(v, components) for k, v in node.items() if k not in ("example", "nullable")}
    if isinstance(node, list):
        return [_inline_refs(v, components) for v in node]
    return node


@cache
def _validator(schema_name: str) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    components = openapi_document()["components"]["schemas"]
    schema = _inline_refs(components[schema_name], components)
    return fastjsonschema.compile(schema, use_default=False), schema


def is_valid(schema_name: str, value: Any) -> bool:
    """Whether ``value`` matches a component schema of the OpenAPI document (e.g. a path parameter)."""
    check, _ = _validator(schema_name)
    try:
        check(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def _field_of(exc: fastjsonschema.JsonSchemaValueException, data: Any, schema: dict[str, Any]) -> str:
    """Name the offending field as a dotted path (``context.page.url``), resolving required/unknown names."""
    path = [str(p) for p in (exc.path or [])][1:]  # drop the leading "data"
    node_schema, node = schema, data
    for part in path:
        node_schema = node_schema.get("properties", {}).get(part, {})
        node = node.get(part) if isinstance(node, dict) else None
    if exc.rule == "required" and isinstance(node, dict):
        missing = [name for name in node_schema.get("required", []) if name not in node]
        path = [*path, missing[0]] if missing else path
    elif exc.rule == "additionalProperties" and isinstance(node, dict):
        unknown = sorted(set(node) - set(node_schema.get("properties", {})))
        path = [*path, unknown[0]] if unknown else path
    return ".".join(path)


_CODES = {"required": "missing_field", "additionalProperties": "unknown_field", "type": "invalid_type"}


def validate(schema_name: str, data: Any) -> dict[str, Any]:
    """Validate parsed JSON against a component schema of the OpenAPI document; return it or raise 400."""
    check, schema = _validator(schema_name)
    if not isinstance(data, dict):
        raise RequestError(400, "invalid_body", "the body must be a JSON object", "body")
    try:
        check(data)
    except fastjsonschema.JsonSchemaValueException as exc:
        field = _field_of(exc, data, schema)
        code = _CODES.get(exc.rule or "", "invalid_value")
        if code == "missing_field":
            message = f"{field} is required"
        elif code == "unknown_field":
            message = f"{field} is not a known field"
        else:
            message = f"{field} {_describe(exc)}"
        raise RequestError(400, code, message, field) from None
    _check_semantics(data)
    return data


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    definition = exc.rule_definition
    return {
        "type": f"must be of type {definition}",
        "minLength": f"must be at least {definition} characters long",
        "maxLength": f"must be at most {definition} characters long",
        "pattern": "has characters or a form that are not allowed",
        "enum": f"must be one of {definition}",
        "format": f"must be a valid {definition}",
    }.get(exc.rule or "", "is not valid")


_HOST = re.compile(r"^[^\s:@/]+(:[0-9]{1,5})?$")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _unpaired_surrogate(node: Any, path: str = "") -> str | None:
    """Dotted path of the first string holding an unpaired UTF-16 surrogate (JSON allows ``"\\ud800"``)."""
    if isinstance(node, str):
        return path if _SURROGATE.search(node) else None
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            found = _unpaired_surrogate(key, child) or _unpaired_surrogate(value, child)
            if found is not None:
                return found
    if isinstance(node, list):
        for index, value in enumerate(node):
            found = _unpaired_surrogate(value, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def _check_semantics(data: dict[str, Any]) -> None:
    broken = _unpaired_surrogate(data)
    if broken is not None:
        raise RequestError(400, "invalid_value", f"{broken} holds an unpaired UTF-16 surrogate (not text)", broken)
    timestamp = data.get("timestamp")
    if timestamp is not None:
        try:
            when = parse_timestamp(timestamp)
        except ValueError:
            raise RequestError(400, "invalid_value", "timestamp is not a real date and time", "timestamp") from None
        if when - datetime.now(UTC) > MAX_FUTURE:
            raise RequestError(
                400, "invalid_value", "timestamp is more than 1 hour in the future", "timestamp"
            ) from None
    url = data.get("origin_url")
    if url is not None:
        host = urlsplit(url).netloc.rsplit("@", 1)[-1]
        if not _HOST.match(host):
            raise RequestError(400, "invalid_value", "origin_url must be an absolute http(s) URL", "origin_url")


def parse_body(schema_name: str, raw: bytes) -> dict[str, Any]:
    """Decode, size-check and validate a request body.

    Raises RequestError: 413 over 32 KB, 400 for an empty body, bad JSON/UTF-8 or a schema violation.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes", "body")
    if not raw.strip():
        raise RequestError(400, "invalid_body", "the body is empty; a JSON object is required", "body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, "invalid_json", f"the body is not valid JSON ({_json_reason(exc)})", "body") from None
    return validate(schema_name, data)


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "not UTF-8 text"
