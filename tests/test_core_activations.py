"""Activations, initialisers and losses."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.core import (
    ACTIVATIONS,
    INITIALIZERS,
    MLP,
    Activation,
    default_init,
    init_weights,
    one_hot,
    softmax,
    softmax_cross_entropy,
)
from sweeper.core.activations import LEAKY_SLOPE

RAISE_ALL = {"over": "raise", "invalid": "raise", "divide": "raise"}
NAMES = list(ACTIVATIONS)
# Values where the rectifiers and the sigmoid's two branches meet, overflow or underflow.
EDGES = [0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 88.7, -88.7, 1e4, -1e4, np.inf, -np.inf]


def _function(name: str):  # type: ignore[no-untyped-def]
    return ACTIVATIONS[name].function


def _derivative(name: str):  # type: ignore[no-untyped-def]
    return ACTIVATIONS[name].derivative


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_difference(name: str) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, size=200)
    z = z[np.abs(z) > 1e-3]  # away from the rectifiers' kink at 0
    eps = 1e-6
    numerical = (_function(name)(z + eps) - _function(name)(z - eps)) / (2 * eps)
    analytic = _derivative(name)(_function(name)(z))
    np.testing.assert_allclose(analytic, numerical, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_keep_dtype(name: str, dtype: type) -> None:
    z = np.linspace(-3, 3, 7, dtype=dtype)
    a = _function(name)(z)
    assert a.dtype == dtype
    assert _derivative(name)(a).dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_out_arguments_write_in_place_and_match(name: str) -> None:
    z = np.random.default_rng(1).normal(0, 2, size=(4, 5)).astype(np.float32)
    a = _function(name)(z)
    d = _derivative(name)(a)
    z_in_place = z.copy()
    assert _function(name)(z_in_place, out=z_in_place) is z_in_place
    np.testing.assert_array_equal(z_in_place, a)
    z_in_place, scratch = z.copy(), np.full_like(z, np.nan)
    assert _function(name)(z_in_place, out=z_in_place, scratch=scratch) is z_in_place
    np.testing.assert_array_equal(z_in_place, a)
    out = np.full_like(a, np.nan)
    assert _derivative(name)(a, out=out) is out
    np.testing.assert_array_equal(out, d)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_activations_are_bitwise_the_textbook_formulas(dtype: type) -> None:
    """Written with out= and scratch arrays, they give the very numbers of the np.where
    forms they replaced, so the same seeds train the same weights."""
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.normal(0, 30, 997), EDGES]).astype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-np.abs(z))
        sigmoid = np.where(z >= 0, 1 / (e + 1), e / (e + 1))
        leaky = np.where(z > 0, z, z * LEAKY_SLOPE)
        leaky_slope = np.where(leaky > 0, dtype(1), dtype(LEAKY_SLOPE))
        for name, expected in (("sigmoid", sigmoid), ("leaky_relu", leaky)):
            got = z.copy()
            _function(name)(got, out=got, scratch=np.empty_like(z))
            assert got.dtype == dtype
            np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8))
        got = _derivative("leaky_relu")(leaky, out=np.empty_like(z))
        np.testing.assert_array_equal(got.view(np.uint8), leaky_slope.view(np.uint8))


def test_activation_values() -> None:
    z = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(_function("relu")(z), [0, 0, 3])
    np.testing.assert_allclose(_function("leaky_relu")(z), [-0.02, 0, 3])
    np.testing.assert_allclose(_function("sigmoid")(z), 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(_function("identity")(z), z)
    assert NAMES == ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_large_inputs(dtype: type) -> None:
    z = np.array([-1e4, -800.0, 0.0, 800.0, 1e4], dtype=dtype)
    with np.errstate(**RAISE_ALL):
        a = _function("sigmoid")(z)
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, [0, 0, 0.5, 1, 1], atol=1e-30)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_cross_entropy_stable(dtype: type) -> None:
    logits = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    y = one_hot(np.array([1, 2]), 3, dtype=dtype)
    with np.errstate(**RAISE_ALL):
        p = softmax(logits)
        probs = logits.copy()
        loss = softmax_cross_entropy(probs, y, np.empty((2, 1), dtype))
    assert p.dtype == probs.dtype == dtype
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    # Sample 0's true-class probability underflows to 0, yet the loss is exact (log-sum-exp):
    # (1e4 + log 3) / 2 averaged over the two samples.
    assert p[0, 1] == 0
    assert loss == pytest.approx((1e4 + np.log(3)) / 2, rel=1e-6)
    np.testing.assert_allclose(probs, p)


def test_cross_entropy_matches_definition() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4))
    y = one_hot(rng.integers(0, 4, 5), 4, dtype=np.float64)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(p[y.astype(bool)]))
    probs = logits.copy()
    assert softmax_cross_entropy(probs, y, np.empty((5, 1))) == pytest.approx(expected)
    np.testing.assert_allclose(probs, p)


def test_one_hot() -> None:
    y = one_hot(np.array([2, 0, 1]), 3)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert one_hot(np.array([1]), 2, dtype=np.float64).dtype == np.float64


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
    assert [default_init(a) for a in NAMES] == ["xavier", "xavier", "he", "he", "xavier"]
    assert all(entry.init in INITIALIZERS for entry in ACTIVATIONS.values())
    with pytest.raises(ValueError, match="xavier, he"):
        init_weights(2, 2, "lecun", np.random.default_rng(0), np.float32)
    allowed = "sigmoid, tanh, relu, leaky_relu, identity"
    with pytest.raises(ValueError, match=f"activation='softplus' is unknown; allowed: {allowed}$"):
        default_init("softplus")


def test_an_activation_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its function, derivative and default initialisation live in its ACTIVATIONS entry
    alone: a network of a new entry trains and starts from that entry's scheme."""

    def softplus(z: np.ndarray, out: np.ndarray | None = None, scratch: object = None):  # type: ignore[no-untyped-def]
        return np.logaddexp(z, 0, out=out)

    def softplus_derivative(a: np.ndarray, out: np.ndarray | None = None):  # type: ignore[no-untyped-def]
        return np.subtract(1, np.exp(-a), out=out)  # sigmoid(z) = 1 - exp(-softplus(z))

    monkeypatch.setitem(ACTIVATIONS, "softplus", Activation(softplus, softplus_derivative, "he"))
    model = MLP([3, 4, 2], activation="softplus", seed=1)
    assert model.init == "he"
    np.testing.assert_array_equal(model.weights[0], MLP([3, 4, 2], "relu", seed=1).weights[0])
    x = np.random.default_rng(0).normal(size=(6, 3))
    loss, grads_w, _ = model.loss_and_gradients(x, one_hot(np.arange(6) % 2, 2))
    step = 1e-3
    shifted = model.copy()
    shifted.weights[0][...] -= step * grads_w[0]
    assert shifted.loss_and_gradients(x, one_hot(np.arange(6) % 2, 2))[0] < loss
