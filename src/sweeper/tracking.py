"""Everything sweeper says to MLflow: the store, the sweep's parent run, each run's records.

The default store is a SQLite database in ``./mlruns`` with the artifacts beside it, because
MLflow 3 no longer accepts a bare file store. ``MLFLOW_TRACKING_URI`` (or ``tracking.uri``)
points elsewhere, a tracking server included.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from sweeper.core.training import EpochMetrics
from sweeper.provenance import git_commit
from sweeper.store import outage_retried, sqlite_path, store_problem
from sweeper.ui_links import (
    EXPERIMENT_KIND_TAG,
    MODEL_DEVELOPMENT,
    NOTE_TAG,
    SHARED_VIEW_TAG_PREFIX,
    share_key,
    view_json,
)

DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"
# Several processes (a sweep's workers, or two sweeps) write one SQLite file. MLflow waits
# 20 s for the lock, but SQLite answers "database is locked" at once when a transaction that
# read must turn into a writer after another wrote; the transaction was rolled back, so
# repeating the call is safe. Waits double from LOCK_RETRY_FIRST_WAIT, LOCK_RETRIES times.
LOCK_RETRIES = 8
LOCK_RETRY_FIRST_WAIT = 0.05

# The reason a run stopped by Ctrl-C is given, in its tags and in the sweep's summary.
INTERRUPTED = "interrupted (Ctrl-C)"

P = ParamSpec("P")
T = TypeVar("T")


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back until the block ends, then raise it. A KeyboardInterrupt inside an
    MLflow call can leave a SQLite write transaction half done, its lock held, and every later
    write (the run's own KILLED tag, the sweep's) then waits for a lock that never comes.
    Signal handlers belong to the main thread; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)


def store_call(func: Callable[P, T]) -> Callable[P, T]:
    """An MLflow call on a store several processes share: never cut in half by Ctrl-C, and
    made again, with growing waits, while SQLite answers "database is locked" or, for a
    bounded time, while the store does not answer (``sweeper.store.outage_retried``)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return outage_retried(lambda: locks_retried(*args, **kwargs))

    def locks_retried(*args: P.args, **kwargs: P.kwargs) -> T:
        with interrupts_deferred():
            for attempt in range(LOCK_RETRIES):
                try:
                    return func(*args, **kwargs)
                except Exception as err:
                    if "database is locked" not in str(err):
                        raise
                    time.sleep(LOCK_RETRY_FIRST_WAIT * 2**attempt)
            return func(*args, **kwargs)

    return wrapper


def _not_a_locked_or_full_database(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "database is locked" not in message and "database or disk is full" not in message


# MLflow logs each SQLite "database is locked" or "database or disk is full" with a full
# traceback before it raises it. The calls here retry the locked ones (store_call), and one
# that still fails raises and is reported as the run's failure in one line, so the log is only
# a traceback that reads as a crash (several processes writing at once, as when Ctrl-C stops a
# sweep's runs together, meet it; a full disk, in every run).
logging.getLogger("mlflow.store.db.utils").addFilter(_not_a_locked_or_full_database)


def resolve_tracking_uri(configured: str | None) -> str:
    if configured:
        return configured
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / DEFAULT_DB_NAME}"


@store_call
def prepare_store(uri: str, experiment_name: str) -> str:
    """Create the store's schema and the experiment; return the experiment id.

    Called once in the parent process before any worker starts: MLflow creates (and migrates)
    the SQLite schema on first use, and several processes doing that at once race, so sweeps
    started together take turns here, holding a lock file beside the database.
    """
    db_path = sqlite_path(uri)
    if db_path is None:
        return _find_or_create_experiment(MlflowClient(uri), experiment_name, None)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with open(db_path.with_name(db_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(uri)
        _use_write_ahead_log(db_path)
        artifact_location = (db_path.parent / "artifacts" / experiment_name).as_uri()
        return _find_or_create_experiment(client, experiment_name, artifact_location)


def _find_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None
) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return str(
            client.create_experiment(
                name,
                artifact_location=artifact_location,
                tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT},
            )
        )
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        # An experiment made before, or by MLflow itself; a kind set by hand is kept.
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return str(experiment.experiment_id)


