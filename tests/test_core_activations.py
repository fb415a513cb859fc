"""Activations, initialisers and losses."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.core import (
    ACTIVATION_NAMES,
    ACTIVATIONS,
    DERIVATIVES,
    cross_entropy,
    default_init,
    init_weights,
    log_softmax,
    one_hot,
    softmax,
    softmax_cross_entropy,
)

RAISE_ALL = {"over": "raise", "invalid": "raise", "divide": "raise"}


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_derivative_matches_finite_difference(name: str) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=200)
    z = z[np.abs(z) > 1e-3]  # away from the rectifiers' kink at 0
    eps = 1e-6
    numerical = (ACTIVATIONS[name](z + eps) - ACTIVATIONS[name](z - eps)) / (2 * eps)
    analytic = DERIVATIVES[name](ACTIVATIONS[name](z))
    np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_keep_dtype(name: str, dtype: type) -> None:
    z = np.linspace(-3, 3, 7, dtype=dtype)
    a = ACTIVATIONS[name](z)
    assert a.dtype == dtype
    assert DERIVATIVES[name](a).dtype == dtype


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_out_arguments_write_in_place_and_match(name: str) -> None:
    z = np.random.default_rng(1).normal(0, 2, size=(4, 5)).astype(np.float32)
    a = ACTIVATIONS[name](z)
    d = DERIVATIVES[name](a)
    z_in_place = z.copy()
    assert ACTIVATIONS[name](z_in_place, out=z_in_place) is z_in_place
    np.testing.assert_array_equal(z_in_place, a)
    out = np.full_like(a, np.nan)
    assert DERIVATIVES[name](a, out=out) is out
    np.testing.assert_array_equal(out, d)


def test_activation_values() -> None:
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(ACTIVATIONS["relu"](z), [0, 0, 3])
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"](z), [-0.02, 0, 3])
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"](z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(ACTIVATIONS["identity"](z), z)
    assert ACTIVATION_NAMES == ("sigmoid", "tanh", "relu", "leaky_relu", "identity")


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_large_inputs(dtype: type) -> None:
    z = np.array([-1e4, -800.0, 0.0, 800.0, 1e4], dtype=dtype)
    with np.errstate(**RAISE_ALL):
        a = ACTIVATIONS["sigmoid"](z)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, [0, 0, 0.5, 1, 1], atol=1e-30)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_cross_entropy_stable(dtype: type) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = one_hot(np.array([1, 2]), 3, dtype=dtype)
    with np.errstate(**RAISE_ALL):
        p = softmax(logits)
        from_probs = cross_entropy(p, y)
        from_logits = cross_entropy(logits, y, from_logits=True)
        fused, fused_p = softmax_cross_entropy(logits.copy(), y)
    assert p.dtype == dtype
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    # Sample 0's true-class probability underflows to 0: clipping keeps the loss finite.
    assert p[0, 1] == 0
    assert np.isfinite(from_probs) and from_probs > 10
    # Log-sum-exp gives the exact value: (1e4 + log 3) / 2 averaged over the two samples.
    assert from_logits == pytest.approx((1e4 + np.log(3)) / 2, rel=1e-6)
    assert fused == pytest.approx(from_logits, rel=1e-6)
    np.testing.assert_allclose(fused_p, p)


def test_cross_entropy_matches_definition() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4))
    y = one_hot(rng.integers(0, 4, 5), 4, dtype=np.float64)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[y.astype(bool)]))
    assert cross_entropy(p, y) == pytest.approx(expected)
    assert cross_entropy(logits, y, from_logits=True) == pytest.approx(expected)
    np.testing.assert_allclose(log_softmax(logits), np.log(p))
    loss, probs = softmax_cross_entropy(logits.copy(), y)
    assert loss == pytest.approx(expected)
    np.testing.assert_allclose(probs, p)


def test_one_hot() -> None:
    y = one_hot(np.array([2, 0, 1]), 3)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert one_hot(np.array([1]), 2, dtype=np.float64).dtype == np.float64
    with pytest.raises(ValueError, match="labels"):
        one_hot(np.array([3]), 3)


def test_init_scales() -> None:
    rng = np.random.default_rng(0)
    w = init_weights(400, 200, "xavier", rng, np.float64)
    limit = np.sqrt(6 / 600)
    assert w.shape == (400, 200)
    assert np.abs(w).max() <= limit
    assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    h = init_weights(400, 200, "he", rng, np.float32)
    assert h.dtype == np.float32
    assert h.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert abs(h.mean()) < 0.01


def test_init_seeded() -> None:
    a = init_weights(5, 3, "he", np.random.default_rng(3), np.float32)
    b = init_weights(5, 3, "he", np.random.default_rng(3), np.float32)
    c = init_weights(5, 3, "he", np.random.default_rng(4), np.float32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_default_init_and_errors() -> None:
    assert [default_init(a) for a in ACTIVATION_NAMES] == ["xavier", "xavier", "he", "he", "xavier"]
    with pytest.raises(ValueError, match="xavier, he"):
        init_weights(2, 2, "lecun", np.random.default_rng(0), np.float32)
    with pytest.raises(ValueError, match="softplus"):
        default_init("softplus")
