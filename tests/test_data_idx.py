"""IDX reading and the IDX-backed datasets, on small files written in the real format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from helpers import idx_bytes, write_idx, write_mnist_like
from sweeper.data import DatasetError, MissingDataError, load_dataset
from sweeper.data.idx import load_idx_split, read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_plain_and_gzipped(tmp_path: Path, gz: bool) -> None:
    images = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    path = write_idx(tmp_path / "images", images, gz)
    loaded = read_idx(path, ndim=3)
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, images)
    loaded[0, 0, 0] = 7  # callers get a writable array


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_split_shapes_and_labels(tmp_path: Path, gz: bool) -> None:
    images, labels = write_mnist_like(tmp_path, gz=gz)
    x, y = load_idx_split(tmp_path, "train", 10)
    assert x.shape == (100, 28, 28)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    x_test, _ = load_idx_split(tmp_path, "test", 10)
    assert x_test.shape == (30, 28, 28)


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"\x01\x00\x08\x01", "magic"),
        (b"\x00\x00\x0d\x01", "type code 0x0d"),
        (b"\x00\x00\x08\x03", "3 dimensions, expected 1"),
    ],
)
def test_bad_header_is_refused(tmp_path: Path, header: bytes, match: str) -> None:
    path = tmp_path / "labels"
    path.write_bytes(header + struct.pack(">I", 2) + b"\x01\x02")
    with pytest.raises(DatasetError, match=match) as info:
        read_idx(path, ndim=1)
    assert str(path) in str(info.value)


def test_truncated_payload_names_expected_and_actual_bytes(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 4)))[:-5])
    with pytest.raises(DatasetError, match=r"should be 24 bytes, but it is 19 bytes") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_trailing_bytes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.arange(5)) + b"\x00\x00")
    with pytest.raises(DatasetError, match=r"should be 5 bytes, but it is 7 bytes"):
        read_idx(path)


def test_truncated_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(DatasetError, match="truncated IDX header"):
        read_idx(path)


def test_corrupted_gzip_is_refused(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000) % 10)))
    data[20:40] = b"\xff" * 20
    path = tmp_path / "labels.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=str(path)):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(1000) % 10))[:-30])
    with pytest.raises(DatasetError, match=str(path)):
        read_idx(path)


@pytest.mark.parametrize("size", [(0, 28), (28, 0)])
def test_images_of_no_pixels_are_one_line_naming_the_file(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    write_mnist_like(tmp_path)
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((100, *size)))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((30, *size)))
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", tmp_path)
    assert str(info.value).startswith(
        f"{path}: images are {size[0]}x{size[1]}, expected non-empty; if a download is damaged"
    )


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(99) % 10)
    with pytest.raises(DatasetError, match="100 images but 99 labels") as info:
        load_idx_split(tmp_path, "train", 10)
    assert str(tmp_path / "train-labels-idx1-ubyte") in str(info.value)


def test_label_out_of_range(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(30, 12))
    with pytest.raises(DatasetError, match=r"labels range over 12\.\.12, expected 0\.\.9"):
        load_dataset("mnist", tmp_path)


def test_missing_file_names_both_spellings_and_directory(tmp_path: Path) -> None:
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(MissingDataError) as info:
        load_dataset("fashion_mnist", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "t10k-images-idx3-ubyte") in message
    assert "t10k-images-idx3-ubyte.gz" in message
    assert f"put it in {tmp_path}" in message
    assert "dataset.data_dir" in message
    assert "\n" not in message


def test_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingDataError, match=f"{missing} .*does not exist.*dataset.data_dir"):
        load_dataset("mnist", missing)


def test_no_data_dir_asks_for_one() -> None:
    with pytest.raises(MissingDataError, match=r"set dataset\.data_dir="):
        load_dataset("kmnist")


def test_load_dataset_from_idx(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, n_train=200, gz=True)
    data = load_dataset("mnist", tmp_path)
    assert data.image_shape == (28, 28)
    assert data.n_classes == 10
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (160, 40, 30)
    assert data.x_train.shape == (160, 784)
    assert data.x_train.dtype == np.float32
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data.y_val), np.full(10, 4))
