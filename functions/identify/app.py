"""Lambda entry point of the identify function: HTTP API route POST /v1/identify and its SQS queue."""

from segment_forwarder.handler import make_handler

handler = make_handler("identify")
