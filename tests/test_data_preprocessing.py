"""Flattening, standardisation modes and stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.data import fit_standardizer, flatten, stratified_split
from sweeper.data.preprocessing import STD_FLOOR, out_of_range_features, stratified_subset


def test_flatten_keeps_channel_major_layout() -> None:
    images = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    flat = flatten(images)
    assert flat.shape == (2, 48)
    np.testing.assert_array_equal(flat[1, 16:32], images[1, 1].ravel())


def test_feature_mode_centres_and_scales_each_feature() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (200, 6))
    x[:, 2] = 4.0  # a constant feature must not divide by zero
    standardizer = fit_standardizer(x, "feature")
    z = standardizer.transform(x)
    np.testing.assert_allclose(standardizer.mean, x.mean(axis=0))
    # The constant feature's std is the floor: a tenth of the whole set's spread.
    np.testing.assert_allclose(standardizer.std[2], STD_FLOOR * x.std())
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.delete(z.std(axis=0), 2), 1)
    np.testing.assert_array_equal(z[:, 2], 0)


def _ink_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """MNIST-like rows of 64 pixels in 0..255: ink in the middle 32, a blank border of 32."""
    x = np.zeros((n, 64), dtype=np.float32)
    x[:, 16:48] = np.where(rng.random((n, 32)) < 0.3, rng.integers(128, 256, (n, 32)), 0)
    return x


def test_a_pixel_inked_in_one_training_image_stays_bounded() -> None:
    rng = np.random.default_rng(0)
    x_train = _ink_images(5000, rng)
    x_train[17, 3] = 255  # border pixel 3 has ink in this training image only
    x_test = _ink_images(100, rng)
    x_test[0, 3] = 255
    x_test[1, 5] = 255  # never inked in training at all
    standardizer = fit_standardizer(x_train, "feature")
    z_train, z_test = standardizer.transform(x_train), standardizer.transform(x_test)

    # Unfloored, pixel 3 (std 255 / sqrt(5000)) would give z = 70.7; the floor caps every value
    # at the data's range over a tenth of its overall spread.
    bound = 255 / (STD_FLOOR * x_train.std(dtype=np.float64)) * (1 + 1e-6)
    assert x_train[:, 3].std() < STD_FLOOR * x_train.std()
    assert np.abs(z_train).max() <= bound
    assert np.abs(z_test).max() <= bound
    assert 30 < z_test[0, 3] == z_train[17, 3] < 40
    # Features with a real spread are standardised exactly as before.
    np.testing.assert_allclose(z_train[:, 16:48].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z_train[:, 16:48].std(axis=0), 1, rtol=1e-4)
    # Both pixels lie far beyond anything standardised in training, and the guard counts them.
    count, excess = out_of_range_features(z_train, z_test)
    assert count == 1  # pixel 5: pixel 3's test value equals its training one
    assert excess == pytest.approx(float(z_test[1, 5]), rel=1e-6)


def test_out_of_range_features_counts_features_beyond_the_margin() -> None:
    z_train = np.random.default_rng(0).normal(size=(1000, 5)).astype(np.float32)
    z_other = np.zeros((10, 5), dtype=np.float32)
    assert out_of_range_features(z_train, z_other) == (0, 0.0)
    z_other[3, 1] = z_train[:, 1].max() + 10.5
    z_other[4, 2] = z_train[:, 2].min() - 9.5  # within the margin of 10
    z_other[5, 4] = z_train[:, 4].min() - 40
    count, excess = out_of_range_features(z_train, z_other)
    assert count == 2
    assert excess == pytest.approx(40)


def test_channel_mode_repeats_one_statistic_per_channel() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c * 10, c + 1, (50, 4)) for c in range(3)], axis=1)
    standardizer = fit_standardizer(x, "channel", channels=3)
    assert standardizer.mean.shape == (12,)
    for c in range(3):
        block = slice(4 * c, 4 * c + 4)
        np.testing.assert_allclose(standardizer.mean[block], x[:, block].mean())
        np.testing.assert_allclose(standardizer.std[block], x[:, block].std())
    with pytest.raises(ValueError, match="cannot be split into 5 channels"):
        fit_standardizer(x, "channel", channels=5)


def test_statistics_of_a_float32_set_over_many_row_blocks_are_float64_exact() -> None:
    # 1,000 rows: several blocks of the two-pass statistics and a partial last one.
    x = np.random.default_rng(1).integers(0, 256, (1000, 12)).astype(np.float32)
    feature = fit_standardizer(x, "feature")
    np.testing.assert_allclose(feature.mean, x.mean(axis=0, dtype=np.float64), rtol=1e-12)
    np.testing.assert_allclose(feature.std, x.std(axis=0, dtype=np.float64), rtol=1e-12)
    channel = fit_standardizer(x, "channel", channels=3)
    per_channel = x.reshape(1000, 3, 4).astype(np.float64)
    np.testing.assert_allclose(channel.mean[::4], per_channel.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(channel.std[::4], per_channel.std(axis=(0, 2)), rtol=1e-12)


@pytest.mark.parametrize("mode", ["feature", "channel", "sample", "none"])
def test_transform_in_place_equals_the_copying_transform(mode: str) -> None:
    x = np.random.default_rng(2).normal(3.0, 2.0, (50, 12)).astype(np.float32)
    standardizer = fit_standardizer(x, mode, channels=3)
    expected = standardizer.transform(x)
    result = standardizer.transform(x, out=x)
    assert result is x
    np.testing.assert_array_equal(x, expected)
    assert x.dtype == np.float32


def test_sample_and_none_modes_keep_no_statistics() -> None:
    x = np.random.default_rng(0).normal(3.0, 2.0, (10, 20)).astype(np.float32)
    sample = fit_standardizer(x, "sample")
    assert sample.mean.size == 0
    z = sample.transform(x)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-5)
    none = fit_standardizer(x, "none")
    np.testing.assert_array_equal(none.transform(x), x)


def test_stratified_split_proportions_per_class() -> None:
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    train_idx, val_idx = stratified_split(labels, 0.2, seed=3)
    np.testing.assert_array_equal(np.bincount(labels[val_idx]), [20, 10, 6, 4])
    np.testing.assert_array_equal(np.bincount(labels[train_idx]), [80, 40, 24, 16])
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(200))


def test_stratified_split_is_seeded_and_deterministic() -> None:
    labels = np.arange(500) % 7
    first = stratified_split(labels, 0.3, seed=1)
    again = stratified_split(labels, 0.3, seed=1)
    other = stratified_split(labels, 0.3, seed=2)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    assert len(first[1]) == 150


def test_stratified_subset_draws_exactly_n_in_proportion() -> None:
    labels = np.repeat(np.arange(3), [60, 30, 10])
    subset = stratified_subset(labels, 33, seed=0)
    assert len(subset) == 33
    assert np.all(np.diff(subset) > 0)
    counts = np.bincount(labels[subset])
    assert np.all(np.abs(counts - np.array([60, 30, 10]) * 0.33) < 1)
