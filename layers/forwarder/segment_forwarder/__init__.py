"""Server-side Segment forwarder of an A/B-testing platform.

The package is shipped as a Lambda layer and holds the whole domain; the functions in
``functions/<name>/app.py`` only bind a handler::

    from segment_forwarder.handler import make_handler

    handler = make_handler("assignment")

Modules, pure ones first (no AWS, no HTTP, no clock):

- ``validation`` (request bodies against the OpenAPI document), ``events`` (validated requests as typed events),
  ``messages`` (the Segment messages, built in one place), ``facts`` (the dedup core: what an event claims and what
  each answer means), ``workspace_settings`` (a workspace's identity and privacy settings), ``health`` (delivery
  health tallies and the 24-hour summary), ``records`` (one SQS record read once), ``retries`` (done, retry or
  park a record), ``answers`` (what an HTTP caller is told), ``segment_batches`` (Segment's request limits),
  ``ports`` (what the forwarding core needs from the world), ``errors`` (the one error hierarchy);
- adapters: ``table`` (the DynamoDB table's keys and errors), ``claims`` (deliveries' claims of facts),
  ``visitor_facts`` (a visitor's facts: list, erase), ``health_ledger`` (the hourly health buckets), ``segment``
  (the ``/v1/batch`` client), ``connections`` (workspace secrets), ``queues`` (queueing and parking on SQS);
- ``forwarding`` (claim → send → mark sent over the ports), ``config`` (a function's configuration from its
  environment);
- entry points: ``handler`` (the ingest functions, HTTP and SQS), ``connection_api`` (the connection function),
  ``api_gateway`` (HTTP API plumbing both share).
"""

__version__ = "1.0.0"
LIBRARY = {"name": "segment-forwarder", "version": __version__}
