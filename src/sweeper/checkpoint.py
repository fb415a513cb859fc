"""Save and load a trained model (and its input standardiser) as one pickle-free ``.npz``.

Layout: ``layer_sizes`` (int64), ``activation``/``dtype``/``standardizer_mode`` (numpy
unicode scalars; mode "" means no standardiser), ``dropout`` (float64), ``W1..Wk`` and
``b1..bk`` in the model's dtype, ``standardizer_mean``/``standardizer_std``, and
``image_shape`` (int64: one image as its dataset's loader reads it, e.g. ``(8, 8)`` or
``(3, 32, 32)``; absent from checkpoints written before it was kept).
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sweeper.core.network import MLP, check_dtype
from sweeper.data.preprocessing import FITTED, NORMALIZATIONS, Standardizer

_META = ("layer_sizes", "activation", "dtype", "dropout", "standardizer_mode")
_STATS = ("standardizer_mean", "standardizer_std")
# Optional: checkpoints written before it was kept lack it.
_IMAGE_SHAPE = "image_shape"


class Checkpoint(NamedTuple):
    """What ``read_checkpoint`` reads back."""

    model: MLP
    standardizer: Standardizer | None
    # One image as its dataset's loader reads it; None in a checkpoint written before.
    image_shape: tuple[int, ...] | None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: MLP,
    standardizer: Standardizer | None = None,
    image_shape: Sequence[int] | None = None,
) -> Path:
    """Write the checkpoint atomically and return its path (``.npz`` appended if missing).
    ``image_shape`` (``Dataset.image_shape``) lets the served model take images in that shape."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    # Any: numpy 2 stubs give savez a bool allow_pickle keyword that a dict of arrays clashes with.
    arrays: dict[str, Any] = {
        "layer_sizes": np.asarray(model.layer_sizes, dtype=np.int64),
        "activation": np.asarray(model.activation, dtype=np.str_),
        "dtype": np.asarray(model.dtype.name, dtype=np.str_),
        "dropout": np.asarray(model.dropout, dtype=np.float64),
        "standardizer_mode": np.asarray(
            "" if standardizer is None else standardizer.mode, dtype=np.str_
        ),
        "standardizer_mean": np.asarray(np.empty(0) if standardizer is None else standardizer.mean),
        "standardizer_std": np.asarray(np.empty(0) if standardizer is None else standardizer.std),
    }
    if image_shape is not None:
        arrays[_IMAGE_SHAPE] = np.asarray(image_shape, dtype=np.int64)
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True), start=1):
        arrays[f"W{i}"] = w
        arrays[f"b{i}"] = b
    # Written beside the target and renamed, so parallel readers never see a partial file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[MLP, Standardizer | None]:
    """The model and standardiser of ``read_checkpoint(path)``."""
    checkpoint = read_checkpoint(path)
    return checkpoint.model, checkpoint.standardizer


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint, refusing any whose arrays disagree with its stored architecture or
    hold values no trained model has (non-finite weights, a spread that is not positive, an
    image shape of another size than the inputs). Only the arrays the architecture names are
    read. Raises ``ValueError``, naming the file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return _from_arrays(path, data)
    except ValueError:
        raise
    # A file that is no .npz, a member that is no .npy, a corrupt or oversized one.
    except (
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        MemoryError,
        AttributeError,
        TypeError,
    ) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a sweeper checkpoint ({reason})") from None


def _from_arrays(path: Path, data: Any) -> Checkpoint:
    names = set(data.files)
    # Each member read once: an .npz decompresses a member on every access.
    read: dict[str, np.ndarray] = {}

    def need(name: str) -> np.ndarray:
        if name not in names:
            raise ValueError(f"{path}: missing array {name!r}")
        if name not in read:
            read[name] = np.asarray(data[name])
        return read[name]

    sizes = need("layer_sizes")
    if sizes.ndim != 1 or len(sizes) < 2 or not np.issubdtype(sizes.dtype, np.integer):
        raise ValueError(f"{path}: array 'layer_sizes' is malformed: {sizes!r}")
    n_layers = len(sizes) - 1
    layers = [f"{kind}{i}" for i in range(1, n_layers + 1) for kind in "Wb"]
    unexpected = sorted(names - {*_META, *_STATS, _IMAGE_SHAPE} - set(layers))
    if unexpected:
        raise ValueError(
            f"{path}: unexpected arrays {unexpected} for {n_layers} layers (layer_sizes "
            f"{sizes.tolist()})"
        )
    for name in _META + _STATS:
        need(name)
    try:
        dtype = check_dtype(str(need("dtype")))
    except ValueError as exc:
        raise ValueError(f"{path}: array 'dtype': {exc}") from None
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for i in range(1, n_layers + 1):
        fan_in, fan_out = int(sizes[i - 1]), int(sizes[i])
        for name, shape in ((f"W{i}", (fan_in, fan_out)), (f"b{i}", (fan_out,))):
            arr = need(name)
            if arr.shape != shape:
                raise ValueError(f"{path}: array {name!r} has shape {arr.shape}, expected {shape}")
            if arr.dtype != dtype:
                raise ValueError(f"{path}: array {name!r} has dtype {arr.dtype}, expected {dtype}")
            if not np.isfinite(arr).all():
                raise ValueError(f"{path}: array {name!r} holds values that are not finite")
            (weights if name[0] == "W" else biases).append(arr)
    dropout = need("dropout")
    if dropout.shape != () or not np.issubdtype(dropout.dtype, np.floating):
        raise ValueError(f"{path}: array 'dropout' is malformed: {dropout!r}")
    try:
        model = MLP.from_parameters(weights, biases, str(need("activation")), dtype, float(dropout))
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    mode = str(need("standardizer_mode"))
    if mode not in ("", *NORMALIZATIONS):
        raise ValueError(f"{path}: array 'standardizer_mode' is unknown: {mode!r}")
    if mode in FITTED:
        for name in _STATS:
            stat = need(name)
            if stat.shape != (int(sizes[0]),) or not np.issubdtype(stat.dtype, np.floating):
                raise ValueError(
                    f"{path}: array {name!r} has shape {stat.shape} and dtype {stat.dtype}, "
                    f"expected ({int(sizes[0])},) floats for standardizer mode {mode!r}"
                )
        mean, std = need("standardizer_mean"), need("standardizer_std")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"{path}: the standardizer's mean or spread is not finite, positive")
    standardizer = (
        Standardizer(mode, need("standardizer_mean"), need("standardizer_std")) if mode else None
    )
    image_shape = None
    if _IMAGE_SHAPE in names:
        stored = need(_IMAGE_SHAPE)
        if (
            stored.ndim != 1
            or not 1 <= len(stored) <= 3
            or not np.issubdtype(stored.dtype, np.integer)
            or not (stored > 0).all()
            or math.prod(stored.tolist()) != int(sizes[0])
        ):
            raise ValueError(
                f"{path}: array {_IMAGE_SHAPE!r} is {stored!r}, not the shape of an image of"
                f" {int(sizes[0])} values (1 to 3 positive sizes)"
            )
        image_shape = tuple(stored.tolist())
    return Checkpoint(model, standardizer, image_shape)
