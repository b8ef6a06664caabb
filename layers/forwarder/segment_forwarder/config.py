"""Settings of an ingest or connection function, read once per execution environment from its environment.

Every name is set by template.yaml (and, locally, by the local stack from the same template)::

    settings = Settings.from_env()
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from botocore.config import Config

# Every AWS client of the functions: short timeouts (a Lambda has seconds, not minutes) and standard retries
# (3 attempts unless AWS_MAX_ATTEMPTS says otherwise).
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"})
DEFAULT_SECRET_PREFIX = "segment-forwarder"  # noqa: S105 - a name prefix, not a secret
DEFAULT_ENDPOINTS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration; see the README's configuration table for each variable."""

    table_name: str = ""
    queue_url: str = ""
    dlq_url: str = ""
    secret_prefix: str = DEFAULT_SECRET_PREFIX
    connection_cache_seconds: int = 60
    dedup_ttl_seconds: int = 400 * 86_400
    event_id_ttl_seconds: int = 72 * 3_600
    lease_seconds: int = 90
    http_delivery_budget_seconds: float = 3.0
    max_receive_count: int = 5
    us_endpoint: str = DEFAULT_ENDPOINTS["us"]
    eu_endpoint: str = DEFAULT_ENDPOINTS["eu"]

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        """Read the function's environment; missing optional variables keep the defaults above."""
        return cls(
            table_name=env.get("DEDUP_TABLE", ""),
            queue_url=env.get("QUEUE_URL", ""),
            dlq_url=env.get("DLQ_URL", ""),
            secret_prefix=env.get("SECRET_PREFIX") or DEFAULT_SECRET_PREFIX,
            connection_cache_seconds=int(env.get("CONNECTION_CACHE_SECONDS", 60)),
            dedup_ttl_seconds=int(env.get("DEDUP_TTL_DAYS", 400)) * 86_400,
            event_id_ttl_seconds=int(env.get("EVENT_ID_TTL_HOURS", 72)) * 3_600,
            lease_seconds=int(env.get("LEASE_SECONDS", 90)),
            http_delivery_budget_seconds=float(env.get("HTTP_DELIVERY_BUDGET_SECONDS", 3.0)),
            max_receive_count=int(env.get("MAX_RECEIVE_COUNT", 5)),
            us_endpoint=env.get("SEGMENT_US_ENDPOINT") or DEFAULT_ENDPOINTS["us"],
            eu_endpoint=env.get("SEGMENT_EU_ENDPOINT") or DEFAULT_ENDPOINTS["eu"],
        )

    @property
    def endpoints(self) -> dict[str, str]:
        """Segment base URL per region."""
        return {"us": self.us_endpoint, "eu": self.eu_endpoint}
