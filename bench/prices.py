"""AWS list prices the benchmark's cost section uses: us-east-1, on-demand, no free tier, no discounts.

::

    from bench.prices import PRICES, AS_OF
    PRICES["dynamodb_write"].usd_per_unit * 2_000_000     # 1.25: two million write request units

**As of 2025-06**, written down from AWS's public pricing pages as last known to the author; this machine has no
network, so they were *not* re-checked when the benchmark was written (2026-11): check each against its source
before a decision rests on it. Free tiers (Lambda's 400,000 GB-s and 1 M requests, SQS's 1 M requests, ...) are left
out on purpose: a platform team at scale is past them. Larger volume tiers (Lambda after 7.5 billion arm64 GB-s a
month, API Gateway after 300 M requests) would lower those two lines a little.
"""

from __future__ import annotations

from dataclasses import dataclass

AS_OF = "2025-06"
REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class Price:
    """One list price: ``usd`` for ``per`` units of ``unit``."""

    usd: float
    per: float
    unit: str
    source: str

    @property
    def usd_per_unit(self) -> float:
        """Dollars for one unit."""
        return self.usd / self.per

    def label(self) -> str:
        """``$0.625 per 1M write request units``."""
        per = f"{self.per / 1e6:g}M" if self.per >= 1e6 else f"{self.per:g}"
        return f"${self.usd:g} per {per} {self.unit}"


_DYNAMODB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_SQS = "https://aws.amazon.com/sqs/pricing/"
_API_GATEWAY = "https://aws.amazon.com/api-gateway/pricing/"
_SECRETS = "https://aws.amazon.com/secrets-manager/pricing/"
_CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"

# Priced per event (the cost section's components).
PRICES: dict[str, Price] = {
    "dynamodb_write": Price(0.625, 1e6, "write request units (on-demand, Standard table class)", _DYNAMODB),
    "dynamodb_read": Price(0.125, 1e6, "read request units (on-demand, Standard table class)", _DYNAMODB),
    "lambda_gb_second": Price(0.0000133334, 1, "GB-second (arm64, first 7.5 billion GB-s a month)", _LAMBDA),
    "lambda_request": Price(0.20, 1e6, "requests (invocations)", _LAMBDA),
    "sqs_request": Price(0.40, 1e6, "requests (standard queue; each 64 KB chunk of a payload is one)", _SQS),
    "api_gateway_request": Price(1.00, 1e6, "HTTP API requests (first 300 M a month; 512 KB steps)", _API_GATEWAY),
    "secrets_api_call": Price(0.05, 10_000, "Secrets Manager API calls", _SECRETS),
    "logs_ingested_gb": Price(
        0.50, 1, "GB of CloudWatch Logs ingested (Standard; Lambda logs' first tier)", _CLOUDWATCH
    ),
}

# Priced per month, not per event: stated beside the cost tables, never in their totals.
MONTHLY: dict[str, Price] = {
    "custom_metric": Price(
        0.30, 1, "custom metric a month (first 10,000; an EMF name + dimension values)", _CLOUDWATCH
    ),
    "secret": Price(0.40, 1, "secret a month (one per connected workspace)", _SECRETS),
    "dynamodb_storage_gb": Price(0.25, 1, "GB-month of DynamoDB storage (after the first 25 GB)", _DYNAMODB),
    "logs_stored_gb": Price(0.03, 1, "GB-month of CloudWatch Logs archived (compressed)", _CLOUDWATCH),
}
