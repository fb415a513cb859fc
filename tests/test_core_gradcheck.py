"""Backprop against finite differences, and proof that the check can fail."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.core import (
    ACTIVATIONS,
    MLP,
    check_gradients,
    one_hot,
    rows_to_records,
)

DEPTHS = {0: [4, 3], 1: [4, 6, 3], 3: [4, 6, 5, 6, 3]}
REGULARISATION = {
    "none": {},
    "l1": {"l1": 0.01},
    "l2": {"l2": 0.1},
    "dropout": {"dropout": 0.2},
    "input_dropout": {"dropout": 0.2, "input_dropout": 0.25},
}
# Central differences are exact only for a smooth objective. This seed's draws keep the
# rectifiers' pre-activations and the weights (for |w| under l1) clear of their kinks by
# more than eps, and its gradients large enough to be resolved in float64.
SEED = 1
# Near the optimal step for float64 central differences (cube root of machine epsilon).
WHOLE_NETWORK_EPS = 1e-5


def _problem(
    sizes: list[int], activation: str, dropout: float = 0.0, input_dropout: float = 0.0
) -> tuple[MLP, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    model = MLP(
        sizes, activation=activation, seed=SEED, dropout=dropout, input_dropout=input_dropout
    )
    # Non-zero biases, so a unit whose inputs are all zero does not sit exactly on a kink,
    # and weights away from 0, where l1's |w| has its kink.
    for b in model.biases:
        b[:] = rng.uniform(0.1, 0.6, b.shape)
    for w in model.weights:
        w[np.abs(w) < 0.05] = 0.05
    x = rng.choice([-1.0, 1.0], size=(3, sizes[0])) * rng.uniform(0.5, 1.5, (3, sizes[0]))
    y = one_hot(rng.integers(0, sizes[-1], 3), sizes[-1])
    return model, x, y


def max_relative_error(
    model: MLP,
    x: np.ndarray,
    y_onehot: np.ndarray,
    *,
    eps: float = 1e-6,
    l1: float = 0.0,
    l2: float = 0.0,
    dropout_seed: int | None = None,
) -> float:
    """Largest |n - b| / max(|n| + |b|, 1e-12) over every parameter of the network, ``n`` its
    central difference and ``b`` its backprop gradient, in float64 (``check_gradients``
    samples a few parameters; this checks them all)."""
    model = model.astype(np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y_onehot, dtype=np.float64)

    def run() -> tuple[float, list[np.ndarray], list[np.ndarray]]:
        # Each evaluation redraws the same dropout mask.
        rng = None if dropout_seed is None else np.random.default_rng(dropout_seed)
        return model.loss_and_gradients(x, y, l1=l1, l2=l2, rng=rng)

    _, grads_w, grads_b = run()
    worst = 0.0
    for param, grad in zip(model.parameters(), [*grads_w, *grads_b], strict=True):
        for index in np.ndindex(grad.shape):
            original = param[index]
            param[index] = original + eps
            e_plus = run()[0]
            param[index] = original - eps
            e_minus = run()[0]
            param[index] = original
            numerical, backprop = (e_plus - e_minus) / (2 * eps), float(grad[index])
            denom = max(abs(numerical) + abs(backprop), 1e-12)
            worst = max(worst, abs(numerical - backprop) / denom)
    return worst


@pytest.mark.parametrize("reg", REGULARISATION)
@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_backprop_matches_finite_differences(activation: str, depth: int, reg: str) -> None:
    options = dict(REGULARISATION[reg])
    dropout = options.pop("dropout", 0.0)
    input_dropout = options.pop("input_dropout", 0.0)
    model, x, y = _problem(DEPTHS[depth], activation, dropout, input_dropout)
    dropout_seed = 7 if dropout else None
    rows = check_gradients(model, x, y, eps=1e-2, tol=1e-4, dropout_seed=dropout_seed, **options)
    assert len(rows) == (3 if depth == 0 else 6)
    failed = [r for r in rows if not r.passed]
    assert not failed, failed
    error = max_relative_error(
        model, x, y, eps=WHOLE_NETWORK_EPS, dropout_seed=dropout_seed, **options
    )
    assert error < 1e-6


def test_rows_name_and_classify_parameters() -> None:
    model, x, y = _problem(DEPTHS[3], "tanh")
    rows = check_gradients(model, x, y, extra=[("W2", (1, 2)), ("b3", (0,))])
    assert [r.kind for r in rows] == [
        "output bias",
        "hidden bias",
        "hidden-to-output weight",
        "hidden-to-output weight",
        "input-to-hidden weight",
        "input-to-hidden weight",
        "requested",
        "requested",
    ]
    assert rows[0].parameter.startswith("b4[")
    assert rows[1].parameter.startswith("b1[")
    assert rows[2].parameter.startswith("W4[") and rows[4].parameter.startswith("W1[")
    assert rows[2].parameter != rows[3].parameter
    assert rows[6].parameter == "W2[1, 2]" and rows[7].parameter == "b3[0]"
    r = rows[0]
    assert r.numerical == pytest.approx((r.e_plus - r.e_minus) / 2e-2)
    assert r.abs_diff == pytest.approx(abs(r.numerical - r.backprop))
    records = rows_to_records(rows)
    assert list(records[0]) == [
        "parameter",
        "kind",
        "e_plus",
        "e_minus",
        "numerical",
        "backprop",
        "abs_diff",
        "passed",
    ]
    assert records[6]["parameter"] == "W2[1, 2]"


def test_softmax_regression_kinds_and_seeded_choice() -> None:
    model, x, y = _problem(DEPTHS[0], "identity")
    rows = check_gradients(model, x, y, seed=3)
    assert [r.kind for r in rows] == ["output bias"] + ["input-to-output weight"] * 2
    again = check_gradients(model, x, y, seed=3)
    assert [r.parameter for r in rows] == [r.parameter for r in again]


def test_check_leaves_model_untouched_and_float32_model_is_checked_in_float64() -> None:
    model, x, y = _problem(DEPTHS[1], "sigmoid")
    before = [p.copy() for p in model.parameters()]
    rows = check_gradients(model, x, y)
    assert all(r.passed for r in rows)
    assert model.dtype == np.float32
    for p, q in zip(before, model.parameters(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_bad_extra_entries() -> None:
    model, x, y = _problem(DEPTHS[1], "tanh")
    with pytest.raises(ValueError, match="W5"):
        check_gradients(model, x, y, extra=[("W5", (0, 0))])
    with pytest.raises(ValueError, match="out of range"):
        check_gradients(model, x, y, extra=[("b1", (99,))])


def test_wrong_backprop_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y = _problem(DEPTHS[1], "tanh")
    # A classic slip: using 1 - a instead of 1 - a**2 for tanh.
    wrong = ACTIVATIONS["tanh"]._replace(derivative=lambda a, out=None: np.subtract(1, a, out=out))
    monkeypatch.setitem(ACTIVATIONS, "tanh", wrong)
    rows = check_gradients(model, x, y)
    assert not all(r.passed for r in rows)
    assert not [r for r in rows if r.kind == "input-to-hidden weight" and r.passed]
    assert max_relative_error(model, x, y) > 1e-2


def test_dropout_without_seed_checks_the_inference_network() -> None:
    model, x, y = _problem(DEPTHS[1], "relu", dropout=0.5)
    assert all(r.passed for r in check_gradients(model, x, y))
    # A new mask per evaluation would make the differences meaningless; a fixed one works.
    assert all(r.passed for r in check_gradients(model, x, y, dropout_seed=3))
