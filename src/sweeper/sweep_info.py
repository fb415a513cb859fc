"""What a sweep keeps in its directory for its runs: ``sweep.json`` (where and under which
parent run they record, what to skip), the shared dataset cache beside it, and the lock by
which one sweep at a time holds the directory."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweeper.outcome import LIVE_FILE, OUTCOME_FILE, OUTPUT_FILE, PROGRESS_FILE

SWEEP_FILE = "sweep.json"
# Held (flock) by the sweep using the directory, as long as its process lives.
LOCK_FILE = ".sweep.lock"
# The runs' shared, memory-mapped copy of the prepared data; handed to the user's cache or
# removed however the sweep ends (finished, interrupted, or stopped by an error).
DATASET_CACHE = "dataset-cache"


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
