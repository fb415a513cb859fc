"""Minibatch training loop with early stopping and divergence detection.

Per epoch the training metrics are, by default, the running mean over the epoch's minibatch
steps (each batch scored by the weights that step started from, as Keras and PyTorch
Lightning report them), which costs nothing; ``eval_train="full"`` instead scores the
whole training set with the weights at the epoch's end, an extra forward pass over it.
The validation metrics are always a full pass at the epoch's end. After each epoch the loop
calls its epoch callbacks with that epoch's metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .losses import one_hot
from .network import MLP, SCORING_ROWS, Workspace
from .optimizers import Optimizer
from .registry import lookup
from .regularizers import apply_max_norm


class TrainMeasure(NamedTuple):
    """How an epoch's training metrics are measured: ``legend`` says it beside the curve, and
    ``score`` gives the loss and accuracy from the scoring workspace, the training set and
    the epoch's running ones."""

    legend: str
    score: Callable[[Workspace, np.ndarray, np.ndarray, tuple[float, float]], tuple[float, float]]


def _running(
    scoring: Workspace, x: np.ndarray, labels: np.ndarray, running: tuple[float, float]
) -> tuple[float, float]:
    return running


def _full_pass(
    scoring: Workspace, x: np.ndarray, labels: np.ndarray, running: tuple[float, float]
) -> tuple[float, float]:
    return scoring.evaluate(x, labels)


# Each way of measuring an epoch's training metrics by its name in the config.
EVAL_TRAIN: dict[str, TrainMeasure] = {
    "running": TrainMeasure("running mean over the epoch's steps", _running),
    "full": TrainMeasure("full pass after the epoch", _full_pass),
}


def dropout_seed(seed: int) -> list[int]:
    """The seed of the dropout masks' stream in a run of ``seed`` (which seeds the shuffling):
    a separate stream, so switching dropout on does not change the shuffling order."""
    return [seed, 1]


# The stop reason of a run that trained all its epochs.
MAX_EPOCHS = "max_epochs"


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    seconds: float
    lr: float


@dataclass
class TrainResult:
    history: list[EpochMetrics]
    best_epoch: int
    best_model: MLP
    epochs_run: int
    stop_reason: str


class TrainingDiverged(RuntimeError):  # noqa: N818 (name fixed by the public API)
    def __init__(self, epoch: int, loss: float, history: list[EpochMetrics]) -> None:
        super().__init__(f"diverged at epoch {epoch} (loss={loss})")
        self.epoch = epoch
        self.loss = loss
        self.history = history


def train_epoch(
    model: MLP,
    optimizer: Optimizer,
    x: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    *,
    l1: float = 0.0,
    l2: float = 0.0,
    dropout_rng: np.random.Generator | None = None,
    workspace: Workspace | None = None,
    y_onehot: np.ndarray | None = None,
    max_norm: float | None = None,
) -> tuple[float, float]:
    """One pass of minibatch steps over the samples of ``x`` in ``order``.

    ``x`` must already be in the model's dtype and ``labels`` be integers below
    ``model.n_classes``. Returns the running mean cross-entropy (no penalty) and accuracy
    over the pass's samples, each scored at its step; or, at the first non-finite loss, that
    loss and nan, the pass stopping there. Pass a ``workspace`` of ``batch_size`` rows to
    reuse its arrays across epochs, and ``y_onehot`` (``one_hot(labels)`` in the model's
    dtype) to reuse that. With ``max_norm``, every step ends by holding each hidden unit's
    incoming weights to that L2 norm (``regularizers.apply_max_norm``).
    """
    if workspace is None:
        workspace = Workspace(model, batch_size, dropout=dropout_rng is not None)
    if y_onehot is None:
        y_onehot = one_hot(labels, model.n_classes, dtype=model.dtype)
    # The model's one parameter vector: each optimiser operation is one pass over it.
    params, grads = [model.flat], [workspace.grads]
    total = 0.0
    correct = 0
    for i in range(0, len(order), batch_size):
        # Gathering one batch at a time keeps it in cache for the matmul that follows and
        # never copies the whole (possibly memory-mapped) set.
        xb, yb, lb = workspace.gather(x, y_onehot, labels, order[i : i + batch_size])
        loss, right = workspace.loss_and_gradients(xb, yb, lb, l1=l1, l2=l2, rng=dropout_rng)
        if not math.isfinite(loss):
            return loss, math.nan
        optimizer.update(params, grads)
        if max_norm is not None:
            apply_max_norm(model.weights, max_norm)
        total += loss * len(lb)
        correct += right
    return total / len(order), correct / len(order)


