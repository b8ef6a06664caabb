"""The local Segment sink, exercised over real HTTP on loopback (no mocks)."""

import ast
import base64
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import urllib3

from local_stack.segment_sink import RateLimit, SegmentSink

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "wk_test_secret_9f3a"
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def sink():
    with SegmentSink() as running:
        yield running


@pytest.fixture(scope="module")
def http():
    pool = urllib3.PoolManager(retries=False, timeout=5.0)
    yield pool
    pool.clear()


def basic(key):
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def post(http, url, payload=None, *, key=KEY, body=None, headers=None):
    all_headers = {"Content-Type": "application/json"}
    if key is not None:
        all_headers["Authorization"] = basic(key)
    all_headers.update(headers or {})
    data = body if body is not None else json.dumps(payload).encode()
    return http.request("POST", url, body=data, headers=all_headers)


def track(i=0, **extra):
    return {"type": "track", "event": "Experiment Viewed", "anonymousId": f"v{i}", "messageId": f"m{i}", **extra}


def batch_url(sink, region="us"):
    return f"{sink.region_url(region)}/v1/batch"


def test_batch_is_accepted_and_expanded_with_the_envelope_merged(sink, http):
    payload = {
        "batch": [
            track(1, properties={"experiment_id": "e1"}),
            {
                "type": "identify",
                "userId": "u1",
                "anonymousId": "v1",
                "traits": {"plan": "pro"},
                "context": {"ip": "9.9.9.9"},
            },
        ],
        "context": {"ip": "1.2.3.4", "library": {"name": "segment-forwarder", "version": "1.0.0"}},
        "integrations": {"All": True},
        "sentAt": "2026-01-01T00:00:00.000Z",
        "writeKey": KEY,
    }
    response = post(http, batch_url(sink), payload)

    assert response.status == 200
    assert response.json() == {"success": True}
    events = sink.events()
    assert [e["message"]["type"] for e in events] == ["track", "identify"]
    assert {(e["region"], e["write_key"]) for e in events} == {("us", KEY)}
    assert all(ISO_MS_Z.match(e["received_at"]) for e in events)
    first, second = (e["message"] for e in events)
    assert first["context"] == payload["context"]
    assert first["integrations"] == {"All": True}
    assert first["sentAt"] == "2026-01-01T00:00:00.000Z"
    assert first["properties"] == {"experiment_id": "e1"}
    # the item's own context wins key by key, the rest of the envelope is merged in
    assert second["context"] == {"ip": "9.9.9.9", "library": {"name": "segment-forwarder", "version": "1.0.0"}}
    assert "writeKey" not in first and "writeKey" not in second
    assert sink.requests() == [
        {
            "region": "us",
            "path": "/us/v1/batch",
            "status": 200,
            "write_key": KEY,
            "message_count": 2,
            "received_at": events[0]["received_at"],
            "error": None,
        }
    ]


def test_single_track_call_and_import_alias(sink, http):
    single = {"event": "Conversion Triggered", "userId": "u9", "messageId": "c1", "writeKey": KEY}
    assert post(http, f"{sink.region_url('eu')}/v1/track", single).status == 200
    imported = post(http, f"{sink.region_url('us')}/v1/import", {"batch": [track(2)]})
    assert imported.status == 200

    events = sink.events()
    assert events[0]["region"] == "eu"
    assert events[0]["message"] == {"event": "Conversion Triggered", "userId": "u9", "messageId": "c1", "type": "track"}
    assert events[1]["region"] == "us" and events[1]["message"]["messageId"] == "m2"


@pytest.mark.parametrize(
    ("header_key", "body_key", "status", "answer"),
    [
        (KEY, None, 200, {"success": True}),
        (None, KEY, 200, {"success": True}),
        ("unknown-but-nonempty-key", None, 200, {"success": True}),  # Segment does not validate keys
        (None, None, 401, {"success": False, "message": "missing write key"}),
        (KEY, "another_key", 400, None),
    ],
)
def test_write_key_from_basic_auth_or_body(sink, http, header_key, body_key, status, answer):
    payload = {"batch": [track()]}
    if body_key is not None:
        payload["writeKey"] = body_key
    response = post(http, batch_url(sink), payload, key=header_key)

    assert response.status == status
    if answer is not None:
        assert response.json() == answer
    assert len(sink.events()) == (1 if status == 200 else 0)
    assert [r["status"] for r in sink.requests()] == [status]


