"""Plain-text tables for the benchmark's output.

::

    print(table("1. Throughput", ["stack", "events/s"], [["ours", "72"]]))

The first column is left-aligned, the others right-aligned; a row of ``None`` is a separator line.
"""

from __future__ import annotations

from collections.abc import Sequence


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str] | None], notes: Sequence[str] = ()) -> str:
    """An aligned table with a title line, a header, a rule under it, and optional notes after it."""
    widths = [len(h) for h in header]
    for row in rows:
        if row is not None:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    out = [title, line(header), rule]
    out.extend(rule if row is None else line(row) for row in rows)
    out.extend(f"  {note}" for note in notes)
    return "\n".join(out)


def size(n: float) -> str:
    """Bytes as B, KB or MB (powers of 1024)."""
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.2f} MB"


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``2.3x`` (or ``-`` when b is 0)."""
    return f"{a / b:.1f}x" if b else "-"
