"""One run of one configuration, recorded in MLflow: :func:`run_config`, the one call the
command line, ``reproduce`` and the benchmarks make to run a config.

Inside an MLflow run it logs the params, the config and the environment before training (a
run that fails or is killed can be reproduced) and the gradient check as soon as it is done,
trains and evaluates (``sweeper.experiment``), and logs every epoch, the summary metrics and
its other files in batches; the model and the curves only where
``tracking.model``/``tracking.curves`` say (``artifacts``).
A failure is recorded, not raised: the run ends FAILED with its reason in one line. Ctrl-C
(or SIGTERM) is raised once the run is closed KILLED and that outcome left.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import joblib
from threadpoolctl import threadpool_limits

from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred
from sweeper.artifacts import CHECKPOINT_DIR, PLOTS, log_served_model, model_uri
from sweeper.config import ExperimentConfig, Made, config_hash
from sweeper.core.training import EpochMetrics
from sweeper.data.cache import DataCache
from sweeper.data.datasets import resolve_data_dir
from sweeper.experiment import run_seeds, train_and_evaluate
from sweeper.failures import failure_fix, failure_reason, interruption, verbose_errors
from sweeper.names import (
    CONFIG_HASH_TAG,
    EPOCH_METRICS,
    FAILED,
    FINISHED,
    JOB_TAG,
    KILLED,
    OVERRIDES_TAG,
    PID_TAG,
    PRUNED,
    REASON_TAG,
    STATUS_TAG,
    SWEEP_ID_TAG,
)
from sweeper.outcome import PROGRESS_SECONDS, RunOutcome, RunProgress, gradcheck_failure
from sweeper.provenance import ARTIFACT_PATH, capture_environment, data_tags
from sweeper.pruning import Pruning
from sweeper.run_records import RunLogger, tracked_run
from sweeper.sweep_info import SweepInfo
from sweeper.ui_links import child_run_name

# In a run's output directory: its artifacts, laid out as MLflow keeps them, those logged
# before training, after the gradient check and after training apart.
STAGED_DIR = "artifacts"
STARTED, CHECKED, ENDED = "started", "checked", "ended"
# Where Hydra leaves a job's composed config in its output directory; the run logs it at the
# top of its artifacts, where reproduce reads it back.
HYDRA_DIR = ".hydra"
CONFIG_ARTIFACT = "config.yaml"
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
        run.log_metrics({key: getattr(m, key) for key in EPOCH_METRICS}, step=m.epoch)

    return log


def logged_gradcheck(run: RunLogger, out_dir: Path) -> Callable[[Mapping[str, float], Path], None]:
    """The gradient check's callback: its metrics and CSV recorded in the MLflow run as soon as
    it is done, so that a run that then fails, diverges or is killed keeps them."""

    def log(metrics: Mapping[str, float], csv: Path) -> None:
        run.log_metrics(metrics)
        # Written with the CSV: a run killed outright keeps both.
        run.flush()
        run.log_tree(_staged(out_dir / STAGED_DIR / CHECKED, {"": [csv]}))

    return log


def reported_epoch(progress: RunProgress, out_dir: Path) -> EpochCallback:
    """The epoch callback that leaves the run's latest epoch for the sweep's live view, at
    most as often as the view reads it (a write after an epoch costs a run milliseconds)."""
    progress.save(out_dir)
    saved = time.monotonic()

    def report(m: EpochMetrics) -> None:
        nonlocal saved
        progress.epoch, progress.val_acc = m.epoch, m.val_acc
        if time.monotonic() - saved >= PROGRESS_SECONDS:
            progress.save(out_dir)
            saved = time.monotonic()

    return report


def run_config(
    config: ExperimentConfig,
    params: dict[str, Any],
    out_dir: Path,
    job: int,
    overrides: list[str],
    sweep: SweepInfo,
    dataset_cache: DataCache | None = None,
    threads: int | None = None,
    epoch_callbacks: list[EpochCallback] | None = None,
    pruning: Pruning | None = None,
    environment_cache: Path | None = None,
) -> RunOutcome:
    """Run one configuration inside an MLflow run, under ``threads`` BLAS threads (all cores
    if None); a failure is recorded, not raised. ``epoch_callbacks`` are called after each
    epoch, after the run's own (MLflow's record, the live view's file, the ``pruning`` of a
    search's trial, which ends the run PRUNED when its pruner says so, and is given the run's
    value as the run is closed). ``dataset_cache`` and
    ``environment_cache`` (a sweep's directory) keep what the runs sharing them would each make.
    The outcome is also left in ``out_dir``, where a sweep's monitor reads it."""
    start = time.perf_counter()
    run_id = None
    pruning = pruning or Pruning(None)
    tracking = config.tracking
    # A run of its own (no sweep) is its own best run.
    made = {Made.every} if sweep.parent_run_id else {Made.every, Made.best}
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = RunProgress(job, overrides, config.train.epochs, time.time(), trial=pruning.trial)
    # As the data is read: from this process's directory where data_dir is relative.
    read_from = resolve_data_dir(config.dataset.name.value, config.dataset.data_dir)
    # Kept for the outcome: a run that trains on after a failed check, or then fails, says so.
    failed_check: str | None = None
    # The outcome once left: a Ctrl-C held back until then must not replace it.
    left: RunOutcome | None = None
    try:
        environment, environment_files = capture_environment(out_dir, environment_cache)
        tags = {
            SWEEP_ID_TAG: sweep.sweep_id,
            OVERRIDES_TAG: " ".join(overrides),
            JOB_TAG: job,
            CONFIG_HASH_TAG: config_hash(params),
            # The process that trains it, to find (or kill) a worker from the store.
            PID_TAG: os.getpid(),
            **run_seeds(config),
            **pruning.tags(),
        }
        # What is entered here outlasts the MLflow run: Ctrl-C held back as the run ends waits
        # until its outcome is left too.
        with ExitStack() as closing:
            with (
                threadpool_limits(limits=threads or blas_threads(None)),
                tracked_run(
                    sweep.tracking_uri,
                    sweep.experiment_id,
                    run_name=child_run_name(overrides, sweep.varied_keys),
                    # Read once the limit above is set: env.blas_threads records it.
                    tags={**tags, **environment.tags()},
                    parent_run_id=sweep.parent_run_id or None,
                    flush_seconds=tracking.flush_seconds,
                ) as run,
            ):
                run_id = run.run_id
                run.log_params(params)
                log_gradcheck = logged_gradcheck(run, out_dir)

                def checked(metrics: Mapping[str, float], csv: Path) -> None:
                    nonlocal failed_check
                    failed_check = gradcheck_failure(metrics, config.gradcheck.tol)
                    log_gradcheck(metrics, csv)

                # Before training, so that a run that fails or is killed can be reproduced.
                started = {
                    "": [out_dir / HYDRA_DIR / CONFIG_ARTIFACT],
                    ARTIFACT_PATH: environment_files,
                }
                run.log_tree(_staged(out_dir / STAGED_DIR / STARTED, started))
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
                    on_data=lambda sources: run.set_tags(data_tags(dict(sources), read_from)),
                    on_gradcheck=checked,
                    curves=tracking.curves in made,
                )
                metrics = result.summary_metrics()
                run.log_metrics(metrics)
                ended: dict[str, list[Path]] = {
                    PLOTS: result.figures,
                    CHECKPOINT_DIR: [result.checkpoint],
                }
                run.log_tree(_staged(out_dir / STAGED_DIR / ENDED, ended))
                model = None
                if tracking.model in made:
                    log_served_model(
                        sweep.tracking_uri, sweep.experiment_id, run_id, result.checkpoint
                    )
                    model = model_uri(run_id)
                status = FINISHED if pruning.pruned_at is None else PRUNED
                reason = result.training.stop_reason
                run.set_tags({STATUS_TAG: status, REASON_TAG: reason, **pruning.end_tags()})
                # Ctrl-C from here on waits until the run is closed and its outcome left: a run
                # FINISHED in the store whose trial has no value would be run again by a resumed
                # search, one whose outcome is missing would be counted as cut short.
                closing.enter_context(interrupts_deferred())
                outcome = RunOutcome(
                    job, overrides, status, reason, 0.0, run_id, metrics, pruning.trial, model=model
                )
                pruning.ended(outcome.objective)
            left = _left(outcome, start, out_dir, failed_check)
        return left
    except KeyboardInterrupt:
        # Left by the run itself, under any launcher: an in-process one has no process death
        # to record it (the local launcher's on_job_death, record_dead_job, keeps it).
        if left is None:
            with interrupts_deferred():
                killed = RunOutcome(
                    job, overrides, KILLED, interruption()[0], 0.0, run_id, trial=pruning.trial
                )
                _left(killed, start, out_dir, failed_check)
        raise
    except Exception as err:
        if verbose_errors():
            traceback.print_exc()
        outcome = RunOutcome(
            job,
            overrides,
            FAILED,
            failure_reason(err),
            0.0,
            run_id,
            trial=pruning.trial,
            fix=failure_fix(err),
        )
        # Its run has ended FAILED, whatever the search's stop did to its trial.
        pruning.ended(outcome.objective, stop=False)
        return _left(outcome, start, out_dir, failed_check)


def _left(outcome: RunOutcome, start: float, out_dir: Path, failed_check: str | None) -> RunOutcome:
    """``outcome``, timed from ``start``, with the gradient check's ``failed_check``, and saved
    in ``out_dir``, where a sweep's monitor reads it."""
    outcome = replace(outcome, seconds=time.perf_counter() - start, gradcheck=failed_check)
    outcome.save(out_dir)
    return outcome


def _staged(directory: Path, files: dict[str, list[Path]]) -> Path:
    """``directory`` holding ``files`` under their artifact paths ("" for the top), linked, not
    copied, so that the run logs them in one call."""
    for artifact_path, paths in files.items():
        if not paths:
            continue
        target = directory / artifact_path
        target.mkdir(parents=True, exist_ok=True)
        for path in paths:
            link = target / path.name
            link.unlink(missing_ok=True)
            try:
                os.link(path, link)
            except OSError:  # another file system, or one without hard links
                shutil.copy2(path, link)
    return directory
