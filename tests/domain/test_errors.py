"""One error hierarchy; the HTTP status of each error chosen once, at the ingest edge (``api_gateway.status_of``)."""

from __future__ import annotations

import pytest

from segment_forwarder.api_gateway import status_of
from segment_forwarder.config import ConfigurationError
from segment_forwarder.connections import ConnectionUnavailableError
from segment_forwarder.errors import (
    ConnectionConfigError,
    ForwarderError,
    PayloadTooLargeError,
    RequestError,
    UnavailableError,
)
from segment_forwarder.queues import QueueUnavailableError
from segment_forwarder.table import DedupUnavailableError
from segment_forwarder.workspace_settings import SettingsError, WorkspaceSettings


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RequestError("invalid_json", "the body is not valid JSON", "body"), 400),
        (PayloadTooLargeError("the body is over 32768 bytes", "body"), 413),
        (SettingsError("settings.ip", "must be one of pass, truncate, drop"), 400),
        (QueueUnavailableError("ThrottlingException"), 503),
        (DedupUnavailableError("ThrottlingException"), 503),
        (ConnectionUnavailableError("ThrottlingException"), 503),
        (ConnectionConfigError("the workspace secret is not JSON"), 500),
        (ConfigurationError("missing environment variables: DEDUP_TABLE"), 500),
    ],
)
def test_every_error_derives_from_the_base_and_has_one_status(error, status):
    assert isinstance(error, ForwarderError)
    assert status_of(error) == status


def test_the_adapters_unavailable_errors_share_one_base():
    for kind in (QueueUnavailableError, DedupUnavailableError, ConnectionUnavailableError):
        assert issubclass(kind, UnavailableError)


def test_an_error_carries_no_http_status():
    error = PayloadTooLargeError("the body is over 32768 bytes", "body")
    assert not hasattr(error, "status")
    assert error.as_body() == {
        "error": {"code": "payload_too_large", "message": "the body is over 32768 bytes", "field": "body"}
    }


def test_bad_settings_are_a_request_error_naming_the_field():
    with pytest.raises(RequestError) as refused:
        WorkspaceSettings.from_dict({"ip": "mask"})
    assert (refused.value.code, refused.value.field) == ("invalid_value", "settings.ip")
    assert str(refused.value) == "settings.ip must be one of pass, truncate, drop"


def test_an_error_message_is_made_printable():
    error = RequestError("invalid_value", "bad \x00 value \ud800", "a\x07b")
    assert (error.message, error.field) == ("bad \ufffd value \ufffd", "a\ufffdb")


def test_the_forwarding_core_imports_no_adapter():
    """``forwarding`` depends on ``ports`` only: importing it loads no boto3/urllib3-backed module."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import segment_forwarder

    code = (
        "import sys, segment_forwarder.forwarding\n"
        "adapters = {'segment_forwarder.claims', 'segment_forwarder.table', 'segment_forwarder.connections',"
        " 'segment_forwarder.segment', 'segment_forwarder.health_ledger', 'segment_forwarder.visitor_facts',"
        " 'segment_forwarder.queues', 'boto3', 'urllib3'}\n"
        "print(sorted(adapters & set(sys.modules)))\n"
    )
    layer = str(Path(segment_forwarder.__file__).parent.parent)
    env = {**os.environ, "PYTHONPATH": layer}
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert found.strip() == "[]"
