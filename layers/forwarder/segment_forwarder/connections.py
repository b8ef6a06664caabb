"""Workspace connections: the write key and region of each workspace, in Secrets Manager. The only module that
talks to Secrets Manager.

The secret ``<prefix>/<workspace_id>`` holds ``{"write_key": "...", "region": "us"|"eu", "settings": {...}}``;
``settings`` (``workspace_settings.WorkspaceSettings``) is optional: without it the workspace has the defaults.
Settings are read and cached with the connection, so a change reaches the ingest functions within the same
``max_age``.

Read side (ingest functions), cached in the warm environment::

    connections = Connections(secretsmanager_client, prefix="segment-forwarder", max_age=60)
    connection = connections.get("demo")   # Connection | None (not connected); ConnectionConfigError if malformed
    Connections(client, prefix, max_age=60, miss_max_age=30, max_entries=1000)   # the defaults spelled out

A connection is cached for ``max_age`` seconds, so a changed or removed connection is seen within that time.
"Not connected" is cached too, for ``miss_max_age`` seconds (at most ``max_age``): a workspace that has no
connection costs a Secrets Manager call at most that often, and a newly connected one is seen within that time.
Both caches are LRU, bounded by ``max_entries`` each, and kept apart: a flood of unknown workspace ids costs at
most ``max_entries`` entries, and never evicts the connections of the workspaces that are connected.

Write side (the connection function, the only writer), uncached::

    store = ConnectionStore(secretsmanager_client, prefix="segment-forwarder")
    store.save("demo", Connection("<write key>", "eu"))    # "connected" | "reconnected" | "restored"
    store.save("demo", Connection("<write key>", "eu", WorkspaceSettings(ip="truncate")))
    store.read("demo")                                      # Connection | None
    store.remove("demo")                                    # True if it was connected
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .errors import ConnectionConfigError, UnavailableError, error_code
from .ports import Connection
from .workspace_settings import DEFAULT_SETTINGS, SettingsError, WorkspaceSettings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
else:
    SecretsManagerClient = Any

REGIONS = ("us", "eu")
# What HTTP Basic auth can carry as a user name: printable ASCII without spaces and without ":" (the separator).
_WRITE_KEY = re.compile(r"^[!-9;-~]{1,256}$")
RECOVERY_WINDOW_DAYS = 7  # a disconnect can be undone by reconnecting within this window (Secrets Manager: 7-30)
DEFAULT_MISS_MAX_AGE_S = 30
DEFAULT_MAX_ENTRIES = 1000
# Secrets Manager answers ResourceNotFound for a missing secret and InvalidRequest for one scheduled for deletion.
_NOT_FOUND = "ResourceNotFoundException"
_INVALID_STATE = "InvalidRequestException"
_EXISTS = "ResourceExistsException"
_GONE_CODES = frozenset({_NOT_FOUND, _INVALID_STATE})


class ConnectionUnavailableError(UnavailableError):
    """Secrets Manager could not be reached or refused the call (network, throttling, permissions): retry later.

    The message is the AWS error code only (never a value).
    """


def secret_name(prefix: str, workspace_id: str) -> str:
    """``<prefix>/<workspace_id>``: the secret of a workspace."""
    return f"{prefix}/{workspace_id}"


def parse_secret(value: str) -> Connection:
    """Parse a SecretString ``{"write_key": "...", "region": "us"|"eu", "settings": {...}}`` (``settings``
    optional: the defaults); ConnectionConfigError if malformed, settings included.

    The error message never quotes the secret (a bad setting is named, its value is not quoted).
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
    if not _WRITE_KEY.match(key):
        raise ConnectionConfigError("the workspace secret's write_key holds characters HTTP Basic auth cannot carry")
    if not isinstance(region, str) or region.lower() not in REGIONS:
        raise ConnectionConfigError("the workspace secret's region is not us or eu")
    settings = data.get("settings")
    try:
        parsed = DEFAULT_SETTINGS if settings is None else WorkspaceSettings.from_dict(settings)
    except SettingsError as exc:
        raise ConnectionConfigError(f"the workspace secret's {exc}") from None
    return Connection(key, region.lower(), parsed)


def secret_value(connection: Connection) -> str:
    """The SecretString of a connection: ``settings`` only when they are not the defaults, so a connection
    without settings is stored as before they existed.

    ``parse_secret(secret_value(connection)) == connection`` always holds.
    """
    value: dict[str, object] = {"write_key": connection.write_key, "region": connection.region}
    if connection.settings != DEFAULT_SETTINGS:
        value["settings"] = connection.settings.as_dict()
    return json.dumps(value)


