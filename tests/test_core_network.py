"""MLP construction, forward pass, gradients' shapes and dtypes, validation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sweeper.core import ACTIVATIONS, MLP, Workspace, one_hot, penalty

SIZES = {"softmax_regression": [6, 4], "one_hidden": [6, 5, 4], "three_hidden": [6, 8, 7, 5, 4]}


def _data(n: int = 10, d: int = 6, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, k, n)


@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
def test_topology(sizes: list[int]) -> None:
    m = MLP(sizes)
    assert m.layer_sizes == sizes
    assert [w.shape for w in m.weights] == list(zip(sizes[:-1], sizes[1:], strict=True))
    assert [b.shape for b in m.biases] == [(s,) for s in sizes[1:]]
    assert all(not b.any() for b in m.biases)
    x, labels = _data()
    p = m.forward(x)
    assert p.shape == (10, 4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(m.predict_proba(x), p)
    np.testing.assert_array_equal(m.predict(x), p.argmax(axis=1))
    params = m.parameters()
    assert len(params) == 2 * (len(sizes) - 1)
    assert params[0] is m.weights[0] and params[-1] is m.biases[-1]


@pytest.mark.parametrize("sizes", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_dtype_preserved(sizes: list[int], dtype: type, dropout: float) -> None:
    m = MLP(sizes, activation="leaky_relu", dtype=dtype, dropout=dropout)
    x, labels = _data()
    y = one_hot(labels, 4, dtype=np.float64)  # a float64 target must not promote anything
    loss, gw, gb = m.loss_and_gradients(x, y, l1=0.01, l2=0.01, rng=np.random.default_rng(0))
    assert isinstance(loss, float)
    assert all(p.dtype == dtype for p in m.parameters())
    assert all(g.dtype == dtype for g in gw + gb)
    assert [g.shape for g in gw] == [w.shape for w in m.weights]
    assert [g.shape for g in gb] == [b.shape for b in m.biases]
    assert m.forward(x).dtype == dtype


def test_same_seed_same_weights_and_dtypes_agree() -> None:
    a, b, c = MLP([6, 5, 4], seed=3), MLP([6, 5, 4], seed=3), MLP([6, 5, 4], seed=4)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert not np.array_equal(a.weights[0], c.weights[0])
    d = MLP([6, 5, 4], seed=3, dtype=np.float64)
    np.testing.assert_array_equal(d.weights[0].astype(np.float32), a.weights[0])


def test_init_default_and_override() -> None:
    assert MLP([4, 3, 2], activation="relu").init == "he"
    assert MLP([4, 3, 2], activation="tanh").init == "xavier"
    assert MLP([4, 3, 2], activation="relu", init="xavier").init == "xavier"


def test_dropout_only_with_rng_and_reproducible() -> None:
    m = MLP([6, 20, 4], dropout=0.5)
    x, labels = _data()
    y = one_hot(labels, 4)
    plain = MLP([6, 20, 4], dropout=0.0).loss_and_gradients(x, y)[0]
    assert m.loss_and_gradients(x, y)[0] == plain
    first = m.loss_and_gradients(x, y, rng=np.random.default_rng(5))
    again = m.loss_and_gradients(x, y, rng=np.random.default_rng(5))
    other = m.loss_and_gradients(x, y, rng=np.random.default_rng(6))
    assert first[0] == again[0] != plain
    np.testing.assert_array_equal(first[1][0], again[1][0])
    assert other[0] != first[0]


def test_input_dropout_drops_that_fraction_of_inputs_and_scales_the_rest() -> None:
    p = 0.2
    model = MLP([400, 3, 2], dropout=0.0, input_dropout=p)
    workspace = Workspace(model, 250, dropout=True)
    x = np.ones((250, 400), np.float32)
    workspace.forward(x, np.random.default_rng(0))
    assert workspace.dropped_x is not None
    seen = workspace.dropped_x
    assert set(np.unique(seen)) == {0.0, np.float32(1 / (1 - p))}
    # 100,000 draws: the dropped fraction's standard error is about 0.0013.
    assert np.mean(seen == 0) == pytest.approx(p, abs=0.005)
    # The expected input is the input itself, so inference needs no rescaling.
    assert seen.mean() == pytest.approx(1.0, abs=0.01)


def test_input_dropout_only_with_rng_and_the_first_layer_learns_from_the_masked_inputs() -> None:
    x, labels = _data()
    y = one_hot(labels, 4, dtype=np.float64)
    x = x.astype(np.float64)
    m = MLP([6, 5, 4], dtype=np.float64, input_dropout=0.5)
    plain = MLP([6, 5, 4], dtype=np.float64)
    assert m.loss_and_gradients(x, y)[0] == plain.loss_and_gradients(x, y)[0]
    workspace = Workspace(m, 10, dropout=True)
    workspace.loss_and_gradients(x, y, rng=np.random.default_rng(3))
    assert workspace.input_mask is not None
    mask = workspace.input_mask.copy()
    assert 0 < np.count_nonzero(mask == 0) < mask.size
    # Without hidden dropout, the masked run is the plain network on the masked inputs.
    _, grads_w, _ = plain.loss_and_gradients(x * mask, y)
    np.testing.assert_allclose(workspace.grads_w[0], grads_w[0], rtol=1e-12)
    assert not np.allclose(workspace.grads_w[0], plain.loss_and_gradients(x, y)[1][0])


def test_loss_is_cross_entropy_plus_penalty() -> None:
    m = MLP([6, 5, 4], dtype=np.float64)
    x, labels = _data()
    y = one_hot(labels, 4, dtype=np.float64)
    p = m.forward(x)
    ce = -np.mean(np.log(p[np.arange(10), labels]))
    l1, l2 = 0.01, 0.1
    pen = sum(l1 * np.abs(w).sum() + l2 / 2 * (w**2).sum() for w in m.weights)
    assert m.loss_and_gradients(x, y)[0] == pytest.approx(ce)
    assert m.loss_and_gradients(x, y, l1=l1, l2=l2)[0] == pytest.approx(ce + pen)
    loss, acc = m.evaluate(x, labels, batch_size=3)
    assert loss == pytest.approx(ce)
    assert acc == np.mean(p.argmax(axis=1) == labels)


def test_copy_and_astype_are_independent() -> None:
    m = MLP([6, 5, 4], activation="sigmoid", dropout=0.2, input_dropout=0.1)
    c = m.copy()
    assert (c.layer_sizes, c.activation, c.dropout, c.input_dropout, c.dtype) == (
        m.layer_sizes,
        m.activation,
        m.dropout,
        0.1,
        m.dtype,
    )
    c.weights[0][0, 0] += 1
    assert c.weights[0][0, 0] != m.weights[0][0, 0]
    d = m.astype(np.float64)
    assert d.dtype == np.float64 and all(p.dtype == np.float64 for p in d.parameters())
    x, _ = _data()
    np.testing.assert_allclose(d.forward(x), m.forward(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layer_sizes": [5]}, "layer_sizes"),
        ({"layer_sizes": [5, 0, 3]}, "layer_sizes"),
        ({"layer_sizes": [5, 2.5, 3]}, "layer_sizes"),
        ({"layer_sizes": [5, 3], "activation": "softplus"}, "activation='softplus'"),
        ({"layer_sizes": [5, 3], "dtype": np.int32}, "dtype.*allowed: float32, float64$"),
        ({"layer_sizes": [5, 3], "init": "zeros"}, "init='zeros'"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


def test_invalid_inputs() -> None:
    m = MLP([6, 4])
    with pytest.raises(ValueError, match="x must have shape"):
        m.forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="y_onehot"):
        m.loss_and_gradients(np.zeros((3, 6)), np.zeros((3, 3)))


def test_parameters_live_in_one_flat_vector() -> None:
    model = MLP([6, 5, 3], seed=0)
    assert model.flat.size == 6 * 5 + 5 * 3 + 5 + 3
    np.testing.assert_array_equal(
        model.flat, np.concatenate([p.ravel() for p in model.parameters()])
    )
    model.flat[:] = 0
    assert all(not p.any() for p in model.parameters())
    copy = model.copy()
    copy.flat[:] = 1
    assert not model.flat.any()


def test_a_reused_workspace_gives_the_gradients_of_a_fresh_pass() -> None:
    rng = np.random.default_rng(0)
    model = MLP([6, 5, 4, 3], activation="relu", seed=1, dropout=0.3)
    x = rng.normal(size=(10, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 10)
    y = one_hot(labels, 3)
    workspace = Workspace(model, 8, dropout=True)
    # A full batch, then a smaller one in the same arrays, as at the end of an epoch.
    for rows in (slice(0, 8), slice(8, 10)):
        loss, _ = workspace.loss_and_gradients(
            x[rows], y[rows], labels[rows], l2=0.1, rng=np.random.default_rng(7)
        )
        fresh_loss, grads_w, grads_b = model.loss_and_gradients(
            x[rows], y[rows], l2=0.1, rng=np.random.default_rng(7)
        )
        assert fresh_loss == pytest.approx(loss + penalty(model.weights, 0.0, 0.1))
        got_all = [*workspace.grads_w, *workspace.grads_b]
        for got, expected in zip(got_all, [*grads_w, *grads_b], strict=True):
            np.testing.assert_array_equal(got, expected)


def test_workspace_counts_the_samples_the_step_classifies_right() -> None:
    x, labels = _data(n=40, k=4, seed=3)
    model = MLP([6, 5, 4], seed=2)
    loss, correct = Workspace(model, 40).loss_and_gradients(x, one_hot(labels, 4), labels)
    assert correct == int(np.sum(model.predict(x) == labels))
    assert loss == pytest.approx(model.evaluate(x, labels)[0], rel=1e-6)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_a_training_step_allocates_nothing_of_the_batch_s_size(activation: str) -> None:
    """Activations, their derivatives and dropout masks write into the workspace: one
    array of the hidden layer's size here is 512 KB, and only NumPy's own fixed-size
    buffers (tens of KB) may come and go during a step."""
    rows, hidden = 512, 256
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 20)).astype(np.float32)
    labels = rng.integers(0, 4, rows)
    model = MLP([20, hidden, 4], activation, dropout=0.5, input_dropout=0.2)
    workspace = Workspace(model, rows, dropout=True)
    masks = np.random.default_rng(1)
    y = one_hot(labels, 4)
    workspace.loss_and_gradients(x, y, labels, rng=masks)  # NumPy's first-call caches
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        workspace.loss_and_gradients(x, y, labels, rng=masks)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak < rows * hidden * 4 // 4, f"{peak} bytes"
