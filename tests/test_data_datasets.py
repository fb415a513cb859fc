"""load_dataset: splits, train-only statistics, dtypes, subsets and the real Fashion-MNIST."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import FASHION_MNIST
from sweeper.data import DATASETS, load_dataset, stratified_split
from sweeper.data.digits import load_digits_split
from sweeper.data.preprocessing import STD_FLOOR


def test_registry_names() -> None:
    assert set(DATASETS) == {"digits", "mnist", "kmnist", "fashion_mnist", "cifar10", "notmnist"}
    assert {spec.n_classes for spec in DATASETS.values()} == {10}


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match="digits, mnist, kmnist, fashion_mnist, cifar10, notmnist"):
        load_dataset("imagenet")


def test_statistics_come_from_the_training_split_only() -> None:
    data = load_dataset("digits", seed=4)
    images, labels = load_digits_split("train", 10)
    train_idx, val_idx = stratified_split(labels, 0.2, seed=4)
    raw_train = images[train_idx].reshape(len(train_idx), -1).astype(np.float64)
    all_pixels = np.concatenate([images, load_digits_split("test", 10)[0]]).reshape(1797, -1)
    np.testing.assert_allclose(data.standardizer.mean, raw_train.mean(axis=0))
    assert not np.allclose(data.standardizer.mean, all_pixels.mean(axis=0))
    assert not np.allclose(data.standardizer.mean, images.reshape(len(images), -1).mean(axis=0))
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    # Pixels whose spread is under the floor (a tenth of the whole set's) are scaled less.
    varying = raw_train.std(axis=0) >= STD_FLOOR * raw_train.std()
    np.testing.assert_allclose(data.x_train.std(axis=0)[varying], 1, atol=1e-4)
    np.testing.assert_array_equal(data.y_val, labels[val_idx])


def test_shapes_and_dtypes() -> None:
    data = load_dataset("digits", dtype=np.float64, normalization="sample")
    assert data.image_shape == (8, 8)
    assert data.n_classes == 10
    for x in (data.x_train, data.x_val, data.x_test):
        assert x.dtype == np.float64
        assert x.shape[1] == 64
    for y in (data.y_train, data.y_val, data.y_test):
        assert y.dtype == np.int64
    np.testing.assert_allclose(data.x_val.mean(axis=1), 0, atol=1e-12)


@pytest.mark.parametrize(
    ("options", "left"),
    [({"max_train_samples": 2}, "leaves 2 to train on and 0 to validate on"),
     ({"val_fraction": 0.0003}, "to train on and 0 to validate on"),
     ({"val_fraction": 0.9, "max_train_samples": 1}, "leaves 0 to train on and 1 to validate on")],
)  # fmt: skip
def test_a_split_left_empty_is_one_line_naming_the_settings(
    options: dict[str, float], left: str
) -> None:
    with pytest.raises(ValueError) as raised:
        load_dataset("digits", **options)  # type: ignore[arg-type]
    (line,) = str(raised.value).splitlines()
    assert left in line
    assert line.endswith("(dataset.val_fraction, dataset.max_train_samples)")


def test_max_train_samples_keeps_a_stratified_subset_before_the_split() -> None:
    data = load_dataset("digits", max_train_samples=500, seed=1)
    assert len(data.y_train) + len(data.y_val) == 500
    assert len(data.y_val) == 100
    kept = np.bincount(data.y_train) + np.bincount(data.y_val)
    available = np.bincount(load_digits_split("train", 10)[1])
    assert np.all(np.abs(kept - available * 500 / available.sum()) < 1)
    assert len(data.y_test) == len(load_dataset("digits").y_test)


def test_real_fashion_mnist() -> None:
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"{FASHION_MNIST} is not installed")
    data = load_dataset("fashion_mnist", FASHION_MNIST)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (48000, 12000, 10000)
    assert data.x_train.shape[1] == 784
    assert data.image_shape == (28, 28)
