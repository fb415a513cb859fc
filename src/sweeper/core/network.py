"""A fully connected softmax classifier (multi-layer perceptron) trained by backprop.

A model keeps all its parameters in one contiguous vector (``MLP.flat``: the weight matrices,
then the bias vectors), so an optimiser updates them in a few passes over one array. The
forward and backward passes run in a ``Workspace``: arrays allocated once for a batch size
and reused by every step of a run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from .activations import ACTIVATIONS, check_activation
from .initializers import default_init, init_weights
from .losses import softmax, softmax_cross_entropy
from .regularizers import add_penalty_gradients, penalty

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Samples an evaluation scores at a time: bounds its memory whatever the set's size.
SCORING_ROWS = 4096


def check_dtype(dtype: DTypeLike) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    # Not `in`: a dtype compares equal to None (np.dtype(None) is float64).
    if dt is None or not any(dt == allowed for allowed in SUPPORTED_DTYPES):
        allowed = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise ValueError(f"dtype={dtype!r} is unsupported; allowed: {allowed}")
    return dt


def _check_layer_sizes(layer_sizes: Sequence[int]) -> list[int]:
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least [d_in, n_classes], got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or s <= 0:
            raise ValueError(f"layer_sizes must be positive integers, got {sizes}")
    return [int(s) for s in sizes]


def _check_dropout(dropout: float, name: str = "dropout") -> float:
    if not 0 <= dropout < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {dropout}")
    return float(dropout)


def _packed(
    sizes: Sequence[int], dtype: np.dtype
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """One vector for every parameter of a network, and the weight and bias views into it."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    flat = np.zeros(sum(i * o + o for i, o in pairs), dtype=dtype)
    weights, biases, start = [], [], 0
    for i, o in pairs:
        weights.append(flat[start : start + i * o].reshape(i, o))
        start += i * o
    for _, o in pairs:
        biases.append(flat[start : start + o])
        start += o
    return flat, weights, biases


