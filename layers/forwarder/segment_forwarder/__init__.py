"""Server-side Segment forwarder of an A/B-testing platform.

The package is shipped as a Lambda layer and holds the whole domain; the functions in
``functions/<name>/app.py`` only bind a handler::

    from segment_forwarder.handler import make_handler

    handler = make_handler("assignment")

Modules: ``validation`` (requests against the OpenAPI document), ``events`` (requests → Segment messages and
dedup keys), ``table`` (the DynamoDB table's keys and errors), ``claims`` (deliveries' claims of facts),
``visitor_facts`` (a visitor's facts: list, erase), ``health_ledger`` (the hourly health buckets),
``segment`` (the ``/v1/batch`` client), ``connections`` (workspace
secrets), ``workspace_settings`` (a workspace's identity and privacy settings), ``forwarding`` (claim → send →
mark sent), ``handler`` (Lambda entry points for HTTP and SQS).
"""

__version__ = "1.0.0"
LIBRARY = {"name": "segment-forwarder", "version": __version__}
