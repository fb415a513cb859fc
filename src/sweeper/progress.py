"""What a person at the terminal sees of runs: while a sweep runs, each run once as it ends,
with the sweep's done/total, failures and ETA, and on a terminal a live line per run in
progress; a run's line (a lone run's too); and the sweep's summary table at its end.

The monitor reads the files the runs leave in the sweep directory (``sweeper.outcome``), which
works with any Hydra launcher. On a terminal, rich draws the live lines below the finished
ones and redraws them in place, and what the runs print (a warning, a store's retries) comes
through their output files and is printed above them; elsewhere (a CI log, a file) only the
finished lines are printed, one each, and the runs print as they go.
"""

from __future__ import annotations

import heapq
import math
import statistics
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from sweeper.config import names_configuration
from sweeper.names import BEST_VAL_ACC, EPOCHS_RUN, FAILED, FINISHED, KILLED, PRUNED, SEED, TEST_ACC
from sweeper.outcome import (
    LIVE_FILE,
    OUTCOME_FILE,
    OUTPUT_FILE,
    PROCESS_DIED,
    PROGRESS_FILE,
    PROGRESS_SECONDS,
    RunOutcome,
    RunProgress,
    count_failed,
    read_outcomes,
    retried,
    trial_of,
)
from sweeper.ranking import RANK_ASCENDING, RANKED_BY, SUMMARY_METRICS, complete_configurations
from sweeper.ui_links import run_label
from sweeper.words import plural

GRADCHECK_FAILED = "gradient check FAILED"
NOT_RANKED = (
    "not ranked: another run of its configuration (the same settings but the seed) failed "
    "or was not run; only complete configurations are ranked"
)


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(outcome: RunOutcome, keys: set[str] | None = None) -> str:
    """The run's line, a failed gradient check after it."""
    checked = f"; {GRADCHECK_FAILED}: {outcome.gradcheck}" if outcome.gradcheck else ""
    label = run_label(outcome.overrides, keys)
    if outcome.failed:
        return f"#{outcome.number} {label}: {outcome.status}: {outcome.reason}{checked}"
    m = outcome.metrics
    epochs = int(m.get(EPOCHS_RUN, 0))
    if outcome.pruned:
        label = f"{label}: {PRUNED} at epoch {epochs}"
    return (
        f"#{outcome.number} {label}: {BEST_VAL_ACC}={m.get(BEST_VAL_ACC, math.nan):.4f} "
        f"{TEST_ACC}={m.get(TEST_ACC, math.nan):.4f} epochs={epochs} {outcome.seconds:.1f}s"
        f"{checked}"
    )


def failed_checks(outcomes: Sequence[RunOutcome], keys: set[str] | None = None) -> str:
    """The runs whose gradient check failed, under a line that counts them, for after the
    summary table; "" where none did."""
    failed = [o for o in outcomes if o.gradcheck]
    if not failed:
        return ""
    lines = [f"Gradient check FAILED in {plural(len(failed), 'run')}:"]
    lines += [f"  #{o.number} {run_label(o.overrides, keys)}: {o.gradcheck}" for o in failed]
    return "\n".join(lines)


def progress_line(
    done: int,
    total: int | None,
    failed: int,
    elapsed: float,
    timeout: float | None = None,
    eta: float | None = None,
    cut_short: int = 0,
) -> str:
    """The sweep's status: the runs ``done`` (those ``cut_short`` by Ctrl-C or SIGTERM are
    not), with ``eta`` (``?`` where None: unknown); with a ``timeout`` (no trial starts after
    it) that comes before the runs left would end, or with no ETA, the time left to it
    instead."""
    # A search asks a trial whose process died again: more runs than planned, no end in sight.
    if total is not None and done > total:
        total = None
    head = f"[{done}/{total} done]" if total is not None else f"[{done} done]"
    head += f" {failed} failed, " + (f"{cut_short} cut short, " if cut_short else "")
    head += f"elapsed {format_duration(elapsed)}"
    if timeout is not None and (eta is None or elapsed + eta > timeout):
        return f"{head}, no new trial after {format_duration(max(timeout - elapsed, 0.0))}"
    if total is None:
        return head
    return f"{head}, ETA {format_duration(eta) if eta is not None else '?'}"