def test_gzip_body_is_decompressed(sink, http):
    body = gzip.compress(json.dumps({"batch": [track(1), track(2)]}).encode())
    response = post(http, batch_url(sink), body=body, headers={"Content-Encoding": "gzip"})
    assert response.status == 200
    assert [e["message"]["messageId"] for e in sink.events()] == ["m1", "m2"]


def test_chunked_body_is_accepted(sink, http):
    data = json.dumps({"batch": [track(3)]}).encode()
    response = http.request(
        "POST",
        batch_url(sink),
        body=iter([data[:10], data[10:]]),
        headers={"Content-Type": "application/json", "Authorization": basic(KEY)},
        chunked=True,
    )
    assert response.status == 200
    assert len(sink.events()) == 1


def test_message_over_32_kb_is_rejected(sink, http):
    ok = post(http, batch_url(sink), {"batch": [track(1, properties={"blob": "x" * 31_000})]})
    too_big = post(http, batch_url(sink), {"batch": [track(2), track(3, properties={"blob": "x" * 33_000})]})

    assert ok.status == 200
    assert too_big.status == 400
    assert "32 KB" in too_big.json()["message"]
    assert [e["message"]["messageId"] for e in sink.events()] == ["m1"]


def test_request_over_500_kb_is_rejected(sink, http):
    blob = "y" * 30_000
    under = post(http, batch_url(sink), {"batch": [track(i, properties={"b": blob}) for i in range(15)]})
    over = post(http, batch_url(sink), {"batch": [track(i, properties={"b": blob}) for i in range(20)]})

    assert under.status == 200
    assert over.status == 400
    assert "500 KB" in over.json()["message"]
    assert len(sink.events()) == 15
    assert [r["status"] for r in sink.requests()] == [200, 400]


def test_batch_over_2500_messages_answers_200_but_is_dropped(sink, http):
    small = [{"type": "track", "event": "e", "anonymousId": "a"}]
    exactly = post(http, batch_url(sink), {"batch": small * 2500})
    assert exactly.status == 200 and len(sink.events()) == 2500
    sink.clear()

    response = post(http, batch_url(sink), {"batch": small * 2501})

    assert response.status == 200
    assert response.json() == {"success": True}
    assert sink.events() == []
    [request] = sink.requests()
    assert request["status"] == 200 and request["message_count"] == 2501


@pytest.mark.parametrize(
    ("payload", "body", "headers", "fragment"),
    [
        ({"batch": [track(1), {"type": "track", "anonymousId": "v2"}]}, None, {}, 'track needs "event"'),
        ({"batch": [{"type": "track", "event": "e"}]}, None, {}, '"userId" or "anonymousId"'),
        ({"batch": [{"event": "e", "anonymousId": "a"}]}, None, {}, 'needs "type"'),
        ({"batch": [track(1, messageId="m" * 101)]}, None, {}, "messageId"),
        ({"batch": {"not": "a list"}}, None, {}, '"batch" must be a list'),
        (None, b"{not json", {}, "invalid JSON"),
        ({"batch": [track()]}, None, {"Content-Type": "text/plain"}, "application/json"),
    ],
    ids=["track-without-event", "no-id", "no-type", "long-message-id", "batch-not-list", "bad-json", "text-plain"],
)
def test_invalid_requests_are_400_and_record_nothing(sink, http, payload, body, headers, fragment):
    response = post(http, batch_url(sink), payload, body=body, headers=headers)

    assert response.status == 400
    answer = response.json()
    assert answer["success"] is False and fragment in answer["message"]
    assert sink.events() == []
    assert [r["status"] for r in sink.requests()] == [400]


def test_fault_with_count_2_fails_two_requests_then_recovers(sink, http):
    armed = http.request("POST", f"{sink.url}/faults", body=json.dumps({"status": 503, "count": 2}))
    assert armed.status == 200
    unscoped = {"match": None, "write_key": None, "region": None}
    assert armed.json() == {"status": 503, "count": 2, "delay_s": 0.0, "retry_after": None, **unscoped}
    assert [f["count"] for f in http.request("GET", f"{sink.url}/faults").json()] == [2]

    statuses = [post(http, batch_url(sink), {"batch": [track(i)]}).status for i in range(3)]

    assert statuses == [503, 503, 200]
    assert [e["message"]["messageId"] for e in sink.events()] == ["m2"]
    assert [(r["status"], r["write_key"], r["message_count"]) for r in sink.requests()] == [
        (503, KEY, 1),
        (503, KEY, 1),
        (200, KEY, 1),
    ]
    assert http.request("GET", f"{sink.url}/faults").json() == []
    assert sink.fault() is None


