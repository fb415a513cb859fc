"""Preprocessing: flattening, z-score standardisation, stratified splits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMALIZATIONS = ("feature", "sample", "channel", "none")
# The modes whose statistics are fitted on the training split and kept (with a checkpoint).
FITTED = ("feature", "channel")
# A feature's (or channel's) standard deviation is floored at this fraction of the training
# set's overall one: scaled by the feature's own tiny spread, a near-constant pixel that has ink
# in a handful of images turns into z-scores in the hundreds, and into thousands on a test
# image the training set never showed it in. With the floor a value is at most
# range / (0.1 * overall std) from its feature's mean (about 32 on MNIST).
STD_FLOOR = 0.1
# A standardised value this far beyond its feature's range in the training split (in the units
# of the standardised data, whose overall spread is about 1) is outside anything trained on.
OUT_OF_RANGE_MARGIN = 10.0
# Rows per block of the statistics' passes: a float64 block of 3,072 features is 6 MiB.
_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Standardizer:
    """Z-score statistics fitted on the training split only.

    ``mean`` and ``std`` have one entry per flattened feature for the ``feature`` and
    ``channel`` modes (per-channel statistics are repeated over that channel's pixels), so
    both modes share one transform; ``sample`` and ``none`` keep no statistics. ``std`` is
    floored (see ``STD_FLOOR``) and never zero. A per-sample z-score needs no floor: each of
    its ``d`` values is within ``sqrt(d - 1)`` of its row's mean by construction.
    """

    mode: str
    mean: np.ndarray
    std: np.ndarray

    def transform(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Standardised rows of ``x``, written into ``out`` if given (``out=x`` standardises
        in place, without the two temporary copies of ``x`` that arithmetic makes)."""
        if self.mode == "none":
            if out is None:
                return x
            out[...] = x
            return out
        if self.mode == "sample":
            mean = x.mean(axis=1, keepdims=True)
            std = x.std(axis=1, keepdims=True)
            std = _nonzero(std).astype(x.dtype)
        else:
            mean, std = self.mean.astype(x.dtype), self.std.astype(x.dtype)
        result = np.subtract(x, mean, out=out)
        result /= std
        return result


def flatten(images: np.ndarray) -> np.ndarray:
    """``(n, ...)`` images as ``(n, d)`` rows; channel-first images stay channel-major."""
    return images.reshape(len(images), -1)


def _nonzero(std: np.ndarray) -> np.ndarray:
    # A constant row (a blank image) is centred but left unscaled.
    return np.where(std > 0, std, 1.0)


def _floored(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``std`` raised to ``STD_FLOOR`` times the overall standard deviation of the data these
    per-group statistics (of equal-sized groups) describe; 1 where the data are constant."""
    # Law of total variance: the mean within-group variance plus the variance of the means.
    overall = np.sqrt(np.mean(np.square(std)) + np.var(mean))
    return _nonzero(np.maximum(std, STD_FLOOR * overall))


def _mean_std(x: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over ``axes`` (axis 0, the rows, among them) in float64,
    in two passes over blocks of rows.

    ``x.std(axis=0, dtype=np.float64)`` makes a float64 copy of the whole set first (0.9 GB
    for CIFAR-10's 40,000 training rows); here each block's deviations stay in cache.
    """
    blocks = [x[i : i + _BLOCK_ROWS] for i in range(0, len(x), _BLOCK_ROWS)]
    count = math.prod(x.shape[a] for a in axes)
    mean = sum(b.sum(axis=axes, dtype=np.float64, keepdims=True) for b in blocks) / count
    squares = sum(np.square(b - mean).sum(axis=axes, keepdims=True) for b in blocks)
    return mean.squeeze(axes), np.sqrt(squares / count).squeeze(axes)


def fit_standardizer(x_train: np.ndarray, mode: str, channels: int = 1) -> Standardizer:
    """Fit ``mode`` statistics on flattened training rows ``x_train`` of shape ``(n, d)``.

    ``channels`` matters for ``channel`` mode only: the rows hold ``channels`` consecutive
    blocks of ``d // channels`` pixels. ``mode`` is one of ``NORMALIZATIONS``, as
    ``sweeper.config`` checks it.
    """
    no_stats = np.empty(0)
    if mode not in FITTED:
        return Standardizer(mode, no_stats, no_stats)
    if mode == "feature":
        mean, std = _mean_std(x_train, axes=(0,))
        return Standardizer(mode, mean, _floored(mean, std))
    n_features = x_train.shape[1]
    if channels < 1 or n_features % channels:
        raise ValueError(f"{n_features} features cannot be split into {channels} channels")
    per_channel = x_train.reshape(len(x_train), channels, n_features // channels)
    mean, std = _mean_std(per_channel, axes=(0, 2))
    std = _floored(mean, std)
    pixels = n_features // channels
    return Standardizer(mode, np.repeat(mean, pixels), np.repeat(std, pixels))


def out_of_range_features(
    x_train: np.ndarray, x_other: np.ndarray, margin: float = OUT_OF_RANGE_MARGIN
) -> tuple[int, float]:
    """How many features of ``x_other`` have a value more than ``margin`` beyond that
    feature's range in ``x_train`` (both standardised alike), and the largest such excess
    (0 when none lies outside the range)."""
    if not len(x_train) or not len(x_other):
        return 0, 0.0
    excess = np.maximum(
        x_train.min(axis=0) - x_other.min(axis=0), x_other.max(axis=0) - x_train.max(axis=0)
    )
    return int(np.count_nonzero(excess > margin)), max(float(excess.max()), 0.0)


def stratified_subset(labels: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n_samples`` samples drawn per class in proportion to its size.

    Quotas are rounded by largest remainder, so exactly ``n_samples`` are drawn.
    """
    n = len(labels)
    if not 0 <= n_samples <= n:
        raise ValueError(f"cannot draw {n_samples} samples from {n}")
    _, class_of, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quotas = counts * (n_samples / n)
    taken = np.floor(quotas).astype(np.int64)
    shortfall = n_samples - int(taken.sum())
    # Stable sort keeps the tie-break between equal remainders deterministic.
    taken[np.argsort(taken - quotas, kind="stable")[:shortfall]] += 1

    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(n)
    # Group the shuffled samples by class; each class's first `taken` samples are drawn.
    grouped = shuffled[np.argsort(class_of[shuffled], kind="stable")]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_in_class = np.arange(n) - np.repeat(starts, counts)
    drawn = grouped[rank_in_class < np.repeat(taken, counts)]
    return np.sort(drawn)


def stratified_split(
    labels: np.ndarray, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_idx, val_idx)`` with ``val_fraction`` (``0 < val_fraction < 1``, as
    ``sweeper.config`` checks ``dataset.val_fraction``) of every class in validation."""
    labels = np.asarray(labels)
    val_idx = stratified_subset(labels, round(len(labels) * val_fraction), seed)
    in_train = np.ones(len(labels), dtype=bool)
    in_train[val_idx] = False
    return np.flatnonzero(in_train), val_idx
