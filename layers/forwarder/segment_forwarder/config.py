"""The configuration of an ingest or connection function, read once per execution environment from its environment.

Every name is set by template.yaml (and, locally, by the local stack from the same template)::

    config = FunctionConfig.from_env(required=INGEST_VARIABLES)   # ConfigurationError names what is missing or wrong

A missing required variable or an unreadable number fails the cold start with a clear error, instead of a
first event failing later in an obscure way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from botocore.config import Config

from .errors import ForwarderError

# Every AWS client of the functions: short timeouts (a Lambda has seconds, not minutes), standard retries
# (3 attempts unless AWS_MAX_ATTEMPTS says otherwise) and enough pooled connections for concurrent claims.
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}, max_pool_connections=24)
DEFAULT_SECRET_PREFIX = "segment-forwarder"  # noqa: S105 - a name prefix, not a secret
DEFAULT_ENDPOINTS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}
INGEST_VARIABLES = ("DEDUP_TABLE", "QUEUE_URL", "DLQ_URL")


class ConfigurationError(ForwarderError):
    """The function's environment is incomplete or holds a value that cannot be read."""


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    """Configuration; see the README's configuration table for each variable."""

    table_name: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    secret_prefix: str = DEFAULT_SECRET_PREFIX
    connection_cache_seconds: int = 60
    connection_miss_cache_seconds: int = 30
    connection_cache_entries: int = 1000
    dedup_ttl_seconds: int = 400 * 86_400
    event_id_ttl_seconds: int = 72 * 3_600
    lease_seconds: int = 90
    http_delivery_budget_seconds: float = 3.0
    max_receive_count: int = 1000
    retry_horizon_seconds: int = 72 * 3_600
    retry_backoff_cap_seconds: int = 900
    delivered_log_sample_rate: float = 0.0
    segment_breaker_threshold: int = 3
    health_flush_seconds: int = 60
    erasure_tombstone_seconds: int = 21 * 86_400
    us_endpoint: str = DEFAULT_ENDPOINTS["us"]
    eu_endpoint: str = DEFAULT_ENDPOINTS["eu"]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, required: Collection[str] = ()) -> FunctionConfig:
        """Read the function's environment; optional variables that are absent keep the defaults above.

        Raises ConfigurationError naming every variable of ``required`` that is missing or empty, or the
        first variable whose value is not a number where one is needed.
        """
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigurationError(f"missing environment variables: {', '.join(missing)} (set by template.yaml)")

        def number[N: (int, float)](name: str, default: N, kind: Callable[[str], N]) -> N:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigurationError(f"{name} must be a number, not {raw!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ConfigurationError(f"{name} must be a finite number >= 0, not {raw!r}")
            return value

        return cls(
            table_name=env.get("DEDUP_TABLE", ""),
            queue_url=env.get("QUEUE_URL", ""),
            dlq_url=env.get("DLQ_URL", ""),
            secret_prefix=env.get("SECRET_PREFIX") or DEFAULT_SECRET_PREFIX,
            connection_cache_seconds=number("CONNECTION_CACHE_SECONDS", 60, int),
            connection_miss_cache_seconds=number("CONNECTION_MISS_CACHE_SECONDS", 30, int),
            connection_cache_entries=number("CONNECTION_CACHE_ENTRIES", 1000, int),
            dedup_ttl_seconds=number("DEDUP_TTL_DAYS", 400, int) * 86_400,
            event_id_ttl_seconds=number("EVENT_ID_TTL_HOURS", 72, int) * 3_600,
            lease_seconds=number("LEASE_SECONDS", 90, int),
            http_delivery_budget_seconds=number("HTTP_DELIVERY_BUDGET_SECONDS", 3.0, float),
            max_receive_count=number("MAX_RECEIVE_COUNT", 1000, int),
            retry_horizon_seconds=number("RETRY_HORIZON_MINUTES", 72 * 60, int) * 60,
            retry_backoff_cap_seconds=number("RETRY_BACKOFF_CAP_SECONDS", 900, int),
            delivered_log_sample_rate=min(number("DELIVERED_LOG_SAMPLE_RATE", 0.0, float), 1.0),
            segment_breaker_threshold=number("SEGMENT_BREAKER_THRESHOLD", 3, int),
            health_flush_seconds=number("HEALTH_FLUSH_SECONDS", 60, int),
            erasure_tombstone_seconds=number("ERASURE_TOMBSTONE_DAYS", 21, int) * 86_400,
            us_endpoint=env.get("SEGMENT_US_ENDPOINT") or DEFAULT_ENDPOINTS["us"],
            eu_endpoint=env.get("SEGMENT_EU_ENDPOINT") or DEFAULT_ENDPOINTS["eu"],
        )

    @property
    def endpoints(self) -> dict[str, str]:
        """Segment base URL per region."""
        return {"us": self.us_endpoint, "eu": self.eu_endpoint}