def test_fault_can_be_cleared_and_is_validated(sink, http):
    sink.set_fault(status=500, count=5)
    assert http.request("DELETE", f"{sink.url}/faults").status == 204
    assert sink.fault() is None
    assert post(http, batch_url(sink), {"batch": [track()]}).status == 200
    bad = http.request("POST", f"{sink.url}/faults", body=json.dumps({"status": 302}))
    assert bad.status == 400
    with pytest.raises(ValueError, match="count"):
        sink.set_fault(count=-1)


def test_a_matching_fault_refuses_only_requests_holding_a_matching_message(sink, http):
    armed = http.request(
        "POST", f"{sink.url}/faults", body=json.dumps({"status": 400, "count": 2, "match": {"messageId": "m1"}})
    )
    assert armed.json()["match"] == {"messageId": "m1"}

    statuses = [
        post(http, batch_url(sink), {"batch": [track(0), track(1)]}).status,  # holds m1: refused whole
        post(http, batch_url(sink), {"batch": [track(0)]}).status,  # no m1: accepted, count kept
        post(http, batch_url(sink), {"batch": [track(1)]}).status,  # the second and last refusal
        post(http, batch_url(sink), {"batch": [track(1)]}).status,
    ]

    assert statuses == [400, 200, 400, 200]
    assert [e["message"]["messageId"] for e in sink.events()] == ["m0", "m1"]
    bad = http.request("POST", f"{sink.url}/faults", body=json.dumps({"status": 400, "match": []}))
    assert bad.status == 400


def test_ids_blank_once_trimmed_are_refused_like_segment_does(sink, http):
    for blank in ("\u2028", " \ufeff ", "\u3000"):
        answer = post(http, batch_url(sink), {"batch": [{"type": "identify", "anonymousId": blank}]})
        assert answer.status == 400, repr(blank)
    assert sink.events() == []


def test_fault_sends_retry_after(sink, http):
    sink.set_fault(status=429, count=1, retry_after=7)
    limited = post(http, batch_url(sink), {"batch": [track()]})

    assert limited.status == 429
    assert limited.headers["Retry-After"] == "7"
    assert limited.json()["success"] is False
    assert sink.events() == []
    assert post(http, batch_url(sink), {"batch": [track()]}).headers.get("Retry-After") is None


def test_delay_fault_stalls_then_proceeds(sink, http):
    sink.set_fault(status=None, count=1, delay_s=0.3)

    started = time.monotonic()
    stalled = post(http, batch_url(sink), {"batch": [track(1)]})
    stalled_for = time.monotonic() - started
    started = time.monotonic()
    normal = post(http, batch_url(sink), {"batch": [track(2)]})
    normal_took = time.monotonic() - started

    assert stalled.status == 200 and normal.status == 200
    assert stalled_for >= 0.3
    assert normal_took < 0.25
    assert [e["message"]["messageId"] for e in sink.events()] == ["m1", "m2"]


def test_latency_delays_every_tracking_request_and_only_those(sink, http):
    sink.set_latency(0.2)

    timings = []
    for i in (1, 2):
        started = time.monotonic()
        assert post(http, batch_url(sink), {"batch": [track(i)]}).status == 200
        timings.append(time.monotonic() - started)
    started = time.monotonic()
    http.request("GET", f"{sink.url}/events")
    control_took = time.monotonic() - started
    sink.set_latency(0)
    started = time.monotonic()
    post(http, batch_url(sink), {"batch": [track(3)]})
    after_took = time.monotonic() - started

    assert min(timings) >= 0.2
    assert control_took < 0.15 and after_took < 0.15
    assert len(sink.events()) == 3
    with pytest.raises(ValueError):
        sink.set_latency(-1)


