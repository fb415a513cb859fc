"""``resume=true``: find the sweep that ran the planned configurations, skip what it finished,
and continue it under its own sweep_id and parent run.

Every planned configuration is identified by its ``config_hash``. The sweep continued is the
newest in the experiment that ran any of them; with none, the command starts a new sweep. Its
runs left RUNNING by a process that ended without closing them are closed KILLED; the runs it
finished before are read back for the summary of the sweep as a whole.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from sweeper.config import GRADCHECK_TOL
from sweeper.failures import ORPHANED
from sweeper.names import (
    CONFIG_HASH_TAG,
    FINISHED,
    JOB_TAG,
    KILLED,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    PRUNED,
    REASON_TAG,
    REPEAT_TAG,
    RUNNING,
    STATUS_TAG,
    SWEEP_ID_TAG,
    TRIAL_TAG,
)
from sweeper.outcome import RunOutcome, gradcheck_failure, trial_label
from sweeper.ranking import SUMMARY_METRICS
from sweeper.store_calls import store_call
from sweeper.store_reads import search_all
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import close_unfinished_runs, reopen_sweep_run
from sweeper.words import plural


@dataclass(frozen=True)
class ResumePoint:
    """The sweep a ``resume=true`` command continues, and the configurations it finished."""

    sweep_id: str
    parent_run_id: str
    finished_hashes: frozenset[str]
    # A search's runs of its budget (n_trials x repeats) spent before, and the runs that
    # FAILED in its trials done (they count toward n_trials too, and are not run again).
    spent_runs: int = 0
    failed_runs: int = 0
    # A search whose trials done reach its n_trials: nothing is left to run.
    budget_spent: bool = False


@store_call
def find_resumable_sweep(
    uri: str, experiment_id: str, planned_hashes: Collection[str]
) -> ResumePoint | None:
    """The newest sweep of the experiment that ran any of the planned configurations (matched
    by their ``config_hash`` tag), with the hashes it FINISHED; None if there is none."""
    client = MlflowClient(uri)
    planned = set(planned_hashes)
    overlapping = [
        run
        for run in search_all(client, experiment_id, "")
        if run.data.tags.get(CONFIG_HASH_TAG) in planned and PARENT_RUN_TAG in run.data.tags
    ]
    if not overlapping:
        return None
    newest = max(overlapping, key=lambda run: run.info.start_time)
    sweep_id = newest.data.tags[SWEEP_ID_TAG]
    parent_run_id = newest.data.tags[PARENT_RUN_TAG]
    finished = frozenset(
        run.data.tags[CONFIG_HASH_TAG]
        for run in overlapping
        if run.data.tags.get(PARENT_RUN_TAG) == parent_run_id
        and run.info.status == RunStatus.to_string(RunStatus.FINISHED)
    )
    return ResumePoint(sweep_id, parent_run_id, finished)


@store_call
def finished_hashes(
    uri: str, experiment_id: str, parent_run_id: str, planned_hashes: Collection[str]
) -> frozenset[str]:
    """Of the planned configurations, those the sweep of ``parent_run_id`` FINISHED, as
    :func:`find_resumable_sweep` counts them: read again once the command holds the sweep."""
    runs = search_all(MlflowClient(uri), experiment_id, _finished_children(parent_run_id))
    return frozenset(run.data.tags.get(CONFIG_HASH_TAG, "") for run in runs).intersection(
        planned_hashes
    )


def _finished_children(parent_run_id: str) -> str:
    """The filter of the sweep's children that ended FINISHED in MLflow (pruned ones too)."""
    return f"tags.{PARENT_RUN_TAG} = '{parent_run_id}' and attributes.status = '{FINISHED}'"


@store_call
def finished_before(
    uri: str, experiment_id: str, parent_run_id: str, hashes: Sequence[str], repeats: int = 1
) -> list[RunOutcome]:
    """The runs of the sweep that ended FINISHED (or a search's pruner stopped) before this
    command, as outcomes for its summary: of the planned ``hashes`` (in job order) the newest
    of each, numbered as this command's job of that configuration (a grid grown since
    numbers its jobs anew), or every one where none are planned (a search, whose jobs number
    on from the earlier ones', its runs named ``trial.repeat`` where it repeats each trial)."""
    query = _finished_children(parent_run_id)
    runs = sorted(search_all(MlflowClient(uri), experiment_id, query), key=_started)
    # The summary's columns are a finished run's final metrics (as report.runs counts one).
    runs = [run for run in runs if all(m in run.data.metrics for m in SUMMARY_METRICS)]
    newest = {run.data.tags.get(CONFIG_HASH_TAG, run.info.run_id): run for run in runs}
    if not hashes:
        return [_outcome(run, repeats) for run in newest.values()]
    return [_outcome(newest[h], repeats, number=job) for job, h in enumerate(hashes) if h in newest]


