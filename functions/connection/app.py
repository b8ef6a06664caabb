"""Lambda entry point of the connection function: a workspace's Segment connection, and erasing a visitor.

HTTP API routes (``segment_forwarder.connection_api``):
    PUT    /v1/workspaces/{workspace_id}/segment                   connect (write key, region, settings)
    GET    /v1/workspaces/{workspace_id}/segment                   connection status and delivery health
    DELETE /v1/workspaces/{workspace_id}/segment                   disconnect
    POST   /v1/workspaces/{workspace_id}/segment/test              send one test Track to the workspace's source
    DELETE /v1/workspaces/{workspace_id}/visitors/{visitor_id}     erase a visitor (its facts, new ids after)
"""

from segment_forwarder.connection_api import handler

__all__ = ["handler"]
