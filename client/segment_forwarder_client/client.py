"""``ForwarderClient``: every route of the forwarder's HTTP API, signed with SigV4, retried safely.

::

    from segment_forwarder_client import ForwarderClient, Status, assignment_body

    client = ForwarderClient("https://abc123.execute-api.eu-west-1.amazonaws.com")   # the stack's ApiUrl
    # the local stack (make run):
    # client = ForwarderClient("http://127.0.0.1:3000", region="us-east-1", credentials=("testing", "testing"))

    client.identify("acme", "v-1", user_id="u-42", context={"ip": "203.0.113.7"})
    client.assignment("acme", "v-1", "t-checkout", "b", test_name="Checkout button")
    result = client.conversion("acme", "v-1", "c-signup", "CLICK", "https://shop.example.com/pricing")
    result.status, result.message_ids, result.event_id          # Status.DELIVERED, (...), "0b0c…"
    items = client.assignment_many([assignment_body("acme", f"v-{i}", "t-checkout", "b") for i in range(250)])
    [item.result.status if item.ok else item.error.code for item in items]   # one per body, in order (batch.py)

    client.connect("acme", write_key, region="eu")              # Connection(connected=True, region="eu", ...)
    client.connection_status("acme"); client.test_connection("acme"); client.disconnect("acme")

Signing: SigV4 for service ``execute-api`` with the credentials given, else botocore's default chain (environment,
profile, SSO, container or instance role; refreshed when they expire), for the region given, else the one in an
``execute-api`` URL, else ``AWS_REGION``/the profile's. The caller needs ``execute-api:Invoke`` on the routes it
calls (the README shows the policies). Every attempt is signed afresh.

Retries (``RetryPolicy``, see ``retry.py``): 429, 5xx but 501/505, and transport errors (refused or reset
connections, timeouts) are retried with capped exponential backoff and full jitter, at least ``Retry-After``;
by default 6 attempts within 30 s. Other 4xx are raised at once. Retrying is safe: identify and assignment are
facts the forwarder deduplicates, and every conversion carries an ``event_id`` (the caller's, or one generated once
per call and kept for its retries), so a retried conversion is forwarded once even when the first attempt was
delivered and only its answer was lost.

Results are ``IngestResult``, ``Connection`` and ``ConnectionTest``; errors are ``ForwarderError`` subclasses with
``status``, ``code``, ``message`` and ``field`` (``errors.py``). The client is thread-safe (one urllib3 pool).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec
from urllib.parse import quote

import botocore.session
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from ._aws import CredentialsLike, resolve_credentials, resolve_region
from ._version import __version__
from .batch import BatchItem, send_batches
from .bodies import (
    ROUTES,
    Kind,
    assignment_body,
    conversion_body,
    encode_body,
    identify_body,
    with_event_id,
)
from .errors import ForwarderError, TransportError, error_from_answer
from .results import Connection, ConnectionTest, IngestResult, Status, VisitorErasure
from .retry import DEFAULT_RETRY, RetryPolicy, parse_retry_after

SERVICE = "execute-api"
P = ParamSpec("P")
DEFAULT_TIMEOUT = urllib3.Timeout(connect=3.05, read=10.0)


class _Answer:
    """A successful answer: status, parsed JSON body, headers, attempts used."""

    __slots__ = ("attempts", "body", "headers", "status")

    def __init__(self, status: int, body: Any, headers: Mapping[str, str], attempts: int) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.attempts = attempts


def _sends(
    kind: Kind, build: Callable[P, dict[str, Any]], summary: str
) -> Callable[Concatenate[ForwarderClient, P], IngestResult]:
    """A method that builds a body with ``build`` (its very parameters) and sends it with ``ingest``."""

    def method(self: ForwarderClient, /, *args: P.args, **kwargs: P.kwargs) -> IngestResult:
        return self.ingest(kind, build(*args, **kwargs))

    built = inspect.signature(build)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = built.replace(  # type: ignore[attr-defined]
        parameters=[this, *built.parameters.values()], return_annotation="IngestResult"
    )
    method.__name__ = kind
    method.__qualname__ = f"ForwarderClient.{kind}"
    method.__doc__ = f"{summary}\n\nTakes the parameters of ``{build.__name__}`` (``bodies.py``)."
    return method


class ForwarderClient:
    """Client of the forwarder's HTTP API; see the module docstring."""

    def __init__(
        self,
        api_url: str,
        region: str | None = None,
        credentials: CredentialsLike | None = None,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: urllib3.Timeout | float = DEFAULT_TIMEOUT,
        pool: urllib3.PoolManager | None = None,
    ) -> None:
        """``api_url``: the stack's ``ApiUrl`` output (or ``http://127.0.0.1:3000``); see the module docstring.

        Raises ``ConfigurationError`` when no credentials or no region can be found.
        """
        session = botocore.session.get_session()
        self.api_url = api_url.rstrip("/")
        self.region = resolve_region(session, region, self.api_url, SERVICE)
        self._credentials = resolve_credentials(session, credentials)
        self.retry = retry
        self._timeout = timeout
        self._http = pool or urllib3.PoolManager(num_pools=4, maxsize=10)
        self._user_agent = f"segment-forwarder-client/{__version__}"

    # -- ingest ---------------------------------------------------------------------------------------------
    # identify(workspace_id, visitor_id, *, user_id, timestamp, context, segment_anonymous_id),
    # assignment(..., test_id, variant_id, *, test_name, variant_name, ...) and conversion(..., conversion_id,
    # conversion_type, origin_url, *, one_per_visitor, event_id, ...) take exactly the parameters of
    # identify_body, assignment_body and conversion_body (bodies.py), the one definition of each body.

    identify = _sends(
        "identify",
        identify_body,
        "``POST /v1/identify``: a visitor was seen (Identify the first time, once per user_id).",
    )
    assignment = _sends(
        "assignment", assignment_body, "``POST /v1/assignments``: Experiment Viewed the first time per (visitor, test)."
    )
    conversion = _sends(
        "conversion",
        conversion_body,
        "``POST /v1/conversions``: Conversion Triggered, with an ``event_id`` (given or new).",
    )

    def ingest(self, kind: Kind, body: Mapping[str, Any]) -> IngestResult:
        """Send a ready body to its route (a conversion without ``event_id`` gets one, kept for the retries)."""
        if kind not in ROUTES:
            raise ValueError(f"kind must be one of {sorted(ROUTES)}, not {kind!r}")
        sent = with_event_id(kind, body)
        event_id = sent.get("event_id") if kind == "conversion" else None
        try:
            answer = self._call("POST", ROUTES[kind], sent)
        except ForwarderError as exc:
            exc.event_id = event_id  # the retry must send it again (see errors.py)
            raise
        data = answer.body if isinstance(answer.body, dict) else {}
        try:
            status = Status(str(data.get("status")))
        except ValueError:
            raise ForwarderError(
                f"unexpected answer to POST {ROUTES[kind]}: {str(answer.body)[:200]}",
                status=answer.status,
                attempts=answer.attempts,
                event_id=event_id,
            ) from None
        ids = data.get("message_ids")
        return IngestResult(
            status=status,
            message_ids=tuple(str(i) for i in ids) if isinstance(ids, list) else (),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
            event_id=event_id,
            attempts=answer.attempts,
            request_id=answer.headers.get("apigw-requestid"),
        )

    # -- batches (batch.py): up to 100 bodies and 500 KB a request; only retryable bodies are sent again ------

    def ingest_many(self, kind: Kind, bodies: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
        """Send ready bodies of one kind through its route's batches; one ``BatchItem`` per body, in order. Every
        conversion without ``event_id`` gets one, kept for its retries (``BatchItem.event_id``)."""
        return send_batches(self, kind, bodies)

    def identify_many(self, bodies: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
        """``POST /v1/identify`` in batches of ``identify_body`` bodies (``ingest_many``)."""
        return send_batches(self, "identify", bodies)

    def assignment_many(self, bodies: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
        """``POST /v1/assignments`` in batches of ``assignment_body`` bodies (``ingest_many``)."""
        return send_batches(self, "assignment", bodies)

    def conversion_many(self, bodies: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
        """``POST /v1/conversions`` in batches of ``conversion_body`` bodies (``ingest_many``), each with an
        ``event_id``."""
        return send_batches(self, "conversion", bodies)

    # -- connections ----------------------------------------------------------------------------------------

    def connect(
        self, workspace_id: str, write_key: str, region: str = "us", *, settings: Mapping[str, Any] | None = None
    ) -> Connection:
        """``PUT /v1/workspaces/{id}/segment``: connect or reconnect the workspace's Segment source, with its
        ``settings`` (a setting left out takes its default; see the README's Settings)::

            client.connect("acme", key, settings={"ip": "truncate", "consent_category": "Analytics"})
        """
        body: dict[str, Any] = {"write_key": write_key, "region": region}
        if settings is not None:
            body["settings"] = dict(settings)
        return _connection(self._call("PUT", _segment_path(workspace_id), body).body)

    def connection_status(self, workspace_id: str) -> Connection:
        """``GET /v1/workspaces/{id}/segment``: whether (and where) the workspace is connected, and its delivery
        health (``Connection.health``)."""
        return _connection(self._call("GET", _segment_path(workspace_id), None).body)

    def disconnect(self, workspace_id: str) -> None:
        """``DELETE /v1/workspaces/{id}/segment``: events of the workspace are skipped from then on."""
        self._call("DELETE", _segment_path(workspace_id), None)

    def erase_visitor_once(self, workspace_id: str, visitor_id: str) -> VisitorErasure:
        """One ``DELETE /v1/workspaces/{id}/visitors/{visitor_id}``: the erase takes effect at once; the facts it
        deleted, and whether it is ``complete`` (else call again: it ran out of time)."""
        path = f"/v1/workspaces/{quote(workspace_id, safe='')}/visitors/{quote(visitor_id, safe='')}"
        data = self._call("DELETE", path, None).body
        data = data if isinstance(data, dict) else {}
        erased, complete, wait = data.get("erased"), data.get("complete"), data.get("retry_after_s")
        return VisitorErasure(
            erased=erased if isinstance(erased, int) else 0,
            complete=complete is not False,
            retry_after_s=wait if isinstance(wait, int) else 0,
        )

    def erase_visitor(
        self,
        workspace_id: str,
        visitor_id: str,
        *,
        max_calls: int = 1000,
        on_call: Callable[[VisitorErasure], None] | None = None,
    ) -> int:
        """Erase the visitor completely: ``erase_visitor_once`` until it answers ``complete`` (at most
        ``max_calls``, else ``ForwarderError``); the number of facts removed in all. ``on_call`` is told each
        answer (progress)."""
        total = 0
        for _ in range(max_calls):
            answer = self.erase_visitor_once(workspace_id, visitor_id)
            total += answer.erased
            if on_call is not None:
                on_call(answer)
            if answer.complete:
                return total
            time.sleep(answer.retry_after_s)
        raise ForwarderError(f"the erase of {visitor_id!r} was not complete after {max_calls} calls", retryable=True)

    def test_connection(self, workspace_id: str) -> ConnectionTest:
        """``POST /v1/workspaces/{id}/segment/test``: send one test Track (``NotConnectedError`` when none)."""
        data = self._call("POST", _segment_path(workspace_id) + "/test", None).body
        data = data if isinstance(data, dict) else {}
        return ConnectionTest(
            message_id=str(data.get("message_id", "")),
            endpoint=str(data.get("endpoint", "")),
            region=data.get("region") if isinstance(data.get("region"), str) else None,
            raw=data,
        )

    # -- transport ------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> _Answer:
        """One logical call: signed attempts until a 2xx, an error that is not retryable, or the policy ends it."""
        url = self.api_url + path
        payload = encode_body(body).encode("utf-8") if body is not None else b""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._http.request(
                    method,
                    url,
                    body=payload or None,
                    headers=self._signed_headers(method, url, payload),
                    timeout=self._timeout,
                    retries=False,
                    redirect=False,
                )
            except urllib3.exceptions.HTTPError as exc:
                failure: ForwarderError = TransportError(
                    f"no answer from {method} {url}: {type(exc).__name__}: {exc}", retryable=True, attempts=attempt
                )
            else:
                parsed = _json(response.data)
                if response.status < 300:
                    return _Answer(response.status, parsed, response.headers, attempt)
                failure = error_from_answer(response.status, parsed, response.headers, attempt)
                if not failure.retryable:
                    raise failure
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            delay = self.retry.next_delay(attempt, time.monotonic() - started, retry_after)
            if delay is None:
                raise failure
            time.sleep(delay)

    def _signed_headers(self, method: str, url: str, payload: bytes) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if payload:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=url, data=payload, headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), SERVICE, self.region).add_auth(request)
        signed = dict(request.headers.items())
        signed["User-Agent"] = self._user_agent  # after signing: botocore never signs the User-Agent
        return signed


def _segment_path(workspace_id: str) -> str:
    return f"/v1/workspaces/{quote(workspace_id, safe='')}/segment"


def _json(data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data[:200].decode("utf-8", "replace")}


def _connection(data: Any) -> Connection:
    data = data if isinstance(data, dict) else {}
    return Connection(
        connected=bool(data.get("connected")),
        region=data.get("region") if isinstance(data.get("region"), str) else None,
        write_key_hint=data.get("write_key_hint") if isinstance(data.get("write_key_hint"), str) else None,
        settings=data.get("settings") if isinstance(data.get("settings"), dict) else None,
        health=data.get("health") if isinstance(data.get("health"), dict) else None,
        raw=data,
    )