def test_events_filter_by_region_and_write_key(sink, http):
    post(http, batch_url(sink, "us"), {"batch": [track(1)]}, key="key_us_1111")
    post(http, batch_url(sink, "eu"), {"batch": [track(2)]}, key="key_eu_2222")
    post(http, batch_url(sink, "eu"), {"batch": [track(3)]}, key="key_eu_3333")

    eu = http.request("GET", f"{sink.url}/events?region=eu").json()
    by_key = http.request("GET", f"{sink.url}/events?write_key=key_eu_3333").json()

    assert [e["message"]["messageId"] for e in eu] == ["m2", "m3"]
    assert [e["message"]["messageId"] for e in by_key] == ["m3"]
    assert [e["write_key"] for e in sink.events(region="us")] == ["key_us_1111"]
    assert len(http.request("GET", f"{sink.url}/requests").json()) == 3


def test_delete_events_clears_events_and_requests(sink, http):
    post(http, batch_url(sink), {"batch": [track()]})
    post(http, batch_url(sink), {"batch": []}, key=None)  # a 401, recorded as a request

    response = http.request("DELETE", f"{sink.url}/events")

    assert response.status == 204
    assert http.request("GET", f"{sink.url}/events").json() == []
    assert sink.events() == [] and sink.requests() == []


def test_html_page_escapes_and_masks_the_write_key(sink, http):
    post(http, batch_url(sink), {"batch": [track(1, event="First")]})
    hostile = track(2, event="<script>alert(1)</script>", properties={"note": "</td><img src=x>"})
    post(http, batch_url(sink), {"batch": [hostile]})

    page = http.request("GET", f"{sink.url}/")
    text = page.data.decode()

    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<title>Segment sink</title>" in text
    assert '<meta http-equiv="refresh" content="2">' in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text and "<img" not in text
    assert KEY not in text
    assert "…" + KEY[-4:] in text
    assert text.index("&lt;script&gt;") < text.index("First")  # newest first


