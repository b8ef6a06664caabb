"""SigV4 verification of the local HTTP API: what API Gateway's IAM authorization checks before a route runs.

The local stack knows one identity, its dummy credentials (``testing`` / ``testing``, region ``us-east-1``). A
request signed with them for service ``execute-api`` is accepted, anything else is refused with API Gateway's
status and message, so the platform's real signing code (botocore, the AWS SDKs, ``awscurl``,
``segment_forwarder_client``) runs unchanged against ``make run``::

    verifier = SigV4Verifier(access_key="testing", secret_key="testing", region="us-east-1")
    outcome = verifier.verify("POST", "/v1/identify", "", headers, body)   # headers: name -> list of values
    if isinstance(outcome, SigV4Refusal):
        outcome.status, outcome.error_type, outcome.message       # 403, "InvalidSignatureException", "..."
    else:
        outcome.access_key                                         # the caller (a SigV4Identity)

The signature is recomputed from the request as received: method, path and query as sent, the headers named in
``SignedHeaders`` with their received values, and the SHA-256 of the received body (a ``X-Amz-Content-SHA256``
header must match it). botocore computes the canonical request, the string to sign and the signature; only the
choice of headers is the request's own. The request time (``X-Amz-Date``, or ``Date``) must be within 5 minutes
of now, as on AWS.

Refusals, all ``403`` with ``{"message": ...}`` and the ``x-amzn-ErrorType`` header, in the order checked:

* malformed ``Authorization`` (a parameter missing), no ``X-Amz-Date``/``Date``, ``host`` not signed:
  ``IncompleteSignatureException``;
* an access key other than the local one: ``UnrecognizedClientException``, "The security token included in the
  request is invalid.";
* a credential scope of another date, region or service, a request time more than 5 minutes away, a signature that
  does not match: ``InvalidSignatureException`` (the mismatch message ends with the canonical request and the string
  to sign the stack expected, as API Gateway's does, to compare with the client's).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
MAX_SKEW = timedelta(minutes=5)
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_PARAM = re.compile(r"\s*([A-Za-z]+)\s*=\s*([^,\s]*)\s*")
_UNKNOWN_KEY = "The security token included in the request is invalid."
_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class SigV4Identity:
    """The verified caller."""

    access_key: str
    region: str
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class SigV4Refusal:
    """Why a signed request is refused: status, ``x-amzn-ErrorType`` and API Gateway's message."""

    status: int
    error_type: str
    message: str


def is_sigv4(authorization: str | None) -> bool:
    """True when an ``Authorization`` header claims SigV4 (then it is verified, never read as a bearer token)."""
    return authorization is not None and authorization.strip().startswith(ALGORITHM)


