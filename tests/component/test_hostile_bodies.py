"""Generated hostile bodies (hypothesis) through both paths of the real handlers, on moto and the sink.

Bodies are valid assignments with hostile parts: deep and wide nesting, huge strings, every Unicode category
(unpaired surrogates included), numbers of every kind (NaN, infinities, floats beyond the double range,
integers beyond 2^53), timestamps at the edges of every year and zone, blank ids, unknown fields, or plain
garbage. Every body must end as a 4xx naming a field, or delivered; over SQS as a dead-letter entry with a
reason, or delivered; never a 5xx or a raised exception; and a valid neighbour in the same batch is always
delivered.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.component.conftest import LambdaContext, sqs_record
from tests.support.profiles import examples

BODIES_PER_PATH = examples(100)  # per path; make deep runs four times as many
ANY_CHARACTER = st.characters(codec=None, categories=None)  # every category, unpaired surrogates included
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 30]).map(lambda t: _Raw(t)),
)


class _Raw:
    """A JSON token written as is (numbers json.dumps cannot write)."""

    def __init__(self, token: str) -> None:
        self.token = token


texts = st.one_of(
    st.text(ANY_CHARACTER, max_size=40),
    st.text(st.sampled_from(" \t\u2028\u2029\u00a0\u3000\ufeff\u200b"), min_size=1, max_size=5),
    st.text(ANY_CHARACTER, min_size=1, max_size=3).map(lambda s: s * 3000),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(texts, children, max_size=5)),
    max_leaves=20,
)
timestamps = st.one_of(
    st.builds(
        lambda year, month, day, hour, sign, offset_h, offset_m: (
            f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:00:00{sign}{offset_h:02d}:{offset_m:02d}"
        ),
        st.integers(1, 9999),
        st.integers(1, 12),
        st.integers(1, 31),
        st.integers(0, 23),
        st.sampled_from("+-"),
        st.integers(0, 23),
        st.integers(0, 59),
    ),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z", "1970-01-01T00:00:00Z"]),
    texts,
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    """A JSON text (or not) built from a valid assignment."""
    body: dict[str, Any] = {
        "workspace_id": "ws-us",
        "visitor_id": f"hostile-{uuid.uuid4().hex[:10]}",
        "test_id": "t-1",
        "variant_id": "a",
    }
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(["id", "timestamp", "context", "deep", "wide", "unknown", "garbage"]))
        if mutation == "id":
            body[draw(st.sampled_from(["visitor_id", "user_id", "test_id", "variant_id"]))] = draw(texts)
        elif mutation == "timestamp":
            body["timestamp"] = draw(timestamps)
        elif mutation == "context":
            body["context"] = draw(st.dictionaries(texts, values, max_size=6))
        elif mutation == "deep":
            depth = draw(st.integers(1, 3000))
            return _encode(body)[:-1] + ', "context": ' + '{"a": ' * depth + "1" + "}" * depth + "}"
        elif mutation == "wide":
            body["context"] = {f"k{i}": i for i in range(draw(st.integers(60, 3000)))}
        elif mutation == "unknown":
            body[draw(texts)] = draw(values)
        else:
            return draw(st.text(ANY_CHARACTER, max_size=200))
    return _encode(body)


def _encode(value: Any) -> str:
    """JSON as a client may send it: NaN and infinities as tokens, surrogates escaped, any raw number token."""
    if isinstance(value, _Raw):
        return value.token
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


SETTINGS = settings(
    max_examples=BODIES_PER_PATH,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _visitor_of(body: str) -> str | None:
    try:
        value = json.loads(body).get("visitor_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


@SETTINGS
@given(body=hostile_bodies())
def test_over_http_a_hostile_body_is_answered_4xx_naming_a_field_or_delivered(stack, body):
    status, answer = stack.post("assignment", body, stack.handler("assignment"), raw=True)

    assert status in (200, 202, 400, 413), (status, answer)
    if status >= 400:
        assert set(answer["error"]) == {"code", "message", "field"}
        assert isinstance(answer["error"]["field"], str) and answer["error"]["field"]
    else:
        assert answer["status"] in ("delivered", "duplicate", "queued")


@SETTINGS
@given(body=hostile_bodies())
def test_over_sqs_a_hostile_record_is_parked_with_a_reason_or_delivered_and_its_neighbour_delivered(stack, body):
    neighbour = {
        "workspace_id": "ws-us",
        "visitor_id": f"neighbour-{uuid.uuid4().hex[:10]}",
        "test_id": "t-1",
        "variant_id": "a",
    }
    records = [sqs_record(neighbour), sqs_record(body)]

    answer = stack.handler("assignment")({"Records": records}, LambdaContext())

    assert answer == {"batchItemFailures": []}
    delivered = {t["anonymousId"] for t in stack.tracks("Experiment Viewed")}
    assert neighbour["visitor_id"] in delivered
    parked = stack.drain("assignment", dead=True)
    if parked:
        [entry] = parked
        assert entry["MessageAttributes"]["error_code"]["StringValue"]
        assert entry["MessageAttributes"]["source_message_id"]["StringValue"] == records[1]["messageId"]
    else:
        assert _visitor_of(body) in delivered
