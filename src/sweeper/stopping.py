"""Runs and sweeps that end early keep their records: a run whose process died is closed by
:func:`record_dead_job` (the launchers' ``on_job_death``), and a sweep stopped by Ctrl-C
(or SIGTERM, taken as Ctrl-C) or by its launcher is closed by its :class:`SweepStop`, which
says how to complete it.

From its first run's launch until its parent run is ended, a sweep's :class:`SweepStop` is
the process's Ctrl-C handler: it raises KeyboardInterrupt as Python's own does, and
:func:`stop_running_sweep` finds the sweep to close through it, so no module keeps the running
sweep in a variable of its own.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from hydra_plugins.sweeper_launcher.interrupts import (
    ignore_interrupts,
    refuse_new_jobs,
    stop_jobs,
)
from hydra_plugins.sweeper_search.trial import position_in
from sweeper.failures import interruption
from sweeper.names import FAILED, KILLED, OVERRIDES_TAG
from sweeper.outcome import (
    OUTCOME_FILE,
    PROCESS_DIED,
    PROGRESS_FILE,
    RunOutcome,
    RunProgress,
    count_failed,
    count_finished,
    count_killed,
    count_pruned,
    count_runs,
    trial_label,
)
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import child_run_id, close_unfinished_runs, end_sweep_run
from sweeper.words import plural

# Seconds a sweep stopped by Ctrl-C waits for its jobs (their processes, Ray tasks) to close
# their own runs before it ends them outright.
JOB_EXIT_WAIT = 30.0


def record_dead_job(
    *,
    sweep_dir: Path,
    job_dir: Path,
    job: int,
    overrides: list[str],
    hydra_overrides: list[str],
    pid: int | None,
    interrupted: bool,
    ended: str,
    seconds: float,
    **_: Any,
) -> float:
    """A job whose process ``pid`` died before it could record its own end: close its MLflow
    run (found by ``pid``, else by ``job``; its metrics so far stay), leave its outcome where
    the sweep's monitor reads it, and return its objective. One that recorded its end first
    (Ctrl-C held back until it had, or its run cut short by it) keeps it. The keywords are the
    launcher's ``JobDeath``."""
    if interrupted:
        # Ctrl-C: the run marked itself KILLED; its outcome is still to be left.
        status, reason = KILLED, interruption()[0]
    else:
        status, reason = FAILED, f"{PROCESS_DIED} ({ended})"
    info = SweepInfo.load(sweep_dir)
    closed = close_unfinished_runs(
        info.tracking_uri,
        info.experiment_id,
        info.parent_run_id,
        status,
        reason,
        pid=pid,
        job=job if pid is None else None,
    )
    run_id = (
        closed[0].info.run_id
        if closed
        else child_run_id(info.tracking_uri, info.experiment_id, info.parent_run_id, pid, job)
    )
    left = job_dir / OUTCOME_FILE
    if not closed and left.is_file():
        # Its run ended and left its outcome, or was cut short by Ctrl-C and left that;
        # Ctrl-C, held back until then, ended the process.
        kept = RunOutcome.load(left)
        if kept.run_id == run_id and kept.status != FAILED:
            return kept.objective
    trial = _trial(job_dir, hydra_overrides)
    outcome = RunOutcome(job, overrides, status, reason, seconds, run_id, trial=trial)
    job_dir.mkdir(parents=True, exist_ok=True)
    outcome.save(job_dir)
    return outcome.objective


def _trial(job_dir: Path, hydra_overrides: list[str]) -> str | None:
    """A search's trial that the job ran, as the run's progress file names it, or, before the
    run had left one, as the search sweeper's overrides of the job say; None for another
    sweeper's job."""
    try:
        return RunProgress.load(job_dir / PROGRESS_FILE).trial
    except (OSError, ValueError, TypeError):
        pass
    position = position_in(hydra_overrides)
    return None if position is None else trial_label(*position)


class SweepStop:
    """How a running sweep is closed if it stops early; its Ctrl-C handler until its parent
    run is ended (see the module's docstring)."""

    def __init__(
        self,
        info: SweepInfo,
        wind_down: Callable[[], list[RunOutcome]],
        planned: int | None,
        skipped: int,
        failed_before: int,
        resume_command: str,
    ) -> None:
        self.info = info
        # Stops following the sweep and returns every outcome (SweepCallback._wind_down).
        self.wind_down = wind_down
        self.planned = planned
        # Runs an earlier command of the sweep ran (a resume skips them); of those, the failed.
        self.skipped = skipped
        self.failed_before = failed_before
        self.resume_command = resume_command
        self._previous: Any = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        # No job starts from here on, while the interruption unwinds to stop().
        refuse_new_jobs()
        raise KeyboardInterrupt

    def install(self) -> None:
        self._previous = signal.signal(signal.SIGINT, self)

    def uninstall(self) -> None:
        previous = self._previous
        if signal.getsignal(signal.SIGINT) is self:
            signal.signal(signal.SIGINT, previous)

    def stop(self, interrupted: bool, cause: BaseException | None) -> None:
        """The sweep stopped early (Ctrl-C, or its launcher gave up): keep what finished,
        close the runs it cut short, and say what did not run and how to complete it."""
        info = self.info
        if interrupted:
            # Each closes its own run; the sweep then closes only what they left open.
            stop_jobs(JOB_EXIT_WAIT)
            status, reason = KILLED, interruption()[0]
        else:
            status, reason = FAILED, f"the sweep stopped: {type(cause).__name__}: {cause}"
        outcomes = self.wind_down()
        closed = close_unfinished_runs(
            info.tracking_uri, info.experiment_id, info.parent_run_id, status, reason
        )
        finished, pruned = count_finished(outcomes), count_pruned(outcomes)
        failed = count_failed(outcomes)
        # The parent counts each run as MLflow marks it; those just closed, as marked now.
        end_sweep_run(
            info.tracking_uri,
            info.parent_run_id,
            self.skipped + count_runs(outcomes) + len(closed),
            self.failed_before + failed + (len(closed) if status == FAILED else 0),
            count_killed(outcomes) + (len(closed) if status == KILLED else 0),
            status,
        )
        # The runs in progress, closed by their own process or just now by the sweep.
        cut_short = [" ".join(o.overrides) for o in outcomes if o.status == KILLED]
        cut_short += [run.data.tags.get(OVERRIDES_TAG, run.info.run_id) for run in closed]
        planned = self.planned
        ended = finished + pruned + failed
        unfinished = f"{planned - ended}" if planned is not None else "the others"
        kept = f"{plural(finished, 'run')} finished" + (f", {pruned} pruned" if pruned else "")
        lines = [
            f"\nSweep {info.sweep_id} stopped ({reason}): {kept} and kept, "
            f"{failed} failed, {unfinished} not run or cut short "
            f"(the runs in progress are marked {status}).",
        ]
        lines += [f"  {status}: {name}" for name in cut_short]
        lines.append(f"Complete it with:  {self.resume_command}")
        print("\n".join(lines), file=sys.stderr, flush=True)


def stop_running_sweep(interrupted: bool, cause: BaseException | None = None) -> bool:
    """Close the records of the sweep whose launcher stopped early (Ctrl-C: ``interrupted``;
    else ``cause``, what stopped it). False if no sweep was running."""
    sweep = signal.getsignal(signal.SIGINT)
    if not isinstance(sweep, SweepStop):
        return False
    ignore_interrupts()
    sweep.stop(interrupted, cause)
    return True
