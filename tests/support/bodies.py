"""Request bodies the ingest routes take, as a producer sends them: the component tests' starting points, changed
field by field with ``{**ASSIGNMENT, "visitor_id": "v-2"}``."""

from __future__ import annotations

from typing import Any

ASSIGNMENT: dict[str, Any] = {"workspace_id": "ws-us", "visitor_id": "v-1", "test_id": "t-1", "variant_id": "b"}
CONVERSION: dict[str, Any] = {
    "workspace_id": "ws-us",
    "visitor_id": "v-1",
    "conversion_id": "c-1",
    "conversion_type": "CLICK",
    "origin_url": "https://shop.example.com/pricing",
}
