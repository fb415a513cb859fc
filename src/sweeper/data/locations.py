"""Where a dataset's files are looked for when ``dataset.data_dir`` is null."""

from __future__ import annotations

import os
from pathlib import Path

# Debian's dataset-fashion-mnist package installs the four IDX files here.
SYSTEM_COPIES: dict[str, Path] = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/sweeper``, else ``~/.cache/sweeper`` (XDG ignores a relative path)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "sweeper"


def default_data_dir(name: str) -> Path:
    """A system copy of ``name`` when one is installed, else its per-user cache directory."""
    system = SYSTEM_COPIES.get(name)
    if system is not None and system.is_dir():
        return system
    return cache_root() / name
