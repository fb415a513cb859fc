"""The command line, ``python -m sweeper [-m] [key=value ...]``: compose, build, run, log.

Hydra composes the config and, with ``-m``, hands each run of the sweep to the joblib
launcher; this task function validates it, runs it (``sweeper.experiment``) and records it in
MLflow (``sweeper.tracking``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import joblib
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from threadpoolctl import threadpool_limits

from sweeper.config import ExperimentConfig, flat_params, register_configs, to_experiment_config
from sweeper.experiment import run_experiment
from sweeper.outcome import RunOutcome
from sweeper.progress import describe
from sweeper.sweep import SweepInfo
from sweeper.tracking import (
    failure_reason,
    prepare_store,
    resolve_tracking_uri,
    tracked_run,
    ui_command,
)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

register_configs()


def blas_threads(n_jobs: int | None, cores: int | None = None) -> int:
    """BLAS threads per run so that workers x threads never exceed the cores."""
    cores = cores or os.cpu_count() or 1
    if n_jobs is None:
        return cores
    workers = min(joblib.effective_n_jobs(n_jobs), cores)
    return max(1, cores // workers)


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


def config_hash(params: dict[str, Any]) -> str:
    """Identifies a composed configuration, whatever the order of its overrides."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def execute_run(
    config: ExperimentConfig,
    params: dict[str, Any],
    out_dir: Path,
    job: int,
    overrides: list[str],
    sweep: SweepInfo,
) -> RunOutcome:
    """Run one configuration inside an MLflow run; a failure is recorded, not raised."""
    start = time.perf_counter()
    run_id = None
    tags = {
        "sweep_id": sweep.sweep_id,
        "overrides": " ".join(overrides),
        "job": job,
        "config_hash": config_hash(params),
    }
    try:
        with tracked_run(
            sweep.tracking_uri,
            sweep.experiment_id,
            run_name=" ".join(overrides)[:250] or "defaults",
            tags=tags,
            parent_run_id=sweep.parent_run_id or None,
        ) as run:
            run_id = run.run_id
            run.log_params(params)
            run.log_files([out_dir / ".hydra" / "config.yaml"])
            result = run_experiment(config, out_dir, on_epoch=run.log_epoch)
            metrics = result.summary_metrics()
            run.log_metrics(metrics)
            if result.gradcheck_csv is not None:
                run.log_files([result.gradcheck_csv])
            run.log_files(result.figures, artifact_path="plots")
            run.log_files([result.checkpoint], artifact_path="checkpoint")
            run.log_model(result.checkpoint)
            run.set_tags({"status": "FINISHED", "reason": result.training.stop_reason})
    except Exception as err:
        return RunOutcome(job, overrides, "FAILED", failure_reason(err),
                          time.perf_counter() - start, run_id)
    return RunOutcome(job, overrides, "FINISHED", result.training.stop_reason,
                      time.perf_counter() - start, run_id, metrics)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    config = to_experiment_config(cfg)
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    if multirun:
        sweep = SweepInfo.load(Path(hc.sweep.dir))
        job = int(hc.job.num)
        threads = run_threads(hc.launcher)
    else:
        uri = resolve_tracking_uri(config.tracking.uri)
        experiment_id = prepare_store(uri, config.tracking.experiment)
        sweep = SweepInfo(out_dir.name, uri, experiment_id, parent_run_id="")
        job = 0
        threads = blas_threads(None)

    with threadpool_limits(limits=threads):
        outcome = execute_run(config, flat_params(cfg), out_dir, job, overrides, sweep)
    outcome.save(out_dir)

    if not multirun:
        print(describe(outcome), flush=True)
        print(f"Browse: {ui_command(sweep.tracking_uri)}", flush=True)
        if outcome.failed:
            sys.exit(1)
