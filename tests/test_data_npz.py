"""KMNIST and notMNIST npz archives, written with np.savez as the real releases are."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from helpers import write_mnist_like
from sweeper.data import DatasetError, MissingDataError, load_dataset
from sweeper.data.npz import load_kmnist_split, load_notmnist_split, read_npz_arrays


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def write_kmnist(directory: Path, n_train: int = 50, n_test: int = 20) -> None:
    np.savez(directory / "kmnist-train-imgs.npz", images(n_train))
    np.savez(directory / "kmnist-train-labels.npz", (np.arange(n_train) % 10).astype(np.uint8))
    np.savez(directory / "kmnist-test-imgs.npz", images(n_test, 1))
    np.savez(directory / "kmnist-test-labels.npz", (np.arange(n_test) % 10).astype(np.uint8))


def write_notmnist(directory: Path, **overrides: np.ndarray) -> Path:
    arrays = {
        "x_train": images(50),
        "y_train": np.arange(50) % 10,
        "x_test": images(20, 1),
        "y_test": np.arange(20) % 10,
    }
    arrays.update(overrides)
    path = directory / "notmnist.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_kmnist_split_loads(tmp_path: Path) -> None:
    write_kmnist(tmp_path)
    x, y = load_kmnist_split(tmp_path, "train", 10)
    assert x.shape == (50, 28, 28)
    assert x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, np.arange(50) % 10)


def test_kmnist_dataset_prefers_npz(tmp_path: Path) -> None:
    write_kmnist(tmp_path)
    data = load_dataset("kmnist", tmp_path)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (40, 10, 20)
    assert data.x_test.shape == (20, 784)


def test_notmnist_loads(tmp_path: Path) -> None:
    write_notmnist(tmp_path)
    x, y = load_notmnist_split(tmp_path, "test", 10)
    assert x.shape == (20, 28, 28)
    np.testing.assert_array_equal(y, np.arange(20) % 10)
    assert load_dataset("notmnist", tmp_path).image_shape == (28, 28)


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "notmnist.npz"
    np.savez(path, x_train=images(5), y_train=np.arange(5))
    with pytest.raises(DatasetError, match=f"{path}: no array under key 'x_test'"):
        load_notmnist_split(tmp_path, "test", 10)


def test_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kmnist-train-imgs.npz"
    np.savez(path, arr_0=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetError, match=f"{path}: key 'arr_0' refused"):
        read_npz_arrays(path, "arr_0")


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("x_train", images(50).astype(np.float32), "float32"),
        ("x_train", np.zeros((50, 32, 32), np.uint8), r"\(50, 32, 32\)"),
        ("y_train", np.arange(49) % 10, "50 images but 49 labels"),
        ("y_train", np.arange(50), r"labels range over 0\.\.49"),
        ("y_train", np.zeros(50), "1-D integer"),
    ],
)
def test_bad_arrays_are_refused(tmp_path: Path, key: str, value: np.ndarray, match: str) -> None:
    path = write_notmnist(tmp_path, **{key: value})
    with pytest.raises(DatasetError, match=match) as info:
        load_notmnist_split(tmp_path, "train", 10)
    assert str(path) in str(info.value)


def _npy_bytes() -> bytes:
    stream = io.BytesIO()
    np.save(stream, images(2))
    return stream.getvalue()


@pytest.mark.parametrize(
    "content",
    [b"<!DOCTYPE html><html><body>Moved</body></html>", b"", b"garbage", _npy_bytes()],
    ids=["html", "empty", "garbage", "npy"],
)
def test_a_file_that_is_no_zip_archive_is_one_line_never_advice_to_unpickle_it(
    tmp_path: Path, content: bytes
) -> None:
    # An error page a server sent saved under the archive's name, say.
    path = tmp_path / "notmnist.npz"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        load_dataset("notmnist", tmp_path)
    assert str(info.value) == (
        f"{path} is not an .npz (zip) archive; if a download is damaged, delete the file and"
        f" fetch it again: python -m sweeper.data fetch notmnist --dir {tmp_path}"
    )


def test_a_member_that_is_no_array_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "kmnist-train-imgs.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("arr_0.npy", b"not an array")
    with pytest.raises(DatasetError, match=f"{path}: key 'arr_0' is not an .npy array"):
        read_npz_arrays(path, "arr_0")


def test_the_whole_set_is_read_when_an_npz_set_is_partial(tmp_path: Path) -> None:
    # KMNIST's training npz files beside the four IDX files `fetch kmnist` writes: the IDX
    # set is whole, so it is the one read; without it, the error names what fetch would put.
    write_kmnist(tmp_path)
    for name in ("kmnist-test-imgs.npz", "kmnist-test-labels.npz"):
        (tmp_path / name).unlink()
    with pytest.raises(MissingDataError) as info:
        load_dataset("kmnist", tmp_path)
    assert f"missing {tmp_path / 'train-images-idx3-ubyte'}" in str(info.value)
    assert str(info.value).endswith(f"python -m sweeper.data fetch kmnist --dir {tmp_path}")
    write_mnist_like(tmp_path, n_train=60, n_test=30, gz=True)
    data = load_dataset("kmnist", tmp_path)
    assert (len(data.y_train) + len(data.y_val), len(data.y_test)) == (60, 30)


def test_notmnist_missing_names_the_npz_its_fetch_writes(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError) as info:
        load_dataset("notmnist", tmp_path)
    assert f"missing {tmp_path / 'notmnist.npz'}" in str(info.value)
    assert str(info.value).endswith(f"python -m sweeper.data fetch notmnist --dir {tmp_path}")