class _ReceivedHeadersSigner(SigV4Auth):
    """botocore's SigV4 computation over exactly the headers the request says it signed."""

    def __init__(self, credentials: Credentials, region: str, signed: Sequence[str]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        """The received values of the headers listed in ``SignedHeaders`` (an absent one signs as empty)."""
        chosen = HTTPHeaders()
        for name in self._signed:
            values = request.headers.get_all(name) or [""]
            for value in values:
                chosen[name] = value
        return chosen


class SigV4Verifier:
    """Verifies ``AWS4-HMAC-SHA256`` requests against one access key; see the module docstring."""

    def __init__(self, access_key: str, secret_key: str, region: str) -> None:
        self._credentials = Credentials(access_key, secret_key)
        self.region = region

    def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, Sequence[str]],
        body: bytes,
        now: datetime | None = None,
    ) -> SigV4Identity | SigV4Refusal:
        """Check one request as received (``headers``: lower-case name -> values); see the module docstring."""
        lower = {name.lower(): list(values) for name, values in headers.items()}
        authorization = (_first(lower, "authorization") or "").strip()
        params = _parse_authorization(authorization)
        missing = [name for name in ("Credential", "Signature", "SignedHeaders") if not params.get(name)]
        if missing:
            text = " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            return _incomplete(f"{text} Authorization={authorization}")
        signed = [name.strip().lower() for name in params["SignedHeaders"].split(";") if name.strip()]
        moment, stamp = _request_time(lower)
        if moment is None:
            return _incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
                f"Authorization={authorization}"
            )
        if "host" not in signed:
            return _incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        scope = params["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return _incomplete(
                "Credential must have the form <access key>/<YYYYMMDD>/<region>/<service>/aws4_request. "
                f"Authorization={authorization}"
            )
        access_key, scope_date, region, service, _ = scope
        if access_key != self._credentials.access_key:
            return SigV4Refusal(403, "UnrecognizedClientException", _UNKNOWN_KEY)
        if scope_date != stamp[:8]:
            return _invalid(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope_date}' != '{stamp[:8]}', from '{stamp}'."
            )
        if region != self.region:
            return _invalid(f"Credential should be scoped to a valid region, not '{region}'. ")
        if service != SERVICE:
            return _invalid(f"Credential should be scoped to correct service: '{SERVICE}'. ")
        current = (now or datetime.now(UTC)).replace(microsecond=0)
        if moment < current - MAX_SKEW:
            return _invalid(
                f"Signature expired: {stamp} is now earlier than {_fmt(current - MAX_SKEW)} ({_fmt(current)} - 5 min.)"
            )
        if moment > current + MAX_SKEW:
            return _invalid(
                f"Signature not yet current: {stamp} is still later than {_fmt(current + MAX_SKEW)} "
                f"({_fmt(current)} + 5 min.)"
            )
        canonical, string_to_sign, expected = self._expected(method, raw_path, raw_query, lower, body, signed, stamp)
        claimed_hash = _first(lower, "x-amz-content-sha256")
        body_hash_ok = claimed_hash is None or claimed_hash == hashlib.sha256(body).hexdigest()
        if not body_hash_ok or not hmac.compare_digest(expected, params["Signature"]):
            return _invalid(
                f"{_MISMATCH}\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{string_to_sign}'\n"
            )
        return SigV4Identity(access_key=access_key, region=region, signed_at=moment)

    def _expected(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, list[str]],
        body: bytes,
        signed: Sequence[str],
        stamp: str,
    ) -> tuple[str, str, str]:
        """(canonical request, string to sign, signature) the stack computes for this request."""
        # The URL's host is not used (the received host header is signed); http:// keeps botocore hashing the body.
        # A signed X-Amz-Content-SHA256 is used as the body's hash: verify() has checked it against the body.
        url = f"http://localhost{raw_path}" + (f"?{raw_query}" if raw_query else "")
        request = AWSRequest(method=method.upper(), url=url, data=body)
        for name in signed:  # every received value, in order (a repeated header keeps each)
            for value in headers.get(name, []):
                request.headers[name] = value
        request.context["timestamp"] = stamp
        signer = _ReceivedHeadersSigner(self._credentials, self.region, signed)
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        return canonical, string_to_sign, signer.signature(string_to_sign, request)


def _parse_authorization(header: str) -> dict[str, str]:
    if not header.startswith(ALGORITHM):
        return {}
    params: dict[str, str] = {}
    for part in header[len(ALGORITHM) :].split(","):
        found = _PARAM.fullmatch(part)
        if found:
            params[found.group(1)] = found.group(2)
    return params


def _request_time(headers: Mapping[str, list[str]]) -> tuple[datetime | None, str]:
    """The signed time (X-Amz-Date, else Date) and its SigV4 form; (None, "") when absent or unreadable."""
    amz = _first(headers, "x-amz-date")
    if amz:
        try:
            return datetime.strptime(amz.strip(), _AMZ_DATE).replace(tzinfo=UTC), amz.strip()
        except ValueError:
            return None, ""
    date = _first(headers, "date")
    if date:
        try:
            moment = parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            return None, ""
        return moment, _fmt(moment)
    return None, ""


def _first(headers: Mapping[str, list[str]], name: str) -> str | None:
    """The first received value of a header (lower-case ``name``); None when it is absent."""
    values = headers.get(name)
    return values[0] if values else None


def _fmt(moment: datetime) -> str:
    return moment.strftime(_AMZ_DATE)


def _incomplete(message: str) -> SigV4Refusal:
    return SigV4Refusal(403, "IncompleteSignatureException", message)


def _invalid(message: str) -> SigV4Refusal:
    return SigV4Refusal(403, "InvalidSignatureException", message)
