"""Softmax output and mean cross-entropy, numerically stable in float32 and float64."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; subtracting the row max keeps exp() from overflowing."""
    e = logits - logits.max(axis=1, keepdims=True)
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def cross_entropy(
    probs_or_logits: np.ndarray, y_onehot: np.ndarray, *, from_logits: bool = False
) -> float:
    """Mean cross-entropy over the batch.

    From logits it uses log-sum-exp; from probabilities it clips at the dtype's smallest
    normal number, so an underflowed probability costs a large but finite loss.
    """
    if from_logits:
        log_p = log_softmax(probs_or_logits)
    else:
        tiny = np.finfo(probs_or_logits.dtype).tiny
        log_p = np.log(np.maximum(probs_or_logits, tiny))
    return -float(np.vdot(y_onehot, log_p)) / len(y_onehot)


def softmax_cross_entropy(logits: np.ndarray, y_onehot: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the softmax probabilities, computing exp() only once.

    ``logits`` is overwritten (it becomes the probabilities) to save an allocation in the
    training step.
    """
    logits -= logits.max(axis=1, keepdims=True)
    # Loss from the shifted logits: sum_k y_k (log s - z_k), where s is the row's exp-sum.
    zy = float(np.vdot(y_onehot, logits))
    probs = np.exp(logits, out=logits)
    sums = probs.sum(axis=1)
    loss = (float(np.dot(y_onehot.sum(axis=1), np.log(sums))) - zy) / len(y_onehot)
    probs /= sums[:, None]
    return loss, probs


def one_hot(labels: np.ndarray, n_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {labels.min()}..{labels.max()}")
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out
