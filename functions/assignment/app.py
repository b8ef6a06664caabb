"""Lambda entry point of the assignment function: HTTP API route POST /v1/assignments and its SQS queue."""

from segment_forwarder.handler import make_handler

handler = make_handler("assignment")
