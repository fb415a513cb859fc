"""The training loop: learning, history, callbacks, early stopping, determinism, divergence."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from sweeper.core import (
    EVAL_TRAIN,
    MLP,
    SGD,
    EpochMetrics,
    TrainingDiverged,
    TrainMeasure,
    dropout_seed,
    make_optimizer,
    one_hot,
    train,
    train_epoch,
)
from sweeper.plots import TRAIN_CURVE_LABELS


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 5 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3, 0, 0, 0, 0], [0, 3, 0, 0, 0], [0, 0, 3, 0, 0]], dtype=float)
    labels = rng.integers(0, 3, n)
    return (centres[labels] + rng.normal(size=(n, 5))).astype(np.float32), labels


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = _blobs(300, 0)
    xv, yv = _blobs(100, 1)
    return x, y, xv, yv


def test_learns_separable_problem(data: tuple) -> None:
    x, y, xv, yv = data
    model = MLP([5, 8, 3], activation="tanh")
    calls: list[EpochMetrics] = []
    result = train(
        model, make_optimizer("momentum", 0.05), x, y, xv, yv,
        epochs=15, batch_size=32, callbacks=[calls.append],
    )  # fmt: skip
    assert result.epochs_run == 15 == len(result.history)
    assert result.stop_reason == "max_epochs"
    assert [m.epoch for m in calls] == list(range(1, 16))
    assert calls == result.history
    last = result.history[-1]
    assert last.train_acc > 0.95 and last.val_acc > 0.95
    assert last.train_loss < result.history[0].train_loss
    assert all(math.isfinite(m.seconds) and m.seconds > 0 for m in result.history)
    best = min(result.history, key=lambda m: m.val_loss)
    assert result.best_epoch == best.epoch
    assert result.best_model.evaluate(xv, yv)[0] == pytest.approx(best.val_loss)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_through_training(data: tuple, dtype: type) -> None:
    x, y, xv, yv = data
    model = MLP([5, 4, 3], activation="relu", dtype=dtype, dropout=0.2)
    result = train(
        model, make_optimizer("adam", 0.01), x.astype(np.float64), y, xv, yv,
        epochs=2, batch_size=50, l1=1e-4, l2=1e-3,
    )  # fmt: skip
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(p.dtype == dtype for p in result.best_model.parameters())


def test_last_partial_batch_is_used(data: tuple) -> None:
    x, y, xv, yv = data
    seen: list[int] = []

    class Recorder(SGD):
        def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
            seen.append(1)
            super().update(params, grads)

    train(MLP([5, 3]), Recorder(0.1), x, y, xv, yv, epochs=2, batch_size=128)
    assert len(seen) == 2 * 3  # 300 = 128 + 128 + 44


def test_early_stopping_returns_best_weights(data: tuple) -> None:
    x, y, xv, yv = data
    # Noisy labels and a large model: the validation loss soon starts to rise.
    rng = np.random.default_rng(3)
    y_noisy = np.where(rng.random(len(y)) < 0.4, rng.integers(0, 3, len(y)), y)
    model = MLP([5, 64, 64, 3], activation="relu")
    result = train(
        model, make_optimizer("adam", 0.02), x, y_noisy, xv, yv,
        epochs=200, batch_size=16, patience=3,
    )  # fmt: skip
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == result.best_epoch + 3 == len(result.history)
    losses = [m.val_loss for m in result.history]
    assert result.history[result.best_epoch - 1].val_loss == min(losses)
    assert result.best_model.evaluate(xv, yv)[0] == min(losses)
    # The model passed in carries the last weights, not the best ones.
    assert model.evaluate(xv, yv)[0] == losses[-1] > min(losses)


@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32])
def test_labels_of_any_integer_type_train_as_int64_ones_do(data: tuple, label_dtype: type) -> None:
    x, y, xv, yv = data

    def run(labels: np.ndarray, val_labels: np.ndarray) -> list[tuple[float, ...]]:
        model = MLP([5, 6, 3], seed=0)
        history = train(
            model, make_optimizer("momentum", 0.1), x, labels, xv, val_labels,
            epochs=2, batch_size=20,
        ).history  # fmt: skip
        return [(m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in history]

    assert run(y.astype(label_dtype), yv.astype(label_dtype)) == run(y, yv)


@pytest.mark.parametrize(
    ("split", "labels", "message"),
    [
        # A column of labels pairs row by row with x but broadcasts against every prediction.
        ("val", lambda y: y[:, None], r"val labels must be a 1-D array of integers in \[0, 3\)"),
        ("train", lambda y: y[:, None], r"train labels must be a 1-D array"),
        ("train", lambda y: y + 3, r"train labels must be a 1-D array of integers in \[0, 3\)"),
        ("val", lambda y: y.astype(float), r"val labels must be a 1-D array"),
    ],
)
def test_labels_that_are_not_one_class_per_row_fail_before_training(
    data: tuple, split: str, labels: Callable[[np.ndarray], np.ndarray], message: str
) -> None:
    x, y, xv, yv = data
    y, yv = (labels(y), yv) if split == "train" else (y, labels(yv))
    with pytest.raises(ValueError, match=message) as raised:
        train(MLP([5, 3]), SGD(0.1), x, y, xv, yv, epochs=1, batch_size=32)
    assert "\n" not in str(raised.value)


def test_bit_identical_with_same_seed(data: tuple) -> None:
    x, y, xv, yv = data

    def run(seed: int) -> tuple[list[EpochMetrics], MLP]:
        model = MLP([5, 6, 3], activation="sigmoid", seed=seed, dropout=0.3)
        result = train(
            model, make_optimizer("nesterov", 0.1), x, y, xv, yv,
            epochs=3, batch_size=20, l2=1e-3, seed=seed,
        )  # fmt: skip
        return result.history, model

    (h1, m1), (h2, m2), (h3, m3) = run(0), run(0), run(1)
    strip = [(m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in h1]
    assert strip == [(m.train_loss, m.train_acc, m.val_loss, m.val_acc) for m in h2]
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert np.array_equal(p, q)
    assert not np.array_equal(m1.weights[0], m3.weights[0])
    assert h1[-1].val_loss != h3[-1].val_loss


def test_max_norm_holds_after_every_step_and_spares_the_output_layer(data: tuple) -> None:
    x, y, xv, yv = data
    c = 0.5
    steps: list[list[float]] = []

    class Recorder(SGD):
        def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
            super().update(params, grads)
            # After this update, before the constraint: the norms it has to bring back.
            steps.append([float(np.linalg.norm(w, axis=0).max()) for w in model.weights])

    model = MLP([5, 8, 6, 3], activation="relu", seed=0)
    train_epoch(model, Recorder(0.5), x, y, np.arange(len(x)), 30, max_norm=c)
    hidden = [np.linalg.norm(w, axis=0) for w in model.weights[:-1]]
    assert all(n.max() <= c * (1 + 1e-6) for n in hidden)
    # The rate is large enough that steps push units past the bound, which it then holds.
    assert max(s[0] for s in steps[1:]) > c
    # Units within the bound keep their weights; the output layer is never constrained.
    assert any(n.min() < c * 0.99 for n in hidden)
    assert np.linalg.norm(model.weights[-1], axis=0).max() > c


def test_input_dropout_alone_draws_masks_and_changes_training(data: tuple) -> None:
    x, y, xv, yv = data

    def run(input_dropout: float) -> float:
        model = MLP([5, 6, 3], activation="relu", seed=0, input_dropout=input_dropout)
        result = train(
            model, make_optimizer("sgd", 0.1), x, y, xv, yv, epochs=2, batch_size=20
        )  # fmt: skip
        return result.history[-1].train_loss

    assert run(0.3) == run(0.3) != run(0.0)


def test_dropout_masks_come_from_the_stream_dropout_seed_names(data: tuple) -> None:
    """What a run records as its dropout stream's seed (``dropout_seed``) is the one train
    draws from, the shuffling having the run's seed."""
    x, y, xv, yv = data

    def model() -> MLP:
        return MLP([5, 6, 3], activation="relu", seed=0, dropout=0.3, input_dropout=0.2)

    trained = model()
    train(trained, SGD(0.1), x, y, xv, yv, epochs=2, batch_size=20, seed=7)
    replay, optimizer = model(), SGD(0.1)
    shuffle, masks = np.random.default_rng(7), np.random.default_rng(dropout_seed(7))
    for _ in range(2):
        train_epoch(replay, optimizer, x, y, shuffle.permutation(len(x)), 20, dropout_rng=masks)
    np.testing.assert_array_equal(trained.flat, replay.flat)
    assert dropout_seed(7) == [7, 1]