def _use_write_ahead_log(db_path: Path) -> None:
    """Switch the SQLite file to WAL journaling (a property of the file, kept once set), so
    readers never block the writer and a writer killed mid-transaction leaves nothing half
    written."""
    with sqlite3.connect(db_path, timeout=20) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()


@store_call
def start_sweep_run(
    uri: str, experiment_id: str, sweep_id: str, overrides: str, run_name: str
) -> str:
    run = MlflowClient(uri).create_run(
        experiment_id,
        run_name=run_name,
        tags={
            "sweep_id": sweep_id,
            "overrides": overrides,
            "git_commit": git_commit(),
            "kind": "sweep",
        },
    )
    return str(run.info.run_id)


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
def best_child_run(uri: str, experiment_id: str, parent_run_id: str, metric: str) -> Run | None:
    """The FINISHED child of the sweep with the highest ``metric``, resumed runs included."""
    found = MlflowClient(uri).search_runs(
        [experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'",
        order_by=[f"metrics.`{metric}` DESC"],
        max_results=1,
    )
    return found[0] if found else None


@store_call
def reopen_sweep_run(uri: str, run_id: str, overrides: str) -> None:
    """Mark a resumed sweep's parent run RUNNING again, noting the resuming command."""
    client = MlflowClient(uri)
    client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
    client.set_tag(run_id, "resumed_with", overrides)


@store_call
def end_sweep_run(
    uri: str, run_id: str, n_runs: int, n_failed: int, status: str | None = None
) -> None:
    """Log the sweep's counts and end its parent run: ``status``, else FAILED if any failed."""
    client = MlflowClient(uri)
    client.log_metric(run_id, "runs", n_runs)
    client.log_metric(run_id, "failed_runs", n_failed)
    if status is None:
        status = RunStatus.to_string(RunStatus.FAILED if n_failed else RunStatus.FINISHED)
    client.set_terminated(run_id, status)


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=1000, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


@dataclass(frozen=True)
class ResumePoint:
    """The sweep a ``resume=true`` command continues, and the configurations it finished."""

    sweep_id: str
    parent_run_id: str
    finished_hashes: frozenset[str]


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
        for run in _search_all(client, experiment_id, "")
        if run.data.tags.get("config_hash") in planned and "mlflow.parentRunId" in run.data.tags
    ]
    if not overlapping:
        return None
    newest = max(overlapping, key=lambda run: run.info.start_time)
    sweep_id = newest.data.tags["sweep_id"]
    parent_run_id = newest.data.tags["mlflow.parentRunId"]
    finished = frozenset(
        run.data.tags["config_hash"]
        for run in overlapping
        if run.data.tags.get("mlflow.parentRunId") == parent_run_id
        and run.info.status == RunStatus.to_string(RunStatus.FINISHED)
    )
    return ResumePoint(sweep_id, parent_run_id, finished)


@store_call
def close_unfinished_runs(
    uri: str,
    experiment_id: str,
    parent_run_id: str,
    status: str,
    reason: str,
    pid: int | None = None,
) -> list[Run]:
    """End every child of the sweep still RUNNING (its process is gone), or only the one that
    process ``pid`` trained, with ``status`` and ``reason``; return them. Their metrics logged
    so far stay."""
    client = MlflowClient(uri)
    query = f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
    if pid is not None:
        query += f" and tags.pid = '{pid}'"
    running = _search_all(client, experiment_id, query)
    tags = [RunTag("status", status), RunTag("reason", reason)]
    for run in running:
        # log_batch, not set_tag: when another process tags the run at the same moment (its
        # own worker on Ctrl-C), MLflow retries log_batch's insert where set_tag's fails.
        client.log_batch(run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id, status)
    return running