class MLP:
    """Softmax classifier with ``len(layer_sizes) - 2`` hidden layers.

    ``layer_sizes`` is ``[d_in, h1, ..., hk, n_classes]``; with two entries the model is
    softmax regression. Every array (weights, activations, gradients) is kept in ``dtype``.
    Dropout is inverted dropout on the hidden layers (probability ``dropout``) and on the
    inputs (``input_dropout``), and is only active in ``loss_and_gradients`` when an ``rng``
    is passed.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "tanh",
        init: str | None = None,
        seed: int = 0,
        dtype: DTypeLike = np.float32,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        self.layer_sizes = _check_layer_sizes(layer_sizes)
        self.activation = check_activation(activation)
        # Checked by the config; from_parameters checks what a checkpoint says.
        self.dropout = float(dropout)
        self.input_dropout = float(input_dropout)
        self.dtype = check_dtype(dtype)
        self.init = default_init(activation) if init is None else init
        self.flat, self.weights, self.biases = _packed(self.layer_sizes, self.dtype)
        rng = np.random.default_rng(seed)
        for w in self.weights:
            w[...] = init_weights(w.shape[0], w.shape[1], self.init, rng, self.dtype)

    @classmethod
    def from_parameters(
        cls,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        activation: str = "tanh",
        dtype: DTypeLike = np.float32,
        dropout: float = 0.0,
        init: str | None = None,
        input_dropout: float = 0.0,
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
        model.input_dropout = _check_dropout(input_dropout, "input_dropout")
        model.dtype = check_dtype(dtype)
        model.init = default_init(activation) if init is None else init
        model.flat, model.weights, model.biases = _packed(sizes, model.dtype)
        for mine, given in zip(model.parameters(), [*weights, *biases], strict=True):
            mine[...] = given
        return model

    @property
    def n_classes(self) -> int:
        return self.layer_sizes[-1]

    def __repr__(self) -> str:
        return (
            f"MLP(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
            f"dtype={self.dtype.name}, dropout={self.dropout}, "
            f"input_dropout={self.input_dropout})"
        )

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"x must have shape (n, {self.layer_sizes[0]}), got {x.shape}")
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = self._as_input(x)
        return Workspace(self, len(x)).forward(x).copy()

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
        y = np.asarray(y_onehot)
        if y.shape != (len(x), self.n_classes):
            raise ValueError(f"y_onehot must have shape {(len(x), self.n_classes)}, got {y.shape}")
        objective_penalty = penalty(self.weights, l1, l2)
        workspace = Workspace(self, len(x), dropout=rng is not None)
        y = np.asarray(y, dtype=self.dtype)
        loss, _ = workspace.loss_and_gradients(x, y, l1=l1, l2=l2, rng=rng)
        return loss + objective_penalty, workspace.grads_w, workspace.grads_b

    def evaluate(
        self, x: np.ndarray, labels: np.ndarray, batch_size: int = SCORING_ROWS
    ) -> tuple[float, float]:
        """Mean cross-entropy (no penalty) and accuracy, in batches to bound memory."""
        labels = np.asarray(labels)
        n = len(labels)
        if n == 0 or len(x) != n:
            raise ValueError(f"x and labels must be non-empty and equally long: {len(x)}, {n}")
        return Workspace(self, min(n, batch_size)).evaluate(self._as_input(x), labels)

    def parameters(self) -> list[np.ndarray]:
        """The live arrays, weights first then biases (the order optimisers see, and of
        ``flat``)."""
        return [*self.weights, *self.biases]

    def astype(self, dtype: DTypeLike) -> MLP:
        """A copy of the model in ``dtype``."""
        return MLP.from_parameters(
            self.weights,
            self.biases,
            self.activation,
            dtype,
            self.dropout,
            self.init,
            self.input_dropout,
        )

    def copy(self) -> MLP:
        return self.astype(self.dtype)


class Workspace:
    """The arrays of a forward and backward pass of ``model`` on up to ``rows`` samples.

    Allocated once and reused, so a training step allocates no matrix of the batch's size
    (a vector of one number per sample at most): every product, activation (its temporary
    in ``scratch``), dropout mask and gradient is written into these arrays. The inputs are
    trusted (the caller checked them once); ``grads_w`` and ``grads_b`` are views into
    ``grads``, laid out as ``MLP.flat``, and hold the last backward pass. Reductions call
    the ufuncs' ``reduce`` with ``out``, which skips the wrappers' per-call cost (``np.sum``
    is ``np.add.reduce``, the same arithmetic).
    """

    def __init__(self, model: MLP, rows: int, dropout: bool = False) -> None:
        self.model = model
        dt = model.dtype
        sizes = model.layer_sizes
        self.x = np.empty((rows, sizes[0]), dt)
        self.y = np.empty((rows, sizes[-1]), dt)
        self.labels = np.empty(rows, np.intp)
        # outs[i]: layer i's activations (the logits, then probabilities, for the last).
        self.outs = [np.empty((rows, h), dt) for h in sizes[1:]]
        self.deltas = [np.empty((rows, h), dt) for h in sizes[1:-1]]
        self.scratch = [np.empty((rows, h), dt) for h in sizes[1:-1]]
        use_dropout = dropout and model.dropout > 0
        self.masks = [np.empty((rows, h), dt) for h in sizes[1:-1]] if use_dropout else []
        # Which units a mask keeps, written here before it is scaled.
        self.kept = [np.empty((rows, h), np.bool_) for h in sizes[1:-1]] if use_dropout else []
        self.dropped = [np.empty((rows, h), dt) for h in sizes[1:-1]] if use_dropout else []
        # The inputs' mask and the masked inputs, which the first layer's gradient reads.
        use_input = dropout and model.input_dropout > 0
        self.input_mask = np.empty((rows, sizes[0]), dt) if use_input else None
        self.input_kept = np.empty((rows, sizes[0]), np.bool_) if use_input else None
        self.dropped_x = np.empty((rows, sizes[0]), dt) if use_input else None
        self.row = np.empty((rows, 1), dt)
        self.grads, self.grads_w, self.grads_b = _packed(sizes, dt)
        self._act, self._deriv, _ = ACTIVATIONS[model.activation]

    @property
    def size(self) -> int:
        return len(self.x)

    def gather(
        self, x: np.ndarray, y_onehot: np.ndarray, labels: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``idx`` of ``x``, ``y_onehot`` and ``labels``, copied into this workspace."""
        n = len(idx)
        # The methods with mode="clip" skip np.take's wrapper and buffered bounds check;
        # idx comes from a permutation, so it is in range.
        return (
            x.take(idx, axis=0, out=self.x[:n], mode="clip"),
            y_onehot.take(idx, axis=0, out=self.y[:n], mode="clip"),
            labels.take(idx, out=self.labels[:n], mode="clip"),
        )

    def forward(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The logits of ``x`` (a view into this workspace); with ``rng`` and a dropout
        workspace, inputs and hidden units are dropped with masks drawn from it (the inputs'
        first)."""
        model, n = self.model, len(x)
        a = x
        mask, kept, dropped_x = self.input_mask, self.input_kept, self.dropped_x
        if rng is not None and mask is not None and kept is not None and dropped_x is not None:
            mask = self._draw_mask(rng, mask[:n], kept[:n], model.input_dropout)
            a = np.multiply(x, mask, out=dropped_x[:n])
        for i, (w, b) in enumerate(zip(model.weights[:-1], model.biases[:-1], strict=True)):
            z = np.matmul(a, w, out=self.outs[i][:n])
            z += b
            # scratch[i] holds the backward pass's derivative: free until then.
            a = self._act(z, out=z, scratch=self.scratch[i][:n])
            if rng is not None and self.masks:
                mask = self._draw_mask(rng, self.masks[i][:n], self.kept[i][:n], model.dropout)
                a = np.multiply(a, mask, out=self.dropped[i][:n])
        z = np.matmul(a, model.weights[-1], out=self.outs[-1][:n])
        z += model.biases[-1]
        return z

    def _draw_mask(
        self, rng: np.random.Generator, out: np.ndarray, kept: np.ndarray, p: float
    ) -> np.ndarray:
        """An inverted-dropout mask in ``out``: 0 with probability ``p``, else 1 / (1 - p)."""
        keep = 1.0 - p
        mask = rng.random(out=out, dtype=self.model.dtype)
        np.less(mask, keep, out=kept)
        # bool x (1/keep) is 1/keep or 0.
        return np.multiply(kept, self.model.dtype.type(1.0 / keep), out=mask)

    def loss_and_gradients(
        self,
        x: np.ndarray,
        y_onehot: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        l1: float = 0.0,
        l2: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> tuple[float, int]:
        """Mean cross-entropy (no penalty) and, given ``labels``, the number of samples whose
        true class has the largest logit; the gradients of the objective (with penalty) go
        to ``grads``. Each row of ``y_onehot`` sums to 1."""
        model, n = self.model, len(x)
        z = self.forward(x, rng)
        correct = 0 if labels is None else int(np.count_nonzero(z.argmax(axis=1) == labels))
        loss = softmax_cross_entropy(z, y_onehot, self.row[:n])

        # Gradient of the mean cross-entropy w.r.t. the logits: (p - y) / n.
        delta = z
        delta -= y_onehot
        delta *= 1.0 / n
        dropped = rng is not None and bool(self.masks)
        x_seen = x if rng is None or self.dropped_x is None else self.dropped_x[:n]
        inputs = [x_seen, *(h[:n] for h in (self.dropped if dropped else self.outs[:-1]))]
        for i in range(len(model.weights) - 1, -1, -1):
            np.matmul(inputs[i].T, delta, out=self.grads_w[i])
            np.add.reduce(delta, axis=0, out=self.grads_b[i])
            if i == 0:
                break
            back = np.matmul(delta, model.weights[i].T, out=self.deltas[i - 1][:n])
            if dropped:
                back *= self.masks[i - 1][:n]
            back *= self._deriv(self.outs[i - 1][:n], out=self.scratch[i - 1][:n])
            delta = back
        add_penalty_gradients(model.weights, self.grads_w, l1, l2)
        return loss, correct

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over all of ``x``, a workspace's rows at a time."""
        total = 0.0
        correct = 0
        rows = np.arange(self.size)
        for start in range(0, len(x), self.size):
            lab = labels[start : start + self.size]
            z = self.forward(x[start : start + self.size])
            correct += int(np.count_nonzero(z.argmax(axis=1) == lab))
            row = self.row[: len(lab)]
            np.maximum.reduce(z, axis=1, keepdims=True, out=row)
            z -= row
            z_true = z[rows[: len(lab)], lab]
            lse = np.log(np.exp(z, out=z).sum(axis=1))
            total += float((lse - z_true).sum(dtype=np.float64))
        return total / len(x), correct / len(x)
