"""Weight initialisation schemes, by name in ``INITIALIZERS``.

Weights are drawn in float64 and then cast, so a float32 and a float64 model built from
the same seed hold the same weights up to rounding.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from .activations import ACTIVATIONS
from .registry import lookup


def default_init(activation: str) -> str:
    """The scheme that suits ``activation`` (its entry in ``ACTIVATIONS``)."""
    return lookup(ACTIVATIONS, "activation", activation).init


def xavier(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Glorot uniform."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """He normal."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


INITIALIZERS = {"xavier": xavier, "he": he}


def init_weights(
    fan_in: int,
    fan_out: int,
    scheme: str,
    rng: np.random.Generator,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """Weight matrix of shape (fan_in, fan_out), drawn by the scheme named ``scheme``."""
    return lookup(INITIALIZERS, "init", scheme)(fan_in, fan_out, rng).astype(dtype)
