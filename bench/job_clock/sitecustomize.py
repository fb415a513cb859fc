"""Stopwatches inside every job process of a sweep, for ``bench/many_runs.py``.

Put this directory on ``PYTHONPATH`` and set ``SWEEPER_JOB_CLOCK`` to a directory: Python
imports this module at start-up in every process, the local launcher's fork server included.
There it registers a hook that runs in each process forked for a job: the hook wraps the
functions that make up a run (found by name, so one hook times any commit's code) in
exclusive stopwatches, and when the job's process exits it writes ``<pid>.json`` with the
seconds of each part and the process's fork and exit times. With ``SWEEPER_JOB_PROFILE`` also
set, each job is run under cProfile and its stats written as ``<pid>.prof``.

Nothing here runs without ``SWEEPER_JOB_CLOCK``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

# (module, attribute path, part). A part's time is exclusive: a wrapped call inside another
# counts only in the inner one's part. Names that a commit lacks are skipped.
WRAPPED = [
    ("sweeper.app", "execute_run", "run (rest)"),
    ("sweeper.run", "run_config", "run (rest)"),
    ("mlflow", "start_run", "store writes"),
    ("mlflow", "end_run", "store writes"),
    ("sweeper.tracking", "RunLogger.log_params", "store writes"),
    ("sweeper.run_records", "RunLogger.log_params", "store writes"),
    ("sweeper.tracking", "RunLogger.log_epoch", "store writes"),
    ("sweeper.run_records", "RunLogger.log_epoch", "store writes"),
    ("sweeper.tracking", "RunLogger.log_metrics", "store writes"),
    ("sweeper.run_records", "RunLogger.log_metrics", "store writes"),
    ("sweeper.tracking", "RunLogger.set_tags", "store writes"),
    ("sweeper.run_records", "RunLogger.set_tags", "store writes"),
    ("sweeper.tracking", "RunLogger.log_batch", "store writes"),
    ("sweeper.run_records", "RunLogger.log_batch", "store writes"),
    ("sweeper.tracking", "RunLogger.flush", "store writes"),
    ("sweeper.run_records", "RunLogger.flush", "store writes"),
    ("sweeper.tracking", "RunLogger.log_files", "artifacts"),
    ("sweeper.run_records", "RunLogger.log_files", "artifacts"),
    ("sweeper.tracking", "RunLogger.log_model", "artifacts"),
    ("sweeper.run_records", "RunLogger.log_model", "artifacts"),
    ("sweeper.tracking", "RunLogger.log_tree", "artifacts"),
    ("sweeper.run_records", "RunLogger.log_tree", "artifacts"),
    ("sweeper.app", "log_served_model", "artifacts"),
    ("sweeper.run", "log_served_model", "artifacts"),
    ("sweeper.app", "_staged", "artifacts"),
    ("sweeper.run", "_staged", "artifacts"),
    ("sweeper.experiment", "save_curves", "artifacts"),
    ("sweeper.experiment", "save_checkpoint", "artifacts"),
    ("sweeper.experiment", "write_gradcheck_csv", "artifacts"),
    ("sweeper.app", "capture_environment", "provenance"),
    ("sweeper.run", "capture_environment", "provenance"),
    ("sweeper.experiment", "load_dataset", "data"),
    ("sweeper.experiment", "load_dataset_cached", "data"),
    ("sweeper.experiment", "gradient_check", "gradient check"),
    ("sweeper.experiment", "train", "training"),
]


class Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []
        self.fork = time.time()
        self.modules = set(sys.modules)
        # When the first call of each part began and the last ended (epoch seconds).
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        # The same in the process's CPU time, which starts at 0 in a forked process.
        self.first_cpu: dict[str, float] = {}
        self.last_cpu: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.first.setdefault(part, time.time())
            self.first_cpu.setdefault(part, time.process_time())
            frame = [time.perf_counter(), 0.0, time.process_time(), 0.0]
            self.stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self.stack.pop()
                spent = time.perf_counter() - frame[0]
                spent_cpu = time.process_time() - frame[2]
                self.seconds[part] += spent - frame[1]
                self.cpu[part] += spent_cpu - frame[3]
                if self.stack:
                    self.stack[-1][1] += spent
                    self.stack[-1][3] += spent_cpu
                self.last[part] = time.time()
                self.last_cpu[part] = time.process_time()

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, name, timed)


def _in_job() -> None:
    clock = Clock()
    for module_name, path, part in WRAPPED:
        owner = sys.modules.get(module_name)
        *outer, name = path.split(".")
        for attribute in outer:
            owner = getattr(owner, attribute, None)
        if owner is not None and hasattr(owner, name):
            clock.wrap(owner, name, part)
    profiler = None
    if os.environ.get("SWEEPER_JOB_PROFILE"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()

    def write() -> None:
        directory = os.environ["SWEEPER_JOB_CLOCK"]
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.path.join(directory, f"{os.getpid()}.prof"))
        record = {
            "fork": clock.fork,
            "exit": time.time(),
            "exit_cpu": time.process_time(),
            "seconds": dict(clock.seconds),
            "cpu": dict(clock.cpu),
            "first": clock.first,
            "last": clock.last,
            "first_cpu": clock.first_cpu,
            "last_cpu": clock.last_cpu,
            # Imported by the job itself, not preloaded by the fork server.
            "imported": sorted(set(sys.modules) - clock.modules),
        }
        with open(os.path.join(directory, f"{os.getpid()}.json"), "w") as f:
            json.dump(record, f)

    # A job's process leaves through multiprocessing's exit, which runs its finalizers, not
    # atexit's; it clears those inherited from the fork server first, then runs after-fork
    # hooks, so the finalizer is registered from one.
    from multiprocessing import util

    util.register_after_fork(clock, lambda _: util.Finalize(None, write, exitpriority=-100))


# The fork server runs as ``python -c 'from multiprocessing.forkserver import main; ...'``.
_COMMAND = " ".join(getattr(sys, "orig_argv", []))
if os.environ.get("SWEEPER_JOB_CLOCK") and "multiprocessing.forkserver" in _COMMAND:
    os.register_at_fork(after_in_child=_in_job)
