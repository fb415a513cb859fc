"""Data errors and the checks shared by every file format that raise them, the record of
which data files the loaders read (``recording_reads``), and the wording of a missing-data
message that names the command to download it (``with_fetch_command``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

DATA_DIR_HINT = "or set dataset.data_dir=... to the directory that holds it"


def with_fetch_command(message: str, command: str) -> str:
    """``message`` about missing data, led by the command that downloads the data."""
    return f"{message}; or download it with: {command}"


# The data files the loaders open while ``recording_reads`` is active.
_reads: ContextVar[list[Path] | None] = ContextVar("_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[list[Path]]:
    """Collect, in order, the data files the loaders read inside the block."""
    reads: list[Path] = []
    token = _reads.set(reads)
    try:
        yield reads
    finally:
        _reads.reset(token)


def note_read(path: Path) -> Path:
    """Tell ``recording_reads`` that a loader reads ``path``; return it."""
    reads = _reads.get()
    if reads is not None and path not in reads:
        reads.append(path)
    return path


class DatasetError(ValueError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


class MissingDataError(DatasetError):
    """An expected data directory or file does not exist."""


def find_file(directory: Path, *names: str) -> Path:
    """Return ``directory / name`` for the first of ``names`` that exists.

    ``names`` are the accepted spellings of one file (e.g. plain and gzipped), so the error
    lists all of them.
    """
    for name in names:
        path = directory / name
        if path.is_file():
            return note_read(path)
    alternatives = f" (or {', '.join(names[1:])})" if len(names) > 1 else ""
    if not directory.is_dir():
        raise MissingDataError(
            f"data directory {directory} does not exist: download {names[0]}{alternatives}"
            f" and put it there, {DATA_DIR_HINT}"
        )
    raise MissingDataError(
        f"missing {directory / names[0]}{alternatives}: download it and put it in {directory},"
        f" {DATA_DIR_HINT}"
    )


def check_labelled(images: np.ndarray, labels: np.ndarray, source: str, n_classes: int) -> None:
    """Raise DatasetError unless ``images`` and ``labels`` from ``source`` pair up."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(
            f"{source}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise DatasetError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DatasetError(f"{source}: no samples")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= n_classes:
        raise DatasetError(
            f"{source}: labels range over {low}..{high}, expected 0..{n_classes - 1}"
        )
