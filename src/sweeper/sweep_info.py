"""What a sweep keeps in its directory for its runs: ``sweep.json`` (where and under which
parent run they record, what to skip), the shared dataset cache beside it, and the lock by
which one sweep at a time holds the directory; and the lock by which one command at a time
runs a sweep (:func:`hold_sweep`), whichever directory each command was given."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweeper.data.locations import cache_root
from sweeper.outcome import LIVE_FILE, OUTCOME_FILE, OUTPUT_FILE, PROGRESS_FILE
from sweeper.store_uri import sqlite_path

SWEEP_FILE = "sweep.json"
# Held (flock) by the sweep using the directory, as long as its process lives.
LOCK_FILE = ".sweep.lock"
# The runs' shared, memory-mapped copy of the prepared data; handed to the user's cache or
# removed however the sweep ends (finished, interrupted, or stopped by an error).
DATASET_CACHE = "dataset-cache"
# Where a store that is no SQLite file (a tracking server) keeps its sweeps' locks, under the
# user's cache directory: they hold only on this machine.
SWEEP_LOCKS = "sweep-locks"


@dataclass
class SweepInfo:
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    # config_hash of the planned runs that the resumed sweep already FINISHED.
    done_hashes: list[str] = field(default_factory=list)
    # The override keys that differ between runs, which name them; None: not known.
    varied_keys: list[str] | None = None

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepInfo:
        return cls(**json.loads((sweep_dir / SWEEP_FILE).read_text()))


class SweepDirectoryBusyError(RuntimeError):
    """Another sweep's process holds the directory."""


def claim(sweep_dir: Path) -> int:
    """Hold ``sweep_dir`` for this process's sweep (the lock goes with the process), and
    remove the outcome and progress files an earlier sweep's runs left there, which this
    sweep's progress would count as its own; return the lock's descriptor. Raises
    ``SweepDirectoryBusyError`` while another sweep holds it: two sweeps started in the same
    second (the default directory's name), or one ``hydra.sweep.dir`` given to both."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SweepDirectoryBusyError(
            f"another sweep is running in {sweep_dir}: start this one again a second later, "
            "or give each its own hydra.sweep.dir"
        ) from None
    for name in (OUTCOME_FILE, PROGRESS_FILE, OUTPUT_FILE):
        for left in sweep_dir.glob(f"*/{name}"):
            left.unlink(missing_ok=True)
    (sweep_dir / LIVE_FILE).unlink(missing_ok=True)
    return fd


class SweepBusyError(RuntimeError):
    """Another command runs the sweep."""


class SweepHold:
    """The lock of one sweep (its parent run), held by this command until :meth:`release`
    or its process ends."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still held: a command that opened it meanwhile sees it gone and locks
        # the file made anew.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def sweep_lock_path(tracking_uri: str, parent_run_id: str) -> Path:
    """The lock file of the sweep whose parent run is ``parent_run_id``: beside a SQLite
    store's database, else in the user's cache directory, named by the run's id alone (a
    UUID): one server spelled two ways (``localhost``, ``127.0.0.1``) holds one lock."""
    database = sqlite_path(tracking_uri)
    if database is not None:
        return database.with_name(f"{database.name}.sweep-{parent_run_id}.lock")
    return cache_root() / SWEEP_LOCKS / f"{parent_run_id}.lock"


def hold_sweep(tracking_uri: str, parent_run_id: str, sweep_id: str, command: str) -> SweepHold:
    """Hold the sweep of parent run ``parent_run_id`` for this command (``command``, which the
    lock file names to another), until it releases it or its process ends. Raises
    ``SweepBusyError``, naming the command that holds it, while another does: two
    ``resume=true`` commands of one sweep, or one of a sweep still running, would each run
    what is left of it."""
    path = sweep_lock_path(tracking_uri, parent_run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").split()
            os.close(fd)
            named = f" (pid {' '.join(holder)})" if holder else ""
            raise SweepBusyError(
                f"sweep {sweep_id} is being run by another command{named}: wait for it to "
                "end, or stop it first"
            ) from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        # Released (and removed) by the command that held it, between our open and lock.
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}: {command}".encode())
    hold = SweepHold(path, fd)
    # However the command ends (Ctrl-C and SIGTERM exit through Python), the file goes too.
    atexit.register(hold.release)
    return hold
