"""Erase visitor X (``make erase``): ``DELETE /v1/workspaces/{workspace}/visitors/{visitor}``, signed like any
caller of the API, so the same IAM decides who may; called again until the erase is complete::

    make erase WORKSPACE=demo VISITOR=v-1                          # the local stack of `make run`
    make erase WORKSPACE=acme VISITOR=v-1 STACK=segment-forwarder  # a deployed stack (its ApiUrl output;
                                                                   # credentials and region: environment)

The erase takes effect at the first call, in every function: events of the visitor received before it are dropped,
its next event is a first sighting again under new messageIds. Each call then deletes what it can of the
visitor's facts within its time; a visitor with very many facts takes several calls (one line each). It prints
how many facts were removed in all (0 for a visitor never seen). What else may still hold the visitor id, and
for how long, is in the README's privacy section.

Exit status: 0 done, 1 the API refused or could not be reached (409 in_flight included: run it again later),
2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping

import boto3

from local_stack.template import Template
from segment_forwarder_client import ForwarderClient, ForwarderError

from .stacks import LOCAL_CREDENTIALS, LOCAL_REGION, StackError, local_api, required, stack_outputs

Out = Callable[[str], None]


def main(argv: list[str] | None = None, environ: Mapping[str, str] = os.environ, out: Out = print) -> int:
    """Run ``python -m ops.erase``; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m ops.erase", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("workspace_id")
    parser.add_argument("visitor_id")
    parser.add_argument("--stack", help="a deployed stack's name (default: the local stack of `make run`)")
    parser.add_argument("--api", default=local_api(environ), help="the local stack's API (default :3000)")
    args = parser.parse_args(argv)
    Template.load()  # the template this tool belongs with (and an early error outside the repository)
    try:
        if args.stack:
            session = boto3.session.Session()
            [api] = required(stack_outputs(args.stack, session), args.stack, "ApiUrl")
            client = ForwarderClient(api, region=session.region_name)
            where = f"stack {args.stack}"
        else:
            client = ForwarderClient(args.api, region=LOCAL_REGION, credentials=LOCAL_CREDENTIALS)
            where = f"the local stack at {args.api}"
        erased = client.erase_visitor(
            args.workspace_id,
            args.visitor_id,
            on_call=lambda answer: (
                None
                if answer.complete
                else out(f"  {answer.erased} fact(s) erased so far by this call; not complete: calling again")
            ),
        )
    except (StackError, ForwarderError) as exc:
        print(f"erase: error: {exc}", file=sys.stderr)
        return 1
    out(f"visitor {args.visitor_id!r} of workspace {args.workspace_id!r} in {where}: {erased} fact(s) erased")
    return 0


if __name__ == "__main__":
    sys.exit(main())
