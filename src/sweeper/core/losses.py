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


def softmax_cross_entropy(logits: np.ndarray, y_onehot: np.ndarray, row: np.ndarray) -> float:
    """Mean cross-entropy over the batch, computing exp() only once.

    ``logits`` is overwritten by the softmax probabilities (the training step's gradient
    starts from them) and ``row``, of shape (n, 1), by the rows' exp-sums, so no array of
    the logits' size is allocated. Each row of ``y_onehot`` sums to 1.
    """
    np.maximum.reduce(logits, axis=1, keepdims=True, out=row)
    logits -= row
    # Loss from the shifted logits: sum_k y_k (log s - z_k), where s is the row's exp-sum.
    z_true = float(np.vdot(y_onehot, logits))
    probs = np.exp(logits, out=logits)
    np.add.reduce(probs, axis=1, keepdims=True, out=row)
    loss = (float(np.log(row).sum()) - z_true) / len(logits)
    probs /= row
    return loss


def one_hot(labels: np.ndarray, n_classes: int, dtype: DTypeLike = np.float32) -> np.ndarray:
    """``(n, n_classes)`` rows, 1 at each label. The labels are trusted as 1-D integers in
    ``[0, n_classes)``: the loaders (``sweeper.data``) and ``train`` check them."""
    labels = np.asarray(labels)
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels] = 1
    return out
