"""NumPy ``.npz`` archives: KMNIST's four files and a single-file notMNIST."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sweeper.data.errors import DatasetError, check_labelled, find_file

IMAGE_SIZE = (28, 28)
# How a zip archive begins: a local file header, or the end record of an empty one.
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
KMNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
    "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"),
}
NOTMNIST_FILE = "notmnist.npz"
NOTMNIST_KEYS: dict[str, tuple[str, str]] = {
    "train": ("x_train", "y_train"),
    "test": ("x_test", "y_test"),
}


def read_npz_arrays(path: Path, *keys: str) -> list[np.ndarray]:
    """The arrays stored under ``keys``; pickled (object) arrays are refused, never loaded."""
    try:
        with path.open("rb") as stream:
            magic = stream.read(len(ZIP_MAGIC[0]))
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    # np.load reads any other file as a pickle, and its refusal advises unpickling it.
    if not magic.startswith(ZIP_MAGIC):
        raise DatasetError(f"{path} is not an .npz (zip) archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"cannot read {path} as an .npz archive: {error}") from error
    with archive:
        missing = [key for key in keys if key not in archive.files]
        if missing:
            raise DatasetError(
                f"{path}: no array under key {missing[0]!r} (keys: {', '.join(archive.files)})"
            )
        arrays = []
        for key in keys:
            try:
                array = archive[key]
            except ValueError as error:
                # allow_pickle=False makes numpy refuse object arrays with a ValueError.
                raise DatasetError(f"{path}: key {key!r} refused: {error}") from error
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError) as error:
                raise DatasetError(f"{path}: cannot read key {key!r}: {error}") from error
            if not isinstance(array, np.ndarray):  # a member that is no .npy comes as bytes
                raise DatasetError(f"{path}: key {key!r} is not an .npy array")
            arrays.append(array)
        return arrays


def _check_images(images: np.ndarray, path: Path, key: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SIZE:
        raise DatasetError(
            f"{path}: key {key!r} holds {images.dtype} {images.shape},"
            f" expected uint8 (n, {IMAGE_SIZE[0]}, {IMAGE_SIZE[1]})"
        )


def load_kmnist_split(data_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels of KMNIST's ``train`` or ``test`` npz files (key ``arr_0``)."""
    images_name, labels_name = KMNIST_FILES[split]
    images_path = find_file(data_dir, images_name)
    labels_path = find_file(data_dir, labels_name)
    (images,) = read_npz_arrays(images_path, "arr_0")
    (labels,) = read_npz_arrays(labels_path, "arr_0")
    _check_images(images, images_path, "arr_0")
    check_labelled(images, labels, f"{images_path} and {labels_path} (key arr_0)", n_classes)
    return images, labels.astype(np.int64)


def load_notmnist_split(
    data_dir: Path, split: str, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels of the ``train`` or ``test`` arrays in ``notmnist.npz``."""
    path = find_file(data_dir, NOTMNIST_FILE)
    images_key, labels_key = NOTMNIST_KEYS[split]
    images, labels = read_npz_arrays(path, images_key, labels_key)
    _check_images(images, path, images_key)
    check_labelled(images, labels, f"{path} (keys {images_key}, {labels_key})", n_classes)
    return images, labels.astype(np.int64)
