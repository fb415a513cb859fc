"""One run of one configuration, recorded in MLflow: :func:`run_config`, the one call the
command line, ``reproduce`` and the benchmarks make to run a config.

Inside an MLflow run it logs the params and environment, trains and evaluates
(``sweeper.experiment``), and logs every epoch, the summary metrics, the files and the model.
A failure is recorded, not raised: the run ends FAILED with its reason in one line.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
from threadpoolctl import threadpool_limits

from sweeper.config import ExperimentConfig, config_hash
from sweeper.core.training import EpochMetrics
from sweeper.experiment import run_seeds, train_and_evaluate
from sweeper.failures import failure_reason, verbose_errors
from sweeper.outcome import RunOutcome, RunProgress
from sweeper.provenance import ARTIFACT_PATH, capture_environment, data_tags
from sweeper.pruning import PRUNED, Pruning
from sweeper.run_records import RunLogger, tracked_run
from sweeper.sweep_info import SweepInfo
from sweeper.ui_links import child_run_name

# An epoch callback returns a reason to stop training after that epoch, or None.
EpochCallback = Callable[[EpochMetrics], str | None]


def blas_threads(n_jobs: int | None, cores: int | None = None) -> int:
    """BLAS threads per run so that workers x threads never exceed the cores this process may
    use (joblib counts those: CPU affinity, as under ``taskset``, and container quotas)."""
    cores = cores or joblib.cpu_count()
    if n_jobs is None:
        return cores
    # joblib's meaning, computed here because joblib.effective_n_jobs answers 1 inside a
    # job's process (it assumes a nested loop there): -1 is every core, -2 all but one.
    workers = n_jobs if n_jobs > 0 else max(cores + 1 + n_jobs, 1)
    return max(1, cores // min(workers, cores))


def logged_epoch(run: RunLogger) -> EpochCallback:
    """The epoch callback that records each epoch's metrics in the MLflow run."""

    def log(m: EpochMetrics) -> None:
        metrics = {
            "train_loss": m.train_loss,
            "train_acc": m.train_acc,
            "val_loss": m.val_loss,
            "val_acc": m.val_acc,
            "lr": m.lr,
        }
        run.log_metrics(metrics, step=m.epoch)

    return log


def reported_epoch(progress: RunProgress, out_dir: Path) -> EpochCallback:
    """The epoch callback that leaves the run's latest epoch for the sweep's live view."""
    progress.save(out_dir)

    def report(m: EpochMetrics) -> None:
        progress.epoch, progress.val_acc = m.epoch, m.val_acc
        progress.save(out_dir)

    return report


def run_config(
    config: ExperimentConfig,
    params: dict[str, Any],
    out_dir: Path,
    job: int,
    overrides: list[str],
    sweep: SweepInfo,
    dataset_cache: Path | None = None,
    threads: int | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    pruning: Pruning | None = None,
) -> RunOutcome:
    """Run one configuration inside an MLflow run, under ``threads`` BLAS threads (all cores
    if None); a failure is recorded, not raised. ``epoch_callbacks`` are called after each
    epoch, after the run's own (MLflow's record, the live view's file, the ``pruning`` of a
    search's trial, which ends the run PRUNED when its pruner says so)."""
    start = time.perf_counter()
    run_id = None
    pruning = pruning or Pruning(None)
    tags = {
        "sweep_id": sweep.sweep_id,
        "overrides": " ".join(overrides),
        "job": job,
        "config_hash": config_hash(params),
        # The process that trains it, to find (or kill) a worker from the store.
        "pid": os.getpid(),
        **run_seeds(config),
        **pruning.tags(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = RunProgress(job, overrides, config.train.epochs, time.time())
    try:
        with (
            threadpool_limits(limits=threads or blas_threads(None)),
            tracked_run(
                sweep.tracking_uri,
                sweep.experiment_id,
                run_name=child_run_name(overrides, sweep.varied_keys),
                tags=tags,
                parent_run_id=sweep.parent_run_id or None,
            ) as run,
        ):
            run_id = run.run_id
            run.log_params(params)
            run.log_files([out_dir / ".hydra" / "config.yaml"])
            environment, environment_files = capture_environment(out_dir, dataset_cache)
            run.set_tags(environment.tags())
            run.log_files(environment_files, artifact_path=ARTIFACT_PATH)
            result = train_and_evaluate(
                config,
                out_dir,
                epoch_callbacks=[
                    logged_epoch(run),
                    reported_epoch(progress, out_dir),
                    pruning.on_epoch,
                    *(epoch_callbacks or []),
                ],
                dataset_cache=dataset_cache,
                on_data=lambda sources: run.set_tags(data_tags(dict(sources))),
            )
            metrics = result.summary_metrics()
            run.log_metrics(metrics)
            if result.gradcheck_csv is not None:
                run.log_files([result.gradcheck_csv])
            run.log_files(result.figures, artifact_path="plots")
            run.log_files([result.checkpoint], artifact_path="checkpoint")
            run.log_model(result.checkpoint)
            status = "FINISHED" if pruning.pruned_at is None else PRUNED
            reason = result.training.stop_reason
            run.set_tags({"status": status, "reason": reason, **pruning.end_tags()})
    except Exception as err:
        if verbose_errors():
            traceback.print_exc()
        return RunOutcome(
            job, overrides, "FAILED", failure_reason(err), time.perf_counter() - start, run_id
        )
    return RunOutcome(
        job,
        overrides,
        status,
        reason,
        time.perf_counter() - start,
        run_id,
        metrics,
    )
