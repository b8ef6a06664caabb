"""Request validation: a body is either deliverable or refused here, with the offending field named.

Schemas come from the OpenAPI document (``openapi.json``, the one source of truth), compiled with fastjsonschema
on first use per route, so a function compiles only its own::

    from segment_forwarder.validation import parse_body

    body = parse_body("AssignmentRequest", raw_bytes)  # dict[str, Any], or raises RequestError

    parsed = parse_request("AssignmentRequest", raw_bytes)  # a body as parse_body, or a Batch of raw bodies
    if isinstance(parsed, Batch):
        bodies = [validate_item("AssignmentRequest", item) for item in parsed.bodies]  # each alone: RequestError

Checked in this order, each failure a RequestError naming the field (a dotted path, ``body`` for the whole):

1. the body: at most 32 KB, not empty, UTF-8 JSON (``NaN``/``Infinity`` are not JSON);
2. its shape, without recursion: only the guards that protect the function, with limits no real payload
   reaches (Segment itself takes any JSON within 32 KB per message): at most ``MAX_DEPTH`` levels of objects
   and arrays and ``MAX_NODES`` values in all; no unpaired UTF-16 surrogate anywhere (it cannot be sent as
   UTF-8); numbers a double can hold (finite, integers of any size within its range);
3. the route's schema (required and unknown fields, types, lengths of the ids, patterns, enums);
4. the rules a schema cannot state: ids that are not blank after trimming whitespace (Segment refuses them),
   a timestamp that is a real instant from 1970 to one hour ahead, an ``origin_url`` with a host.

Keys, strings, objects and arrays have no bound of their own: a context of 500 keys, an array of 1,000 items or
a 20 KB string is accepted when the messages built from the body are within Segment's 32 KB (measured as they
are sent, compact UTF-8; see ``messages.message_size``). Every bound is stated in the OpenAPI document too.

A batch (``{"batch": [body, ...]}``, schema ``BatchRequest``) is at most 500 KB (``MAX_BATCH_BYTES``) of UTF-8 JSON
with 1 to 100 bodies; its envelope is refused whole (too large over 500 KB), while each body inside is checked
alone by ``validate_item`` with every rule above (its size measured as compact UTF-8 JSON, as it is queued).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import fastjsonschema

from .errors import PayloadTooLargeError, RequestError
from .events import parse_timestamp
from .messages import usable_id

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MAX_BODY_BYTES: Final = 32 * 1024
MAX_BATCH_BYTES: Final = 500 * 1024  # a batch envelope (API Gateway takes 10 MB, Lambda 6 MB: far from either)
MAX_BATCH_BODIES: Final = 100
BATCH_SCHEMA: Final = "BatchRequest"
MAX_DEPTH: Final = 32  # the body is level 1, ``context`` level 2, ``context.consent.categoryPreferences`` level 4
MAX_NODES: Final = 10_000  # every value counts: objects, arrays, strings, numbers, booleans, nulls (the body too)
MAX_INTEGER_DIGITS: Final = 309  # a double's range is below 1.8e308: a longer integer is not parsed at all
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_FUTURE: Final = timedelta(hours=1)
ID_FIELDS: Final = (
    "visitor_id",
    "segment_anonymous_id",
    "user_id",
    "test_id",
    "variant_id",
    "conversion_id",
    "event_id",
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_HOST = re.compile(r"^[^\s:@/]+(:[0-9]{1,5})?$")
_BATCH_START = re.compile(rb'\s*\{\s*"batch"\s*:')


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


# -- 1. the body ---------------------------------------------------------------------------------------------


class _Unrepresentable:
    """A number no double can hold, kept as a marker so the walk can name its field: ``NaN``, ``Infinity``
    (not JSON at all), a float or an integer beyond the double range (JavaScript and most JSON readers on the way
    to Segment's destinations read numbers as doubles)."""


_FINITE = "a finite number within the range of a double (±1.8e308)"
_LARGEST_DOUBLE: Final = sys.float_info.max


def _parse_float(text: str) -> float | _Unrepresentable:
    value = float(text)
    return value if abs(value) != float("inf") else _Unrepresentable()


def _parse_int(text: str) -> int | _Unrepresentable:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _Unrepresentable()
    value = int(text)
    return value if abs(value) <= _LARGEST_DOUBLE else _Unrepresentable()


def _parse_constant(text: str) -> _Unrepresentable:
    return _Unrepresentable()


def parse_body(schema_name: str, raw: bytes) -> dict[str, Any]:
    """Decode, bound and validate a request body.

    Raises PayloadTooLargeError over 32 KB, RequestError for an empty body, bad JSON/UTF-8, a bound exceeded, a
    schema violation or a rule broken, always naming the field.
    """
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes", "body")
    return validate(schema_name, _decode(raw))


class Batch(NamedTuple):
    """The bodies of a batch envelope whose envelope is valid; each body is still unchecked (``validate_item``)."""

    bodies: list[Any]


def parse_request(schema_name: str, raw: bytes) -> dict[str, Any] | Batch:
    """A single body, decoded and validated as ``parse_body`` does, or a batch envelope's bodies.

    An object with a ``batch`` member is a batch (no ingest body has that field): it must be exactly
    ``{"batch": [...]}`` with 1 to ``MAX_BATCH_BODIES`` items (``BatchRequest``) within ``MAX_BATCH_BYTES``. A body
    over 32 KB that is not a batch is refused as too large as ``parse_body`` refuses it. RequestError names the field.
    """
    if len(raw) > MAX_BATCH_BYTES:
        if _BATCH_START.match(raw[:256]):
            raise PayloadTooLargeError(f"the batch is over {MAX_BATCH_BYTES} bytes", "batch")
        raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes", "body")
    if len(raw) > MAX_BODY_BYTES:
        try:
            data = _decode(raw)
        except RequestError:
            data = None
        if not (isinstance(data, dict) and "batch" in data):
            raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes", "body")
    else:
        data = _decode(raw)
    if isinstance(data, dict) and "batch" in data:
        check, schema = _validator(BATCH_SCHEMA)
        _check_schema(check, schema, data)
        return Batch(list(data["batch"]))
    return validate(schema_name, data)


def validate_item(schema_name: str, item: Any) -> dict[str, Any]:
    """One body of a batch, checked alone as a single call's body is (``parse_body``): PayloadTooLargeError when
    it is over 32 KB as compact UTF-8 JSON (how it is queued), RequestError for anything else, naming the field."""
    try:
        text = json.dumps(item, separators=(",", ":"), ensure_ascii=False, default=lambda _: None)
    except RecursionError:
        raise RequestError("invalid_value", f"the body nests deeper than {MAX_DEPTH} levels", "body") from None
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body is over {MAX_BODY_BYTES} bytes", "body")
    return validate(schema_name, item)


def _decode(raw: bytes) -> Any:
    """UTF-8 JSON text as Python values; numbers no double holds and ``NaN``/``Infinity`` kept as markers."""
    if not raw.strip():
        raise RequestError("invalid_body", "the body is empty; a JSON object is required", "body")
    try:
        return json.loads(raw, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise RequestError("invalid_value", f"the body nests deeper than {MAX_DEPTH} levels", "body") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError("invalid_json", f"the body is not valid JSON ({_json_reason(exc)})", "body") from None


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "not UTF-8 text"


# -- 2. the shape --------------------------------------------------------------------------------------------


def _path(parts: tuple[str, ...]) -> str:
    """A dotted field path (``context.page.url``); an empty key shows as ``""``, the body itself as ``body``."""
    return ".".join(part or '""' for part in parts) if parts else "body"


def _check_shape(data: Any) -> None:
    """Walk the whole body without recursion; RequestError for the first node out of bounds."""
    stack: list[tuple[Any, tuple[str, ...], int]] = [(data, (), 1)]
    nodes = 0
    while stack:
        node, path, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            field = _path(path[:-1])
            message = f"{field}: the body holds more than {MAX_NODES} values (objects, arrays, strings, numbers...)"
            raise RequestError("invalid_value", message, field)
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise RequestError("invalid_value", f"{_path(path)} nests deeper than {MAX_DEPTH} levels", _path(path))
        if isinstance(node, dict):
            for key, value in node.items():
                child = (*path, key)
                if _SURROGATE.search(key):
                    raise _surrogate(child)
                stack.append((value, child, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, (*path, str(index)), depth + 1) for index, value in enumerate(node))
        elif isinstance(node, str):
            if _SURROGATE.search(node):
                raise _surrogate(path)
        elif isinstance(node, _Unrepresentable):
            field = _path(path)
            raise RequestError("invalid_value", f"{field} must be {_FINITE}", field)


def _surrogate(path: tuple[str, ...]) -> RequestError:
    field = _path(path)
    return RequestError("invalid_value", f"{field} holds an unpaired UTF-16 surrogate (not text)", field)


# -- 3. the schema -------------------------------------------------------------------------------------------


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
    return ".".join(path) or "body"


_CODES = {"required": "missing_field", "additionalProperties": "unknown_field", "type": "invalid_type"}


def validate(schema_name: str, data: Any) -> dict[str, Any]:
    """Validate parsed JSON (bounds, schema, rules); return it or raise RequestError naming the field."""
    check, schema = _validator(schema_name)
    if not isinstance(data, dict):
        raise RequestError("invalid_body", "the body must be a JSON object", "body")
    _check_shape(data)
    _check_schema(check, schema, data)
    _check_rules(data)
    return data


def _check_schema(check: Callable[[Any], Any], schema: dict[str, Any], data: Any) -> None:
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
        raise RequestError(code, message, field) from None


def _describe(exc: fastjsonschema.JsonSchemaValueException) -> str:
    definition = exc.rule_definition
    return {
        "type": f"must be of type {definition}",
        "minLength": f"must be at least {definition} characters long",
        "maxLength": f"must be at most {definition} characters long",
        "maxProperties": f"must have at most {definition} keys",
        "minItems": f"must have at least {definition} items",
        "maxItems": f"must have at most {definition} items",
        "uniqueItems": "must not repeat an item",
        "pattern": "has characters or a form that are not allowed",
        "enum": f"must be one of {definition}",
        "format": f"must be a valid {definition}",
    }.get(exc.rule or "", "is not valid")


# -- 4. the rules --------------------------------------------------------------------------------------------


def _check_rules(data: dict[str, Any]) -> None:
    for name in ID_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and not usable_id(value):
            raise RequestError("invalid_value", f"{name} must not be blank (only whitespace)", name)
    timestamp = data.get("timestamp")
    if isinstance(timestamp, str):
        try:
            when = parse_timestamp(timestamp)
        except (ValueError, OverflowError):
            raise RequestError("invalid_value", "timestamp is not a real date and time", "timestamp") from None
        if when < EARLIEST:
            raise RequestError("invalid_value", "timestamp is before 1970-01-01T00:00:00Z", "timestamp")
        if when - datetime.now(UTC) > MAX_FUTURE:
            raise RequestError("invalid_value", "timestamp is more than 1 hour in the future", "timestamp")
    url = data.get("origin_url")
    if isinstance(url, str):
        host = urlsplit(url).netloc.rsplit("@", 1)[-1]
        if not _HOST.match(host):
            raise RequestError("invalid_value", "origin_url must be an absolute http(s) URL", "origin_url")
