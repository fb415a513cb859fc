"""The embedded digits and their fixed held-out test split."""

from __future__ import annotations

import numpy as np

from sweeper.data import load_dataset
from sweeper.data.digits import load_digits_split, read_digits


def test_all_digits_are_embedded() -> None:
    images, labels = read_digits()
    assert images.shape == (1797, 8, 8)
    assert images.dtype == np.uint8
    assert images.max() == 16
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))


def test_test_split_is_fixed_and_stratified() -> None:
    _, labels = read_digits()
    _, train_y = load_digits_split("train", 10)
    _, test_y = load_digits_split("test", 10)
    assert len(train_y) + len(test_y) == 1797
    np.testing.assert_allclose(np.bincount(test_y) / np.bincount(labels), 0.2, atol=0.02)
    first = load_dataset("digits", seed=0)
    second = load_dataset("digits", seed=123)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert len(first.y_test) == len(test_y)
    assert len(first.y_train) + len(first.y_val) == len(train_y)
    assert not np.array_equal(first.x_val, second.x_val)
