"""Learning-rate schedules: the rate each epoch trains at, and the training loop applying it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweeper.core import MLP, make_optimizer, train


def scheduled_lr(schedule: str, base_lr: float, epoch: int, epochs: int) -> float:
    """The rate an optimiser on ``schedule`` trains ``epoch`` (1-based) of ``epochs`` at."""
    optimizer = make_optimizer("sgd", base_lr, schedule=schedule)
    optimizer.epoch_starts(epoch, epochs)
    return optimizer.lr


def test_constant_keeps_the_base_rate() -> None:
    assert [scheduled_lr("constant", 0.1, e, 5) for e in range(1, 6)] == [0.1] * 5


def test_cosine_starts_at_the_base_rate_and_falls_half_a_cosine_towards_zero() -> None:
    rates = [scheduled_lr("cosine", 0.2, e, 4) for e in range(1, 5)]
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates == pytest.approx(expected)
    assert rates[0] == 0.2
    assert rates[2] == pytest.approx(0.1)  # halfway through, half the rate
    assert all(a > b > 0 for a, b in zip(rates, rates[1:], strict=False))


def test_an_unknown_schedule_fails_as_the_optimiser_is_made() -> None:
    with pytest.raises(ValueError, match="schedule='step' is unknown; allowed: constant, cosine"):
        make_optimizer("sgd", 0.1, schedule="step")


def test_training_sets_each_epochs_rate_and_reports_it() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    optimizer = make_optimizer("momentum", 0.08, schedule="cosine")
    result = train(MLP([4, 6, 2], seed=0), optimizer, x, y, x, y, epochs=4, batch_size=16)
    assert [m.lr for m in result.history] == pytest.approx(
        [scheduled_lr("cosine", 0.08, e, 4) for e in range(1, 5)]
    )
    assert optimizer.lr == result.history[-1].lr


def test_a_constant_schedule_trains_exactly_as_before() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 1] > 0).astype(int)

    def final_weights(**kwargs: str) -> np.ndarray:
        model = MLP([4, 6, 2], seed=0)
        train(model, make_optimizer("adam", 0.01, **kwargs), x, y, x, y, epochs=3, batch_size=8)
        return model.weights[0]

    assert np.array_equal(final_weights(), final_weights(schedule="constant"))
    assert not np.array_equal(final_weights(), final_weights(schedule="cosine"))


def test_an_unknown_schedule_fails_when_the_optimiser_is_built() -> None:
    with pytest.raises(ValueError, match="schedule='step' is unknown; allowed: constant, cosine"):
        make_optimizer("sgd", 0.1, schedule="step")
