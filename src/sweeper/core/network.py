"""A fully connected softmax classifier (multi-layer perceptron) trained by backprop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from .activations import ACTIVATIONS, DERIVATIVES, check_activation
from .initializers import default_init, init_weights
from .losses import softmax, softmax_cross_entropy
from .regularizers import add_penalty_gradients, penalty

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype={dtype!r} is unsupported; allowed: float32, float64")
    return dt


def _check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least [d_in, n_classes], got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s <= 0:
            raise ValueError(f"layer_sizes must be positive integers, got {sizes}")
    return [int(s) for s in sizes]


def _check_dropout(dropout: float) -> float:
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
    return float(dropout)


class MLP:
    """Softmax classifier with ``len(layer_sizes) - 2`` hidden layers.

    ``layer_sizes`` is ``[d_in, h1, ..., hk, n_classes]``; with two entries the model is
    softmax regression. Every array (weights, activations, gradients) is kept in ``dtype``.
    Dropout is inverted dropout on the hidden layers and is only active in
    ``loss_and_gradients`` when an ``rng`` is passed.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "tanh",
        init: str | None = None,
        seed: int = 0,
        dtype: DTypeLike = np.float32,
        dropout: float = 0.0,
    ) -> None:
        self.layer_sizes = _check_layer_sizes(layer_sizes)
        self.activation = check_activation(activation)
        self.dropout = _check_dropout(dropout)
        self.dtype = check_dtype(dtype)
        self.init = default_init(activation) if init is None else init
        rng = np.random.default_rng(seed)
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True))
        self.weights = [init_weights(i, o, self.init, rng, self.dtype) for i, o in pairs]
        self.biases = [np.zeros(o, dtype=self.dtype) for _, o in pairs]

    @classmethod
    def from_parameters(
        cls,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        activation: str = "tanh",
        dtype: DTypeLike = np.float32,
        dropout: float = 0.0,
        init: str | None = None,
    ) -> MLP:
        """Build a model around copies of the given arrays (shapes are checked)."""
        if len(weights) != len(biases) or not weights:
            raise ValueError(
                f"need as many weights as biases (>= 1), got {len(weights)} and {len(biases)}"
            )
        sizes = [int(weights[0].shape[0])] + [int(w.shape[1]) for w in weights]
        for i, (w, b) in enumerate(zip(weights, biases, strict=True), start=1):
            if w.shape != (sizes[i - 1], sizes[i]):
                raise ValueError(f"W{i} has shape {w.shape}, expected {(sizes[i - 1], sizes[i])}")
            if b.shape != (sizes[i],):
                raise ValueError(f"b{i} has shape {b.shape}, expected {(sizes[i],)}")
        model = cls.__new__(cls)
        model.layer_sizes = _check_layer_sizes(sizes)
        model.activation = check_activation(activation)
        model.dropout = _check_dropout(dropout)
        model.dtype = check_dtype(dtype)
        model.init = default_init(activation) if init is None else init
        model.weights = [np.array(w, dtype=model.dtype) for w in weights]
        model.biases = [np.array(b, dtype=model.dtype) for b in biases]
        return model

    @property
    def n_classes(self) -> int:
        return self.layer_sizes[-1]

    def __repr__(self) -> str:
        return (
            f"MLP(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
            f"dtype={self.dtype.name}, dropout={self.dropout})"
        )

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"x must have shape (n, {self.layer_sizes[0]}), got {x.shape}")
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        act = ACTIVATIONS[self.activation]
        a = self._as_input(x)
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = a @ w
            z += b
            a = act(z)
        z = a @ self.weights[-1]
        z += self.biases[-1]
        return z

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for inference (dropout off)."""
        return softmax(self.logits(x))

    predict_proba = forward

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(x), axis=1)

    def loss_and_gradients(
        self,
        x: np.ndarray,
        y_onehot: np.ndarray,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        """Objective (mean cross-entropy + penalty) and its gradients, by backprop."""
        x = self._as_input(x)
        y = np.asarray(y_onehot, dtype=self.dtype)
        if y.shape != (len(x), self.n_classes):
            raise ValueError(f"y_onehot must have shape {(len(x), self.n_classes)}, got {y.shape}")
        act = ACTIVATIONS[self.activation]
        deriv = DERIVATIVES[self.activation]
        keep = 1.0 - self.dropout
        drop_rng = rng if self.dropout > 0 else None

        # inputs[i] feeds layer i; zs/outs are hidden pre-activations and activations
        # before dropout, which is what the derivatives need.
        inputs = [x]
        zs: list[np.ndarray] = []
        outs: list[np.ndarray] = []
        masks: list[np.ndarray] = []
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            z = a @ w
            z += b
            a = act(z)
            zs.append(z)
            outs.append(a)
            if drop_rng is not None:
                mask = (drop_rng.random(z.shape, dtype=self.dtype) < keep).astype(self.dtype)
                mask *= 1.0 / keep
                masks.append(mask)
                a = a * mask
            inputs.append(a)
        logits = a @ self.weights[-1]
        logits += self.biases[-1]
        loss, delta = softmax_cross_entropy(logits, y)
        loss += penalty(self.weights, l1, l2)

        # Gradient of the mean cross-entropy w.r.t. the logits: (p - y) / n.
        delta -= y
        delta *= 1.0 / len(x)
        grads_w: list[np.ndarray] = []
        grads_b: list[np.ndarray] = []
        for i in range(len(self.weights) - 1, -1, -1):
            grads_w.append(inputs[i].T @ delta)
            grads_b.append(delta.sum(axis=0))
            if i == 0:
                break
            delta = delta @ self.weights[i].T
            if masks:
                delta *= masks[i - 1]
            delta *= deriv(zs[i - 1], outs[i - 1])
        grads_w.reverse()
        grads_b.reverse()
        add_penalty_gradients(self.weights, grads_w, l1, l2)
        return loss, grads_w, grads_b

    def evaluate(
        self, x: np.ndarray, labels: np.ndarray, batch_size: int = 4096
    ) -> tuple[float, float]:
        """Mean cross-entropy (no penalty) and accuracy, in batches to bound memory."""
        labels = np.asarray(labels)
        n = len(labels)
        if n == 0 or len(x) != n:
            raise ValueError(f"x and labels must be non-empty and equally long: {len(x)}, {n}")
        total = 0.0
        correct = 0
        for start in range(0, n, batch_size):
            lab = labels[start : start + batch_size]
            z = self.logits(x[start : start + batch_size])
            z -= z.max(axis=1, keepdims=True)
            correct_logit = z[np.arange(len(lab)), lab]
            lse = np.log(np.exp(z).sum(axis=1))
            total += float((lse - correct_logit).sum(dtype=np.float64))
            # Shifting by the row max leaves the argmax unchanged.
            correct += int(np.count_nonzero(z.argmax(axis=1) == lab))
        return total / n, correct / n

    def parameters(self) -> list[np.ndarray]:
        """The live arrays, weights first then biases (the order optimisers see)."""
        return [*self.weights, *self.biases]

    def astype(self, dtype: DTypeLike) -> MLP:
        """A copy of the model in ``dtype``."""
        return MLP.from_parameters(
            self.weights, self.biases, self.activation, dtype, self.dropout, self.init
        )

    def copy(self) -> MLP:
        return self.astype(self.dtype)
