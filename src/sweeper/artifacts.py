"""A run's costly artifacts, made where they are used: the MLflow pyfunc model and the curves.

On a small study they cost more than training (docs/performance.md, section 8), and few runs
are ever served or looked at one by one: MLflow's UI charts every run's per-epoch metrics
itself and the report draws its curves from them. ``tracking.model`` and ``tracking.curves``
say which runs get them (:class:`sweeper.config.Made`); by default the sweep's best run, at the
sweep's end. Both are made from what every run keeps in the store (the checkpoint artifact,
the per-epoch metrics), so any run's can be made later:

    python -m sweeper.artifacts RUN_ID [RUN_ID ...] [--tracking-uri URI] [--only model|curves]
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils import requirements_utils
from mlflow.utils.file_utils import local_file_uri_to_path
from mlflow.utils.uri import is_local_uri

from sweeper.config import Made
from sweeper.core.training import EpochMetrics
from sweeper.experiment import CHECKPOINT_FILE
from sweeper.failures import failure_reason
from sweeper.names import (
    BEST_EPOCH,
    EPOCH_METRICS,
    LR,
    MODEL_CHECKPOINT,
    REASON_TAG,
    STATUS_TAG,
    TRAIN_ACC,
    TRAIN_LOSS,
    VAL_ACC,
    VAL_LOSS,
)
from sweeper.plots import eval_train_of, save_curves
from sweeper.store_reads import metric_curves, quiet_downloads
from sweeper.store_uri import (
    TRACKING_URI_HELP,
    TRACKING_URI_OPTION,
    resolve_tracking_uri,
    sqlite_path,
)
from sweeper.sweep_runs import sweep_parent_problem

# Downloading the checkpoint, and logging a model, which copies its files through a download.
quiet_downloads()
# Logged as code (MLflow "models from code"), so loading a model never unpickles an object.
SERVED_MODEL_CODE = Path(__file__).with_name("served_model.py")
MODEL_NAME = "model"
# Where a run keeps its best epoch's checkpoint among its artifacts.
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_ARTIFACT = f"{CHECKPOINT_DIR}/{CHECKPOINT_FILE}"
PLOTS = "plots"
# Listed by hand: inferring them would load the model in a subprocess. Not sweeper: the PyPI
# package of that name is another project's, which an environment built from this list would
# install; the model loads where this sweeper is installed. Each is its own module's package.
SERVED_MODEL_REQUIREMENTS = {"numpy": ["numpy"], "mlflow": ["mlflow"]}


def log_served_model(uri: str, experiment_id: str, run_id: str, checkpoint: Path) -> None:
    """Log the pyfunc model of ``checkpoint`` for the run of ``experiment_id``, as
    ``runs:/RUN_ID/model``."""
    mlflow.set_tracking_uri(uri)
    # MLflow files a model under the active experiment; the run's is where runs:/RUN_ID/model
    # is looked up.
    mlflow.set_experiment(experiment_id=experiment_id)
    with _requirements_known():
        mlflow.models.Model.log(
            artifact_path=None,
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            python_model=str(SERVED_MODEL_CODE),
            artifacts={MODEL_CHECKPOINT: str(checkpoint)},
            pip_requirements=list(SERVED_MODEL_REQUIREMENTS),
        )


@contextmanager
def _requirements_known() -> Iterator[None]:
    """MLflow's modules-to-packages map holding only the served model's requirements, for as
    long as the model is logged, unless the process already has the whole map.

    Before it checks a model's requirements against the installed versions, MLflow builds
    that map from the files of every installed distribution, a scan that grows with the
    environment and costs more than the rest of logging the model; ours need no scan.
    """
    if getattr(requirements_utils, "_MODULES_TO_PACKAGES", None) is not None:
        yield
        return
    packages_to_modules = getattr(requirements_utils, "_PACKAGES_TO_MODULES", None)
    # MLflow's global, typed as its initial None.
    requirements_utils._MODULES_TO_PACKAGES = dict(SERVED_MODEL_REQUIREMENTS)  # type: ignore[assignment]
    try:
        yield
    finally:
        requirements_utils._MODULES_TO_PACKAGES = None
        requirements_utils._PACKAGES_TO_MODULES = packages_to_modules


def model_uri(run_id: str) -> str:
    """Where ``mlflow.pyfunc.load_model`` finds the run's model."""
    return f"runs:/{run_id}/{MODEL_NAME}"


