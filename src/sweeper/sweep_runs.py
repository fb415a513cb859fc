"""The sweep's parent run in MLflow and its children as a whole: its id chosen, started or
reopened, described, searched, their leftovers closed, and ended with the sweep's counts; and
a parent run told from its children where a command wants one of theirs."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from sweeper.names import (
    JOB_TAG,
    KIND_TAG,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    PID_TAG,
    REASON_TAG,
    STATUS_TAG,
    SWEEP_FILTER,
    SWEEP_ID_TAG,
    SWEEP_KIND,
)
from sweeper.provenance import GIT_COMMIT_TAG, git_commit
from sweeper.report.runs import kept_runs, ranked_runs, run_record
from sweeper.store_calls import store_call
from sweeper.store_reads import search_all
from sweeper.ui_links import NOTE_TAG, SHARED_VIEW_TAG_PREFIX, share_key, view_json


@store_call
def free_sweep_id(uri: str, experiment_id: str, wanted: str) -> str:
    """``wanted`` (the sweep directory's name), or ``wanted-2``, ``wanted-3``... where a
    sweep of the experiment has it: a ``hydra.sweep.dir`` used again would give two sweeps
    one id, and the report (``report.runs.find_sweep``) would reach the newer alone. One query,
    of the sweeps whose id starts as ``wanted`` does."""
    # Up to a character the filter would have to escape; more sweeps match, none is missed.
    prefix = re.split(r"['\"\\]", wanted)[0]
    query = f"{SWEEP_FILTER} and tags.{SWEEP_ID_TAG} LIKE '{prefix}%'"
    runs = search_all(MlflowClient(uri), experiment_id, query)
    taken = {run.data.tags.get(SWEEP_ID_TAG) for run in runs}
    candidates = (wanted if n == 1 else f"{wanted}-{n}" for n in itertools.count(1))
    return next(c for c in candidates if c not in taken)


@store_call
def start_sweep_run(
    uri: str, experiment_id: str, sweep_id: str, overrides: str, run_name: str
) -> str:
    run = MlflowClient(uri).create_run(
        experiment_id,
        run_name=run_name,
        tags={
            SWEEP_ID_TAG: sweep_id,
            OVERRIDES_TAG: overrides,
            GIT_COMMIT_TAG: git_commit(),
            KIND_TAG: SWEEP_KIND,
        },
    )
    return str(run.info.run_id)


@store_call
def reopen_sweep_run(uri: str, run_id: str, overrides: str) -> None:
    """Mark a resumed sweep's parent run RUNNING again, noting the resuming command."""
    client = MlflowClient(uri)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.set_tag(run_id, "resumed_with", overrides)


@store_call
def share_sweep_view(
    uri: str, experiment_id: str, parent_run_id: str, view: dict[str, Any]
) -> None:
    """Record the runs page's view of a sweep (``ui_links.sweep_view``) as a shared view of
    its experiment, which the sweep's link opens."""
    key = f"{SHARED_VIEW_TAG_PREFIX}{share_key(parent_run_id)}"
    MlflowClient(uri).set_experiment_tag(experiment_id, key, view_json(view))


@store_call
def describe_run(uri: str, run_id: str, note: str) -> None:
    """Set the run's description, which the UI shows on its page."""
    MlflowClient(uri).set_tag(run_id, NOTE_TAG, note)


@store_call
def best_child_run(uri: str, experiment_id: str, parent_run_id: str) -> Run | None:
    """The sweep's best run, the one its report names best (``report.runs.ranked_runs``):
    of its children (resumed runs included) that finished, unpruned, in a complete
    configuration (every seed finished), the first by ``RANKED_BY``; of equal ones the first
    started, as a search's best trial is the first to reach its value. None if there is none."""
    children = search_all(
        MlflowClient(uri), experiment_id, f"tags.{PARENT_RUN_TAG} = '{parent_run_id}'"
    )
    ranked = ranked_runs(kept_runs(run_record(run) for run in children))
    if not ranked:
        return None
    return next(run for run in children if run.info.run_id == ranked[0].run_id)


def sweep_parent_problem(uri: str, run: Run) -> str | None:
    """Where ``run`` is a sweep's parent run, which trains nothing (no config, no checkpoint,
    no curves of its own), one line that says so and names its best child run to give
    instead; None for any other run."""
    if run.data.tags.get(KIND_TAG) != SWEEP_KIND:
        return None
    best = best_child_run(uri, run.info.experiment_id, run.info.run_id)
    instead = f" (its best: {best.info.run_id})" if best is not None else ""
    return (
        f"run {run.info.run_id} is sweep {run.data.tags.get(SWEEP_ID_TAG, '?')}'s parent run, "
        f"which trains nothing: give one of its child runs{instead}"
    )


@store_call
def close_unfinished_runs(
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    status: str,
    reason: str,
    pid: int | None = None,
    job: int | None = None,
) -> list[Run]:
    """End every child of the sweep still RUNNING (its process is gone), or only the one that
    process ``pid`` trained, or that job number ``job`` is, with ``status`` and ``reason``;
    return them. Their metrics logged so far stay."""
    client = MlflowClient(uri)
    query = _children(parent_run_id, pid, job) + " and attributes.status = 'RUNNING'"
    running = search_all(client, experiment_id, query)
    tags = [RunTag(STATUS_TAG, status), RunTag(REASON_TAG, reason)]
    for run in running:
        # log_batch, not set_tag: when another process tags the run at the same moment (its
        # own worker on Ctrl-C), MLflow retries log_batch's insert where set_tag's fails.
        client.log_batch(run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id, status)
    return running


@store_call
def child_run_id(
    uri: str, experiment_id: str, parent_run_id: str, pid: int | None, job: int
) -> str | None:
    """The child of the sweep that process ``pid`` trained, else job number ``job`` (whatever
    its status: it may have closed itself); None if there is none."""
    query = _children(parent_run_id, pid, job if pid is None else None)
    runs = MlflowClient(uri).search_runs([experiment_id], query, max_results=1)
    return str(runs[0].info.run_id) if runs else None


def _children(parent_run_id: str, pid: int | None, job: int | None) -> str:
    """The filter of the sweep's children, or of the one process ``pid`` trained, or job
    number ``job`` is."""
    query = f"tags.{PARENT_RUN_TAG} = '{parent_run_id}'"
    if pid is not None:
        query += f" and tags.{PID_TAG} = '{pid}'"
    if job is not None:
        query += f" and tags.{JOB_TAG} = '{job}'"
    return query


@store_call
def end_sweep_run(
    uri: str, run_id: str, n_runs: int, n_failed: int, n_killed: int, status: str | None = None
) -> None:
    """Log the sweep's counts (its runs, and of them those FAILED and those cut short, KILLED)
    and end its parent run: ``status``, else FAILED if any failed or was cut short."""
    client = MlflowClient(uri)
    now = int(time.time() * 1000)
    counts = {"runs": n_runs, "failed_runs": n_failed, "killed_runs": n_killed}
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()])
    if status is None:
        ended = RunStatus.FAILED if n_failed or n_killed else RunStatus.FINISHED
        status = RunStatus.to_string(ended)
    client.set_terminated(run_id, status)
