"""The command line, ``python -m sweeper [-m] [key=value ...]``: compose, build, run, log.

Hydra composes the config and, with ``-m``, hands each run of the sweep to the joblib
launcher; this task function validates it, runs it (``sweeper.experiment``) and records it in
MLflow (``sweeper.tracking``). :func:`cli` around it turns Ctrl-C and a broken sweep into
closed records, a short message and an exit status.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import joblib
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from sweeper.artifacts import PLOTS, log_served_model
from sweeper.config import (
    ConfigError,
    ExperimentConfig,
    Made,
    config_hash,
    flat_params,
    register_configs,
    to_experiment_config,
)
from sweeper.experiment import run_experiment, run_seeds
from sweeper.outcome import RunOutcome
from sweeper.progress import describe
from sweeper.provenance import ARTIFACT_PATH, capture_environment, data_tags
from sweeper.store import StoreError, configure
from sweeper.sweep import (
    DATASET_CACHE,
    EXIT_INTERRUPTED,
    SweepInfo,
    open_store,
    stop_running_sweep,
    verbose_errors,
)
from sweeper.tracking import (
    failure_reason,
    tracked_run,
    ui_command,
)
from sweeper.ui_links import child_run_name

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# In a run's output directory: its artifacts, laid out as MLflow keeps them.
STAGED_DIR = "artifacts"

register_configs()


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


def run_threads(launcher: DictConfig) -> int:
    """BLAS threads for one run of a sweep, from what its launcher gives each run."""
    if "n_jobs" in launcher:
        return blas_threads(launcher.n_jobs)
    if "ray" in launcher:
        # Ray schedules a run on ray.remote.num_cpus of a node's CPUs (1 unless set).
        return max(1, int(launcher.ray.remote.get("num_cpus") or 1))
    if launcher.get("cpus_per_task"):
        # hydra-submitit-launcher: the CPUs SLURM allocates to each run.
        return int(launcher.cpus_per_task)
    return blas_threads(None)


def execute_run(
    config: ExperimentConfig,
    params: dict[str, Any],
    out_dir: Path,
    job: int,
    overrides: list[str],
    sweep: SweepInfo,
    dataset_cache: Path | None = None,
) -> RunOutcome:
    """Run one configuration inside an MLflow run; a failure is recorded, not raised."""
    start = time.perf_counter()
    run_id = None
    tracking = config.tracking
    # A run of its own (no sweep) is its own best run.
    made = {Made.every} if sweep.parent_run_id else {Made.every, Made.best}
    try:
        environment, environment_files = capture_environment(out_dir, dataset_cache)
        tags = {
            "sweep_id": sweep.sweep_id,
            "overrides": " ".join(overrides),
            "job": job,
            "config_hash": config_hash(params),
            # The process that trains it, to find (or kill) a worker from the store.
            "pid": os.getpid(),
            **run_seeds(config),
            **environment.tags(),
        }
        with tracked_run(
            sweep.tracking_uri,
            sweep.experiment_id,
            run_name=child_run_name(overrides, sweep.varied_keys),
            tags=tags,
            parent_run_id=sweep.parent_run_id or None,
            flush_seconds=tracking.flush_seconds,
        ) as run:
            run_id = run.run_id
            run.log_params(params)
            result = run_experiment(
                config,
                out_dir,
                on_epoch=run.log_epoch,
                dataset_cache=dataset_cache,
                on_data=lambda sources: run.set_tags(data_tags(dict(sources))),
                curves=tracking.curves in made,
            )
            metrics = result.summary_metrics()
            run.log_metrics(metrics)
            files: dict[str, list[Path]] = {
                "": [out_dir / ".hydra" / "config.yaml"],
                ARTIFACT_PATH: environment_files,
                PLOTS: result.figures,
                "checkpoint": [result.checkpoint],
            }
            if result.gradcheck_csv is not None:
                files[""].append(result.gradcheck_csv)
            run.log_tree(_staged(out_dir / STAGED_DIR, files))
            if tracking.model in made:
                log_served_model(sweep.tracking_uri, run_id, result.checkpoint)
            run.set_tags({"status": "FINISHED", "reason": result.training.stop_reason})
    except Exception as err:
        if verbose_errors():
            traceback.print_exc()
        return RunOutcome(
            job, overrides, "FAILED", failure_reason(err), time.perf_counter() - start, run_id
        )
    return RunOutcome(
        job,
        overrides,
        "FINISHED",
        result.training.stop_reason,
        time.perf_counter() - start,
        run_id,
        metrics,
    )


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


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float:
    """Run one configuration; the returned objective is what the Optuna sweeper minimises."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        config = to_experiment_config(cfg)
    except ConfigError as err:
        # A sweep validated every run before launching; this is a single run's bad value.
        if verbose_errors():
            raise
        print(f"Error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    out_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    params = flat_params(cfg)
    if multirun:
        sweep = SweepInfo.load(Path(hc.sweep.dir))
        if config_hash(params) in sweep.done_hashes:
            # resume=true: the resumed sweep FINISHED this configuration. Hydra's basic
            # sweeper launches the whole product of the overrides and a callback cannot take
            # jobs out of it, so the job ends here, before any MLflow run or training.
            # Only the basic sweeper resumes, and it ignores the returned objective.
            return math.inf
        configure(sweep.tracking_uri, config.tracking.max_outage)
        job = int(hc.job.num)
        threads = run_threads(hc.launcher)
        dataset_cache: Path | None = Path(hc.sweep.dir) / DATASET_CACHE
    else:
        try:
            uri, experiment_id = open_store(config.tracking)
        except StoreError as err:
            if verbose_errors():
                raise
            print(f"Error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)
        sweep = SweepInfo(out_dir.name, uri, experiment_id, parent_run_id="")
        job = 0
        threads = blas_threads(None)
        dataset_cache = None

    with threadpool_limits(limits=threads):
        outcome = execute_run(config, params, out_dir, job, overrides, sweep, dataset_cache)
    outcome.save(out_dir)

    if not multirun:
        print(describe(outcome), flush=True)
        print(f"Browse: {ui_command(sweep.tracking_uri)}", flush=True)
        if outcome.failed:
            sys.exit(1)
    return outcome.objective


def cli() -> None:
    """``python -m sweeper``: :func:`main`, with Ctrl-C and a broken sweep closed cleanly."""
    try:
        main()
    except KeyboardInterrupt:
        # Each run in progress was marked KILLED by its own worker, or is marked here.
        stop_running_sweep(interrupted=True)
        print("Interrupted.", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as exit_:
        # Hydra reports an exception from the launcher (a lost Ray worker, say) and exits;
        # the exception it reported is the context of its SystemExit.
        stop_running_sweep(interrupted=False, cause=exit_.__context__)
        raise
    except Exception as err:  # only with HYDRA_FULL_ERROR=1 does Hydra let it through
        stop_running_sweep(interrupted=False, cause=err)
        raise
    finally:
        # Python's exit would first garbage-collect every object that MLflow, SQLAlchemy and
        # Hydra made (0.45 s after each command); frozen, they are left for the OS to free.
        gc.freeze()
