"""Hidden-layer activations and their derivatives, as lookup tables (after scikit-learn).

Every function keeps the dtype of its input: scalars are Python numbers or of the input's
dtype, so float32 arrays are never promoted to float64. An activation writes into ``out``
when given one (``out=z`` overwrites the pre-activations); every derivative is a function of
the activation's output ``a`` alone, so a training step need not keep the pre-activations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .registry import lookup

LEAKY_SLOPE = 0.01


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # exp(-|z|) lies in (0, 1], so neither branch can overflow for any z.
    e = np.exp(-np.abs(z))
    denom = e + 1
    result = np.where(z >= 0, 1 / denom, e / denom)
    if out is None:
        return result
    np.copyto(out, result)
    return out


def tanh(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=out)


def relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.maximum(z, 0, out=out)


def leaky_relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    result = np.where(z > 0, z, z * LEAKY_SLOPE)
    if out is None:
        return result
    np.copyto(out, result)
    return out


def identity(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None or out is z:
        return z
    np.copyto(out, z)
    return out


# Each derivative takes the activation's output ``a`` and writes f'(z) into ``out``.


def sigmoid_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.subtract(1, a, out=out)
    out *= a
    return out


def tanh_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    out = np.multiply(a, a, out=out)
    np.subtract(1, out, out=out)
    return out


def relu_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # a = max(z, 0) >= 0, so sign(a) is 1 where z > 0 and 0 elsewhere.
    return np.sign(a, out=out)


def leaky_relu_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    # a > 0 exactly where z > 0, the slope being positive. Typed scalars: a bare Python
    # 0.01 inside np.where would yield a float64 array.
    one = a.dtype.type(1)
    slope = a.dtype.type(LEAKY_SLOPE)
    result = np.where(a > 0, one, slope)
    if out is None:
        return result
    np.copyto(out, result)
    return out


def identity_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ones_like(a)
    out.fill(1)
    return out


ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "identity": identity,
}

DERIVATIVES: dict[str, Callable[..., np.ndarray]] = {
    "sigmoid": sigmoid_derivative,
    "tanh": tanh_derivative,
    "relu": relu_derivative,
    "leaky_relu": leaky_relu_derivative,
    "identity": identity_derivative,
}

ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def check_activation(name: str) -> str:
    lookup(ACTIVATIONS, "activation", name)
    return name
