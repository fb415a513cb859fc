"""BLAS threads per run follow what the sweep's launcher gives each run."""

from __future__ import annotations

import os

from omegaconf import OmegaConf

from sweeper.app import blas_threads, run_threads


def test_joblib_workers_share_the_cores() -> None:
    assert blas_threads(2, cores=8) == 4
    assert blas_threads(16, cores=8) == 1
    assert run_threads(OmegaConf.create({"n_jobs": 1})) == (os.cpu_count() or 1)


def test_a_ray_run_gets_the_cpus_it_reserves() -> None:
    assert run_threads(OmegaConf.create({"ray": {"init": {}, "remote": {}}})) == 1
    assert run_threads(OmegaConf.create({"ray": {"remote": {"num_cpus": 4}}})) == 4
    assert run_threads(OmegaConf.create({"ray": {"remote": {"num_cpus": 0.5}}})) == 1


def test_a_slurm_run_gets_the_cpus_allocated_to_it() -> None:
    assert run_threads(OmegaConf.create({"cpus_per_task": 4, "timeout_min": 60})) == 4


def test_a_launcher_that_says_nothing_gets_every_core() -> None:
    assert run_threads(OmegaConf.create({"cpus_per_task": None})) == (os.cpu_count() or 1)
    assert run_threads(OmegaConf.create({})) == (os.cpu_count() or 1)
