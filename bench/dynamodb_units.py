"""DynamoDB item sizes and capacity units, by AWS's published rules (on-demand request units).

::

    item = {"pk": {"S": "WS#acme#V#v-1"}, "sk": {"S": "IDENTIFY"}, "expires_at": {"N": "1767225600"}}
    item_size(item)                                   # 2+13 + 2+8 + 10+5 = 40 bytes
    write_units(old_size=0, new_size=40)              # 1 (one write request unit per started KB, minimum 1)
    read_units(40, consistent=False)                  # 0.5 (per started 4 KB; half for eventually consistent)

Item size (AWS "Item sizes and formats"): the sum over attributes of the UTF-8 length of the name plus the size of
the value. String: UTF-8 bytes; binary: raw bytes; number: 1 byte per two significant digits (leading and
trailing zeros trimmed) + 1; boolean and null: 1; list and map: 3 bytes + 1 per element +
the elements (a map's element also counts its name); a set: the sum of its elements.

Units (AWS "Read/write capacity mode"): a write uses 1 unit per started KB (1,024 bytes) of the larger of the
item before and after it, at least 1 (PutItem, UpdateItem, each item of a BatchWriteItem); a DeleteItem or a
write whose condition fails uses the size of the item as it stands (at least 1). A read uses 1 unit per started
4 KB of the item (strongly consistent), half of that when eventually consistent, at least one 4 KB step even for
an absent item (GetItem, each key of a BatchGetItem); a Query or Scan rounds the sum of the items it read once.
Transactions use twice as much.

Wire format: attribute values as DynamoDB's JSON protocol carries them (``{"S": ...}``, ``{"N": "12"}``; binary as
bytes or base64 text).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
LIST_OR_MAP_OVERHEAD = 3
ELEMENT_OVERHEAD = 1


def _binary_size(value: bytes | bytearray | str) -> int:
    if isinstance(value, bytes | bytearray):
        return len(value)
    return len(base64.b64decode(value))


def number_size(text: str) -> int:
    """Bytes of a number attribute value: ceil(significant digits / 2) + 1 (AWS: "approximately").

    >>> number_size("1767225600"), number_size("-12.50"), number_size("0")
    (5, 3, 1)
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a DynamoDB number: {text!r}") from None
    digits = value.normalize().as_tuple().digits
    significant = len(digits) if any(digits) else 0
    return math.ceil(significant / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in wire format (``{"S": "abc"}`` is 3)."""
    if len(value) != 1:
        raise ValueError(f"an attribute value has exactly one type key, not {sorted(value)}")
    kind, raw = next(iter(value.items()))
    if kind == "S":
        return len(str(raw).encode("utf-8", "surrogatepass"))
    if kind == "N":
        return number_size(str(raw))
    if kind == "B":
        return _binary_size(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8", "surrogatepass")) for s in raw)
    if kind == "NS":
        return sum(number_size(str(n)) for n in raw)
    if kind == "BS":
        return sum(_binary_size(b) for b in raw)
    if kind == "L":
        return LIST_OR_MAP_OVERHEAD + sum(ELEMENT_OVERHEAD + value_size(v) for v in raw)
    if kind == "M":
        return LIST_OR_MAP_OVERHEAD + sum(
            ELEMENT_OVERHEAD + len(name.encode("utf-8")) + value_size(v) for name, v in raw.items()
        )
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item (0 for None or an absent item): attribute names + values."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(old_size: int, new_size: int) -> int:
    """Write request units of one item write: per started KB of the larger version, at least 1.

    A conditional write that fails, and a delete, pass the item as it stands as ``old_size`` and 0 as
    ``new_size``.
    """
    return max(1, math.ceil(max(old_size, new_size) / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Read request units of reading ``size`` bytes (one item, or a Query's sum): per started 4 KB, at least one
    step; half for an eventually consistent read."""
    steps = max(1, math.ceil(size / READ_UNIT_BYTES))
    return steps * (1.0 if consistent else 0.5)
