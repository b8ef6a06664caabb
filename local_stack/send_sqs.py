"""Put a message on a function's queue of the running local stack (``make run``), as a producer would.

::

    python -m local_stack.send_sqs assignment '{"workspace_id":"demo","visitor_id":"v","test_id":"t","variant_id":"b"}'
    python -m local_stack.send_sqs conversion --file conversion-body.json
    echo '{"workspace_id":"demo","visitor_id":"v-2"}' | python -m local_stack.send_sqs identify --file -
    make send-sqs KIND=identify BODY='{"workspace_id":"demo","visitor_id":"v-3"}'     # or FILE=path

The kind names the function (``functions/<kind>/``); its queue is found through template.yaml's SQS event
source and resolved on the stack's AWS endpoint (``LOCAL_AWS_PORT``, default 4566). The body is sent exactly as
given; a body that is not JSON or breaks the schema ends in the queue's dead-letter queue with its reason.
Exit status: 0 sent, 1 the stack is not reachable or has no such queue, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .stack import DUMMY_CREDENTIALS, REGION
from .template import Template


def queue_name(template: Template, kind: str) -> str:
    """Physical name of the queue that feeds the function in ``functions/<kind>/``; KeyError when none."""
    return template.physical_name(template.queues_of(kind)[0])


def main(argv: list[str] | None = None) -> int:
    """Send one message; see the module docstring."""
    template = Template.load()
    kinds = template.kinds()
    parser = argparse.ArgumentParser(prog="python -m local_stack.send_sqs", description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=kinds, help="the function whose queue receives the message")
    parser.add_argument("body", nargs="?", help="the message body (the route's JSON body)")
    parser.add_argument("--file", help="read the body from this file ('-' for stdin)")
    parser.add_argument(
        "--endpoint",
        default=f"http://127.0.0.1:{os.environ.get('LOCAL_AWS_PORT') or 4566}",
        help="AWS endpoint of the local stack (default http://127.0.0.1:$LOCAL_AWS_PORT, port 4566)",
    )
    args = parser.parse_args(argv)
    if (args.body is None) == (args.file is None):
        parser.error("give the body either as an argument or with --file")
    if args.file == "-":
        body = sys.stdin.read()
    elif args.file:
        try:
            body = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            parser.error(f"cannot read {args.file}: {exc.strerror}")
    else:
        body = args.body
    if not body.strip():
        parser.error("the body is empty")

    sqs = boto3.session.Session(
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    ).client("sqs", endpoint_url=args.endpoint, config=Config(connect_timeout=2, retries={"max_attempts": 1}))
    name = queue_name(template, args.kind)
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        sent = sqs.send_message(QueueUrl=url, MessageBody=body)
    except ClientError as exc:
        print(f"send_sqs: error: queue {name}: {exc.response['Error'].get('Message', exc)}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(
            f"send_sqs: error: the local stack is not reachable at {args.endpoint} ({exc}); is `make run` running?",
            file=sys.stderr,
        )
        return 1
    note = ""
    try:
        json.loads(body)
    except ValueError:
        note = " (not JSON: it will be dead-lettered)"
    print(f"sent {sent['MessageId']} to {name}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
