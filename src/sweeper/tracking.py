"""Everything sweeper says to MLflow: the store, the sweep's parent run, each run's records.

The default store is a SQLite database in ``./mlruns`` with the artifacts beside it, because
MLflow 3 no longer accepts a bare file store. ``MLFLOW_TRACKING_URI`` (or ``tracking.uri``)
points elsewhere, a tracking server included.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from sweeper.core.training import EpochMetrics

DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"
# Logged as code (MLflow "models from code"), so loading a model never unpickles an object.
SERVED_MODEL_CODE = Path(__file__).with_name("served_model.py")


def resolve_tracking_uri(configured: str | None) -> str:
    if configured:
        return configured
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / DEFAULT_DB_NAME}"


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def prepare_store(uri: str, experiment_name: str) -> str:
    """Create the store's schema and the experiment; return the experiment id.

    Called once in the parent process before any worker starts: MLflow creates the SQLite
    schema on first use, and several processes doing that at once race.
    """
    db_path = _sqlite_path(uri)
    artifact_location = None
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        artifact_location = (db_path.parent / "artifacts" / experiment_name).as_uri()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(experiment_name, artifact_location=artifact_location))


@cache
def git_commit() -> str:
    """The commit of the code that runs, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def start_sweep_run(uri: str, experiment_id: str, sweep_id: str, overrides: str) -> str:
    run = MlflowClient(uri).create_run(
        experiment_id,
        run_name=f"sweep {sweep_id}",
        tags={"sweep_id": sweep_id, "overrides": overrides, "git_commit": git_commit(),
              "kind": "sweep"},
    )
    return str(run.info.run_id)


def end_sweep_run(uri: str, run_id: str, n_runs: int, n_failed: int) -> None:
    client = MlflowClient(uri)
    client.log_metric(run_id, "runs", n_runs)
    client.log_metric(run_id, "failed_runs", n_failed)
    status = RunStatus.FAILED if n_failed else RunStatus.FINISHED
    client.set_terminated(run_id, RunStatus.to_string(status))


class RunLogger:
    """The records of one active MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        mlflow.log_params({k: ("null" if v is None else v) for k, v in params.items()})

    def log_epoch(self, metrics: EpochMetrics) -> None:
        mlflow.log_metrics(
            {
                "train_loss": metrics.train_loss,
                "train_acc": metrics.train_acc,
                "val_loss": metrics.val_loss,
                "val_acc": metrics.val_acc,
            },
            step=metrics.epoch,
        )

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics(dict(metrics))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        mlflow.set_tags(dict(tags))

    def log_files(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_model(self, checkpoint: Path) -> None:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SERVED_MODEL_CODE),
            artifacts={"checkpoint": str(checkpoint)},
            # Listed by hand: inferring them would load the model in a subprocess per run.
            pip_requirements=["numpy", "mlflow", "sweeper"],
        )


def failure_reason(err: BaseException) -> str:
    """One line a person can act on: the error's own message, not its traceback."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


@contextmanager
def tracked_run(
    uri: str,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> Iterator[RunLogger]:
    """An active MLflow run; it ends FINISHED, KILLED on Ctrl-C, or FAILED with its reason
    tagged if the block raises."""
    mlflow.set_tracking_uri(uri)
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        parent_run_id=parent_run_id,
        # Strings: a tracking server's REST API rejects other tag values (SQLite converts them).
        tags={key: str(value) for key, value in {**tags, "git_commit": git_commit()}.items()},
    )
    try:
        yield RunLogger(run.info.run_id)
    except KeyboardInterrupt:
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as err:
        mlflow.set_tags({"status": "FAILED", "reason": failure_reason(err)})
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def ui_command(uri: str) -> str:
    """The shell command that browses this store in the MLflow UI."""
    if urlparse(uri).scheme in ("http", "https"):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
