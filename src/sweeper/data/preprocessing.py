"""Preprocessing: flattening, z-score standardisation, stratified splits.

Each normalization is one entry of ``NORMALIZERS``, its name with how its statistics are
fitted and how it transforms rows; ``NORMALIZATIONS`` and ``FITTED`` are read from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# load_dataset's defaults.
DEFAULT_NORMALIZATION = "feature"
DEFAULT_VAL_FRACTION = 0.2
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
        return NORMALIZERS[self.mode].transform(x, self.mean, self.std, out)


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


def _fit_feature(x_train: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    mean, std = _mean_std(x_train, axes=(0,))
    return mean, _floored(mean, std)


def _fit_channel(x_train: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    n_features = x_train.shape[1]
    if channels < 1 or n_features % channels:
        raise ValueError(f"{n_features} features cannot be split into {channels} channels")
    pixels = n_features // channels
    mean, std = _mean_std(x_train.reshape(len(x_train), channels, pixels), axes=(0, 2))
    return np.repeat(mean, pixels), np.repeat(_floored(mean, std), pixels)


def _by_statistics(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray | None
) -> np.ndarray:
    result = np.subtract(x, mean.astype(x.dtype), out=out)
    result /= std.astype(x.dtype)
    return result


def _by_row(x: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    row_std = _nonzero(x.std(axis=1, keepdims=True)).astype(x.dtype)
    result = np.subtract(x, x.mean(axis=1, keepdims=True), out=out)
    result /= row_std
    return result


def _unchanged(
    x: np.ndarray, mean: np.ndarray, std: np.ndarray, out: np.ndarray | None
) -> np.ndarray:
    if out is None:
        return x
    out[...] = x
    return out


class Normalizer(NamedTuple):
    # Per-feature (mean, std) from the training rows and their channel count; None: the mode
    # keeps no statistics.
    fit: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None
    # Rows standardised with the fitted statistics, into ``out`` if given.
    transform: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


NORMALIZERS: dict[str, Normalizer] = {
    "feature": Normalizer(_fit_feature, _by_statistics),
    "sample": Normalizer(None, _by_row),
    # Per-channel statistics repeated over the channel's pixels: one transform with feature.
    "channel": Normalizer(_fit_channel, _by_statistics),
    "none": Normalizer(None, _unchanged),
}
NORMALIZATIONS = tuple(NORMALIZERS)
# The modes whose statistics are fitted on the training split and kept (with a checkpoint).
FITTED = tuple(name for name, normalizer in NORMALIZERS.items() if normalizer.fit is not None)


def fit_standardizer(x_train: np.ndarray, mode: str, channels: int = 1) -> Standardizer:
    """Fit ``mode`` statistics on flattened training rows ``x_train`` of shape ``(n, d)``.

    ``channels`` matters for ``channel`` mode only: the rows hold ``channels`` consecutive
    blocks of ``d // channels`` pixels. ``mode`` is one of ``NORMALIZATIONS``, as
    ``sweeper.config`` checks it.
    """
    fit = NORMALIZERS[mode].fit
    if fit is None:
        return Standardizer(mode, np.empty(0), np.empty(0))
    mean, std = fit(x_train, channels)
    return Standardizer(mode, mean, std)


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
    labels: np.ndarray, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_idx, val_idx)`` with ``val_fraction`` (``0 < val_fraction < 1``, as
    ``sweeper.config`` checks ``dataset.val_fraction``) of every class in validation."""
    labels = np.asarray(labels)
    val_idx = stratified_subset(labels, round(len(labels) * val_fraction), seed)
    in_train = np.ones(len(labels), dtype=bool)
    in_train[val_idx] = False
    return np.flatnonzero(in_train), val_idx
