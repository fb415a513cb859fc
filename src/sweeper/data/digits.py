"""The embedded 8x8 digits (scikit-learn's copy of the UCI set), the default dataset."""

from __future__ import annotations

import gzip
import io
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from sweeper.data.errors import DatasetError, check_labelled, note_read
from sweeper.data.preprocessing import stratified_split

RESOURCE = "digits.csv.gz"
IMAGE_SHAPE = (8, 8)
MAX_PIXEL = 16
TEST_FRACTION = 0.2
# The digits have no official test split; a seed independent of the run seed keeps the
# held-out test set identical across every run and sweep.
TEST_SPLIT_SEED = 1797


def _resource() -> Traversable:
    return resources.files("sweeper.data").joinpath(RESOURCE)


def embedded_files() -> list[Path]:
    """The file of this installed package the digits are read from; none when the package is
    imported from a zip."""
    source = Path(str(_resource()))
    return [source] if source.is_file() else []


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images ``(n, 8, 8)`` uint8 with values 0..16, and int64 labels."""
    resource = _resource()
    source = str(resource)
    for path in embedded_files():
        note_read(path)
    try:
        text = gzip.decompress(resource.read_bytes())
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError) as error:
        raise DatasetError(f"cannot read {source}: {error}") from error
    n_pixels = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
    if table.shape[1] != n_pixels + 1:
        raise DatasetError(f"{source}: {table.shape[1]} columns, expected {n_pixels + 1}")
    pixels = table[:, :n_pixels]
    if pixels.min() < 0 or pixels.max() > MAX_PIXEL:
        raise DatasetError(f"{source}: pixel values outside 0..{MAX_PIXEL}")
    return pixels.astype(np.uint8).reshape(-1, *IMAGE_SHAPE), table[:, n_pixels]


def load_digits_split(split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified 80% ``train`` or 20% ``test`` part of the digits."""
    images, labels = read_digits()
    check_labelled(images, labels, str(_resource()), n_classes)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, seed=TEST_SPLIT_SEED)
    chosen = {"train": train_idx, "test": test_idx}[split]
    return images[chosen], labels[chosen]