class _Lru[V]:
    """A bounded map of values that expire (least recently used evicted first). Not thread-safe alone."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str, now: float) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= now:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: str, value: V, expires_at: float) -> None:
        if self._max_entries <= 0:
            return
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class Connections:
    """Cached read access to workspace connections (thread-safe)."""

    def __init__(
        self,
        client: SecretsManagerClient,
        prefix: str,
        max_age: int,
        *,
        miss_max_age: int = DEFAULT_MISS_MAX_AGE_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._max_age = max_age
        self._miss_max_age = min(miss_max_age, max_age)
        self._clock = clock
        self._lock = threading.Lock()
        self._connected: _Lru[str | bytes] = _Lru(max_entries)  # workspace -> its SecretString (bytes: binary)
        self._missing: _Lru[None] = _Lru(max_entries)  # workspaces found not connected

    def get(self, workspace_id: str) -> Connection | None:
        """The workspace's connection; None when not connected.

        Raises ConnectionConfigError (malformed secret) or ConnectionUnavailableError (Secrets Manager failed).
        """
        now = self._clock()
        with self._lock:
            found, value = self._connected.get(workspace_id, now)
            missing, _ = (False, None) if found else self._missing.get(workspace_id, now)
        if missing:
            return None
        if not found:
            value = self._read(workspace_id)
            with self._lock:
                if value is None:
                    self._connected.discard(workspace_id)
                    self._missing.put(workspace_id, None, now + self._miss_max_age)
                else:
                    self._missing.discard(workspace_id)
                    self._connected.put(workspace_id, value, now + self._max_age)
        if isinstance(value, bytes):
            raise ConnectionConfigError("the workspace secret is binary, not a JSON SecretString")
        return None if value is None else parse_secret(value)

    def _read(self, workspace_id: str) -> str | bytes | None:
        """The SecretString; None when the secret does not exist or is scheduled for deletion."""
        answer = _secret_value(self._client, self._prefix, workspace_id)
        return None if answer is None else answer.get("SecretString", b"")

    def cached(self) -> tuple[int, int]:
        """How many connections, and how many "not connected" answers, the cache holds now."""
        with self._lock:
            return len(self._connected), len(self._missing)


def _secret_value(client: SecretsManagerClient, prefix: str, workspace_id: str) -> Any:
    """GetSecretValue of the workspace's secret; None when it does not exist or is scheduled for deletion, else
    ConnectionUnavailableError when Secrets Manager fails."""
    try:
        return client.get_secret_value(SecretId=secret_name(prefix, workspace_id))
    except ClientError as exc:
        if error_code(exc) in _GONE_CODES:
            return None
        raise ConnectionUnavailableError(error_code(exc)) from None
    except BotoCoreError as exc:
        raise ConnectionUnavailableError(error_code(exc)) from None


class ConnectionStore:
    """Uncached read and write access to workspace connections (the connection function).

    Every method raises ConnectionUnavailableError when Secrets Manager fails, and ``read`` raises
    ConnectionConfigError for a stored secret that cannot be used.
    """

    def __init__(self, client: SecretsManagerClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def read(self, workspace_id: str) -> Connection | None:
        """The stored connection; None when there is no secret or it is scheduled for deletion."""
        value = _secret_value(self._client, self._prefix, workspace_id)
        if value is None:
            return None
        if "SecretString" not in value:
            raise ConnectionConfigError("the workspace secret is binary, not a JSON SecretString")
        return parse_secret(value["SecretString"])

    def save(self, workspace_id: str, connection: Connection) -> str:
        """Store the connection: ``connected`` (new secret), ``reconnected`` (replaced) or ``restored`` (a
        secret scheduled for deletion, by a disconnect shortly before, is restored first and then written)."""
        name = secret_name(self._prefix, workspace_id)
        value = secret_value(connection)
        try:
            try:
                self._client.create_secret(
                    Name=name,
                    SecretString=value,
                    Description=f"Segment connection of workspace {workspace_id} (write key and region)",
                )
                return "connected"
            except ClientError as exc:
                if error_code(exc) not in (_EXISTS, _INVALID_STATE):
                    raise
            outcome = "reconnected"
            if "DeletedDate" in self._client.describe_secret(SecretId=name):
                self._client.restore_secret(SecretId=name)
                outcome = "restored"
            self._client.put_secret_value(SecretId=name, SecretString=value)
        except (ClientError, BotoCoreError) as exc:
            raise ConnectionUnavailableError(error_code(exc)) from None
        return outcome

    def remove(self, workspace_id: str) -> bool:
        """Schedule the secret for deletion (recoverable for RECOVERY_WINDOW_DAYS); False if not connected."""
        name = secret_name(self._prefix, workspace_id)
        try:
            try:
                self._client.delete_secret(SecretId=name, RecoveryWindowInDays=RECOVERY_WINDOW_DAYS)
            except ClientError as exc:
                code = error_code(exc)
                if code == _NOT_FOUND:
                    return False
                if code == _INVALID_STATE and "DeletedDate" in self._client.describe_secret(SecretId=name):
                    return False  # already disconnected
                raise
        except (ClientError, BotoCoreError) as exc:
            raise ConnectionUnavailableError(error_code(exc)) from None
        return True
