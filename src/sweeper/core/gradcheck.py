"""Finite-difference checks of the backprop gradients.

Everything runs on a float64 copy of the model, so rounding does not swamp the central
differences. The objective is the full one (mean cross-entropy + penalty); with dropout,
every evaluation redraws the same mask from a fresh generator seeded with ``dropout_seed``.
Parameter names number layers from 1 at the input (``W1`` maps the input to the first
layer); element indices are 0-based numpy indices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .network import MLP


@dataclass
class GradCheckRow:
    parameter: str
    kind: str
    e_plus: float
    e_minus: float
    numerical: float
    backprop: float
    abs_diff: float
    passed: bool


class _Objective:
    def __init__(
        self,
        model: MLP,
        x: np.ndarray,
        y_onehot: np.ndarray,
        l1: float,
        l2: float,
        dropout_seed: int | None,
    ) -> None:
        self.model = model.astype(np.float64)
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.asarray(y_onehot, dtype=np.float64)
        if self.x.ndim == 1:
            self.x = self.x[None, :]
            self.y = self.y.reshape(1, -1)
        self.l1 = l1
        self.l2 = l2
        self.dropout_seed = dropout_seed

    def _run(self) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        rng = None if self.dropout_seed is None else np.random.default_rng(self.dropout_seed)
        return self.model.loss_and_gradients(self.x, self.y, l1=self.l1, l2=self.l2, rng=rng)

    def array(self, name: str) -> np.ndarray:
        match = re.fullmatch(r"([Wb])(\d+)", name)
        layer = int(match.group(2)) if match else 0
        if match is None or not 1 <= layer <= len(self.model.weights):
            raise ValueError(
                f"parameter {name!r} is unknown; expected W1..W{len(self.model.weights)} "
                f"or b1..b{len(self.model.biases)}"
            )
        arrays = self.model.weights if match.group(1) == "W" else self.model.biases
        return arrays[layer - 1]

    def backprop(self) -> dict[str, np.ndarray]:
        _, grads_w, grads_b = self._run()
        named = {f"W{i}": g for i, g in enumerate(grads_w, start=1)}
        named.update({f"b{i}": g for i, g in enumerate(grads_b, start=1)})
        return named

    def central_difference(
        self, name: str, index: tuple[int, ...], eps: float
    ) -> tuple[float, float, float]:
        arr = self.array(name)
        original = arr[index]
        try:
            arr[index] = original + eps
            e_plus = self._run()[0]
            arr[index] = original - eps
            e_minus = self._run()[0]
        finally:
            arr[index] = original
        return e_plus, e_minus, (e_plus - e_minus) / (2 * eps)


def _pick(rng: np.random.Generator, shape: tuple[int, ...], count: int) -> list[tuple[int, ...]]:
    size = int(np.prod(shape))
    flat = rng.choice(size, size=min(count, size), replace=False)
    return [tuple(int(i) for i in np.unravel_index(f, shape)) for f in flat]


def check_gradients(
    model: MLP,
    x: np.ndarray,
    y_onehot: np.ndarray,
    *,
    eps: float = 1e-2,
    tol: float = 1e-4,
    seed: int = 0,
    l1: float = 0.0,
    l2: float = 0.0,
    extra: Iterable[tuple[str, Sequence[int]]] = (),
    dropout_seed: int | None = None,
) -> list[GradCheckRow]:
    """Compare backprop with central differences on a seeded choice of parameters.

    Picks one output bias, one first-hidden-layer bias, two hidden-to-output and two
    input-to-hidden weights (without hidden layers: one output bias and two
    input-to-output weights), then the ``extra`` (name, index) entries.
    """
    objective = _Objective(model, x, y_onehot, l1, l2, dropout_seed)
    grads = objective.backprop()
    rng = np.random.default_rng(seed)
    n_layers = len(objective.model.weights)
    out = str(n_layers)
    picks: list[tuple[str, tuple[int, ...], str]] = []
    picks += [(f"b{out}", i, "output bias") for i in _pick(rng, grads[f"b{out}"].shape, 1)]
    if n_layers == 1:
        picks += [("W1", i, "input-to-output weight") for i in _pick(rng, grads["W1"].shape, 2)]
    else:
        picks += [("b1", i, "hidden bias") for i in _pick(rng, grads["b1"].shape, 1)]
        picks += [
            (f"W{out}", i, "hidden-to-output weight") for i in _pick(rng, grads[f"W{out}"].shape, 2)
        ]
        picks += [("W1", i, "input-to-hidden weight") for i in _pick(rng, grads["W1"].shape, 2)]
    for name, index in extra:
        idx = tuple(int(i) for i in index)
        shape = objective.array(name).shape
        if len(idx) != len(shape) or not all(0 <= i < s for i, s in zip(idx, shape, strict=True)):
            raise ValueError(f"index {idx} is out of range for {name} with shape {shape}")
        picks.append((name, idx, "requested"))

    rows = []
    for name, index, kind in picks:
        e_plus, e_minus, numerical = objective.central_difference(name, index, eps)
        backprop = float(grads[name][index])
        diff = abs(numerical - backprop)
        label = f"{name}[{', '.join(str(i) for i in index)}]"
        rows.append(
            GradCheckRow(label, kind, e_plus, e_minus, numerical, backprop, diff, diff <= tol)
        )
    return rows


def rows_to_records(rows: Iterable[GradCheckRow]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]