def model_reference(run_id: str, tracking_uri: str) -> str:
    """The run's model URI with the store it is found in, as printed for a person:
    ``runs:/ID/model (MLFLOW_TRACKING_URI=sqlite:////abs/mlruns/mlflow.db)``. Without the
    store MLflow looks in its own default, ./mlflow.db, which it creates empty."""
    return f"{model_uri(run_id)} (MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)})"


def artifacts_gone(run: Run, tracking_uri: str) -> str | None:
    """Why the run's artifacts cannot be reached: its local artifact directory is gone, away
    from the store's database (the store was moved or copied, and MLflow keeps the absolute
    path); None where it is there, is not local, or is beside the database, where a run that
    logged no artifact has none."""
    uri = run.info.artifact_uri
    if not is_local_uri(uri):
        return None
    directory = Path(local_file_uri_to_path(uri))
    database = sqlite_path(tracking_uri)
    if directory.is_dir() or (database is not None and directory.is_relative_to(database.parent)):
        return None
    return (
        f"the artifacts of run {run.info.run_id} are not at {uri}, where the store records "
        "them: was the store moved? Move its artifacts back there (MLflow keeps that path)"
    )


def has_model(run: Run) -> bool:
    return bool(run.outputs and run.outputs.model_outputs)


def has_curves(client: MlflowClient, run_id: str) -> bool:
    return bool(client.list_artifacts(run_id, PLOTS))


def history_of(client: MlflowClient, run: Run) -> list[EpochMetrics]:
    """The run's per-epoch metrics from the store, as training reported them."""
    run_id = run.info.run_id
    curves = metric_curves(client, [run_id], EPOCH_METRICS)[run_id]
    series = {key: dict(curve) for key, curve in curves.items()}
    return [
        EpochMetrics(
            epoch=epoch,
            **{key: series[key][epoch] for key in (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC)},
            seconds=0.0,
            lr=series[LR].get(epoch, math.nan),
        )
        for epoch in sorted(series[VAL_LOSS])
    ]


class MissingPartError(ValueError):
    """The run lacks what an artifact is made from (a run that failed before its end)."""


class SweepParentError(ValueError):
    """The run is a sweep's parent run: nothing of it was trained (its children were)."""


class ArtifactsGoneError(ValueError):
    """The run's artifact directory is not where the store records it: nothing can be made."""


class Artifacts(NamedTuple):
    """What was made for a run, and what could not be, each in one line that says why."""

    made: list[str]
    missing: list[str]


def _ended_as(run: Run) -> str:
    tags = run.data.tags
    status, reason = tags.get(STATUS_TAG, run.info.status), tags.get(REASON_TAG, "no reason kept")
    return f"it ended {status}: {reason}"