def eta_seconds(
    left: int, whole: Sequence[float], running: Sequence[RunProgress], slots: int, now: float
) -> float | None:
    """Seconds until ``left`` more runs end (the ``running`` ones included), ``slots`` at a
    time. A running run that has finished an epoch keeps its own pace to its last epoch; the
    others take a whole run's time, the mean of ``whole`` (the seconds of the runs that
    finished: one that failed or was pruned says little of one that is not), else
    of the whole runs the running ones' paces make. None while nothing tells, or while a run
    has spent more than a whole run's time on its first epoch. A run is not split across
    slots: the last ones to start set the end."""
    if left <= 0:
        return 0.0
    paced = [r for r in running if r.epoch > 0]
    whole = whole or [(now - r.started) / r.epoch * r.epochs for r in paced]
    if not whole:
        return None
    mean = statistics.fmean(whole)
    # When each slot frees.
    free_at = []
    for r in running:
        seconds = now - r.started
        if r.epoch:
            free_at.append(seconds / r.epoch * (r.epochs - r.epoch))
        elif seconds <= mean:
            free_at.append(mean - seconds)
        else:
            return None  # its first epoch alone outlasts a whole run
    free_at += [0.0] * max(max(slots, 1) - len(free_at), 0)
    heapq.heapify(free_at)
    for _ in range(max(left - len(running), 0)):
        heapq.heappush(free_at, heapq.heappop(free_at) + mean)
    return max(free_at)


def runs_not_run(ended: Sequence[RunOutcome], running: Sequence[RunProgress], repeats: int) -> int:
    """How many of the runs a search planned (``repeats`` a trial) it will not run, as its
    ``ended`` and ``running`` runs tell: a trial's other runs start once its first has ended
    unpruned, and a run pruned or failed drops those of its trial not started. A run whose
    process died drops none: its trial is asked again, with them. A later run may fail as
    another of its trial's starts, unseen yet: the count rises by that one when it shows."""
    if repeats <= 1:
        return 0
    # Each trial's repeats started, by its number.
    started: dict[str, set[str | None]] = {}
    for label in [o.trial for o in ended] + [r.trial for r in running]:
        if label is not None:
            number, repeat = trial_of(label)
            started.setdefault(number, set()).add(repeat)
    dropping = {
        trial_of(o.trial)[0]
        for o in ended
        if o.trial is not None
        and (o.pruned or (o.status == FAILED and not o.reason.startswith(PROCESS_DIED)))
    }
    # A trial asked again with its first run carried over runs only its missing ones, counted
    # out of the plan already.
    return sum(repeats - len(started[n]) for n in dropping if "0" in started[n])


def running_line(
    run: RunProgress, keys: set[str] | None, now: float, width: int | None = None
) -> str:
    """A run in progress: its number and label, epoch, latest val_acc and time, the label cut
    short (…) where the line would be wider than ``width``, so what changes stays in view."""
    val_acc = f"{run.val_acc:.4f}" if run.val_acc is not None else "-"
    head = f"  #{run.number} "
    tail = (
        f": epoch {run.epoch}/{run.epochs} val_acc={val_acc} {format_duration(now - run.started)}"
    )
    label = run_label(run.overrides, keys)
    if width is not None and len(head) + len(label) + len(tail) > width:
        label = label[: max(width - len(head) - len(tail) - 1, 0)] + "…"
    return head + label + tail


