"""Checkpoint round trips and refusal of tampered files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from sweeper.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from sweeper.core import MLP
from sweeper.data.preprocessing import Standardizer


def _x(n: int = 20, d: int = 6) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)


def _trained_like(dtype: type = np.float32, sizes: tuple[int, ...] = (6, 5, 4, 3)) -> MLP:
    model = MLP(list(sizes), activation="leaky_relu", dtype=dtype, dropout=0.25, seed=4)
    rng = np.random.default_rng(1)
    for b in model.biases:
        b[:] = rng.normal(size=b.shape)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_exact(tmp_path: Path, dtype: type) -> None:
    model = _trained_like(dtype)
    std = Standardizer("feature", np.arange(6, dtype=np.float64), np.full(6, 2.0))
    path = save_checkpoint(tmp_path / "run" / "model.npz", model, std)
    assert path == tmp_path / "run" / "model.npz" and path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["model.npz"]
    loaded, loaded_std = load_checkpoint(path)
    assert loaded.layer_sizes == model.layer_sizes
    assert (loaded.activation, loaded.dropout, loaded.dtype) == ("leaky_relu", 0.25, dtype)
    for p, q in zip(model.parameters(), loaded.parameters(), strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)
    x = std.transform(_x())
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert loaded_std is not None
    assert loaded_std.mode == "feature"
    np.testing.assert_array_equal(loaded_std.mean, std.mean)
    np.testing.assert_array_equal(loaded_std.std, std.std)
    assert np.array_equal(loaded_std.transform(_x()), x)


def test_round_trip_without_standardizer_and_softmax_regression(tmp_path: Path) -> None:
    model = _trained_like(sizes=(6, 3))
    path = save_checkpoint(tmp_path / "plain", model)
    assert path.name == "plain.npz"
    loaded, std = load_checkpoint(path)
    assert std is None
    assert np.array_equal(loaded.predict_proba(_x()), model.predict_proba(_x()))


def test_the_image_shape_is_kept_and_a_checkpoint_from_before_it_has_none(tmp_path: Path) -> None:
    with_shape = save_checkpoint(tmp_path / "new.npz", _trained_like(), image_shape=(2, 3))
    assert read_checkpoint(with_shape).image_shape == (2, 3)
    older = save_checkpoint(tmp_path / "old.npz", _trained_like())
    assert read_checkpoint(older).image_shape is None
    assert load_checkpoint(older)[0].layer_sizes == [6, 5, 4, 3]


@pytest.mark.parametrize(
    "stored",
    [
        np.array([2, 4], dtype=np.int64),
        np.array([[2, 3]], dtype=np.int64),
        np.array([2.0, 3.0]),
        np.array([-2, -3], dtype=np.int64),
        np.array([1, 1, 2, 3], dtype=np.int64),
        np.asarray("2x3"),
    ],
)
def test_an_image_shape_that_is_no_image_of_the_inputs_is_refused(
    tmp_path: Path, stored: np.ndarray
) -> None:
    good = save_checkpoint(tmp_path / "m.npz", _trained_like(), image_shape=(2, 3))
    with pytest.raises(ValueError, match=r"tampered\.npz: array 'image_shape' is .* of 6 values"):
        read_checkpoint(_tamper(good, image_shape=stored))


def test_sample_mode_standardizer(tmp_path: Path) -> None:
    std = Standardizer("sample", np.empty(0), np.empty(0))
    _, loaded = load_checkpoint(save_checkpoint(tmp_path / "m.npz", _trained_like(), std))
    assert loaded is not None and loaded.mode == "sample"


def test_no_pickle_needed(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "m.npz", _trained_like())
    with np.load(path, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)
        assert data["layer_sizes"].dtype == np.int64
        assert str(data["activation"]) == "leaky_relu"
        assert str(data["dtype"]) == "float32"


def _tamper(path: Path, **changes: np.ndarray | None) -> Path:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    for name, value in changes.items():
        if value is None:
            del arrays[name]
        else:
            arrays[name] = value
    out = path.with_name("tampered.npz")
    np.savez(out, **arrays)
    return out


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"W2": np.zeros((5, 7), dtype=np.float32)}, r"'W2' has shape \(5, 7\), expected \(5, 4\)"),
        ({"b3": np.zeros(4, dtype=np.float32)}, r"'b3' has shape \(4,\), expected \(3,\)"),
        ({"W1": None}, "missing array 'W1'"),
        ({"b2": None}, "missing array 'b2'"),
        ({"activation": None}, "missing array 'activation'"),
        ({"W4": np.zeros((3, 3), dtype=np.float32)}, r"unexpected arrays \['W4'\]"),
        ({"layer_sizes": np.array([6, 5, 4], dtype=np.int64)}, r"unexpected arrays \['W3', 'b3'\]"),
        ({"W1": np.zeros((6, 5), dtype=np.float64)}, "'W1' has dtype float64"),
        ({"W2": np.full((5, 4), np.nan, np.float32)}, "'W2' holds values that are not finite"),
        ({"dtype": np.asarray("garbage")}, "array 'dtype': dtype='garbage' is unsupported"),
        ({"dropout": np.zeros(2)}, "array 'dropout' is malformed"),
        ({"standardizer_mode": np.asarray("bogus")}, "'standardizer_mode' is unknown: 'bogus'"),
    ],
)
def test_tampered_checkpoint_refused(tmp_path: Path, changes: dict, match: str) -> None:
    bad = _tamper(save_checkpoint(tmp_path / "m.npz", _trained_like()), **changes)
    with pytest.raises(ValueError, match=match) as info:
        load_checkpoint(bad)
    assert "tampered.npz" in str(info.value)


def test_bad_metadata_refused(tmp_path: Path) -> None:
    good = save_checkpoint(tmp_path / "m.npz", _trained_like())
    bad = _tamper(good, activation=np.asarray("swish"))
    with pytest.raises(ValueError, match="tampered.npz.*activation='swish'"):
        load_checkpoint(bad)
    bad = _tamper(good, dtype=np.asarray("int8"))
    with pytest.raises(ValueError, match="tampered.npz: array 'dtype'"):
        load_checkpoint(bad)


def test_standardizer_shape_checked(tmp_path: Path) -> None:
    std = Standardizer("feature", np.zeros(6), np.ones(6))
    good = save_checkpoint(tmp_path / "m.npz", _trained_like(), std)
    with pytest.raises(ValueError, match="'standardizer_std' has shape"):
        load_checkpoint(_tamper(good, standardizer_std=np.ones(5)))


def test_a_standardizer_that_cannot_scale_is_refused(tmp_path: Path) -> None:
    std = Standardizer("feature", np.zeros(6), np.ones(6))
    good = save_checkpoint(tmp_path / "m.npz", _trained_like(), std)
    for spread in (np.zeros(6), np.full(6, np.nan)):
        with pytest.raises(ValueError, match="mean or spread is not finite, positive"):
            load_checkpoint(_tamper(good, standardizer_std=spread))


def test_a_file_that_is_no_checkpoint_is_refused_naming_it(tmp_path: Path) -> None:
    npy = tmp_path / "weights.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(ValueError, match=r"weights\.npy: not a sweeper checkpoint"):
        load_checkpoint(npy)
    # A member that is no .npy array.
    good = save_checkpoint(tmp_path / "m.npz", _trained_like())
    odd = tmp_path / "odd.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(odd, "w") as dst:
        for item in src.namelist():
            data = b"not an array" if item == "W1.npy" else src.read(item)
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"odd\.npz"):
        load_checkpoint(odd)
