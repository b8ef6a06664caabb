"""The kernel's TCP listen-queue counters (Linux ``/proc/net/netstat``), for the concurrency measurements::

    before = listen_overflows()
    ...                                   # a burst of connections
    overflowed = listen_overflows() - before   # connections a full listen queue dropped (or reset)

The counters cover the whole network namespace, so other processes can move them: evidence, not an assertion.
"""

from __future__ import annotations

from pathlib import Path

NETSTAT = Path("/proc/net/netstat")


def listen_overflows(path: Path = NETSTAT) -> int | None:
    """TcpExt ListenOverflows: connections that found a listen queue full; None where it cannot be read."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(counters["ListenOverflows"]) if "ListenOverflows" in counters else None
    return None
