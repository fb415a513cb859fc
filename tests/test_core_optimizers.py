"""Optimiser update rules (by hand), convergence on a quadratic, and the weight penalty."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.core import (
    MOMENTUM_FORMS,
    SGD,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    add_penalty_gradients,
    make_optimizer,
    penalty,
)

G1 = np.array([1.0, -2.0])
G2 = np.array([0.5, 4.0])
W0 = np.array([1.0, 1.0])


def _two_steps(opt: Optimizer) -> tuple[np.ndarray, np.ndarray]:
    w = W0.copy()
    opt.update([w], [G1.copy()])
    first = w.copy()
    opt.update([w], [G2.copy()])
    return first, w


def test_sgd() -> None:
    first, second = _two_steps(SGD(0.1))
    np.testing.assert_allclose(first, W0 - 0.1 * G1)
    np.testing.assert_allclose(second, W0 - 0.1 * G1 - 0.1 * G2)


def test_momentum_classic() -> None:
    lr, g = 0.1, 0.9
    first, second = _two_steps(Momentum(lr, g))
    v1 = -lr * G1
    v2 = g * v1 - lr * G2
    np.testing.assert_allclose(first, W0 + v1)
    np.testing.assert_allclose(second, W0 + v1 + v2)


def test_momentum_ema() -> None:
    lr, g = 0.1, 0.9
    first, second = _two_steps(Momentum(lr, g, form="ema"))
    v1 = (1 - g) * G1
    v2 = g * v1 + (1 - g) * G2
    np.testing.assert_allclose(first, W0 - lr * v1)
    np.testing.assert_allclose(second, W0 - lr * v1 - lr * v2)


def test_momentum_forms_differ_as_the_formulas_say() -> None:
    lr, g = 0.1, 0.9
    classic = _two_steps(Momentum(lr, g, "classic"))
    ema = _two_steps(Momentum(lr, g, "ema"))
    # Same velocity recursion up to scale: the classic step is -(lr / (1-g)) times the ema
    # velocity, i.e. the ema form with lr' = lr / (1-g) takes the classic steps.
    for c, e in zip(classic, ema, strict=True):
        assert not np.allclose(c, e)
        np.testing.assert_allclose(c - W0, (e - W0) / (1 - g))
    rescaled = _two_steps(Momentum(lr / (1 - g), g, "ema"))
    for c, e in zip(classic, rescaled, strict=True):
        np.testing.assert_allclose(c, e)


def test_nesterov() -> None:
    lr, g = 0.1, 0.9
    first, second = _two_steps(Nesterov(lr, g))
    v1 = -lr * G1
    w1 = W0 + g * v1 - lr * G1
    v2 = g * v1 - lr * G2
    w2 = w1 + g * v2 - lr * G2
    np.testing.assert_allclose(first, w1)
    np.testing.assert_allclose(second, w2)


def test_adam() -> None:
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    first, second = _two_steps(Adam(lr, b1, b2, eps))
    m1, v1 = (1 - b1) * G1, (1 - b2) * G1**2
    w1 = W0 - lr * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * G2, b2 * v1 + (1 - b2) * G2**2
    w2 = w1 - lr * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps)
    np.testing.assert_allclose(first, w1)
    np.testing.assert_allclose(second, w2)
    # The first Adam step has size lr per coordinate whatever the gradient's scale.
    np.testing.assert_allclose(np.abs(first - W0), lr, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizers_minimise_a_quadratic_in_place(name: str, dtype: type) -> None:
    # f(w) = 0.5 * sum(a * (w - c)**2), an ill-conditioned bowl.
    a = np.array([1.0, 10.0], dtype=dtype)
    c = np.array([3.0, -2.0], dtype=dtype)
    w = np.zeros(2, dtype=dtype)
    b = np.ones(1, dtype=dtype)
    opt = make_optimizer(name, lr=0.05 if name != "adam" else 0.1)
    start = 0.5 * np.sum(a * c**2)
    for _ in range(300):
        opt.update([w, b], [a * (w - c), np.zeros_like(b)])
    assert w.dtype == dtype and b.dtype == dtype
    assert 0.5 * np.sum(a * (w - c) ** 2) < 1e-3 * start
    np.testing.assert_allclose(w, c, atol=0.05)


def test_state_kept_per_parameter() -> None:
    opt = Momentum(0.1, 0.5)
    w1, w2 = np.zeros(2), np.zeros(3)
    opt.update([w1, w2], [np.ones(2), np.full(3, 2.0)])
    opt.update([w1, w2], [np.ones(2), np.full(3, 2.0)])
    np.testing.assert_allclose(w1, -0.1 - 0.15)
    np.testing.assert_allclose(w2, -0.2 - 0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "momentum", "lr": 0.1, "form": "nag"}, "form='nag'"),
        ({"name": "rmsprop", "lr": 0.1}, "optimizer='rmsprop'.*sgd, momentum, nesterov, adam"),
    ],
)
def test_unknown_option_names_list_what_is_allowed(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_optimizer(**kwargs)


def test_a_momentum_form_is_its_entry_s_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form's name selects the step in MOMENTUM_FORMS: a new entry is not some other
    form's else branch."""
    calls = []
    monkeypatch.setitem(MOMENTUM_FORMS, "recorded", lambda p, g, v, m, lr: calls.append((m, lr)))
    w = W0.copy()
    Momentum(0.1, momentum=0.5, form="recorded").update([w], [G1.copy()])
    assert calls == [(0.5, 0.1)]
    np.testing.assert_array_equal(w, W0)


def test_make_optimizer_types() -> None:
    assert isinstance(make_optimizer("sgd", 0.1), SGD)
    m = make_optimizer("momentum", 0.1, momentum=0.5, form="ema")
    assert isinstance(m, Momentum) and m.momentum == 0.5 and m.form == "ema"
    assert isinstance(make_optimizer("nesterov", 0.1), Nesterov)
    adam = make_optimizer("adam", 0.1, beta1=0.8, beta2=0.99)
    assert isinstance(adam, Adam) and (adam.beta1, adam.beta2) == (0.8, 0.99)


def test_penalty_value_and_gradient() -> None:
    w = [np.array([[1.0, -2.0], [0.5, 0.0]]), np.array([[3.0], [-1.0]])]
    l1, l2 = 0.1, 0.2
    assert penalty(w, 0.0, 0.0) == 0.0
    assert penalty(w, l1, 0.0) == pytest.approx(0.1 * 7.5)
    assert penalty(w, 0.0, l2) == pytest.approx(0.1 * (1 + 4 + 0.25 + 9 + 1))
    assert penalty(w, l1, l2) == pytest.approx(0.75 + 1.525)
    grads = [np.ones_like(a) for a in w]
    add_penalty_gradients(w, grads, l1, l2)
    for g, a in zip(grads, w, strict=True):
        np.testing.assert_allclose(g, 1 + l1 * np.sign(a) + l2 * a)
    # The value's finite-difference slope is the gradient (away from l1's kink at 0).
    eps = 1e-6
    bumped = [w[0].copy(), w[1]]
    bumped[0][0, 1] += eps
    slope = (penalty(bumped, l1, l2) - penalty(w, l1, l2)) / eps
    assert slope == pytest.approx(grads[0][0, 1] - 1, rel=1e-4)


def test_penalty_keeps_float32() -> None:
    w = [np.ones((2, 2), dtype=np.float32)]
    g = [np.zeros((2, 2), dtype=np.float32)]
    add_penalty_gradients(w, g, 0.1, 0.1)
    assert g[0].dtype == np.float32
