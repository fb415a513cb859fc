"""Opening the tracking store before any run starts: checked once, its schema created under a
lock file, switched to WAL journaling, and the experiment found or created; and a sweep's job
that finds no store where the sweep opened it."""

from __future__ import annotations

import fcntl
import logging
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _get_store
from omegaconf import DictConfig

from sweeper.config import TrackingConfig
from sweeper.failures import failure_reason
from sweeper.store import configure
from sweeper.store_calls import store_call
from sweeper.store_check import StoreError, check_store
from sweeper.store_uri import (
    ARTIFACTS_DIR,
    artifact_dir_name,
    resolve_tracking_uri,
    sqlite_path,
)
from sweeper.ui_links import EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT

# MLflow announces, at INFO, each table it creates in a new store; the sweep says itself where
# it tracks to. Its warnings and errors still show.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


def open_store(tracking: TrackingConfig | DictConfig) -> tuple[str, str]:
    """Check the configured store, create its experiment, and bound how long this process
    retries it later; return its URI and the experiment's id. A :class:`StoreError` says
    what is wrong with it in one line."""
    uri = resolve_tracking_uri(tracking.uri)
    check_store(uri, tracking.connect_timeout)
    try:
        experiment_id = prepare_store(uri, tracking.experiment)
    except Exception as err:
        raise StoreError(f"cannot use the tracking store {uri}: {failure_reason(err)}") from err
    configure(uri, tracking.max_outage)
    return uri, experiment_id


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
    with schema_lock(db_path):
        client = MlflowClient(uri)
        _use_write_ahead_log(db_path)
        artifacts = db_path.parent / ARTIFACTS_DIR / artifact_dir_name(experiment_name)
        return _find_or_create_experiment(client, experiment_name, artifacts.as_uri())


@contextmanager
def schema_lock(db_path: Path) -> Iterator[None]:
    """Held while a process creates or checks the schema of the SQLite store at ``db_path``:
    a lock file beside the database."""
    with open(db_path.with_name(db_path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def store_not_here(uri: str) -> str | None:
    """Why a sweep's job cannot record to the sweep's store ``uri``: a SQLite file that is
    not on this machine, a worker's of a cluster (MLflow would make an empty store there,
    which the sweep never reads, and fail its runs with errors of its schema); None where
    the store is there, or is a server."""
    path = sqlite_path(uri)
    if path is None or path.exists():
        return None
    return (
        f"the sweep's store {path} is not on this machine ({socket.gethostname()}): "
        "a sweep whose runs run on other machines needs a tracking server (docs/scaling.md)"
    )


def open_for_forked_jobs(uri: str) -> None:
    """Open the SQLite store at ``uri`` in this process, whose only work is to fork the sweep's
    jobs (the local launcher's fork server). MLflow keeps one store object per URI, so every
    job finds it open instead of opening it and checking its schema itself. Its connections
    are closed here, so that no job shares one: each connects anew. A store that does not exist
    yet, or cannot be opened, is left to the jobs, which say what is wrong with it."""
    path = sqlite_path(uri)
    if path is None or not path.exists():
        return
    try:
        with schema_lock(path):
            # MLflow's own lookup, which every MlflowClient and mlflow.start_run go through.
            store = _get_store(uri)
        store.engine.dispose()
    except Exception:
        return


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