def summary_table(
    outcomes: Sequence[RunOutcome],
    keys: set[str] | None = None,
    before: Sequence[RunOutcome] = (),
) -> str:
    """A Markdown table of the sweep, best run first (``RANKED_BY``, as the sweep's best run
    and the report rank them: runs of complete configurations, then the other finished ones,
    marked ``not ranked``), then runs a search pruned, failures last; the runs an earlier
    command of a resumed sweep finished (``before``) among them, marked ``before``. A note
    under it says why a run is not ranked."""
    columns = ["#", "run", "status", *(_HEADINGS.get(k, k) for k in SUMMARY_METRICS), "seconds"]
    lines = [_row(columns), "|" + "|".join(["---"] * len(columns)) + "|"]
    worst = math.inf if RANK_ASCENDING else -math.inf
    sign = 1 if RANK_ASCENDING else -1
    rows = [*outcomes, *before]
    configurations = [_configuration(r.overrides) for r in rows]
    trained = [not r.failed or retried(r, rows) for r in rows]
    flags = complete_configurations(configurations, trained, _grid_seeds(rows))
    complete = {id(r): ok for r, ok in zip(rows, flags, strict=True)}

    def sort_key(o: RunOutcome) -> tuple[bool, bool, bool, float]:
        unranked = not (o.failed or o.pruned or complete[id(o)])
        return o.failed, o.pruned, unranked, sign * o.metrics.get(RANKED_BY, worst)

    earlier = {id(o) for o in before}
    noted = False
    for o in sorted(rows, key=sort_key):
        label, seconds = run_label(o.overrides, keys), f"{o.seconds:.1f}"
        if o.failed:
            results = [""] * len(SUMMARY_METRICS)
            lines.append(_row([o.number, label, f"{o.status}: {o.reason}", *results, seconds]))
            continue
        m = o.metrics
        status = f"{PRUNED} at epoch {int(m[EPOCHS_RUN])}" if o.pruned else o.status
        marks = ["before"] if id(o) in earlier else []
        if not o.pruned and not complete[id(o)]:
            marks.append("not ranked")
            noted = True
        status += f" ({', '.join(marks)})" if marks else ""
        results = [_result(m, k) for k in SUMMARY_METRICS]
        lines.append(_row([o.number, label, status, *results, seconds]))
    if noted:
        lines.append(f"\n{NOT_RANKED}")
    return "\n".join(lines)


def _configuration(overrides: Sequence[str]) -> frozenset[str]:
    """A run's configuration: its overrides but the seed's and those of the keys that name no
    configuration (``names_configuration``): a resumed sweep's runs finished before read back
    theirs without this command's ``resume=true``."""
    return frozenset(
        o
        for o in overrides
        if (key := o.partition("=")[0].lstrip("+~")) != SEED and names_configuration(key)
    )


def _grid_seeds(rows: Sequence[RunOutcome]) -> list[str] | None:
    """Each run's seed override where the runs are a grid's, as the report reads its seeds;
    None for a search's trials, which plan their own repeats."""
    if any(r.trial is not None for r in rows):
        return None
    return [
        next((o for o in r.overrides if o.partition("=")[0].lstrip("+~") == SEED), "") for r in rows
    ]


# The summary's columns headed otherwise than their metric: a count, in a narrow column.
_HEADINGS = {EPOCHS_RUN: "epochs"}


def _result(metrics: Mapping[str, float], key: str) -> str:
    """A run's ``key`` as its summary row shows it: a count whole, a score to 4 decimals."""
    return str(int(metrics[key])) if key == EPOCHS_RUN else f"{metrics[key]:.4f}"


