"""IDX files, plain or gzipped: MNIST, Kuzushiji-MNIST, Fashion-MNIST, notMNIST as IDX."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from sweeper.data.errors import DatasetError, check_labelled, find_file

UNSIGNED_BYTE = 0x08
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            return gzip.decompress(path.read_bytes())
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from error


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file; ``ndim`` (1 for labels, 3 for images) is checked if given."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: {len(data)} bytes, too short for an IDX header")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(
            f"{path}: bad IDX magic {data[:4].hex()}, the first two bytes must be zero"
        )
    if data[2] != UNSIGNED_BYTE:
        raise DatasetError(
            f"{path}: IDX type code 0x{data[2]:02x}, expected 0x{UNSIGNED_BYTE:02x} (unsigned byte)"
        )
    file_ndim = data[3]
    if ndim is not None and file_ndim != ndim:
        raise DatasetError(f"{path}: IDX file has {file_ndim} dimensions, expected {ndim}")
    header_size = 4 + 4 * file_ndim
    if len(data) < header_size:
        raise DatasetError(f"{path}: truncated IDX header, {len(data)} of {header_size} bytes")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=file_ndim, offset=4))
    expected = math.prod(shape)
    actual = len(data) - header_size
    if actual != expected:
        raise DatasetError(
            f"{path}: header says {'x'.join(map(str, shape))} so the payload should be"
            f" {expected} bytes, but it is {actual} bytes"
        )
    # Copy so callers get a writable array rather than a view of immutable bytes.
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def load_idx_split(data_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, rows, cols)`` uint8 and int64 labels of the ``train`` or ``test`` IDX files."""
    images_name, labels_name = IDX_FILES[split]
    images_path = find_file(data_dir, images_name, f"{images_name}.gz")
    labels_path = find_file(data_dir, labels_name, f"{labels_name}.gz")
    images = read_idx(images_path, ndim=3)
    if 0 in images.shape[1:]:
        raise DatasetError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected non-empty"
        )
    labels = read_idx(labels_path, ndim=1)
    check_labelled(images, labels, f"{images_path} and {labels_path}", n_classes)
    return images, labels.astype(np.int64)
