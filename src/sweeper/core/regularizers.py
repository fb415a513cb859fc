"""L1/L2 weight penalties, the max-norm constraint, and ``REGULARIZERS``, every regularizer
by name.

Convention: the penalty is added, unscaled, to the batch-MEAN cross-entropy,

    E = mean_CE + l1 * sum|W| + (l2 / 2) * sum W**2,

summed over every weight matrix; biases are never penalised. Because the penalty is not
divided by the batch size (nor multiplied by the dataset size), every minibatch gradient is
an unbiased estimate of the gradient of the dataset-mean objective, and a given strength
means the same thing whatever the batch size.

The max-norm constraint (Srivastava et al. 2014) is no penalty: after each step, every hidden
unit whose incoming weight vector is longer than ``c`` has it scaled back to length ``c``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Each regularizer by its name in the config: the settings it reads, each with the core's
# argument it sets (l1, l2: these penalties', given to ``train``; dropout, input_dropout: the
# network's). Its other settings in this table are unread; ``max_norm``, in none of them, is
# read whatever the regularizer. Strengths are trusted: the config checked them.
REGULARIZERS: dict[str, dict[str, str]] = {
    "none": {},
    "l1": {"lam": "l1"},
    "l2": {"lam": "l2"},
    "dropout": {"p": "dropout", "input_p": "input_dropout"},
}


def penalty(weights: Sequence[np.ndarray], l1: float, l2: float) -> float:
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
    for w, g in zip(weights, grads_w, strict=True):
        if l1:
            g += l1 * np.sign(w)
        if l2:
            g += l2 * w


def apply_max_norm(weights: Sequence[np.ndarray], c: float) -> None:
    """Scale, in place, each column (a unit's incoming weights) of every matrix but the last
    (the output layer's) to an L2 norm of at most ``c``."""
    for w in weights[:-1]:
        norms = np.sqrt(np.einsum("ij,ij->j", w, w))
        # Columns within the bound get a factor of exactly 1.
        w *= np.minimum(1, w.dtype.type(c) / np.maximum(norms, np.finfo(w.dtype).tiny))