@pytest.mark.parametrize(
    ("verb", "path", "status"),
    [
        ("POST", "/us/v1/nope", 404),
        ("POST", "/eu/batch", 404),
        ("POST", "/xx/v1/batch", 404),
        ("GET", "/nothing", 404),
        ("GET", "/us/v1/batch", 405),
    ],
)
def test_unknown_paths_are_json_errors(sink, http, verb, path, status):
    response = http.request(verb, f"{sink.url}{path}", body=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == status
    assert response.json()["success"] is False
    assert sink.events() == []


def test_log_callback_gets_one_line_per_accepted_message(http):
    lines = []
    with SegmentSink(log=lines.append) as sink:
        post(http, batch_url(sink), {"batch": [track(1), {"type": "identify", "userId": "u1", "messageId": "i1"}]})
    assert lines == ['us track "Experiment Viewed" anon=v1 msg=m1', "us identify user=u1 msg=i1"]


def test_wait_for_events_returns_once_they_arrive(sink, http):
    sender = threading.Timer(0.1, lambda: post(http, batch_url(sink), {"batch": [track(1), track(2)]}))
    sender.start()
    try:
        events = sink.wait_for_events(2, timeout_s=3.0)
    finally:
        sender.join()
    assert [e["message"]["messageId"] for e in events] == ["m1", "m2"]


def test_stop_frees_the_port():
    first = SegmentSink().start()
    port = first.port
    assert first.url == f"http://127.0.0.1:{port}"
    assert first.region_url("eu") == f"http://127.0.0.1:{port}/eu"
    first.stop()
    with SegmentSink(port=port) as second:
        assert second.port == port


@pytest.fixture
def busy_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def test_busy_port_raises_a_clear_oserror(busy_port):
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{busy_port}"):
        SegmentSink(port=busy_port).start()


def test_cli_on_a_busy_port_exits_2_with_one_line(busy_port):
    result = subprocess.run(
        [sys.executable, "-m", "local_stack.segment_sink", "--port", str(busy_port)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{busy_port}" in result.stderr


def test_cli_serves_prints_its_url_and_stops_cleanly_on_ctrl_c(http):
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack.segment_sink", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first_line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first_line).group(0)
        assert post(http, f"{url}/us/v1/batch", {"batch": [track(5)]}).status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert 'us track "Experiment Viewed" anon=v5 msg=m5' in out
    assert "Traceback" not in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI to make a certificate")
def test_tls_serves_https(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=10,
    )  # fmt: skip
    with SegmentSink(tls_cert=(str(cert), str(key))) as sink:
        assert sink.url.startswith("https://127.0.0.1:")
        pool = urllib3.PoolManager(ca_certs=str(cert), retries=False, timeout=5.0)
        response = post(pool, batch_url(sink), {"batch": [track(7)]})
        assert response.status == 200
        assert [e["message"]["messageId"] for e in sink.events()] == ["m7"]


# -- written from Segment's contract, not from the forwarder ---------------------------------------------------

KB = 1024


def sized_track(size, *, filler="é", messageId="m-sized", **extra):
    """A track message whose compact UTF-8 JSON is exactly ``size`` bytes (``filler``: a 1- or 2-byte character)."""
    message = track(0, messageId=messageId, properties={"text": ""}, **extra)
    base = len(compact(message))
    width = len(filler.encode())
    count, rest = divmod(size - base, width)
    message["properties"]["text"] = filler * count + "x" * rest
    assert len(compact(message)) == size
    return message


def compact(value):
    """JSON as a client that does not escape non-ASCII sends it: compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def raw_batch(items, **envelope):
    """A batch body built from the items' own bytes, exactly as given."""
    head = b'{"batch":[' + b",".join(items) + b"]"
    tail = b"".join(b"," + json.dumps(k).encode() + b":" + json.dumps(v).encode() for k, v in envelope.items())
    return head + tail + b"}"


def test_non_ascii_text_counts_its_utf8_bytes_not_escapes(sink, http):
    text = "é漢😀" * 2_700  # 24,300 bytes as UTF-8; 64,800 as \u escapes (the astral one: two of them)
    message = track(1, properties={"review": text})
    as_utf8 = post(http, batch_url(sink), body=compact({"batch": [message]}))
    escaped = post(http, batch_url(sink), body=json.dumps({"batch": [{**message, "messageId": "m2"}]}).encode())

    assert len(compact(message)) < 32 * KB < len(json.dumps(message))
    assert as_utf8.status == 200, as_utf8.data
    assert escaped.status == 400  # the same message, sent with \u escapes: over 32 KB as it arrives
    assert "32 KB" in escaped.json()["message"]
    assert [e["message"]["properties"]["review"] for e in sink.events()] == [text]


@pytest.mark.parametrize(("size", "status"), [(32 * KB, 200), (32 * KB + 1, 400), (33 * KB, 400)])
def test_a_batch_item_is_measured_as_written_32_kb_at_most(sink, http, size, status):
    message = sized_track(size)

    response = post(http, batch_url(sink), body=raw_batch([compact(track(1)), compact(message)], writeKey=KEY))

    assert response.status == status, response.data
    assert len(sink.events()) == (2 if status == 200 else 0)  # one oversize item refuses its whole batch
    if status == 400:
        assert f"batch[1]: message is {size} bytes" in response.json()["message"]


def test_whitespace_inside_a_batch_item_counts_as_sent(sink, http):
    message = sized_track(31 * KB, filler="x")
    padded = json.dumps(message, indent=4096).encode()  # ~8 KB of indentation: 39 KB as written

    response = post(http, batch_url(sink), body=raw_batch([padded]))

    assert len(compact(message)) < 32 * KB < len(padded)
    assert response.status == 400
    assert "32 KB" in response.json()["message"]


@pytest.mark.parametrize(("size", "status"), [(32 * KB, 200), (32 * KB + 1, 400)])
def test_a_single_call_is_measured_as_its_whole_body(sink, http, size, status):
    body = {k: v for k, v in sized_track(size).items() if k != "type"}  # /v1/track: the type is the endpoint
    body["writeKey"] = KEY
    raw = compact(body)
    body["properties"]["text"] = body["properties"]["text"][: len(raw) - size or None]  # writeKey included
    raw = compact(body)
    if len(raw) < size:
        body["properties"]["text"] += "x" * (size - len(raw))
        raw = compact(body)
    assert len(raw) == size

    response = post(http, f"{sink.region_url('us')}/v1/track", body=raw)

    assert response.status == status, response.data
    assert len(sink.events()) == (1 if status == 200 else 0)


@pytest.mark.parametrize("gzipped", [False, True], ids=["identity", "gzip"])
@pytest.mark.parametrize(("size", "status"), [(500 * KB, 200), (500 * KB + 1, 400)])
def test_the_request_body_is_500_kb_at_most_after_gunzip(sink, http, size, status, gzipped):
    items = [compact(sized_track(30 * KB, filler="x", messageId=f"m{i}")) for i in range(16)]
    body = raw_batch(items)
    body = body[:-1] + b" " * (size - len(body)) + b"}"  # JSON whitespace up to the exact size
    assert len(body) == size
    headers = {"Content-Encoding": "gzip"} if gzipped else {}

    response = post(http, batch_url(sink), body=gzip.compress(body) if gzipped else body, headers=headers)

    assert response.status == status, response.data
    assert len(sink.events()) == (16 if status == 200 else 0)
    if status == 400:
        assert "500 KB" in response.json()["message"]


@pytest.mark.parametrize(("length", "status"), [(100, 200), (101, 400)])
def test_message_id_is_100_characters_at_most(sink, http, length, status):
    response = post(http, batch_url(sink), {"batch": [track(1, messageId="é" * length)]})
    assert response.status == status


def test_batch_items_are_measured_as_written_and_decoded_as_json_loads_does():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from local_stack.segment_sink import _decode_body

    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    values = st.recursive(leaves, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=8)
    layouts = st.sampled_from(
        [
            {"ensure_ascii": False, "separators": (",", ":")},
            {"ensure_ascii": True},
            {"ensure_ascii": False, "separators": (" , ", " :\n")},
        ]
    )
    blanks = st.text(alphabet=" \t\n\r", max_size=3)

    @settings(max_examples=60, deadline=None)
    @given(items=st.lists(values, max_size=5), others=st.dictionaries(st.text(), values, max_size=3), data=st.data())
    def check(items, others, data):
        written = [json.dumps(item, **data.draw(layouts)) for item in items]  # each item its own way
        members = [json.dumps(key) + data.draw(blanks) + ":" + json.dumps(value) for key, value in others.items()]
        array = "[" + data.draw(blanks) + ",".join(w + data.draw(blanks) for w in written) + "]"
        members.insert(data.draw(st.integers(0, len(members))), '"batch":' + data.draw(blanks) + array)
        text = data.draw(blanks) + "{" + data.draw(blanks) + ",".join(members) + "}" + data.draw(blanks)

        decoded, sizes = _decode_body(text)

        assert decoded == json.loads(text)
        if "batch" not in others:  # (a duplicate "batch" key: the last one wins, as in json.loads)
            assert sizes == [len(w.encode()) for w in written]

    check()


def test_the_sink_imports_nothing_from_the_forwarder():
    tree = ast.parse((REPO_ROOT / "local_stack" / "segment_sink.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0].startswith("segment_forwarder")}

    # And at run time: with the forwarder's packages unimportable, the sink starts and accepts a batch.
    script = textwrap.dedent(
        """
        import base64, json, sys, urllib.request

        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0].startswith("segment_forwarder"):
                    raise ImportError(f"{name} imported by the sink")

        sys.meta_path.insert(0, Blocked())
        from local_stack.segment_sink import SegmentSink

        with SegmentSink() as sink:
            request = urllib.request.Request(
                sink.region_url("us") + "/v1/batch",
                data=json.dumps({"batch": [{"type": "track", "event": "e", "anonymousId": "a"}]}).encode(),
                headers={"Content-Type": "application/json", "Authorization": "Basic azo="},
            )
            assert urllib.request.urlopen(request, timeout=5).status == 200
            assert len(sink.events()) == 1
        print(sorted(m for m in sys.modules if m.startswith("segment_forwarder")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- rate limit per source -------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def test_a_source_over_its_request_rate_gets_429_while_another_is_served(http, clock):
    limit = RateLimit(requests_per_s=0.5, burst_s=4)  # 2 requests at once, then one every 2 s
    with SegmentSink(rate_limit=limit, clock=clock) as sink:
        a = [post(http, batch_url(sink), {"batch": [track(i)]}, key="source_A_1111") for i in range(3)]
        b = post(http, batch_url(sink, "eu"), {"batch": [track(9)]}, key="source_B_2222")
        clock.now += 1.0
        a_still = post(http, batch_url(sink), {"batch": [track(3)]}, key="source_A_1111")
        clock.now += 1.0
        a_again = post(http, batch_url(sink), {"batch": [track(4)]}, key="source_A_1111")

        assert [r.status for r in a] == [200, 200, 429]
        assert a[2].headers["Retry-After"] == "2" and a[2].headers["X-RateLimit-Reset"] == "2"
        assert a[2].json()["success"] is False
        assert b.status == 200 and b.headers.get("Retry-After") is None
        assert a_still.status == 429 and a_still.headers["Retry-After"] == "1"
        assert a_again.status == 200
        assert [e["message"]["messageId"] for e in sink.events(write_key="source_A_1111")] == ["m0", "m1", "m4"]
        assert [r["status"] for r in sink.requests()] == [200, 200, 429, 200, 429, 200]


def test_an_events_per_second_limit_counts_messages_and_lets_a_big_batch_through_a_full_bucket(http, clock):
    with SegmentSink(rate_limit=RateLimit(requests_per_s=None, events_per_s=10), clock=clock) as sink:
        first = post(http, batch_url(sink), {"batch": [track(i) for i in range(8)]})
        over = post(http, batch_url(sink), {"batch": [track(i) for i in range(3)]})  # 2 tokens left
        clock.now += 0.1  # 3 tokens
        fits = post(http, batch_url(sink), {"batch": [track(i) for i in range(3)]})
        clock.now += 1.0  # full again (10)
        big = post(http, batch_url(sink), {"batch": [track(i) for i in range(25)]})  # more than it holds
        after_big = post(http, batch_url(sink), {"batch": [track(0)]})  # 15 tokens in debt: 1.6 s

        assert [r.status for r in (first, over, fits, big, after_big)] == [200, 429, 200, 200, 429]
        assert over.headers["Retry-After"] == "1"
        assert after_big.headers["Retry-After"] == "2"
        assert [r["message_count"] for r in sink.requests()] == [8, 3, 3, 25, 1]


def test_the_default_rate_limit_is_segments_1000_requests_per_second(sink, http):
    assert sink.rate_limit == RateLimit(requests_per_s=1000, events_per_s=None, burst_s=1)
    statuses = {post(http, batch_url(sink), {"batch": [track(i)]}).status for i in range(50)}
    assert statuses == {200}


def test_the_rate_limit_is_set_shown_and_reset_over_http(sink, http):
    url = f"{sink.url}/rate-limit"
    assert http.request("GET", url).json() == {"requests_per_s": 1000.0, "events_per_s": None, "burst_s": 1.0}

    answer = http.request("POST", url, body=json.dumps({"requests_per_s": 0.01, "events_per_s": 5}))
    statuses = [post(http, batch_url(sink), {"batch": [track(i)]}).status for i in range(2)]
    shown = http.request("GET", url).json()
    assert http.request("DELETE", url).status == 204
    after_reset = post(http, batch_url(sink), {"batch": [track(3)]}).status

    assert answer.status == 200
    assert shown == {"requests_per_s": 0.01, "events_per_s": 5, "burst_s": 1.0}
    assert statuses == [200, 429]
    assert after_reset == 200
    for bad in ({"requests_per_s": 0}, {"burst_s": -1}, {"events_per_s": "many"}, {"rps": 1}):
        assert http.request("POST", url, body=json.dumps(bad)).status == 400, bad
    assert "Rate limit per write key" in http.request("GET", f"{sink.url}/").data.decode()


def test_the_rate_limit_comes_from_the_environment_and_the_command_line(http):
    assert RateLimit.from_env({"SEGMENT_SINK_REQUESTS_PER_S": "off", "SEGMENT_SINK_EVENTS_PER_S": "50"}) == RateLimit(
        requests_per_s=None, events_per_s=50
    )
    with pytest.raises(ValueError, match="SEGMENT_SINK_BURST_S"):
        RateLimit.from_env({"SEGMENT_SINK_BURST_S": "off"})

    env = {**os.environ, "SEGMENT_SINK_REQUESTS_PER_S": "0.01"}  # one request, then one per 100 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack.segment_sink", "--port", "0", "--quiet", "--events-per-s", "500"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline()).group(0)
        statuses = [post(http, f"{url}/us/v1/batch", {"batch": [track(i)]}).status for i in range(2)]
        shown = http.request("GET", f"{url}/rate-limit").json()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert statuses == [200, 429]
    assert shown == {"requests_per_s": 0.01, "events_per_s": 500.0, "burst_s": 1.0}


# -- faults scoped to a source or a region ---------------------------------------------------------------------


def test_a_fault_scoped_to_a_write_key_fails_only_that_sources_requests(sink, http):
    armed = http.request(
        "POST", f"{sink.url}/faults", body=json.dumps({"status": 429, "count": 2, "write_key": "key_K_1111"})
    )
    assert armed.json()["write_key"] == "key_K_1111"

    statuses = [
        post(http, batch_url(sink), {"batch": [track(1)]}, key="key_K_1111").status,
        post(http, batch_url(sink), {"batch": [track(2)]}, key="key_L_2222").status,  # not counted
        post(http, batch_url(sink, "eu"), {"batch": [track(3)]}, key="key_L_2222").status,
        post(http, batch_url(sink, "eu"), {"batch": [track(4)], "writeKey": "key_K_1111"}, key=None).status,
        post(http, batch_url(sink), {"batch": [track(5)]}, key="key_K_1111").status,
    ]

    assert statuses == [429, 200, 200, 429, 200]
    assert [e["message"]["messageId"] for e in sink.events()] == ["m2", "m3", "m5"]
    assert sink.faults() == []


def test_a_fault_scoped_to_a_region_fails_only_that_regions_requests(sink, http):
    sink.set_fault(status=503, count=1, region="eu")

    us = post(http, batch_url(sink, "us"), {"batch": [track(1)]})
    eu = post(http, batch_url(sink, "eu"), {"batch": [track(2)]})
    eu_again = post(http, batch_url(sink, "eu"), {"batch": [track(3)]})

    assert [us.status, eu.status, eu_again.status] == [200, 503, 200]
    assert [(e["region"], e["message"]["messageId"]) for e in sink.events()] == [("us", "m1"), ("eu", "m3")]
    with pytest.raises(ValueError, match="region"):
        sink.set_fault(region="ap")


def test_several_scoped_faults_are_armed_at_once_each_with_its_count(sink, http):
    url = f"{sink.url}/faults"
    http.request("POST", url, body=json.dumps({"status": 429, "count": 3, "write_key": "key_K_1111"}))
    http.request("POST", url, body=json.dumps({"status": 500, "count": 1, "write_key": "key_K_1111", "region": "eu"}))
    http.request("POST", url, body=json.dumps({"status": 503, "count": 1, "region": "eu"}))
    shown = http.request("GET", url).json()

    statuses = [
        post(http, batch_url(sink, "eu"), {"batch": [track(1)]}, key="key_L_2222").status,  # the region's 503
        post(http, batch_url(sink, "eu"), {"batch": [track(2)]}, key="key_L_2222").status,
        post(http, batch_url(sink, "eu"), {"batch": [track(3)]}, key="key_K_1111").status,  # K's first: 429
        post(http, batch_url(sink, "us"), {"batch": [track(4)]}, key="key_K_1111").status,  # 429
        post(http, batch_url(sink, "eu"), {"batch": [track(5)]}, key="key_K_1111").status,  # 429, K's last
        post(http, batch_url(sink, "eu"), {"batch": [track(6)]}, key="key_K_1111").status,  # K in eu: 500
        post(http, batch_url(sink, "eu"), {"batch": [track(7)]}, key="key_K_1111").status,
    ]

    assert [(f["status"], f["count"], f["write_key"], f["region"]) for f in shown] == [
        (429, 3, "key_K_1111", None),
        (500, 1, "key_K_1111", "eu"),
        (503, 1, None, "eu"),
    ]
    assert statuses == [503, 200, 429, 429, 429, 500, 200]
    assert http.request("GET", url).json() == []


def test_arming_replaces_the_fault_of_the_same_scope_and_delete_clears_them_all(sink, http):
    sink.set_fault(status=503, count=5)
    sink.set_fault(status=500, count=2)  # same scope (none): replaces
    sink.set_fault(status=429, count=4, write_key="key_K_1111")
    sink.set_fault(status=429, count=0, write_key="key_K_1111")  # count 0: disarms that scope
    sink.set_fault(status=400, count=1, region="us")
    listed = http.request(
        "POST",
        f"{sink.url}/faults",
        body=json.dumps([{"status": 502, "write_key": "key_M_3333"}, {"status": 504, "region": "eu"}]),
    )

    assert [(f["status"], f["count"]) for f in sink.faults()] == [(500, 2), (400, 1), (502, 1), (504, 1)]
    assert [f["status"] for f in listed.json()] == [502, 504]
    assert sink.fault()["status"] == 500  # the first armed one
    assert "key_M_3333" not in http.request("GET", f"{sink.url}/").data.decode()  # the page masks keys
    assert http.request("DELETE", f"{sink.url}/faults").status == 204
    assert sink.faults() == [] and sink.fault() is None
    bad = http.request("POST", f"{sink.url}/faults", body=json.dumps({"status": 503, "write_key": ""}))
    assert bad.status == 400
