"""Hidden-layer activations and their derivatives, as lookup tables (after scikit-learn).

Every function keeps the dtype of its input: scalars are Python numbers or of the input's
dtype, so float32 arrays are never promoted to float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LEAKY_SLOPE = 0.01


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(-|z|) lies in (0, 1], so neither branch can overflow for any z.
    e = np.exp(-np.abs(z))
    denom = e + 1
    return np.where(z >= 0, 1 / denom, e / denom)


def tanh(z: np.ndarray) -> np.ndarray:
    return np.tanh(z)


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0)


def leaky_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, z * LEAKY_SLOPE)


def identity(z: np.ndarray) -> np.ndarray:
    return z


def sigmoid_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    d = 1 - a
    d *= a
    return d


def tanh_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    d = a * a
    np.subtract(1, d, out=d)
    return d


def relu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return (z > 0).astype(z.dtype)


def leaky_relu_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    # Typed scalars: a bare Python 0.01 inside np.where would yield a float64 array.
    one = z.dtype.type(1)
    slope = z.dtype.type(LEAKY_SLOPE)
    return np.where(z > 0, one, slope)


def identity_derivative(z: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "identity": identity,
}

DERIVATIVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid_derivative,
    "tanh": tanh_derivative,
    "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative,
    "identity": identity_derivative,
}

ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is unknown; allowed: {', '.join(ACTIVATION_NAMES)}")
    return name
