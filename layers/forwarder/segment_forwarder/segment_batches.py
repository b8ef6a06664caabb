"""Segment's request limits, and how a workspace's messages are grouped into ``/v1/batch`` requests (pure)::

for indexes in split_batches([[identify, track], [track]]):   # units: one event's messages, kept together
    send([message for index in indexes for message in units[index]])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .messages import message_size

MAX_REQUEST_BYTES = 475 * 1024  # Segment's limit is 500 KB; keep room for the envelope
MAX_BATCH_MESSAGES = 2_500
MIN_ATTEMPT_S = 0.25  # do not start an attempt with less time than this left


def split_batches(
    units: Sequence[Sequence[dict[str, Any]]],
    max_bytes: int = MAX_REQUEST_BYTES,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> Iterator[list[int]]:
    """Group units (the messages of one event, kept together and in order) into request-sized batches.

    Yields lists of unit indexes. Sizes are the bytes sent (``message_size``: compact UTF-8, as the request
    body is encoded), plus the comma between messages. Every single message must already be at most
    MAX_MESSAGE_BYTES.
    """
    batch: list[int] = []
    size = count = 0
    for index, unit in enumerate(units):
        unit_size = sum(message_size(m) + 1 for m in unit)
        if batch and (size + unit_size > max_bytes or count + len(unit) > max_messages):
            yield batch
            batch, size, count = [], 0, 0
        batch.append(index)
        size += unit_size
        count += len(unit)
    if batch:
        yield batch
