"""The local launcher: typed settings, and how it names the end of a job's process.

A job killed in the middle of a sweep is tested end to end in test_robustness.py."""

from __future__ import annotations

import signal
from pathlib import Path

from omegaconf import OmegaConf

from conftest import run_cli
from hydra_plugins.sweeper_launcher.local_launcher import exit_description, job_dir


def test_how_a_jobs_process_ended_reads_as_a_person_says_it() -> None:
    assert exit_description(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_description(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_description(1) == "exit code 1"


def test_a_jobs_directory_is_where_hydra_puts_its_files() -> None:
    cfg = OmegaConf.create(
        {"hydra": {"sweep": {"dir": "/sweeps/x", "subdir": "${hydra.job.num}"}, "job": {"num": 7}}}
    )
    assert job_dir(cfg) == Path("/sweeps/x/7")


def test_a_bad_n_jobs_fails_before_anything_runs_naming_the_key(tmp_path: Path) -> None:
    proc = run_cli(["-m", "seed=0,1", "hydra.launcher.n_jobs=two"], tmp_path)
    assert proc.returncode == 1
    assert "hydra.launcher.n_jobs" in proc.stderr
    assert "'two'" in proc.stderr and "could not be converted to Integer" in proc.stderr
    assert not (tmp_path / "mlruns").exists()


def test_zero_runs_at_a_time_fails_before_anything_runs(tmp_path: Path) -> None:
    proc = run_cli(["-m", "seed=0,1", "hydra.launcher.n_jobs=0"], tmp_path)
    assert proc.returncode == 1
    assert "hydra.launcher.n_jobs=0 is invalid" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlruns").exists()
