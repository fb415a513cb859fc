"""L1/L2 weight penalties.

Convention: the penalty is added, unscaled, to the batch-MEAN cross-entropy,

    E = mean_CE + l1 * sum|W| + (l2 / 2) * sum W**2,

summed over every weight matrix; biases are never penalised. Because the penalty is not
divided by the batch size (nor multiplied by the dataset size), every minibatch gradient is
an unbiased estimate of the gradient of the dataset-mean objective, and a given strength
means the same thing whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check(l1: float, l2: float) -> None:
    if l1 < 0:
        raise ValueError(f"l1 must be >= 0, got {l1}")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")


def penalty(weights: Sequence[np.ndarray], l1: float, l2: float) -> float:
    _check(l1, l2)
    total = 0.0
    for w in weights:
        if l1:
            total += l1 * float(np.abs(w).sum())
        if l2:
            flat = w.ravel()
            total += 0.5 * l2 * float(np.dot(flat, flat))
    return total


def add_penalty_gradients(
    weights: Sequence[np.ndarray], grads_w: Sequence[np.ndarray], l1: float, l2: float
) -> None:
    """Add the penalty's gradient to ``grads_w`` in place."""
    _check(l1, l2)
    for w, g in zip(weights, grads_w, strict=True):
        if l1:
            g += l1 * np.sign(w)
        if l2:
            g += l2 * w
