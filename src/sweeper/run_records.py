"""One run's records in MLflow: opened as a child of its sweep, logged to, and closed
FINISHED, FAILED with its reason, or KILLED on Ctrl-C or SIGTERM, however the block that
trains it ends (with its sweep's parent run, where the sweep's process is gone)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from mlflow.utils.validation import (
    MAX_ENTITIES_PER_BATCH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred, orphaned
from sweeper.failures import failure_reason, interruption
from sweeper.names import FAILED, KILLED, REASON_TAG, STATUS_TAG
from sweeper.provenance import GIT_COMMIT_TAG, git_commit
from sweeper.store_calls import store_call


class RunLogger:
    """The records of one active MLflow run. Metrics and tags wait in memory and are written
    together (one ``log_batch``) once ``flush_seconds`` have passed since the last write, and
    when the run ends, however it ends."""

    def __init__(
        self, run_id: str, uri: str, artifact_uri: str, flush_seconds: float = 0.0
    ) -> None:
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self._client = MlflowClient(uri)
        # From the run as it was created: MLflow's own log_artifacts reads the run back from
        # the store to find it.
        self._artifacts = get_artifact_repository(artifact_uri, tracking_uri=uri)
        self._metrics: list[Metric] = []
        self._tags: dict[str, str] = {}
        self._written = time.monotonic()

    @store_call
    def log_params(self, params: Mapping[str, Any]) -> None:
        batch = [Param(k, "null" if v is None else str(v)) for k, v in params.items()]
        self._client.log_batch(self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self._metrics += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
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
    def log_tree(self, directory: Path) -> None:
        """Log every file under ``directory`` at its relative path, in one call."""
        self._artifacts.log_artifacts(str(directory))


@contextmanager
def tracked_run(
    uri: str,
    experiment_id: str,
    run_name: str,
    tags: Mapping[str, Any],
    parent_run_id: str | None = None,
    flush_seconds: float = 0.0,
) -> Iterator[RunLogger]:
    """An active MLflow run; it ends FINISHED, KILLED on Ctrl-C (or SIGTERM), or FAILED with
    its reason tagged if the block raises. What the run's logger holds back is written before
    it ends."""
    mlflow.set_tracking_uri(uri)
    if GIT_COMMIT_TAG not in tags:
        tags = {**tags, GIT_COMMIT_TAG: git_commit()}
    # Strings: a tracking server's REST API rejects other tag values (SQLite converts them).
    run_tags = {key: str(value) for key, value in tags.items()}
    if parent_run_id:
        run_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    # MlflowClient, not mlflow.start_run and end_run: mlflow.end_run forgets the active run
    # before it records its end, so repeating it after an outage would record nothing.
    client = MlflowClient(uri)
    run = store_call(client.create_run)(
        experiment_id, tags=resolve_tags(run_tags), run_name=run_name
    )
    run_id = run.info.run_id
    logger = RunLogger(run_id, uri, run.info.artifact_uri, flush_seconds)

    def end_run(status: int) -> None:
        store_call(client.set_terminated)(run_id, RunStatus.to_string(status))

    try:
        yield logger
    except KeyboardInterrupt:
        # A second Ctrl-C (the sweep sends its own) waits until the run is closed.
        with interrupts_deferred():
            try:
                logger.set_tags({STATUS_TAG: KILLED, REASON_TAG: interruption()[0]})
                logger.flush()
                end_run(RunStatus.KILLED)
                if parent_run_id and orphaned():
                    # Its sweep's process, which would have, is gone (kill -9).
                    store_call(client.set_terminated)(
                        parent_run_id, RunStatus.to_string(RunStatus.KILLED)
                    )
            except Exception:
                # A store that stopped answering (the Ctrl-C may have come in its outage) cannot
                # close the run; the sweep's stop or its resume does. Its error in place of the
                # Ctrl-C would be taken for the run's failure, and the process would go on.
                pass
        raise
    except Exception as err:
        try:
            logger.set_tags({STATUS_TAG: FAILED, REASON_TAG: failure_reason(err)})
            logger.flush()
            end_run(RunStatus.FAILED)
        except Exception:
            # A store that failed the run (full, not answering) may fail its closing too;
            # the error that failed the run is the one to report.
            pass
        raise
    logger.flush()
    end_run(RunStatus.FINISHED)
