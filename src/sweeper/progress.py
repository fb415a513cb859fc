"""What a person at the terminal sees while a sweep runs: runs done / total, failures, ETA.

Workers may be other processes or other machines, so the monitor learns of finished runs from
the outcome files they leave in the sweep directory, which works with any Hydra launcher.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from sweeper.outcome import OUTCOME_FILE, RunOutcome


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def varying_overrides(jobs: Sequence[Sequence[str]]) -> set[str]:
    """The keys whose values differ between the jobs of a sweep."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def run_label(overrides: Sequence[str], keys: set[str] | None) -> str:
    shown = [o for o in overrides if keys is None or o.partition("=")[0] in keys]
    return " ".join(shown) or "(defaults)"


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


def progress_line(done: int, total: int | None, failed: int, elapsed: float) -> str:
    if total is None:
        return f"[{done} done] {failed} failed, elapsed {format_duration(elapsed)}"
    eta = elapsed / done * (total - done) if done else float("nan")
    eta_text = format_duration(eta) if done else "?"
    return (
        f"[{done}/{total} done] {failed} failed, elapsed {format_duration(elapsed)}, ETA {eta_text}"
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
    """Polls a sweep directory in a background thread and prints each run as it finishes."""

    def __init__(
        self,
        sweep_dir: Path,
        total: int | None,
        keys: set[str] | None = None,
        out: TextIO = sys.stdout,
        interval: float = 0.5,
    ) -> None:
        self.sweep_dir = sweep_dir
        self.total = total
        self.keys = keys
        self.out = out
        self.interval = interval
        self.outcomes: dict[Path, RunOutcome] = {}
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def start(self) -> ProgressMonitor:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def poll(self) -> list[RunOutcome]:
        """Read outcome files not seen before, print them, and return them."""
        new = []
        for path in sorted(self.sweep_dir.glob(f"*/{OUTCOME_FILE}")):
            if path not in self.outcomes:
                self.outcomes[path] = RunOutcome.load(path)
                new.append(self.outcomes[path])
        if new:
            done = len(self.outcomes)
            failed = sum(o.failed for o in self.outcomes.values())
            status = progress_line(done, self.total, failed, time.monotonic() - self._start)
            for outcome in new:
                print(f"{status} | {describe(outcome, self.keys)}", file=self.out, flush=True)
        return new

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> list[RunOutcome]:
        """Stop polling and return every outcome, in job order."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.poll()
        return sorted(self.outcomes.values(), key=lambda o: o.job)
