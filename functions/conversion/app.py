"""Lambda entry point of the conversion function: HTTP API route POST /v1/conversions and its SQS queue."""

from segment_forwarder.handler import make_handler

handler = make_handler("conversion")
