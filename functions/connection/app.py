"""Lambda entry point of the connection function: a workspace's Segment connection.

HTTP API routes:
    PUT    /v1/workspaces/{workspace_id}/segment       connect (write key + region)
    GET    /v1/workspaces/{workspace_id}/segment       connection status
    DELETE /v1/workspaces/{workspace_id}/segment       disconnect
    POST   /v1/workspaces/{workspace_id}/segment/test  send one test Track to the workspace's source
"""

from segment_forwarder.connection_api import handler

__all__ = ["handler"]
