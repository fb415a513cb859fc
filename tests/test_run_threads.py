"""BLAS threads per run follow what the sweep's launcher gives each run."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import joblib
from omegaconf import OmegaConf

from conftest import FAST, all_runs, child_runs, run_cli
from sweeper.app import run_threads
from sweeper.run import blas_threads


def test_joblib_workers_share_the_cores() -> None:
    assert blas_threads(2, cores=8) == 4
    assert blas_threads(16, cores=8) == 1
    assert run_threads(OmegaConf.create({"n_jobs": 1})) == joblib.cpu_count()


def test_negative_n_jobs_count_back_from_the_cores_as_in_joblib() -> None:
    assert blas_threads(-1, cores=8) == 1
    assert blas_threads(-5, cores=8) == 2  # 4 workers
    assert blas_threads(-100, cores=8) == 8  # at least one worker


def test_the_answer_is_the_same_inside_a_jobs_process() -> None:
    # Each run computes its threads in its own (daemon) process, where joblib would say 1.
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(blas_threads, (2, 8)) == 4
        assert pool.apply(blas_threads, (-1, 8)) == 1


def test_a_ray_run_gets_the_cpus_it_reserves() -> None:
    assert run_threads(OmegaConf.create({"ray": {"init": {}, "remote": {}}})) == 1
    assert run_threads(OmegaConf.create({"ray": {"remote": {"num_cpus": 4}}})) == 4
    assert run_threads(OmegaConf.create({"ray": {"remote": {"num_cpus": 0.5}}})) == 1


def test_a_slurm_run_gets_the_cpus_allocated_to_it() -> None:
    assert run_threads(OmegaConf.create({"cpus_per_task": 4, "timeout_min": 60})) == 4


def test_a_launcher_that_says_nothing_gets_every_core() -> None:
    assert run_threads(OmegaConf.create({"cpus_per_task": None})) == joblib.cpu_count()
    assert run_threads(OmegaConf.create({})) == joblib.cpu_count()


def test_a_process_pinned_to_one_core_gives_its_run_one_thread() -> None:
    code = "from sweeper.run import blas_threads; print(blas_threads(1))"
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True
    )
    assert pinned.stdout.strip() == "1", pinned.stderr


def test_each_run_records_the_threads_it_trained_with(workdir: Path) -> None:
    # As many jobs at once as cores: each run's limit is one thread, whatever the machine.
    cores = joblib.cpu_count()
    proc = run_cli(["-m", *FAST, "seed=0,1", f"hydra.launcher.n_jobs={cores}"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    assert [r.data.tags["env.blas_threads"] for r in runs] == ["1", "1"]
