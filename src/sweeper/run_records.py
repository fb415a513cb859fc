"""One run's records in MLflow: opened as a child of its sweep, logged to, and closed
FINISHED, FAILED with its reason, or KILLED on Ctrl-C, however the block that trains it ends."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import RunStatus
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR

from sweeper.failures import INTERRUPTED, failure_reason
from sweeper.provenance import git_commit
from sweeper.store_calls import store_call

# Logged as code (MLflow "models from code"), so loading a model never unpickles an object.
SERVED_MODEL_CODE = Path(__file__).with_name("served_model.py")
# log_model copies the model's files through MLflow's artifact download, which draws a progress
# bar per run on the terminal the sweep prints to; a user's own setting wins.
os.environ.setdefault(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name, "false")


class RunLogger:
    """The records of one active MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    @store_call
    def log_params(self, params: Mapping[str, Any]) -> None:
        mlflow.log_params({k: ("null" if v is None else v) for k, v in params.items()})

    @store_call
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        mlflow.log_metrics(dict(metrics), step=step)

    @store_call
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        mlflow.set_tags(dict(tags))

    @store_call
    def log_files(self, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    @store_call
    def log_model(self, checkpoint: Path) -> None:
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(SERVED_MODEL_CODE),
            artifacts={"checkpoint": str(checkpoint)},
            # Listed by hand: inferring them would load the model in a subprocess per run.
            pip_requirements=["numpy", "mlflow", "sweeper"],
        )


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
    run = store_call(mlflow.start_run)(
        experiment_id=experiment_id,
        run_name=run_name,
        parent_run_id=parent_run_id,
        # Strings: a tracking server's REST API rejects other tag values (SQLite converts them).
        tags={key: str(value) for key, value in {**tags, "git_commit": git_commit()}.items()},
    )
    logger = RunLogger(run.info.run_id)
    end_run = store_call(mlflow.end_run)
    try:
        yield logger
    except KeyboardInterrupt:
        logger.set_tags({"status": "KILLED", "reason": INTERRUPTED})
        end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as err:
        try:
            logger.set_tags({"status": "FAILED", "reason": failure_reason(err)})
            end_run(RunStatus.to_string(RunStatus.FAILED))
        except Exception:
            # A store that failed the run (full, not answering) may fail its closing too;
            # the error that failed the run is the one to report.
            pass
        raise
    end_run(RunStatus.to_string(RunStatus.FINISHED))
