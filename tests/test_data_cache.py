"""The memory-mapped dataset cache: same data as a direct load, prepared once, race-safe."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK, cli_env
from helpers import write_cifar
from sweeper.data import cache, datasets, digits, load_dataset
from sweeper.data.cache import ARRAYS, load_dataset_cached


def _count_preparations(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Make every preparation append a line to ``log`` (also from forked processes)."""
    real = cache.load_dataset

    def counting(*args: object, **kwargs: object) -> object:
        with log.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "load_dataset", counting)


def _preparations(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_arrays_as_a_direct_load_memory_mapped_read_only(tmp_path: Path, dtype: type) -> None:
    options = {"normalization": "channel", "val_fraction": 0.25, "seed": 3, "dtype": dtype}
    write_cifar(tmp_path / "cifar")
    direct = load_dataset("cifar10", tmp_path / "cifar", **options)  # type: ignore[arg-type]
    cached = load_dataset_cached(tmp_path / "cache", "cifar10", tmp_path / "cifar", **options)  # type: ignore[arg-type]
    for name in ARRAYS:
        expected, got = getattr(direct, name), getattr(cached, name)
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype
    assert isinstance(cached.x_train, np.memmap)
    assert not cached.x_train.flags.writeable
    assert cached.x_train.dtype == dtype
    assert (cached.name, cached.n_classes, cached.image_shape) == ("cifar10", 10, (3, 32, 32))
    assert cached.standardizer.mode == "channel"
    np.testing.assert_array_equal(cached.standardizer.mean, direct.standardizer.mean)
    np.testing.assert_array_equal(cached.standardizer.std, direct.standardizer.std)


def test_an_entry_keeps_its_range_warnings_checked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three features far out of range in each held-out split, when the entry is prepared.
    monkeypatch.setattr(datasets, "out_of_range_features", lambda *_: (3, 12.5))
    prepared = load_dataset_cached(tmp_path / "cache", "digits", seed=1)
    expected = prepared.range_warnings()
    assert len(expected) == 2
    assert "3 of 64 features of the test split lie more than 10 beyond" in expected[1]

    def unexpected(*_: object) -> None:
        raise AssertionError("the ranges were checked again")

    monkeypatch.setattr(datasets, "out_of_range_features", unexpected)
    assert load_dataset_cached(tmp_path / "cache", "digits", seed=1).range_warnings() == expected


def test_second_load_reads_the_cache_and_other_options_get_their_own_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    first = load_dataset_cached(tmp_path / "cache", "digits", seed=1)
    second = load_dataset_cached(tmp_path / "cache", "digits", seed=1)
    assert _preparations(log) == 1
    np.testing.assert_array_equal(first.x_train, second.x_train)

    load_dataset_cached(tmp_path / "cache", "digits", seed=2)
    load_dataset_cached(tmp_path / "cache", "digits", seed=1, dtype=np.float64)
    assert _preparations(log) == 3
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 3


def test_an_entry_the_users_cache_holds_is_mapped_from_there_not_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    user = tmp_path / "user"
    prepared = load_dataset_cached(user, "digits", seed=1)
    read = load_dataset_cached(tmp_path / "sweep", "digits", seed=1, read_also=user)
    assert _preparations(log) == 1
    assert Path(read.x_train.filename).parent.parent == user
    np.testing.assert_array_equal(read.x_train, prepared.x_train)
    assert not [p for p in (tmp_path / "sweep").iterdir() if not p.name.startswith(".")]

    # Not there: prepared in the sweep's own cache.
    load_dataset_cached(tmp_path / "sweep", "digits", seed=2, read_also=user)
    assert _preparations(log) == 2
    assert len([p for p in (tmp_path / "sweep").iterdir() if not p.name.startswith(".")]) == 1


def test_a_sweeps_entries_move_to_the_users_cache_which_keeps_its_size(tmp_path: Path) -> None:
    sweep, user = tmp_path / "sweep", tmp_path / "user"
    first = Path(load_dataset_cached(user, "digits", seed=1).x_train.filename).parent
    names = {
        seed: Path(load_dataset_cached(sweep, "digits", seed=seed).x_train.filename).parent.name
        for seed in (1, 2, 3)
    }
    size = sum(f.stat().st_size for f in first.iterdir())

    moved = cache.keep_prepared(sweep, cache.DataCache(user, max_bytes=int(2.5 * size)))
    # seed 1: the user's cache had it already; 2 and 3 move in, and the oldest entry goes.
    kept = sorted(p for p in user.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert moved == kept == sorted([user / names[2], user / names[3]])
    assert [p.name for p in sweep.iterdir() if not p.name.startswith(".")] == [names[1]]
    for seed in (2, 3):
        again = load_dataset_cached(tmp_path / "next", "digits", seed=seed, read_also=user)
        assert Path(again.x_train.filename).parent == user / names[seed]
    assert cache.keep_prepared(tmp_path / "none", cache.DataCache(user)) == []
    # A cache that cannot be made (here, under a file) keeps nothing and raises nothing.
    load_dataset_cached(sweep, "digits", seed=4)
    (tmp_path / "file").write_text("")
    assert cache.keep_prepared(sweep, cache.DataCache(tmp_path / "file" / "cache")) == []
    assert names[1] in [p.name for p in sweep.iterdir()]


def test_a_sweeps_entries_are_copied_to_a_users_cache_on_another_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep, user = tmp_path / "sweep", tmp_path / "user"
    prepared = load_dataset_cached(sweep, "digits", seed=1)
    name = Path(prepared.x_train.filename).parent.name
    real_rename = os.rename

    def rename(source: str | Path, destination: str | Path) -> None:
        # As between two file systems: the sweep's directory and the user's cache.
        if Path(source).parent != Path(destination).parent:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    real_copytree = shutil.copytree

    def failing_copytree(*args: object, **kwargs: object) -> object:
        real_copytree(*args, **kwargs)  # type: ignore[arg-type]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # A copy that fails (a full disk) leaves nothing in the cache and the entry where it was.
    monkeypatch.setattr(shutil, "copytree", failing_copytree)
    assert cache.keep_prepared(sweep, cache.DataCache(user)) == []
    assert [p.name for p in user.iterdir() if not p.name.endswith(".lock")] == []
    assert _entries_in(sweep) == [sweep / name]

    monkeypatch.setattr(shutil, "copytree", real_copytree)
    assert cache.keep_prepared(sweep, cache.DataCache(user)) == [user / name]
    assert [p.name for p in user.iterdir() if not p.name.endswith(".lock")] == [name]
    assert _entries_in(sweep) == []
    again = load_dataset_cached(tmp_path / "next", "digits", seed=1, read_also=user)
    assert Path(again.x_train.filename).parent == user / name
    np.testing.assert_array_equal(again.x_train, load_dataset("digits", seed=1).x_train)


def test_changed_source_files_are_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    write_cifar(tmp_path / "cifar", per_batch=20)
    load_dataset_cached(tmp_path / "cache", "cifar10", tmp_path / "cifar")
    write_cifar(tmp_path / "cifar", per_batch=30)
    again = load_dataset_cached(tmp_path / "cache", "cifar10", tmp_path / "cifar")
    assert _preparations(log) == 2
    assert len(again.y_train) + len(again.y_val) == 5 * 30


def test_each_install_of_the_package_records_its_own_digits_file_as_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two checkouts share the user's cache; a run of the second names its own file, which
    # reproducing the run checks, not the first's (which may be gone).
    shipped = Path(str(digits._resource()))
    for install in ("first", "second"):
        copy = tmp_path / install / shipped.name
        copy.parent.mkdir()
        copy.write_bytes(shipped.read_bytes())
        monkeypatch.setattr(digits, "_resource", lambda copy=copy: copy)
        dataset = load_dataset_cached(tmp_path / "cache", "digits", seed=1)
        assert list(dataset.sources) == [str(copy)]


def test_a_relative_data_dir_records_the_files_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One directory named from two working directories shares one entry: a run of the second
    # must not record the first's relative paths, which reproducing it could not find.
    write_cifar(tmp_path / "data" / "cifar", per_batch=20)
    (tmp_path / "data" / "sub").mkdir()
    for cwd, given in (("data/sub", "../cifar"), ("data", "cifar")):
        monkeypatch.chdir(tmp_path / cwd)
        dataset = load_dataset_cached(tmp_path / "cache", "cifar10", Path(given))
        assert dataset.sources
        for name in dataset.sources:
            assert Path(name).is_absolute() and Path(name).is_file(), name


def _load_in_worker(cache_dir: Path) -> float:
    return float(load_dataset_cached(cache_dir, "digits", seed=5).x_train.sum(dtype=np.float64))


def test_concurrent_workers_prepare_once_and_share_one_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    # fork: the workers inherit the counting loader patched in above.
    with multiprocessing.get_context("fork").Pool(4) as pool:
        sums = pool.map(_load_in_worker, [tmp_path / "cache"] * 8)
    assert _preparations(log) == 1
    assert len(set(sums)) == 1
    expected = load_dataset("digits", seed=5).x_train.sum(dtype=np.float64)
    assert sums[0] == pytest.approx(expected)
    names = [p.name for p in (tmp_path / "cache").iterdir() if p.name != cache.HASHES_DIR]
    # One entry and its lock file (and the data files' hashes); no temporary directory left.
    assert len(names) == 2 and sum(n.endswith(".lock") for n in names) == 1


def test_unknown_dataset_is_reported_without_touching_the_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset_cached(tmp_path / "cache", "nope")
    assert not (tmp_path / "cache").exists()


def _entries(cache_dir: Path) -> set[int]:
    """The seeds of the digits entries in ``cache_dir``, read from their split."""
    seeds = {}
    for seed in range(1, 5):
        seeds[load_dataset("digits", seed=seed).y_val.tobytes()] = seed
    return {
        seeds[np.load(p / "y_val.npy").tobytes()]
        for p in cache_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".")
    }


def test_a_limited_cache_removes_the_least_recently_used_entries_first(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    load_dataset_cached(cache_dir, "digits", seed=1)
    entry_bytes = sum(
        f.stat().st_size
        for p in cache_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".")
        for f in p.iterdir()
    )
    limit = int(2.5 * entry_bytes)  # room for two entries
    mapped = {}
    for seed in (2, 1, 3):  # seed 1 used again after seed 2: seed 2 is the oldest
        time.sleep(0.02)  # file times are a clock tick apart at least
        mapped[seed] = load_dataset_cached(cache_dir, "digits", seed=seed, max_bytes=limit)
    assert _entries(cache_dir) == {1, 3}
    time.sleep(0.02)
    load_dataset_cached(cache_dir, "digits", seed=4, max_bytes=limit)
    assert _entries(cache_dir) == {3, 4}
    # A process that mapped an entry keeps reading it once it is removed.
    np.testing.assert_array_equal(mapped[1].x_train, load_dataset("digits", seed=1).x_train)


def test_the_users_cache_size_comes_from_the_environment_in_gb(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(cache.LIMIT_ENV, raising=False)
    assert cache.user_data_cache() == (tmp_path / "sweeper" / "prepared", 4_000_000_000, None)
    monkeypatch.setenv(cache.LIMIT_ENV, "0.5")
    assert cache.user_data_cache() == (tmp_path / "sweeper" / "prepared", 500_000_000, None)
    monkeypatch.setenv(cache.LIMIT_ENV, "0")
    assert cache.user_data_cache() is None
    for bad in ("-1", "lots", "nan", "inf"):
        monkeypatch.setenv(cache.LIMIT_ENV, bad)
        with pytest.raises(
            ValueError,
            match=rf"^SWEEPER_DATA_CACHE_GB='{bad}' is invalid: a size in GB, or 0 to keep none$",
        ):
            cache.user_data_cache()


def test_a_cache_that_cannot_be_written_is_done_without_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Under a file (as under a home directory one cannot write, or on a full disk).
    (tmp_path / "file").write_text("")
    unwritable = tmp_path / "file" / "cache"
    with caplog.at_level("WARNING"):
        got = load_dataset_cached(unwritable, "digits", seed=1)
    expected = load_dataset("digits", seed=1)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    (warning,) = caplog.messages
    assert warning.startswith(f"the prepared-data cache {unwritable} cannot be used (")
    assert "SWEEPER_DATA_CACHE_GB=0 turns the cache off" in warning


def test_a_home_one_cannot_write_costs_a_run_no_warning_of_matplotlibs(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("")
    env = cli_env({"HOME": str(tmp_path / "file" / "home")})
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "SWEEPER_DATA_CACHE_GB"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper", *QUICK],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_a_dataset_larger_than_the_whole_cache_is_not_kept(tmp_path: Path) -> None:
    user = tmp_path / "user"
    small = load_dataset_cached(user, "digits", seed=1, max_bytes=10**9)
    size = sum(f.stat().st_size for f in Path(small.x_train.filename).parent.iterdir())
    # Limited to less than one entry: the data is served, and the cache keeps what it had.
    got = load_dataset_cached(user, "digits", seed=2, max_bytes=size // 2)
    np.testing.assert_array_equal(got.x_train, load_dataset("digits", seed=2).x_train)
    assert len(_entries_in(user)) == 1
    # Nor does a sweep's entry move into a cache smaller than it.
    load_dataset_cached(tmp_path / "sweep", "digits", seed=3)
    assert cache.keep_prepared(tmp_path / "sweep", cache.DataCache(user, size // 2)) == []
    assert len(_entries_in(user)) == 1


def _entries_in(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# How an entry's file is damaged (a full disk, a crash of the machine, a stray write), and what
# the warning says of the file.
DAMAGES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "truncated": ("x_train.npy", _truncate, "cannot be read"),
    "broken meta": ("meta.json", lambda p: p.write_text('{"name":'), "cannot be read"),
    "random bytes": ("x_test.npy", lambda p: p.write_bytes(os.urandom(500)), "cannot be read"),
    "removed": ("y_val.npy", Path.unlink, "is missing"),
}


def _damaged(message: str, entry: Path, reason: str) -> bool:
    return message == (
        f"the prepared-data cache entry {entry} is damaged ({reason}):"
        " it is removed and the data prepared again"
    )


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_entry_is_removed_with_one_warning_and_prepared_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    entry = Path(load_dataset_cached(tmp_path / "cache", "digits", seed=1).x_train.filename).parent
    file, spoil, says = DAMAGES[damage]
    spoil(entry / file)
    with caplog.at_level("WARNING"):
        got = load_dataset_cached(tmp_path / "cache", "digits", seed=1)
    expected = load_dataset("digits", seed=1)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    (warning,) = caplog.messages
    assert _damaged(warning, entry, f"{file} {says}"), warning
    assert "pickle" not in warning
    # Prepared again into the same place, whole: the next run maps it without a word.
    assert Path(got.x_train.filename).parent == entry
    caplog.clear()
    load_dataset_cached(tmp_path / "cache", "digits", seed=1)
    assert not caplog.messages
    assert _preparations(log) == 2


def test_a_damaged_entry_of_the_users_cache_is_removed_and_the_sweep_prepares_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user, sweep = tmp_path / "user", tmp_path / "sweep"
    entry = Path(load_dataset_cached(user, "digits", seed=1).x_train.filename).parent
    _truncate(entry / "x_val.npy")
    with caplog.at_level("WARNING"):
        got = load_dataset_cached(sweep, "digits", seed=1, read_also=user)
    (warning,) = caplog.messages
    assert _damaged(warning, entry, "x_val.npy cannot be read"), warning
    assert not entry.exists()
    assert Path(got.x_val.filename).parent == sweep / entry.name
    np.testing.assert_array_equal(got.x_val, load_dataset("digits", seed=1).x_val)


def test_concurrent_workers_on_a_damaged_entry_prepare_it_again_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "prepared.log"
    _count_preparations(monkeypatch, log)
    _load_in_worker(tmp_path / "cache")
    (entry,) = _entries_in(tmp_path / "cache")
    (entry / "meta.json").write_text("")
    with multiprocessing.get_context("fork").Pool(4) as pool:
        sums = pool.map(_load_in_worker, [tmp_path / "cache"] * 8)
    assert _preparations(log) == 2
    assert len(set(sums)) == 1
    assert sums[0] == pytest.approx(load_dataset("digits", seed=5).x_train.sum(dtype=np.float64))


def _two_entries_room(cache_dir: Path) -> tuple[Path, int]:
    """Seed 1's entry in ``cache_dir``, and a size with room for two such entries."""
    first = Path(load_dataset_cached(cache_dir, "digits", seed=1).x_train.filename).parent
    return first, int(2.5 * sum(f.stat().st_size for f in first.iterdir()))


def test_eviction_removes_a_damaged_entry_first(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    _, limit = _two_entries_room(cache_dir)
    time.sleep(0.02)
    damaged = Path(load_dataset_cached(cache_dir, "digits", seed=2).x_train.filename).parent
    (damaged / "meta.json").unlink()
    time.sleep(0.02)
    load_dataset_cached(cache_dir, "digits", seed=3, max_bytes=limit)
    # The damaged entry goes, not the least recently used whole one.
    assert _entries(cache_dir) == {1, 3}


def test_eviction_leaves_an_entry_whose_lock_another_process_holds(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first, limit = _two_entries_room(cache_dir)
    time.sleep(0.02)
    load_dataset_cached(cache_dir, "digits", seed=2)
    # Seed 1's lock held, as by a process preparing it again: seed 2 goes instead.
    with (cache_dir / f".{first.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        time.sleep(0.02)
        load_dataset_cached(cache_dir, "digits", seed=3, max_bytes=limit)
    assert _entries(cache_dir) == {1, 3}


def test_an_empty_cache_size_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(cache.LIMIT_ENV, "")
    assert cache.user_data_cache() == (tmp_path / "sweeper" / "prepared", 4_000_000_000, None)