def test_shuffle_seed_alone_changes_the_run(data: tuple) -> None:
    x, y, xv, yv = data
    runs = [
        train(MLP([5, 3]), SGD(0.1), x, y, xv, yv, epochs=1, batch_size=10, seed=s).history
        for s in (0, 1)
    ]
    assert runs[0][0].train_loss != runs[1][0].train_loss


def test_divergence_raises(data: tuple) -> None:
    x, y, xv, yv = data
    model = MLP([5, 32, 32, 3], activation="relu")
    with pytest.raises(TrainingDiverged, match=r"^diverged at epoch \d+ \(loss=") as info:
        train(model, make_optimizer("sgd", 1e3), x * 100, y, xv, yv, epochs=50, batch_size=10)
    err = info.value
    assert str(err) == f"diverged at epoch {err.epoch} (loss={err.loss})"
    assert not np.isfinite(err.loss)
    assert len(err.history) == err.epoch - 1
    assert isinstance(err, RuntimeError)


def test_train_epoch_returns_the_running_mean_loss_and_accuracy(data: tuple) -> None:
    x, y, _, _ = data
    y_onehot = one_hot(y, 3)
    order = np.random.default_rng(0).permutation(len(x))
    model, twin = MLP([5, 4, 3], seed=1), MLP([5, 4, 3], seed=1)
    twin_optimizer = SGD(0.1)
    losses, sizes, correct = [], [], 0
    for i in range(0, len(x), 128):
        idx = order[i : i + 128]
        correct += int(np.sum(twin.predict(x[idx]) == y[idx]))
        loss, grads_w, grads_b = twin.loss_and_gradients(x[idx], y_onehot[idx])
        losses.append(loss)
        sizes.append(len(idx))
        twin_optimizer.update(twin.parameters(), [*grads_w, *grads_b])

    assert len(x) % 128, "the last batch should be a partial one"
    loss, acc = train_epoch(model, SGD(0.1), x, y, order, 128)
    assert loss == pytest.approx(float(np.average(losses, weights=sizes)), rel=1e-6)
    assert acc == correct / len(x)
    for trained, expected in zip(model.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(trained, expected)


def test_train_epoch_stops_at_the_first_non_finite_loss(data: tuple) -> None:
    x, y, _, _ = data
    order = np.arange(len(x))
    x = x.copy()
    x[130] = np.nan  # in the second batch of 128
    updates: list[int] = []

    class Recorder(SGD):
        def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
            updates.append(1)
            super().update(params, grads)

    with np.errstate(invalid="ignore"):
        loss, acc = train_epoch(MLP([5, 3]), Recorder(0.1), x, y, order, 128)
    assert np.isnan(loss)
    assert np.isnan(acc)
    assert len(updates) == 1


def test_eval_train_changes_only_the_training_metrics(data: tuple) -> None:
    x, y, xv, yv = data
    results = {}
    for mode in ("running", "full"):
        model = MLP([5, 4, 3], seed=2)
        result = train(model, SGD(0.1), x, y, xv, yv, epochs=3, batch_size=32, eval_train=mode)
        results[mode] = (model, result)
    (running_model, running), (full_model, full) = results["running"], results["full"]
    np.testing.assert_array_equal(running_model.flat, full_model.flat)
    assert [(m.val_loss, m.val_acc) for m in running.history] == [
        (m.val_loss, m.val_acc) for m in full.history
    ]
    # Full: the whole training set scored by the weights at the epoch's end.
    assert (full.history[-1].train_loss, full.history[-1].train_acc) == full_model.evaluate(x, y)
    # Running: the mean over the epoch's steps, as train_epoch returns it for that epoch.
    replay = MLP([5, 4, 3], seed=2)
    optimizer = SGD(0.1)
    shuffle = np.random.default_rng(0)
    for metrics in running.history:
        order = shuffle.permutation(len(x))
        loss, acc = train_epoch(replay, optimizer, x, y, order, 32)
        assert (metrics.train_loss, metrics.train_acc) == (loss, acc)
    assert running.history[-1].train_loss != full.history[-1].train_loss


def test_eval_train_is_its_entry_s_measure(data: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name selects the measure in EVAL_TRAIN, whose legend labels the curve: a new
    entry is not the running mean by default."""
    x, y, xv, yv = data
    halved = TrainMeasure("half", lambda scoring, x, labels, running: (running[0] / 2, 0.25))
    monkeypatch.setitem(EVAL_TRAIN, "half", halved)
    running = train(MLP([5, 3]), SGD(0.1), x, y, xv, yv, epochs=1, batch_size=32).history[0]
    half = train(
        MLP([5, 3]), SGD(0.1), x, y, xv, yv, epochs=1, batch_size=32, eval_train="half"
    ).history[0]
    assert (half.train_loss, half.train_acc) == (running.train_loss / 2, 0.25)
    assert TRAIN_CURVE_LABELS == {
        "running": "train (running mean over the epoch's steps)",
        "full": "train (full pass after the epoch)",
    }


def test_unknown_eval_train_is_rejected(data: tuple) -> None:
    x, y, xv, yv = data
    with pytest.raises(ValueError, match="eval_train='exact' is unknown; allowed: running, full"):
        train(MLP([5, 3]), SGD(0.1), x, y, xv, yv, epochs=1, batch_size=8, eval_train="exact")


def test_best_model_is_a_copy_not_the_live_model(data: tuple) -> None:
    x, y, xv, yv = data
    model = MLP([5, 4, 3], seed=4)
    result = train(model, SGD(0.5), x, y, xv, yv, epochs=6, batch_size=16)
    best = result.history[result.best_epoch - 1]
    assert result.best_model.evaluate(xv, yv) == (best.val_loss, best.val_acc)
    assert result.best_model.flat is not model.flat
