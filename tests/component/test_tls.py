"""TLS verification of the calls to Segment: an untrusted certificate is refused, so nothing is delivered.

The sink serves HTTPS with a throw-away self-signed certificate made with the ``openssl`` CLI. Each refusal has a
positive control that trusts that certificate and does deliver, so it is the verification that refused it (not a
broken server or URL).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3

from local_stack.segment_sink import SegmentSink
from segment_forwarder.segment import SegmentClient
from tests.support.leak_check import register_write_key, scan

WRITE_KEY = "tls-test-write-key-9f2c"
MESSAGE = {"type": "track", "event": "TLS Test", "anonymousId": "v-tls", "messageId": "tls-test-message-0001"}


def make_certificate(directory: Path, name: str, san: str) -> tuple[str, str]:
    """A self-signed certificate (1 day) for ``san`` (e.g. ``IP:127.0.0.1``) and its key: (certfile, keyfile)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is not installed: it makes the test certificates")
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    request = f"req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN={name} -addext subjectAltName={san}".split()
    subprocess.run(
        [openssl, *request, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return str(cert), str(key)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    directory = tmp_path_factory.mktemp("tls")
    return {
        "loopback": make_certificate(directory, "loopback", "IP:127.0.0.1"),  # right name, untrusted issuer
        "elsewhere": make_certificate(directory, "elsewhere", "DNS:elsewhere.example"),  # wrong name
    }


@pytest.fixture(scope="module")
def tls_sink(certificates: dict[str, tuple[str, str]]) -> Iterator[SegmentSink]:
    with SegmentSink(tls_cert=certificates["loopback"]) as running:
        yield running


@pytest.fixture(scope="module")
def wrong_name_sink(certificates: dict[str, tuple[str, str]]) -> Iterator[SegmentSink]:
    with SegmentSink(tls_cert=certificates["elsewhere"]) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(tls_sink: SegmentSink, wrong_name_sink: SegmentSink) -> None:
    register_write_key(WRITE_KEY)
    tls_sink.clear()
    wrong_name_sink.clear()


def trusting(certfile: str) -> urllib3.PoolManager:
    """A pool like the client's default one that trusts ``certfile`` (and nothing else)."""
    return urllib3.PoolManager(retries=False, cert_reqs="CERT_REQUIRED", ca_certs=certfile)


def send(client: SegmentClient) -> tuple[bool, str]:
    result = client.send(WRITE_KEY, "us", [dict(MESSAGE)], deadline=time.monotonic() + 1.0)
    scan(result.reason, "SendResult.reason")
    return result.ok, result.reason


def test_openssl_is_the_system_one():
    assert shutil.which("openssl") == "/usr/bin/openssl"


def test_the_default_client_refuses_an_untrusted_certificate(tls_sink):
    ok, reason = send(SegmentClient({"us": tls_sink.region_url("us")}))
    assert not ok
    assert reason == "segment unreachable: SSLError"
    assert tls_sink.events() == []
    assert tls_sink.requests() == [], "no request may get past the TLS handshake"


def test_positive_control_trusting_the_certificate_delivers(tls_sink, certificates):
    certfile, _ = certificates["loopback"]
    ok, reason = send(SegmentClient({"us": tls_sink.region_url("us")}, pool=trusting(certfile)))
    assert (ok, reason) == (True, "delivered")
    assert [e["message"]["messageId"] for e in tls_sink.events()] == [MESSAGE["messageId"]]
    assert tls_sink.events()[0]["write_key"] == WRITE_KEY


def test_a_trusted_certificate_for_another_host_name_is_refused(wrong_name_sink, certificates):
    certfile, _ = certificates["elsewhere"]
    ok, reason = send(SegmentClient({"us": wrong_name_sink.region_url("us")}, pool=trusting(certfile)))
    assert (ok, reason) == (False, "segment unreachable: SSLError")
    assert wrong_name_sink.events() == []


def test_ingest_function_queues_an_event_it_cannot_send_over_verified_tls(stack, tls_sink):
    handler = stack.handler("identify", HTTP_DELIVERY_BUDGET_SECONDS="1")
    stack.monkeypatch.setenv("SEGMENT_US_ENDPOINT", tls_sink.region_url("us"))  # read at the first invocation
    status, body = stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-tls"}, handler=handler)
    assert (status, body) == (202, {"status": "queued"})
    assert tls_sink.events() == []
    assert len(stack.drain("identify")) == 1


def test_positive_control_ingest_function_delivers_when_the_trust_store_holds_the_certificate(
    stack, tls_sink, certificates
):
    certfile, _ = certificates["loopback"]
    handler = stack.handler("identify", HTTP_DELIVERY_BUDGET_SECONDS="1")
    stack.monkeypatch.setenv("SEGMENT_US_ENDPOINT", tls_sink.region_url("us"))
    stack.monkeypatch.setenv("SSL_CERT_FILE", certfile)  # OpenSSL's default trust store, which the client loads
    status, body = stack.post("identify", {"workspace_id": "ws-us", "visitor_id": "v-tls"}, handler=handler)
    assert (status, body["status"]) == (200, "delivered")
    assert [e["message"]["type"] for e in tls_sink.events()] == ["identify"]