@store_call
def unfinished_outside(
    uri: str, experiment_id: str, parent_run_id: str, hashes: Collection[str]
) -> list[Run]:
    """The sweep's configurations that this command does not plan (a value left out of its
    overrides) and that did not finish: the newest run of each, FAILED or KILLED. The sweep
    is not complete without them; a search plans no ``hashes``, and has none."""
    if not hashes:
        return []
    query = f"tags.{PARENT_RUN_TAG} = '{parent_run_id}'"
    runs = sorted(search_all(MlflowClient(uri), experiment_id, query), key=_started)
    newest = {run.data.tags.get(CONFIG_HASH_TAG, run.info.run_id): run for run in runs}
    return [run for key, run in newest.items() if key not in hashes and run.info.status != FINISHED]


def _started(run: Run) -> int:
    return int(run.info.start_time or 0)


def _outcome(run: Run, repeats: int, number: int | None = None) -> RunOutcome:
    """A run ended before, as its own process left its outcome (``Pruning.trial``'s label),
    numbered ``number``, else as its job was."""
    tags, metrics = run.data.tags, dict(run.data.metrics)
    trial = tags.get(TRIAL_TAG)
    if trial is not None and repeats > 1:
        trial = trial_label(trial, tags.get(REPEAT_TAG, "0"))
    tol = run.data.params.get(GRADCHECK_TOL)
    return RunOutcome(
        int(tags.get(JOB_TAG, -1)) if number is None else number,
        tags.get(OVERRIDES_TAG, "").split(),
        PRUNED if tags.get(STATUS_TAG) == PRUNED else FINISHED,
        tags.get(REASON_TAG, ""),
        ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000,
        run.info.run_id,
        metrics,
        trial,
        gradcheck_failure(metrics, float(tol)) if tol is not None else None,
    )


def continue_sweep(
    resumed: ResumePoint, hashes: list[str], uri: str, experiment_id: str, overrides: str
) -> tuple[SweepInfo, int]:
    """Continue ``resumed``, which this command holds (``sweep_info.hold_sweep``): its runs
    still RUNNING are closed (:func:`close_orphaned_runs`), its FINISHED configurations are
    skipped (how many of the planned runs, or of a search's budget, is returned), the others
    run as children of its parent run, under its sweep_id. Exits 0, the sweep's records
    otherwise untouched, if nothing is left to run and the sweep's end was made (its parent
    neither KILLED nor left RUNNING). A
    search plans no ``hashes``: its study knows what is left."""
    close_orphaned_runs(uri, experiment_id, resumed.parent_run_id)
    skipped = sum(h in resumed.finished_hashes for h in hashes) if hashes else resumed.spent_runs
    if not hashes:
        # A search: its study says which trials are done (hydra_plugins.sweeper_search).
        print(f"Resuming search sweep {resumed.sweep_id}", flush=True)
        nothing_left = resumed.budget_spent
        spent = (
            "Nothing left to run: the study's trials done reach hydra.sweeper.n_trials (failed "
            "ones count toward it); raise it to search on"
        )
    else:
        print(
            f"Resuming sweep {resumed.sweep_id}: skipping {skipped} of {len(hashes)} "
            "runs, FINISHED there already",
            flush=True,
        )
        nothing_left = skipped == len(hashes)
        spent = "Nothing left to run"
    if nothing_left:
        if MlflowClient(uri).get_run(resumed.parent_run_id).info.status not in (KILLED, RUNNING):
            print(f"{spent}.", flush=True)
            raise SystemExit(0)
        # Interrupted after its last run (as its best run's model was made), or killed outright
        # there (left RUNNING: this command holds the sweep): its end is what is left.
        print(f"{spent}; the sweep's end is made now.", flush=True)
    reopen_sweep_run(uri, resumed.parent_run_id, overrides)
    done = sorted(resumed.finished_hashes.intersection(hashes))
    info = SweepInfo(resumed.sweep_id, uri, experiment_id, resumed.parent_run_id, done)
    return info, skipped


def close_orphaned_runs(uri: str, experiment_id: str, parent_run_id: str) -> None:
    """Close KILLED, as cut short with their sweep's process (``failures.ORPHANED``), the
    sweep's runs still RUNNING: their configurations are not FINISHED, so they run again,
    but their records would stay RUNNING for good. A sweep killed outright (``kill -9``)
    leaves them so where its launcher's runs die with it unclosed (Ray kills a dead driver's
    workers) or one is killed with it. Called once the command holds the sweep, so no other
    command of this machine runs it: a run RUNNING then has no live process (a local job
    that saw its sweep end and is closing its run itself closes it the same way). The hold
    is of one machine, though: with a tracking server, a command of the sweep running on
    another machine would have its runs closed under it."""
    closed = close_unfinished_runs(uri, experiment_id, parent_run_id, KILLED, ORPHANED)
    if closed:
        print(
            f"{plural(len(closed), 'run')} left RUNNING by the sweep's ended process: marked "
            f"{KILLED}, {ORPHANED}",
            flush=True,
        )
