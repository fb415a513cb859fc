"""A prepared dataset on disk, memory-mapped read-only: the workers of a sweep share one copy,
and a run of its own finds the data its last run prepared.

The first worker to ask for a (dataset, files, preprocessing, seed, split, dtype) prepares it
with ``load_dataset`` and writes the arrays as ``.npy`` files; every worker, the first
included, then maps them with ``np.load(..., mmap_mode="r")``. The operating system keeps one
copy of the pages in memory however many workers read them, instead of one private copy each.
A sweep's cache lives in its directory; runs of their own share the user's
(:func:`user_data_cache`), which keeps the most recently used entries up to a size. A sweep's
runs map an entry the user's cache already holds instead of preparing it again, and the
entries a sweep prepared move to the user's cache when it ends (:func:`keep_prepared`), so the
next sweep or run on the same data starts training at once. A dataset larger than the
whole cache is not kept, and a run whose cache cannot be written reads its data without one.

A lock file makes the others wait while one prepares (two workers preparing at once would
double the peak memory the cache exists to save), and the files are written to a temporary
directory renamed into place, so a crashed writer never leaves a half-written entry behind.
Whoever prepares, repairs or removes an entry holds its lock, so an entry that cannot be read
under it is damaged (a truncated or overwritten file), not being written or removed: it is
removed, with one warning that names it, and prepared again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from sweeper.data.datasets import (
    DATASETS,
    DEFAULT_DTYPE,
    Dataset,
    load_dataset,
    resolve_data_dir,
    sha256_file,
)
from sweeper.data.locations import cache_root
from sweeper.data.preprocessing import DEFAULT_NORMALIZATION, DEFAULT_VAL_FRACTION, Standardizer

ARRAYS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
META_FILE = "meta.json"
# Each data file's SHA-256, computed once per sweep however many entries read the file.
HASHES_DIR = ".sha256"
# Bump when the layout of an entry or the preprocessing changes, so old entries are not read.
FORMAT_VERSION = 2
# The user's cache: its size in GB (0: none), and where in the user's cache directory it is.
LIMIT_ENV = "SWEEPER_DATA_CACHE_GB"
DEFAULT_LIMIT_GB = 4.0
USER_CACHE = "prepared"

log = logging.getLogger(__name__)


class DataCache(NamedTuple):
    """Where prepared datasets are kept, and how many bytes of them (None: no limit);
    ``read_also``: a cache whose entries are mapped from there, not prepared again."""

    directory: Path
    max_bytes: int | None = None
    read_also: Path | None = None


def user_data_cache() -> DataCache | None:
    """The user's cache of prepared datasets, ``$SWEEPER_DATA_CACHE_GB`` in size (4 unless
    set; 0: none). Raises ``ValueError``, one line, for a value that is not a size."""
    # Empty counts as unset, as an empty XDG_CACHE_HOME or SWEEPER_DATA_MIRROR does.
    raw = os.environ.get(LIMIT_ENV) or str(DEFAULT_LIMIT_GB)
    try:
        gb = float(raw)
    except ValueError:
        gb = -1.0
    if not 0 <= gb < math.inf:
        raise ValueError(f"{LIMIT_ENV}={raw!r} is invalid: a size in GB, or 0 to keep none")
    if gb == 0:
        return None
    return DataCache(cache_root() / USER_CACHE, int(gb * 1e9))


def _source_files(name: str, data_dir: str | Path | None) -> list[list[object]]:
    """Path, size and mtime of the files a loader may read: a changed file is a new entry."""
    embedded = DATASETS[name].embedded
    if embedded is not None:
        # By full path: each install's entry records its own file as the run's source.
        return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in embedded()]
    root = resolve_data_dir(name, data_dir)
    if root is None or not root.is_dir():
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
        "data_dir": str(root.resolve()) if (root := resolve_data_dir(name, data_dir)) else None,
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
            "sources": dataset.sources,
            "range_warnings": dataset.range_warnings(),
        }
        (staging / META_FILE).write_text(json.dumps(meta))
        os.rename(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _DamagedEntryError(Exception):
    """A file of a cache entry that cannot be read as it was written; the message names it."""


def _read_entry(entry: Path) -> Dataset:
    """``entry``'s arrays mapped. Raises FileNotFoundError where it, or a file of it, is gone,
    and _DamagedEntryError where a file cannot be read as it was written."""
    reading = META_FILE
    try:
        meta = json.loads((entry / META_FILE).read_text())
        # Its meta file's time says when the entry was last used (_evict).
        os.utime(entry / META_FILE)
        arrays = {}
        for array in (*ARRAYS, "mean", "std"):
            reading = f"{array}.npy"
            # The splits mapped; the statistics are small, read whole.
            arrays[array] = np.load(entry / reading, mmap_mode="r" if array in ARRAYS else None)
        reading = META_FILE
        standardizer = Standardizer(meta["normalization"], arrays.pop("mean"), arrays.pop("std"))
        return Dataset(
            name=meta["name"],
            n_classes=meta["n_classes"],
            image_shape=tuple(meta["image_shape"]),
            standardizer=standardizer,
            sources=meta["sources"],
            known_range_warnings=meta.get("range_warnings"),
            **arrays,
        )
    except (ValueError, EOFError, KeyError, TypeError) as error:
        # Not numpy's message, which for a file that is no .npy advises unpickling it.
        raise _DamagedEntryError(f"{reading} cannot be read") from error


@contextmanager
def _entry_lock(entry: Path, wait: bool = True) -> Iterator[bool]:
    """Hold ``entry``'s lock; with ``wait`` False, yield False, holding nothing, where another
    process holds it."""
    with (entry.parent / f".{entry.name}.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _read_or_discard(entry: Path) -> Dataset | None:
    """``entry`` read, its lock held; None where it is not there, or was damaged and is now
    removed, with a warning that names it."""
    if not entry.is_dir():
        return None
    try:
        return _read_entry(entry)
    except FileNotFoundError as error:
        # Under the lock no other process removes it: a missing file is damage.
        reason = f"{Path(error.filename or META_FILE).name} is missing"
    except _DamagedEntryError as error:
        reason = str(error)
    log.warning(
        "the prepared-data cache entry %s is damaged (%s): it is removed and the data"
        " prepared again",
        entry, reason,
    )  # fmt: skip
    shutil.rmtree(entry)
    return None


def _evict(cache_dir: Path, keep: Path, max_bytes: int) -> None:
    """Remove the least recently used entries, never ``keep`` nor one whose lock another
    process holds (preparing or repairing it), until the cache holds at most ``max_bytes``.
    An entry without its meta file (damaged) is the first to go. A process that mapped a
    removed entry keeps reading it."""
    sizes: dict[Path, int] = {}
    used: dict[Path, float] = {}
    for entry in cache_dir.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # hashes, locks, an entry being written
        try:
            sizes[entry] = _entry_bytes(entry)
        except FileNotFoundError:
            continue  # removed meanwhile by another process
        try:
            used[entry] = (entry / META_FILE).stat().st_mtime
        except FileNotFoundError:
            used[entry] = -math.inf  # damaged: the first to go
    total = sum(sizes.values())
    for entry in sorted(sizes, key=used.__getitem__):
        if total <= max_bytes:
            break
        if entry == keep:
            continue
        with _entry_lock(entry, wait=False) as held:
            if held:
                shutil.rmtree(entry, ignore_errors=True)
                total -= sizes[entry]


def _cached_sha256(cache_dir: Path, path: Path) -> str:
    """``sha256_file(path)``, kept in ``cache_dir`` under the file's identity (path, size,
    mtime), so entries prepared with other options reuse it. Workers preparing two entries at
    once may both compute it; the rename keeps one."""
    stat = path.stat()
    identity = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    stored = cache_dir / HASHES_DIR / hashlib.sha256(identity.encode()).hexdigest()
    if stored.is_file():
        return stored.read_text()
    digest = sha256_file(path)
    stored.parent.mkdir(exist_ok=True)
    staging = stored.with_name(f".{stored.name}.{os.getpid()}")
    staging.write_text(digest)
    os.replace(staging, stored)
    return digest


def load_dataset_cached(
    cache_dir: str | Path,
    name: str,
    data_dir: str | Path | None = None,
    *,
    normalization: str = DEFAULT_NORMALIZATION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    dtype: DTypeLike = DEFAULT_DTYPE,
    max_train_samples: int | None = None,
    max_bytes: int | None = None,
    read_also: Path | None = None,
) -> Dataset:
    """``load_dataset`` with the same arguments, its arrays read-only memory maps of a cache entry
    in ``cache_dir``, prepared by the first caller. With ``max_bytes``, a new entry makes room
    for itself by removing the least recently used ones, and a dataset larger than that is not
    kept. An entry already in ``read_also`` is mapped from there. A damaged entry is removed,
    with a warning, and prepared again. Where the cache cannot be written, the dataset is
    loaded without it, with a warning."""
    load = partial(
        load_dataset, name, data_dir, normalization=normalization, val_fraction=val_fraction,
        seed=seed, dtype=dtype, max_train_samples=max_train_samples,
    )  # fmt: skip
    if name not in DATASETS:
        return load()  # raises the error that names the known datasets
    cache_dir = Path(cache_dir)
    key = cache_key(
        name, data_dir, normalization=normalization, val_fraction=val_fraction, seed=seed,
        dtype=np.dtype(dtype).name, max_train_samples=max_train_samples,
    )  # fmt: skip
    try:
        prepare = partial(load, file_hash=partial(_cached_sha256, cache_dir))
        return _cached(cache_dir / key, prepare, max_bytes, read_also)
    except OSError as error:
        # The cache saves time and memory; a run does without it rather than fail.
        log.warning(
            "the prepared-data cache %s cannot be used (%s): the data is read without it"
            " (%s=0 turns the cache off, XDG_CACHE_HOME moves it)",
            cache_dir, error.strerror or error, LIMIT_ENV,
        )  # fmt: skip
        return load()


def _cached(
    entry: Path, prepare: Callable[[], Dataset], max_bytes: int | None, read_also: Path | None
) -> Dataset:
    """``entry`` mapped: from ``read_also`` if there, else prepared first where missing. An
    entry found damaged is removed, under its lock, and prepared again."""
    cache_dir = entry.parent
    cache_dir.mkdir(parents=True, exist_ok=True)
    elsewhere = read_also / entry.name if read_also is not None else None
    if elsewhere is not None and not entry.is_dir() and elsewhere.is_dir():
        try:
            return _read_entry(elsewhere)
        except (FileNotFoundError, _DamagedEntryError):
            # Evicted from there meanwhile, or damaged: looked at again under its lock.
            with _entry_lock(elsewhere):
                kept = _read_or_discard(elsewhere)
            if kept is not None:
                return kept
    if entry.is_dir():
        try:
            return _read_entry(entry)
        except (FileNotFoundError, _DamagedEntryError):
            pass  # evicted meanwhile, or damaged: looked at again under its lock
    with _entry_lock(entry):
        kept = _read_or_discard(entry)
        if kept is not None:
            return kept
        dataset = prepare()
        if max_bytes is not None and _nbytes(dataset) > max_bytes:
            return dataset  # more than the whole cache may hold
        _write_entry(dataset, entry)
        if max_bytes is not None:
            _evict(cache_dir, entry, max_bytes)
        return _read_entry(entry)


def _entry_bytes(entry: Path) -> int:
    return sum(f.stat().st_size for f in entry.iterdir())


def _nbytes(dataset: Dataset) -> int:
    return sum(getattr(dataset, array).nbytes for array in ARRAYS)


def _move_entry(entry: Path, target: Path) -> None:
    """Rename ``entry`` to ``target``; on another file system, copy it to a staging directory
    beside ``target``, renamed into place, then remove it."""
    try:
        os.rename(entry, target)
        return
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        shutil.copytree(entry, staging, dirs_exist_ok=True)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(entry, ignore_errors=True)


def keep_prepared(source_dir: Path, cache: DataCache) -> list[Path]:
    """Move the entries prepared in ``source_dir`` (a sweep's cache, which nothing reads any
    more) into ``cache`` (copied where it is on another file system), then trim it to its
    size; the moved entries, where they now are. An entry ``cache`` already holds, or one it
    cannot take, is left where it is, as is everything when ``cache`` cannot be made: a sweep
    does not fail for want of a cache."""
    if not source_dir.is_dir():
        return []
    try:
        cache.directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return []
    moved = []
    for entry in sorted(source_dir.iterdir()):
        if entry.name.startswith(".") or not (entry / META_FILE).is_file():
            continue  # hashes, locks, an entry being written
        if cache.max_bytes is not None and _entry_bytes(entry) > cache.max_bytes:
            continue  # more than the whole cache may hold
        target = cache.directory / entry.name
        try:
            # Under its lock, as an entry is written: a run that wants it waits for it.
            with _entry_lock(target):
                if target.exists():
                    continue
                _move_entry(entry, target)
        except OSError:
            continue  # the cache cannot be written, or is full
        moved.append(target)
    if moved and cache.max_bytes is not None:
        _evict(cache.directory, moved[-1], cache.max_bytes)
    return [entry for entry in moved if entry.is_dir()]