def make_artifacts(uri: str, run_id: str, model: bool = True, curves: bool = True) -> Artifacts:
    """Make the run's model and curves from the store, those it lacks, each that it can: a
    run without a checkpoint (killed or failed before its first best epoch was kept) may
    still have epochs' metrics to draw."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    problem = sweep_parent_problem(uri, run)
    if problem is not None:
        raise SweepParentError(problem)
    # Checked first: logging into the recorded path would make the directory there again.
    gone = artifacts_gone(run, uri)
    if gone is not None:
        raise ArtifactsGoneError(gone)
    made: list[str] = []
    missing: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sweeper-artifacts-") as tmp:
        for wanted, make in ((model, _make_model), (curves, _make_curves)):
            if not wanted:
                continue
            try:
                made += make(client, uri, run, Path(tmp))
            except MissingPartError as err:
                missing.append(str(err))
    return Artifacts(made, missing)


def _make_model(client: MlflowClient, uri: str, run: Run, tmp: Path) -> list[str]:
    run_id = run.info.run_id
    if has_model(run):
        return []
    if not client.list_artifacts(run_id, CHECKPOINT_DIR):
        raise MissingPartError(f"no checkpoint to make a model of ({_ended_as(run)})")
    checkpoint = client.download_artifacts(run_id, CHECKPOINT_ARTIFACT, str(tmp))
    log_served_model(uri, run.info.experiment_id, run_id, Path(checkpoint))
    return [model_reference(run_id, uri)]


def _make_curves(client: MlflowClient, uri: str, run: Run, tmp: Path) -> list[str]:
    run_id = run.info.run_id
    if has_curves(client, run_id):
        return []
    history = history_of(client, run)
    if not history:
        raise MissingPartError(f"no epoch's metrics to draw ({_ended_as(run)})")
    # A run that failed after some epochs has curves and no best_epoch of its own.
    best_epoch = int(run.data.metrics.get(BEST_EPOCH, min(history, key=lambda m: m.val_loss).epoch))
    figures = save_curves(history, best_epoch, tmp, eval_train_of(run.data.params))
    for figure in figures:
        client.log_artifact(run_id, str(figure), PLOTS)
    return [f"{PLOTS}/{figure.name}" for figure in figures]


def make_best_run_artifacts(uri: str, run_id: str, model: Made, curves: Made) -> list[str]:
    """At a sweep's end: the artifacts that ``tracking.model`` and ``tracking.curves`` give
    its best run; what was made. Raises ``MissingPartError`` for one it cannot have."""
    made, missing = make_artifacts(
        uri, run_id, model=Made(model) is Made.best, curves=Made(curves) is Made.best
    )
    if missing:
        raise MissingPartError("; ".join(missing))
    return made


def main(argv: Sequence[str] | None = None) -> int:
    from sweeper.report.runs import ReportError, open_client

    parser = argparse.ArgumentParser(
        prog="python -m sweeper.artifacts",
        description="Make runs' MLflow pyfunc model and loss/accuracy figures from the store.",
    )
    parser.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    parser.add_argument(TRACKING_URI_OPTION, help=TRACKING_URI_HELP)
    # Hidden: scripts that name the store --uri keep working.
    parser.add_argument("--uri", dest="tracking_uri", help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["model", "curves"], help="make only this one")
    args = parser.parse_args(argv)
    try:
        # Checked as the report checks it: MLflow would make an empty store where none is.
        uri = open_client(resolve_tracking_uri(args.tracking_uri)).tracking_uri
    except ReportError as err:
        print(f"Error: {err}", file=sys.stderr)
        return 1
    status = 0
    for run_id in args.run_ids:
        try:
            made, missing = make_artifacts(
                uri, run_id, model=args.only != "curves", curves=args.only != "model"
            )
        except (SweepParentError, ArtifactsGoneError) as err:
            print(f"Error: {err}", file=sys.stderr)
            status = 1
            continue
        except Exception as err:
            print(f"Error: run {run_id}: {failure_reason(err)}", file=sys.stderr)
            status = 1
            continue
        if made or not missing:
            print(f"{run_id}: {', '.join(made) if made else 'nothing to make, already there'}")
        # An error where none of what was asked for can be made (the one --only names);
        # else what can be made is, and what cannot is said.
        failed = len(missing) == (1 if args.only else 2)
        for why in missing:
            print(f"{'Error: ' if failed else ''}run {run_id}: {why}", file=sys.stderr)
        status = max(status, int(failed))
    return status


if __name__ == "__main__":
    sys.exit(main())
