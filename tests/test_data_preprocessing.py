"""Flattening, standardisation modes and stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.data import fit_standardizer, flatten, stratified_split
from sweeper.data.preprocessing import stratified_subset


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
    assert standardizer.std[2] == 1.0
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(np.delete(z.std(axis=0), 2), 1)
    np.testing.assert_array_equal(z[:, 2], 0)


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


def test_unknown_mode_lists_allowed_ones() -> None:
    with pytest.raises(ValueError, match="feature, sample, channel, none"):
        fit_standardizer(np.zeros((2, 2)), "minmax")


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


def test_stratified_split_rejects_bad_fraction() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(np.zeros(10, dtype=int), 1.0)


def test_stratified_subset_draws_exactly_n_in_proportion() -> None:
    labels = np.repeat(np.arange(3), [60, 30, 10])
    subset = stratified_subset(labels, 33, seed=0)
    assert len(subset) == 33
    assert np.all(np.diff(subset) > 0)
    counts = np.bincount(labels[subset])
    assert np.all(np.abs(counts - np.array([60, 30, 10]) * 0.33) < 1)
