"""Local stack: run the whole forwarder on a developer machine (moto, HTTP API, SQS pollers, Segment sink)."""
