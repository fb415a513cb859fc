"""What a run leaves in its output directory for the sweep to pick up: how far it has got
while it trains (``progress.json``), its one-line result once it ends (``outcome.json``), and,
while the sweep draws live lines on a terminal, what it prints (``output.log``), which the
sweep shows above them rather than let it land in the middle of them.

Runs may be other processes or other machines, so files are the one channel that works with
any Hydra launcher. Each is written whole, then renamed, so a reader never sees half of one.

Also here: how the sweep counts its runs' endings and names a search's runs, and how a failed
gradient check is worded.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweeper.names import (
    FAILED,
    FINISHED,
    GRADCHECK_MAX_ABS_DIFF,
    GRADCHECK_PASSED,
    KILLED,
    PRUNED,
)
from sweeper.ranking import RANKED_BY

OUTCOME_FILE = "outcome.json"
PROGRESS_FILE = "progress.json"
OUTPUT_FILE = "output.log"
# In the sweep directory while the sweep draws live lines: its runs print to OUTPUT_FILE.
LIVE_FILE = ".live"
# The reason a run whose process died before it recorded its end failed with; a search asks
# its trial again.
PROCESS_DIED = "worker process died"
# How often the sweep's live view reads the progress files, and so how often a run need write its.
PROGRESS_SECONDS = 0.5


def retried(outcome: RunOutcome, outcomes: Sequence[RunOutcome]) -> bool:
    """Whether a later run of the sweep repeated this one's overrides and did not fail (a
    search asks a trial whose process died again)."""
    return any(
        o.job > outcome.job and o.overrides == outcome.overrides and not o.failed for o in outcomes
    )


def trial_label(number: int | str, repeat: int | str | None) -> str:
    """A search's run as the sweep's lines name it: its trial's number, and ``.k`` after it
    for its repeat k where the search repeats trials (``4.1``; ``repeat`` None where not)."""
    return str(number) if repeat is None else f"{number}.{repeat}"


def trial_of(label: str) -> tuple[str, str | None]:
    """The trial's number and the repeat (None where trials do not repeat) that
    :func:`trial_label` wrote ``label`` of."""
    number, dot, repeat = label.partition(".")
    return number, repeat if dot else None


def _write_whole(path: Path, data: object) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


@dataclass
class RunOutcome:
    job: int
    overrides: list[str]
    # FINISHED, FAILED or KILLED (Ctrl-C), as in MLflow; or PRUNED (a finished run a search stopped)
    status: str
    reason: str
    seconds: float
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    # A search's run: its trial_label.
    trial: str | None = None
    # A gradient check that failed, as gradcheck_failure words it; None where it passed or
    # did not run. The run's status is its training's.
    gradcheck: str | None = None
    # A failure that running again as it is would repeat: what to change (failures.failure_fix).
    fix: str | None = None
    # The MLflow model the run logged (runs:/ID/model), if it logged one.
    model: str | None = None

    @property
    def number(self) -> str:
        """What the sweep's lines call the run (``#4``): a search's trial (``trial``), which the
        study's lines name too, else its job number."""
        return self.trial if self.trial is not None else str(self.job)

    @property
    def failed(self) -> bool:
        return self.status not in (FINISHED, PRUNED)

    @property
    def pruned(self) -> bool:
        return self.status == PRUNED

    @property
    def objective(self) -> float:
        """What a hyperparameter search minimises: the best validation loss (``RANKED_BY``).
        A failed run scores +inf, so a diverged trial ranks last and the search goes on."""
        if self.failed:
            return math.inf
        return self.metrics.get(RANKED_BY, math.inf)

    def save(self, directory: Path) -> Path:
        return _write_whole(directory / OUTCOME_FILE, asdict(self))

    @classmethod
    def load(cls, path: Path) -> RunOutcome:
        return cls(**json.loads(path.read_text()))


def gradcheck_failure(metrics: Mapping[str, float], tol: float) -> str | None:
    """A failed gradient check (its ``gradcheck_*`` metrics, checked within ``tol``) in the
    words of the run's line (``max |diff| 9.6e-06 > tol 1e-12``); None where it passed."""
    if metrics.get(GRADCHECK_PASSED, 1.0) == 1.0:
        return None
    return f"max |diff| {metrics[GRADCHECK_MAX_ABS_DIFF]:.2g} > tol {tol:g}"


def count_failed(outcomes: Iterable[RunOutcome]) -> int:
    """How many runs failed; one cut short by Ctrl-C or SIGTERM (KILLED) has not."""
    return sum(o.status == FAILED for o in outcomes)


def count_killed(outcomes: Iterable[RunOutcome]) -> int:
    """How many runs were cut short by Ctrl-C or SIGTERM (KILLED); a job stopped before its
    MLflow run existed is no run."""
    return sum(o.status == KILLED and o.run_id is not None for o in outcomes)


def count_runs(outcomes: Iterable[RunOutcome]) -> int:
    """How many of the outcomes are MLflow runs: all but the jobs stopped before theirs
    existed."""
    return sum(o.status != KILLED or o.run_id is not None for o in outcomes)


def count_finished(outcomes: Iterable[RunOutcome]) -> int:
    """How many runs trained to their end; one a search's pruner stopped has not."""
    return sum(o.status == FINISHED for o in outcomes)


def count_pruned(outcomes: Iterable[RunOutcome]) -> int:
    """How many runs a search's pruner stopped early (kept, never ranked)."""
    return sum(o.pruned for o in outcomes)


def ended_counts(finished: int, pruned: int, failed: int) -> str:
    """``3 finished, 1 pruned, 0 failed``; pruned left out when none (a grid has none)."""
    return f"{finished} finished, " + (f"{pruned} pruned, " if pruned else "") + f"{failed} failed"


def read_outcomes(sweep_dir: Path) -> dict[Path, RunOutcome]:
    """Every outcome the sweep's runs have left so far, by file."""
    return {path: RunOutcome.load(path) for path in sorted(sweep_dir.glob(f"*/{OUTCOME_FILE}"))}


@dataclass
class RunProgress:
    """A training run's latest epoch, rewritten after each."""

    job: int
    overrides: list[str]
    epochs: int
    # time.time() when the run started, so a reader elsewhere can tell its elapsed time.
    started: float
    epoch: int = 0
    val_acc: float | None = None
    trial: str | None = None

    @property
    def number(self) -> str:
        """As ``RunOutcome.number``."""
        return self.trial if self.trial is not None else str(self.job)

    def save(self, directory: Path) -> Path:
        return _write_whole(directory / PROGRESS_FILE, asdict(self))

    @classmethod
    def load(cls, path: Path) -> RunProgress:
        return cls(**json.loads(path.read_text()))


def send_output_to(directory: Path) -> None:
    """From here on, this process's standard output and error (its logging, a library's
    warnings) go to ``directory/output.log``."""
    fd = os.open(directory / OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
