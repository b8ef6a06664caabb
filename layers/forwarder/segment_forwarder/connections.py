"""Workspace connections: the write key and region of each workspace, in Secrets Manager (§7).

Read side (ingest functions), through Powertools' parameters utility and its cache::

    connections = Connections(secretsmanager_client, prefix="segment-forwarder", max_age=60)
    connection = connections.get("demo")   # Connection | None (not connected); ConnectionConfigError if malformed

"Not connected" is cached as well, so a workspace that has no connection does not cost a Secrets Manager call
per event; a new, changed or removed connection is seen within ``max_age`` seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from .errors import ConnectionConfigError

REGIONS = ("us", "eu")
MIN_HINT_KEY_CHARS = 8  # a shorter key would be (nearly) shown whole by its last 4 characters
_NOT_CONNECTED = ""  # cached stand-in for a missing (or deleted) secret
# Secrets Manager answers ResourceNotFound for a missing secret and InvalidRequest for one scheduled for deletion.
_GONE_CODES = frozenset({"ResourceNotFoundException", "InvalidRequestException"})


class ConnectionUnavailableError(Exception):
    """Secrets Manager could not be read (network, throttling, permissions): retry later."""


@dataclass(frozen=True, slots=True)
class Connection:
    """A workspace's Segment source. The write key is kept out of ``repr`` so it cannot reach a log line."""

    write_key: str = field(repr=False)
    region: str

    @property
    def hint(self) -> str:
        """What may be shown of the key: an ellipsis and its last 4 characters (nothing of a key under 8)."""
        return "…" + self.write_key[-4:] if len(self.write_key) >= MIN_HINT_KEY_CHARS else "…"


def secret_name(prefix: str, workspace_id: str) -> str:
    """``<prefix>/<workspace_id>``: the secret of a workspace."""
    return f"{prefix}/{workspace_id}"


def parse_secret(value: str) -> Connection:
    """Parse a SecretString ``{"write_key": "...", "region": "us"|"eu"}``; ConnectionConfigError if malformed.

    The error message never quotes the secret.
    """
    try:
        data = json.loads(value)
    except ValueError:
        raise ConnectionConfigError("the workspace secret is not JSON") from None
    if not isinstance(data, dict):
        raise ConnectionConfigError("the workspace secret is not a JSON object")
    key, region = data.get("write_key"), data.get("region", "us")
    if not isinstance(key, str) or not key.strip():
        raise ConnectionConfigError("the workspace secret has no write_key string")
    if not isinstance(region, str) or region.lower() not in REGIONS:
        raise ConnectionConfigError("the workspace secret's region is not us or eu")
    return Connection(key, region.lower())


class _ConnectionSecrets(SecretsProvider):
    """SecretsProvider that answers "" for a secret that does not exist, so that answer is cached too."""

    def _get(self, name: str, **sdk_options: Any) -> str | bytes:
        try:
            return super()._get(name, **sdk_options)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _GONE_CODES:
                return _NOT_CONNECTED
            raise


class Connections:
    """Cached read access to workspace connections."""

    def __init__(self, client: Any, prefix: str, max_age: int) -> None:
        self._provider = _ConnectionSecrets(boto3_client=client)
        self._prefix = prefix
        self._max_age = max_age

    def get(self, workspace_id: str) -> Connection | None:
        """The workspace's connection; None when not connected.

        Raises ConnectionConfigError (malformed secret) or ConnectionUnavailableError (Secrets Manager failed).
        """
        try:
            value = self._provider.get(secret_name(self._prefix, workspace_id), max_age=self._max_age)
        except GetParameterError as exc:
            raise ConnectionUnavailableError("Secrets Manager could not be read") from exc
        if value == _NOT_CONNECTED:
            return None
        if isinstance(value, bytes):
            raise ConnectionConfigError("the workspace secret is binary, not a JSON SecretString")
        return parse_secret(str(value))

    def clear(self) -> None:
        """Forget cached connections (the connection function calls this after a change)."""
        self._provider.clear_cache()
