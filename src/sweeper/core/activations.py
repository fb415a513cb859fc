"""Hidden-layer activations, by name in ``ACTIVATIONS`` (after scikit-learn's lookup tables):
each entry holds the function, its derivative and the weight initialisation that suits it.

Every function keeps the dtype of its input: scalars are Python numbers or of the input's
dtype, so float32 arrays are never promoted to float64. An activation writes into ``out``
when given one (``out=z`` overwrites the pre-activations) and into ``scratch``, an array of
``z``'s shape it may overwrite, instead of allocating a temporary; every derivative is a
function of the activation's output ``a`` alone, so a training step need not keep the
pre-activations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .registry import lookup

LEAKY_SLOPE = 0.01


def sigmoid(
    z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    # exp(-|z|) lies in (0, 1], so neither 1 / (1 + e) (z >= 0) nor e / (1 + e) can overflow.
    e = np.abs(z, out=scratch)
    np.negative(e, out=e)
    np.exp(e, out=e)
    # The numerator, by selection (bitwise 1 or e): heaviside is 1 where z >= 0, else 0 <= e.
    numerator = np.heaviside(z, 1, out=out)
    np.maximum(numerator, e, out=numerator)
    e += 1
    return np.divide(numerator, e, out=numerator)


def tanh(
    z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    return np.tanh(z, out=out)


def relu(
    z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    return np.maximum(z, 0, out=out)


def leaky_relu(
    z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
    # The slope being below 1, the larger of z and slope * z is z where z > 0, else slope * z.
    return np.maximum(z, np.multiply(z, LEAKY_SLOPE, out=scratch), out=out)


def identity(
    z: np.ndarray, out: np.ndarray | None = None, scratch: np.ndarray | None = None
) -> np.ndarray:
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
    # a > 0 exactly where z > 0, the slope being positive: heaviside gives 1 there and 0
    # (nan for a nan) elsewhere, which fmax raises to the slope.
    out = np.heaviside(a, 0, out=out)
    return np.fmax(out, LEAKY_SLOPE, out=out)


def identity_derivative(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return np.ones_like(a)
    out.fill(1)
    return out


class Activation(NamedTuple):
    function: Callable[..., np.ndarray]
    derivative: Callable[..., np.ndarray]
    # The ``INITIALIZERS`` scheme used when the config says init=auto.
    init: str


# Glorot suits saturating and linear units, He suits rectifiers (half the units are off).
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, sigmoid_derivative, "xavier"),
    "tanh": Activation(tanh, tanh_derivative, "xavier"),
    "relu": Activation(relu, relu_derivative, "he"),
    "leaky_relu": Activation(leaky_relu, leaky_relu_derivative, "he"),
    "identity": Activation(identity, identity_derivative, "xavier"),
}


def check_activation(name: str) -> str:
    lookup(ACTIVATIONS, "activation", name)
    return name
