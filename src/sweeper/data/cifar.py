"""CIFAR-10 python batches, unpickled with an allow-list so a crafted file cannot run code."""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sweeper.data.errors import DatasetError, check_labelled, find_file

SUBDIRECTORY = "cifar-10-batches-py"
BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32

# Taken from numpy itself rather than imported by module path, so pickles written under
# numpy 1.x (numpy.core) and 2.x (numpy._core) resolve to the same objects on either version.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.uint8(0).__reduce__()[0]
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes as _codecs.encode(text, "latin1") in pickle protocols 0-2, the
    # protocols of the original batches; it is a pure text-to-bytes conversion.
    ("_codecs", "encode"): lambda text, encoding: _latin1_bytes(text, encoding),
}


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # A batch names latin1; another codec is no batch's (and need not exist).
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}, not latin1")
    return codecs.encode(text, "latin1")


# What a truncated or garbled pickle raises from the allowed constructors or the opcodes.
_MALFORMED_PICKLE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    AttributeError,
    IndexError,
    KeyError,
    # An array declared larger than memory.
    MemoryError,
)


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"refusing to unpickle {self._path}: it asks for {module}.{name},"
                " which a CIFAR-10 batch never contains"
            ) from None


def _unpickle(path: Path) -> object:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error}") from error
    try:
        return _BatchUnpickler(data, path).load()
    except DatasetError:
        raise
    except _MALFORMED_PICKLE as error:
        raise DatasetError(f"cannot unpickle {path}: {error}") from error


def read_cifar_batch(path: str | Path, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 (the file's channel-first order) and int64 labels."""
    path = Path(path)
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: holds a {type(batch).__name__}, expected a CIFAR-10 dict")
    for key in (b"data", b"labels"):
        if key not in batch:
            raise DatasetError(f"{path}: no {key!r} entry in the batch dict")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray):
        raise DatasetError(f"{path}: b'data' is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise DatasetError(
            f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 (n, {PIXELS})"
        )
    try:
        labels = np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as error:
        raise DatasetError(f"{path}: b'labels' is not a list of integers: {error}") from error
    check_labelled(data, labels, str(path), n_classes)
    return data.reshape(-1, *IMAGE_SHAPE), labels.astype(np.int64)


def batches_dir(data_dir: Path) -> Path:
    """Where the batches are: ``data_dir`` itself, or the archive's ``cifar-10-batches-py/``,
    whichever holds all of them; where neither does, the archive's if it is there."""
    nested = data_dir / SUBDIRECTORY
    for directory in (data_dir, nested):
        if all((directory / b).is_file() for split in BATCHES.values() for b in split):
            return directory
    return nested if nested.is_dir() else data_dir


def load_cifar10_split(data_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and int64 labels of the ``train`` or ``test`` batches."""
    directory = batches_dir(data_dir)
    paths = [find_file(directory, name) for name in BATCHES[split]]
    images, labels = zip(*(read_cifar_batch(path, n_classes) for path in paths), strict=True)
    return np.concatenate(images), np.concatenate(labels)
