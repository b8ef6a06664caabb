"""FunctionConfig read from the function environment, with defaults for every optional variable."""

from __future__ import annotations

from segment_forwarder.config import FunctionConfig


def test_defaults_when_only_the_resources_are_given():
    settings = FunctionConfig.from_env({"DEDUP_TABLE": "t", "QUEUE_URL": "q", "DLQ_URL": "d"})

    assert settings == FunctionConfig(table_name="t", queue_url="q", dlq_url="d")
    assert settings.secret_prefix == "segment-forwarder"
    assert (settings.lease_seconds, settings.connection_cache_seconds, settings.max_receive_count) == (90, 60, 1000)
    assert (settings.retry_horizon_seconds, settings.retry_backoff_cap_seconds) == (72 * 3600, 900)
    assert settings.endpoints == {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}


def test_values_from_the_environment():
    settings = FunctionConfig.from_env(
        {
            "SECRET_PREFIX": "p/q",
            "DEDUP_TTL_DAYS": "2",
            "EVENT_ID_TTL_HOURS": "3",
            "HTTP_DELIVERY_BUDGET_SECONDS": "1.5",
            "SEGMENT_EU_ENDPOINT": "http://127.0.0.1:1/eu",
        }
    )

    assert settings.secret_prefix == "p/q"
    assert (settings.dedup_ttl_seconds, settings.event_id_ttl_seconds) == (2 * 86_400, 3 * 3_600)
    assert settings.http_delivery_budget_seconds == 1.5
    assert settings.endpoints["eu"] == "http://127.0.0.1:1/eu"
