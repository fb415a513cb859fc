"""Imports that make most of a command's lasting objects, frozen out of garbage collection.

A command's imports (MLflow, SQLAlchemy, Hydra, pandas, matplotlib) make a few hundred
thousand objects that live as long as the process. Collected as they come, the heap's growth
sets off full collections that only find them alive, again and again; frozen
(``gc.freeze()``), they are left out of every later collection, as in a fork server.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def imports_frozen() -> Iterator[None]:
    """Import in the block without collecting, then freeze what is tracked if the block
    imported anything new (a block whose imports were already made freezes nothing)."""
    modules = len(sys.modules)
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if len(sys.modules) > modules:
            gc.freeze()
        if enabled:
            gc.enable()
