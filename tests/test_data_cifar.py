"""CIFAR-10 batches: real pickle layout, and refusal of pickles that would run code."""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np
import pytest

from helpers import RunsCommand, batch, write_cifar, write_pickle
from sweeper.data import DatasetError, load_dataset
from sweeper.data.cifar import load_cifar10_split, read_cifar_batch


def test_batch_keeps_channel_first_order(tmp_path: Path) -> None:
    content = batch(4)
    path = write_pickle(tmp_path / "data_batch_1", content)
    images, labels = read_cifar_batch(path)
    assert images.shape == (4, 3, 32, 32)
    assert images.dtype == np.uint8
    data = content[b"data"]
    assert isinstance(data, np.ndarray)
    np.testing.assert_array_equal(images[2, 1].ravel(), data[2, 1024:2048])
    np.testing.assert_array_equal(labels, [0, 1, 2, 3])


@pytest.mark.parametrize("nested", [False, True])
def test_split_loads_from_dir_or_archive_subdirectory(tmp_path: Path, nested: bool) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py" if nested else tmp_path)
    x, y = load_cifar10_split(tmp_path, "train", 10)
    assert x.shape == (100, 3, 32, 32)
    assert y.dtype == np.int64
    assert load_cifar10_split(tmp_path, "test", 10)[0].shape == (20, 3, 32, 32)


def test_dataset_channel_mode_stores_one_value_per_channel(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path, normalization="channel")
    assert data.image_shape == (3, 32, 32)
    assert data.x_train.shape == (80, 3072)
    mean = data.standardizer.mean
    assert mean.shape == (3072,)
    assert len(np.unique(mean[:1024])) == 1
    assert len(np.unique(mean)) == 3
    per_channel = data.x_train.reshape(80, 3, 1024)
    np.testing.assert_allclose(per_channel.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(per_channel.std(axis=(0, 2)), 1, atol=1e-4)


class Evaluates:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return eval, ("1 + 1",)


def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    content = batch(2)
    content[b"data"] = RunsCommand(f"touch {marker}")
    path = write_pickle(tmp_path / "data_batch_1", content)
    with pytest.raises(DatasetError, match=r"refusing to unpickle .*data_batch_1.*system") as info:
        read_cifar_batch(path)
    assert "which a CIFAR-10 batch never contains" in str(info.value)
    assert not marker.exists()


def test_eval_pickle_is_refused(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "test_batch", Evaluates())
    with pytest.raises(DatasetError, match=r"asks for (__builtin__|builtins)\.eval"):
        read_cifar_batch(path)


def test_non_dict_pickle_is_refused(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "data_batch_1", [1, 2, 3])
    with pytest.raises(DatasetError, match=f"{path}: holds a list, expected a CIFAR-10 dict"):
        read_cifar_batch(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({b"data": np.zeros((4, 100), np.uint8)}, r"expected uint8 \(n, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.int32)}, "int32"),
        ({b"labels": [0, 1, 2]}, "4 images but 3 labels"),
        ({b"labels": [0, 1, 2, 10]}, r"labels range over 0\.\.10"),
    ],
)
def test_invalid_batch_content(tmp_path: Path, change: dict[bytes, object], match: str) -> None:
    path = write_pickle(tmp_path / "data_batch_1", batch(4) | change)
    with pytest.raises(DatasetError, match=match) as info:
        read_cifar_batch(path)
    assert str(path) in str(info.value)


def test_missing_key_and_truncated_pickle(tmp_path: Path) -> None:
    content = batch(4)
    del content[b"labels"]
    path = write_pickle(tmp_path / "data_batch_1", content)
    with pytest.raises(DatasetError, match="no b'labels' entry"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps(batch(4), protocol=2)[:-100])
    with pytest.raises(DatasetError, match=f"cannot unpickle {path}"):
        read_cifar_batch(path)


class _Encodes:
    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return codecs.encode, ("abc", "nonesuch")


class _Huge:
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return np.empty(0).__reduce__()[0], (np.ndarray, (10**13,), b"b")


@pytest.mark.parametrize("content", [_Encodes(), _Huge()], ids=["codec", "huge_array"])
def test_a_crafted_pickle_the_allowed_calls_cannot_build_is_refused(
    tmp_path: Path, content: object
) -> None:
    path = write_pickle(tmp_path / "data_batch_1", {b"data": content, b"labels": [0]})
    with pytest.raises(DatasetError, match=f"cannot unpickle {path}"):
        read_cifar_batch(path)


def test_the_archives_batches_are_read_when_the_ones_beside_them_are_not_all_there(
    tmp_path: Path,
) -> None:
    # Training batches put there by hand without test_batch, and the archive's directory
    # that `fetch cifar10` extracts beside them: the whole set is read.
    write_cifar(tmp_path, per_batch=3)
    (tmp_path / "test_batch").unlink()
    write_cifar(tmp_path / "cifar-10-batches-py", per_batch=4, n_test=7)
    assert load_cifar10_split(tmp_path, "train", 10)[0].shape == (20, 3, 32, 32)
    assert load_cifar10_split(tmp_path, "test", 10)[0].shape == (7, 3, 32, 32)


def test_a_damaged_batch_names_the_file_and_how_to_fetch_it_again(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    damaged = tmp_path / "data_batch_4"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", tmp_path)
    message = str(info.value)
    assert message.startswith(f"cannot unpickle {damaged}: ")
    assert message.endswith(
        "if a download is damaged, delete the file and fetch it again:"
        f" python -m sweeper.data fetch cifar10 --dir {tmp_path}"
    )
    assert "\n" not in message


def test_a_data_dir_that_is_a_file_is_named_as_one(tmp_path: Path) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"")
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", archive)
    assert str(info.value).startswith(f"dataset.data_dir={archive} is a file: set it to the ")
    assert "fetch" not in str(info.value)
