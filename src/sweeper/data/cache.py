"""A prepared dataset on disk, memory-mapped read-only, so the workers of a sweep share one copy.

The first worker to ask for a (dataset, files, preprocessing, seed, split, dtype) prepares it
with ``load_dataset`` and writes the arrays as ``.npy`` files; every worker, the first
included, then maps them with ``np.load(..., mmap_mode="r")``. The operating system keeps one
copy of the pages in memory however many workers read them, instead of one private copy each.

A lock file makes the others wait while one prepares (two workers preparing at once would
double the peak memory the cache exists to save), and the files are written to a temporary
directory renamed into place, so a crashed writer never leaves a half-written entry behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from sweeper.data.datasets import DATASETS, Dataset, load_dataset
from sweeper.data.preprocessing import Standardizer

ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
META_FILE = "meta.json"
# Bump when the layout of an entry or the preprocessing changes, so old entries are not read.
FORMAT_VERSION = 2


def _source_files(name: str, data_dir: str | Path | None) -> list[list[object]]:
    """Path, size and mtime of the files a loader may read: a changed file is a new entry."""
    if data_dir is None or not DATASETS[name].needs_data_dir:
        return []
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        return []
    # The loaders read files in data_dir or one level below (cifar-10-batches-py/).
    candidates = [*root.iterdir(), *(p for d in root.iterdir() if d.is_dir() for p in d.iterdir())]
    return [
        [str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(candidates)
        if p.is_file()
    ]


def cache_key(name: str, data_dir: str | Path | None, **options: object) -> str:
    """Names one prepared dataset: the loader's arguments and the source files' identities."""
    description = {
        "version": FORMAT_VERSION,
        "name": name,
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir is not None else None,
        "files": _source_files(name, data_dir),
        "options": {k: str(v) for k, v in sorted(options.items())},
    }
    digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
    return f"{name}-{digest[:16]}"


def _write_entry(dataset: Dataset, entry: Path) -> None:
    """Write ``dataset`` to a temporary directory beside ``entry``, then rename it into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        for array in ARRAYS:
            np.save(staging / f"{array}.npy", getattr(dataset, array))
        np.save(staging / "mean.npy", dataset.standardizer.mean)
        np.save(staging / "std.npy", dataset.standardizer.std)
        meta = {
            "name": dataset.name,
            "n_classes": dataset.n_classes,
            "image_shape": list(dataset.image_shape),
            "normalization": dataset.standardizer.mode,
        }
        (staging / META_FILE).write_text(json.dumps(meta))
        os.rename(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_entry(entry: Path) -> Dataset:
    meta = json.loads((entry / META_FILE).read_text())
    arrays = {a: np.load(entry / f"{a}.npy", mmap_mode="r") for a in ARRAYS}
    standardizer = Standardizer(
        meta["normalization"], np.load(entry / "mean.npy"), np.load(entry / "std.npy")
    )
    return Dataset(
        name=meta["name"],
        n_classes=meta["n_classes"],
        image_shape=tuple(meta["image_shape"]),
        standardizer=standardizer,
        **arrays,
    )


def load_dataset_cached(
    cache_dir: str | Path,
    name: str,
    data_dir: str | Path | None = None,
    *,
    normalization: str = "feature",
    val_fraction: float = 0.2,
    seed: int = 0,
    dtype: DTypeLike = np.float32,
    max_train_samples: int | None = None,
) -> Dataset:
    """``load_dataset`` with the same arguments, its arrays read-only memory maps of a cache entry
    in ``cache_dir``, prepared by the first caller."""

    def prepare() -> Dataset:
        return load_dataset(
            name, data_dir, normalization=normalization, val_fraction=val_fraction, seed=seed,
            dtype=dtype, max_train_samples=max_train_samples,
        )  # fmt: skip

    if name not in DATASETS:
        return prepare()  # raises the error that names the known datasets
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / cache_key(
        name, data_dir, normalization=normalization, val_fraction=val_fraction, seed=seed,
        dtype=np.dtype(dtype).name, max_train_samples=max_train_samples,
    )  # fmt: skip
    if not entry.is_dir():
        with (cache_dir / f".{entry.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not entry.is_dir():
                _write_entry(prepare(), entry)
    return _read_entry(entry)
