"""What a person at the terminal sees while a sweep runs: each run once as it ends, with the
sweep's done/total, failures and ETA; on a terminal, also a live line per run in progress.

The monitor reads the files the runs leave in the sweep directory (``sweeper.outcome``), which
works with any Hydra launcher. On a terminal, rich draws the live lines below the finished
ones and redraws them in place; elsewhere (a CI log, a file) only the finished lines are
printed, one each.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from sweeper.outcome import (
    OUTCOME_FILE,
    PROGRESS_FILE,
    PROGRESS_SECONDS,
    RunOutcome,
    RunProgress,
    read_outcomes,
)
from sweeper.ui_links import run_label


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(outcome: RunOutcome, keys: set[str] | None = None) -> str:
    label = run_label(outcome.overrides, keys)
    if outcome.failed:
        return f"#{outcome.job} {label}: {outcome.status}: {outcome.reason}"
    m = outcome.metrics
    if outcome.pruned:
        label = f"{label}: PRUNED at epoch {int(m.get('epochs_run', 0))}"
    return (
        f"#{outcome.job} {label}: val_acc={m.get('best_val_acc', float('nan')):.4f} "
        f"test_acc={m.get('test_acc', float('nan')):.4f} epochs={int(m.get('epochs_run', 0))} "
        f"{outcome.seconds:.1f}s"
    )


def progress_line(
    done: int, total: int | None, failed: int, elapsed: float, timeout: float | None = None
) -> str:
    """The sweep's status; with a ``timeout`` (no trial starts after it) that comes before the
    runs left would end at the pace so far, the time left to it instead of an ETA."""
    # A search asks a trial whose process died again: more runs than planned, no end in sight.
    if total is not None and done > total:
        total = None
    head = f"[{done}/{total} done]" if total is not None else f"[{done} done]"
    head += f" {failed} failed, elapsed {format_duration(elapsed)}"
    eta = elapsed / done * (total - done) if done and total is not None else None
    if timeout is not None and (eta is None or elapsed + eta > timeout):
        return f"{head}, no new trial after {format_duration(max(timeout - elapsed, 0.0))}"
    if total is None:
        return head
    return f"{head}, ETA {format_duration(eta) if eta is not None else '?'}"


def running_line(run: RunProgress, keys: set[str] | None, now: float) -> str:
    val_acc = f"{run.val_acc:.4f}" if run.val_acc is not None else "-"
    return (
        f"  #{run.job} {run_label(run.overrides, keys)}: epoch {run.epoch}/{run.epochs} "
        f"val_acc={val_acc} {format_duration(now - run.started)}"
    )


def summary_table(outcomes: Sequence[RunOutcome], keys: set[str] | None = None) -> str:
    """A Markdown table of the sweep, best validation accuracy first, then runs a search
    pruned, failures last."""
    header = "| # | run | status | val_acc | test_acc | epochs | seconds |"
    lines = [header, "|---|---|---|---|---|---|---|"]

    def sort_key(o: RunOutcome) -> tuple[bool, bool, float]:
        return o.failed, o.pruned, -o.metrics.get("best_val_acc", 0.0)

    for o in sorted(outcomes, key=sort_key):
        label = run_label(o.overrides, keys)
        if o.failed:
            lines.append(f"| {o.job} | {label} | {o.status}: {o.reason} | | | | {o.seconds:.1f} |")
            continue
        m = o.metrics
        status = f"PRUNED at epoch {int(m['epochs_run'])}" if o.pruned else o.status
        lines.append(
            f"| {o.job} | {label} | {status} | {m['best_val_acc']:.4f} | {m['test_acc']:.4f} "
            f"| {int(m['epochs_run'])} | {o.seconds:.1f} |"
        )
    return "\n".join(lines)


class ProgressMonitor:
    """Polls a sweep directory in a background thread: prints each run once as it finishes
    and, on a terminal, keeps a live line per run in progress below them."""

    def __init__(
        self,
        sweep_dir: Path,
        total: int | None,
        keys: set[str] | None = None,
        out: TextIO | None = None,
        interval: float = PROGRESS_SECONDS,
        timeout: float | None = None,
    ) -> None:
        self.sweep_dir = sweep_dir
        self.total = total
        self.timeout = timeout
        self.keys = keys
        self.interval = interval
        self.outcomes: dict[Path, RunOutcome] = {}
        self._console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
        self._live: Live | None = None
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def start(self) -> ProgressMonitor:
        self._start = time.monotonic()
        if self._console.is_terminal:
            # transient: the live lines go when the sweep ends; the finished ones stay.
            self._live = Live(
                self._view(), console=self._console, auto_refresh=False, transient=True
            )
            self._live.start()
        self._thread.start()
        return self

    def _status(self) -> str:
        failed = sum(o.failed for o in self.outcomes.values())
        elapsed = time.monotonic() - self._start
        return progress_line(len(self.outcomes), self.total, failed, elapsed, self.timeout)

    def _view(self) -> Group:
        now = time.time()
        running = []
        for path in sorted(self.sweep_dir.glob(f"*/{PROGRESS_FILE}")):
            if path.parent / OUTCOME_FILE not in self.outcomes:
                try:
                    running.append(RunProgress.load(path))
                except (OSError, ValueError):
                    continue  # gone or replaced between the listing and the read
        lines = [Text(running_line(r, self.keys, now)) for r in running]
        lines.append(Text(f"{self._status()}, {len(running)} running"))
        return Group(*lines)

    def poll(self) -> list[RunOutcome]:
        """Read outcome files not seen before, print each with the count it brings the sweep
        to, redraw the live lines, and return the new outcomes."""
        with self._lock:
            new = []
            for path, outcome in read_outcomes(self.sweep_dir).items():
                if path not in self.outcomes:
                    self.outcomes[path] = outcome
                    new.append(outcome)
                    line = f"{self._status()} | {describe(outcome, self.keys)}"
                    self._console.print(line, markup=False)
            if self._live is not None:
                self._live.update(self._view(), refresh=True)
            return new

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> list[RunOutcome]:
        """Stop polling, take the live lines away, and return every outcome, in job order."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()
        if self._live is not None:
            self._live.stop()
            self._live = None
        return sorted(self.outcomes.values(), key=lambda o: o.job)
