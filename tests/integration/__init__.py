"""Integration tests against the local stack over real HTTP and SQS (``pytest -m integration``)."""
