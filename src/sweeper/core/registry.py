"""The core's options by name: each kind of option is a table (``ACTIVATIONS``, ``OPTIMIZERS``,
``LR_SCHEDULES``, ...) from its name to its implementation, and :func:`lookup` reads one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


def lookup(table: Mapping[str, V], kind: str, name: str) -> V:
    """``table[name]``, or a ValueError naming the kind and what is allowed."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"{kind}={name!r} is unknown; allowed: {', '.join(table)}") from None
