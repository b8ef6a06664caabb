"""Credentials and region for signing, from what the caller gives or botocore's default chain."""

from __future__ import annotations

import re
from typing import TypeAlias
from urllib.parse import urlsplit

import botocore.session
from botocore.credentials import Credentials

from .errors import ConfigurationError

CredentialsLike: TypeAlias = "Credentials | tuple[str, str] | tuple[str, str, str]"
"""botocore/boto3 ``Credentials`` (refreshable ones are refreshed), or ``(access_key, secret_key[, token])``."""

_EXECUTE_API_HOST = re.compile(r"[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
_SQS_HOST = re.compile(r"sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")


def resolve_credentials(session: botocore.session.Session, credentials: CredentialsLike | None) -> Credentials:
    """The given credentials, else the default chain's (environment, profile, SSO, container, instance role...)."""
    if isinstance(credentials, Credentials):
        return credentials
    if isinstance(credentials, tuple):
        if len(credentials) not in (2, 3):
            raise ConfigurationError("credentials must be (access_key, secret_key) or (access_key, secret_key, token)")
        return Credentials(*credentials)
    found = session.get_credentials()
    if found is None:
        raise ConfigurationError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or a role, or pass "
            "credentials= (the local stack takes ('testing', 'testing'))"
        )
    return found


def resolve_region(session: botocore.session.Session, region: str | None, url: str, service: str) -> str:
    """The given region, else the one in an AWS URL (execute-api or sqs host), else the session's default."""
    if region:
        return region
    host = (urlsplit(url).hostname or "").lower()
    pattern = _EXECUTE_API_HOST if service == "execute-api" else _SQS_HOST
    found = pattern.fullmatch(host)
    if found:
        return found.group(1)
    configured = session.get_config_variable("region")
    if configured:
        return str(configured)
    raise ConfigurationError(
        f"no region to sign for {url}: pass region= or set AWS_REGION (the local stack uses us-east-1)"
    )