def _row(cells: Sequence[str]) -> str:
    """A Markdown table row; an empty cell is one space."""
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def relay_output(path: Path, read: int, console: Console, whole: bool = False) -> int:
    """Print what a run wrote to its output file ``path`` past its first ``read`` bytes: whole
    lines, or all with ``whole``; how many bytes are printed in all."""
    try:
        with path.open("rb") as file:
            file.seek(read)
            text = file.read()
    except OSError:
        return read
    if not whole:
        text = text[: text.rfind(b"\n") + 1]
    if text:
        # Not wrapped at the terminal's width: a long warning copies as one line.
        console.print(
            text.decode(errors="replace").rstrip("\n"),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return read + len(text)


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
        repeats: int = 1,
    ) -> None:
        self.sweep_dir = sweep_dir
        # At most, with ``repeats`` runs a trial: it falls by the runs the search drops.
        self.total = total
        self.timeout = timeout
        self.repeats = repeats
        self.keys = keys
        self.interval = interval
        self.outcomes: dict[Path, RunOutcome] = {}
        self._console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
        self._live: Live | None = None
        self._start = time.monotonic()
        self._slots = 1
        # How many bytes of each run's output file were printed.
        self._relayed: dict[Path, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def start(self) -> ProgressMonitor:
        self._start = time.monotonic()
        if self._console.is_terminal:
            # The runs print to files this relays: printed to the terminal, it would land in
            # the middle of the live lines.
            (self.sweep_dir / LIVE_FILE).touch()
            # transient: the live lines go when the sweep ends; the finished ones stay.
            self._live = Live(
                self._view(self._running()),
                console=self._console,
                auto_refresh=False,
                transient=True,
            )
            self._live.start()
        self._thread.start()
        return self

    def _status(self, running: Sequence[RunProgress]) -> str:
        # As the summary counts them; a run cut short is not done, nor a measure of a run's time.
        failed = count_failed(self.outcomes.values())
        ended = [o for o in self.outcomes.values() if o.status != KILLED]
        cut_short = len(self.outcomes) - len(ended)
        elapsed = time.monotonic() - self._start
        total, eta = self.total, None
        if total is not None:
            total -= runs_not_run(ended, running, self.repeats)
            # Early stopping (on by default) ends a whole run too; a failure or a pruner, not.
            whole = [o.seconds for o in ended if o.status == FINISHED]
            eta = eta_seconds(total - len(ended), whole, running, self._slots, time.time())
        return progress_line(len(ended), total, failed, elapsed, self.timeout, eta, cut_short)

    def _running(self, ended: Collection[Path] = ()) -> list[RunProgress]:
        """The runs in progress: those with no outcome, seen before or in ``ended``."""
        running = []
        for path in sorted(self.sweep_dir.glob(f"*/{PROGRESS_FILE}")):
            outcome = path.parent / OUTCOME_FILE
            if outcome not in self.outcomes and outcome not in ended:
                try:
                    running.append(RunProgress.load(path))
                except (OSError, ValueError):
                    continue  # gone or replaced between the listing and the read
        return running

    def _view(self, running: Sequence[RunProgress]) -> Group:
        now = time.time()
        width = self._console.width
        lines = [Text(running_line(r, self.keys, now, width)) for r in running]
        lines.append(Text(f"{self._status(running)}, {len(running)} running"))
        return Group(*lines)

    def poll(self) -> list[RunOutcome]:
        """Read outcome files not seen before, print each with the count it brings the sweep
        to, redraw the live lines, and return the new outcomes."""
        with self._lock:
            new = []
            ended = read_outcomes(self.sweep_dir)
            running = self._running(ended)
            # The runs at once: as many as ever ran together (a gap between two is no slot less).
            self._slots = max(self._slots, len(running))
            for path, outcome in ended.items():
                if path not in self.outcomes:
                    self.outcomes[path] = outcome
                    new.append(outcome)
                    line = f"{self._status(running)} | {describe(outcome, self.keys)}"
                    self._console.print(line, markup=False)
            if self._live is not None:
                self._relay_output()
                self._live.update(self._view(running), refresh=True)
            return new

    def _relay_output(self, whole: bool = False) -> None:
        """Print what the runs printed since the last poll: whole lines, or all with
        ``whole``."""
        for path in sorted(self.sweep_dir.glob(f"*/{OUTPUT_FILE}")):
            self._relayed[path] = relay_output(
                path, self._relayed.get(path, 0), self._console, whole
            )

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
            self._relay_output(whole=True)
            self._live.stop()
            self._live = None
            (self.sweep_dir / LIVE_FILE).unlink(missing_ok=True)
        return sorted(self.outcomes.values(), key=lambda o: o.job)