def train(
    model: MLP,
    optimizer: Optimizer,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    patience: int | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    max_norm: float | None = None,
    seed: int = 0,
    eval_train: str = "running",
    callbacks: Sequence[Callable[[EpochMetrics], str | None]] = (),
) -> TrainResult:
    """Train ``model`` in place and return the history and a copy of the best model.

    Labels are integers. Reported losses are mean cross-entropies without the penalty, so
    runs with different regularisers compare; the training ones are as ``eval_train`` says
    (the module's docstring). The best model is the one with the lowest validation loss;
    with ``patience`` set, training stops once the validation loss has not improved for
    that many epochs. The optimiser sets its own rate before each epoch (its schedule).
    Each of ``callbacks`` gets every epoch's metrics, in order, once the epoch is scored; one
    that returns a reason (a search's pruner) stops training after that epoch with that
    ``stop_reason``, the best model so far kept.

    Counts and strengths (epochs >= 1, batch_size >= 1, patience >= 1, l1, l2 >= 0,
    max_norm > 0 or None) are trusted: the config checked them before any run. The data is
    checked here.
    """
    measure_train = lookup(EVAL_TRAIN, "eval_train", eval_train).score
    # Converted once so no minibatch pays for a dtype conversion.
    x_train = np.asarray(x_train, dtype=model.dtype)
    x_val = np.asarray(x_val, dtype=model.dtype)
    y_train = np.asarray(y_train)
    y_val = np.asarray(y_val)
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError(
            f"x/y lengths differ: train {len(x_train)}/{len(y_train)}, "
            f"val {len(x_val)}/{len(y_val)}"
        )
    for name, y in (("train", y_train), ("val", y_val)):
        if (
            y.ndim != 1
            or not np.issubdtype(y.dtype, np.integer)
            or (y.size and (y.min() < 0 or y.max() >= model.n_classes))
        ):
            raise ValueError(
                f"{name} labels must be a 1-D array of integers in [0, {model.n_classes}), "
                f"got {y.dtype} {y.shape}"
            )
    # The workspaces gather labels into index-sized integers.
    y_train, y_val = y_train.astype(np.intp, copy=False), y_val.astype(np.intp, copy=False)
    y_train_onehot = one_hot(y_train, model.n_classes, dtype=model.dtype)
    shuffle_rng = np.random.default_rng(seed)
    dropping = model.dropout > 0 or model.input_dropout > 0
    dropout_rng = np.random.default_rng(dropout_seed(seed)) if dropping else None
    # Allocated once per run: every step and every evaluation reuses these arrays.
    steps = Workspace(model, min(batch_size, len(x_train)), dropout=dropout_rng is not None)
    scoring = Workspace(model, min(SCORING_ROWS, max(len(x_train), len(x_val))))

    history: list[EpochMetrics] = []
    best_loss = math.inf
    best_epoch = 0
    best_model = model.copy()
    stop_reason = MAX_EPOCHS
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        optimizer.epoch_starts(epoch, epochs)
        # Overflow on the way to divergence is expected and reported as TrainingDiverged,
        # so numpy's warnings would only be noise.
        with np.errstate(over="ignore", invalid="ignore"):
            order = shuffle_rng.permutation(len(x_train))
            train_loss, train_acc = train_epoch(
                model, optimizer, x_train, y_train, order, batch_size,
                l1=l1, l2=l2, dropout_rng=dropout_rng, workspace=steps, y_onehot=y_train_onehot,
                max_norm=max_norm,
            )  # fmt: skip
            if not math.isfinite(train_loss):
                raise TrainingDiverged(epoch, train_loss, history)
            train_loss, train_acc = measure_train(
                scoring, x_train, y_train, (train_loss, train_acc)
            )
            val_loss, val_acc = scoring.evaluate(x_val, y_val)
        for value in (train_loss, val_loss):
            if not math.isfinite(value):
                raise TrainingDiverged(epoch, value, history)
        metrics = EpochMetrics(
            epoch,
            train_loss,
            train_acc,
            val_loss,
            val_acc,
            time.perf_counter() - start,
            optimizer.lr,
        )
        history.append(metrics)
        improved = val_loss < best_loss
        if improved:
            best_loss = val_loss
            best_epoch = epoch
            best_model.flat[...] = model.flat
        # After the best model is kept, so a run a callback stops keeps its best so far.
        stops = [reason for callback in callbacks if (reason := callback(metrics))]
        if stops:
            stop_reason = stops[0]
            break
        if not improved and patience is not None and epoch - best_epoch >= patience:
            stop_reason = "early_stopping"
            break
    return TrainResult(history, best_epoch, best_model, len(history), stop_reason)
