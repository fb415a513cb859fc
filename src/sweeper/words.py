"""How sweeper's lines and reports word a count: ``1 run``, ``3 runs``."""

from __future__ import annotations


def plural(n: int | str, noun: str) -> str:
    """``n`` and ``noun``, with an ``s`` unless ``n`` is 1; ``n`` may be text as a tag holds
    it (``"1"``) or stands in for a number (``"?"``)."""
    return f"{n} {noun}" if str(n) == "1" else f"{n} {noun}s"
