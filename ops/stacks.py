"""Where the operator tools find a stack: the local stack of ``make run`` (its AWS endpoint, its dummy
credentials, the resource names it gives from template.yaml) or a deployed stack (its CloudFormation outputs;
credentials and region from the environment)::

    session = local_session()                                   # the local stack's dummy credentials
    outputs = stack_outputs("segment-forwarder")                 # {"ApiUrl": ..., "DedupTableName": ...}
    output_key(Template.load(), "DedupTable")                   # "DedupTableName": the output naming a resource
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from local_stack.template import Template

LOCAL_REGION = "us-east-1"
LOCAL_CREDENTIALS = ("testing", "testing")  # the local stack's dummy access key and secret key
CLIENT_CONFIG = Config(connect_timeout=3, read_timeout=20, retries={"mode": "standard"})
LOCAL_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=20, retries={"max_attempts": 2})


class StackError(Exception):
    """A stack, a resource or an endpoint cannot be found or reached; the message says which and why."""


def local_session() -> Any:
    """A boto3 session with the local stack's dummy credentials and region."""
    return boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS[0], aws_secret_access_key=LOCAL_CREDENTIALS[1], region_name=LOCAL_REGION
    )


def local_endpoint(environ: Any) -> str:
    """The local stack's AWS endpoint: ``http://127.0.0.1:$LOCAL_AWS_PORT`` (port 4566 by default)."""
    return f"http://127.0.0.1:{environ.get('LOCAL_AWS_PORT') or 4566}"


def local_api(environ: Any) -> str:
    """The local stack's API: ``http://127.0.0.1:$LOCAL_API_PORT`` (port 3000 by default)."""
    return f"http://127.0.0.1:{environ.get('LOCAL_API_PORT') or 3000}"


def output_key(template: Template, logical_id: str) -> str:
    """The template output whose value is ``!Ref <logical_id>``; KeyError when there is none."""
    for name, output in template.document.get("Outputs", {}).items():
        if output.get("Value") == {"Ref": logical_id}:
            return str(name)
    raise KeyError(logical_id)


def stack_outputs(stack_name: str, session: Any | None = None) -> dict[str, str]:
    """A deployed stack's outputs by name; StackError when the stack cannot be described."""
    session = session or boto3.session.Session()
    try:
        [stack] = session.client("cloudformation", config=CLIENT_CONFIG).describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise StackError(f"stack {stack_name}: {exc.response['Error'].get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise StackError(f"stack {stack_name}: {exc}") from None
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def required(outputs: dict[str, str], stack_name: str, *names: str) -> list[str]:
    """The values of ``names`` among a stack's outputs; StackError naming the missing ones."""
    missing = [name for name in names if name not in outputs]
    if missing:
        raise StackError(f"stack {stack_name} has no output {', '.join(missing)} (deployed from this template?)")
    return [outputs[name] for name in names]