class RunLogger:
    """The records of one active MLflow run. Metrics and tags wait in memory and are written
    together (one ``log_batch``) once ``flush_seconds`` have passed since the last write, and
    when the run ends, however it ends."""

    def __init__(self, run_id: str, uri: str, flush_seconds: float = 0.0) -> None:
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._client = MlflowClient(uri)
        self._metrics: list[Metric] = []
        self._tags: dict[str, str] = {}
        self._written = time.monotonic()

    @store_call
    def log_params(self, params: Mapping[str, Any]) -> None:
        mlflow.log_params({k: ("null" if v is None else v) for k, v in params.items()})

    def log_epoch(self, metrics: EpochMetrics) -> None:
        values = {
            "train_loss": metrics.train_loss,
            "train_acc": metrics.train_acc,
            "val_loss": metrics.val_loss,
            "val_acc": metrics.val_acc,
            "lr": metrics.lr,
        }
        self.log_metrics(values, step=metrics.epoch)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self._flush_if_due()

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._tags.update({key: str(value) for key, value in tags.items()})
        self._flush_if_due()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._written >= self.flush_seconds:
            self.flush()

    @store_call
    def flush(self) -> None:
        """Write what waits: metrics and tags, in as few ``log_batch`` calls as MLflow allows."""
        tags = [RunTag(key, value) for key, value in self._tags.items()]
        metrics = self._metrics
        while metrics or tags:
            batch_tags = tags[:MAX_PARAMS_TAGS_PER_BATCH]
            room = MAX_ENTITIES_PER_BATCH - len(batch_tags)
            batch = metrics[: min(room, MAX_METRICS_PER_BATCH)]
            self._client.log_batch(self.run_id, metrics=batch, tags=batch_tags)
            metrics, tags = metrics[len(batch) :], tags[len(batch_tags) :]
            # Written: a retry after a later failure must not write them twice.
            self._metrics, self._tags = metrics, dict((t.key, t.value) for t in tags)
        self._written = time.monotonic()

    @store_call
    def log_files(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    @store_call
    def log_tree(self, directory: Path) -> None:
        """Log every file under ``directory`` at its relative path, in one call."""
        mlflow.log_artifacts(str(directory))


def failure_reason(err: BaseException) -> str:
    """One line a person can act on: the error's own message, not its traceback, or what
    went wrong with the store (``sweeper.store.store_problem``)."""
    problem = store_problem(err)
    if problem is not None:
        return problem
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@contextmanager
def tracked_run(
    uri: str,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
    flush_seconds: float = 0.0,
) -> Iterator[RunLogger]:
    """An active MLflow run; it ends FINISHED, KILLED on Ctrl-C, or FAILED with its reason
    tagged if the block raises. What the run's logger holds back is written before it ends."""
    mlflow.set_tracking_uri(uri)
    if "git_commit" not in tags:
        tags = {**tags, "git_commit": git_commit()}
    run = store_call(mlflow.start_run)(
        experiment_id=experiment_id,
        run_name=run_name,
        parent_run_id=parent_run_id,
        # Strings: a tracking server's REST API rejects other tag values (SQLite converts them).
        tags={key: str(value) for key, value in tags.items()},
    )
    logger = RunLogger(run.info.run_id, uri, flush_seconds)
    end_run = store_call(mlflow.end_run)
    try:
        yield logger
    except KeyboardInterrupt:
        logger.set_tags({"status": "KILLED", "reason": INTERRUPTED})
        logger.flush()
        end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as err:
        try:
            logger.set_tags({"status": "FAILED", "reason": failure_reason(err)})
            logger.flush()
            end_run(RunStatus.to_string(RunStatus.FAILED))
        except Exception:
            # A store that failed the run (full, not answering) may fail its closing too;
            # the error that failed the run is the one to report.
            pass
        raise
    logger.flush()
    end_run(RunStatus.to_string(RunStatus.FINISHED))


def ui_command(uri: str) -> str:
    """The shell command that browses this store in the MLflow UI."""
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
