"""What a Hydra user expects of the command line before any run: help, the composed config,
and tab completion of groups and keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import run_cli


def test_help_lists_every_group_and_its_options(workdir: Path) -> None:
    proc = run_cli(["--help"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "activation: identity, leaky_relu, relu, sigmoid, tanh" in proc.stdout
    assert "dataset: cifar10, digits, fashion_mnist, kmnist, mnist, notmnist" in proc.stdout
    assert "optimizer: adam, momentum, momentum_ema, nesterov, sgd" in proc.stdout
    assert "regularizer: dropout, l1, l2, none" in proc.stdout
    assert "topology: h128, h128x128, h256, h64, softmax_regression" in proc.stdout
    assert "experiment: activation, baseline, dropout, early_stopping, gradcheck," in proc.stdout


def test_cfg_job_prints_the_composed_config_without_running(workdir: Path) -> None:
    proc = run_cli(["--cfg", "job", "activation=relu", "topology.hidden=[203,203]"], workdir)
    assert proc.returncode == 0, proc.stderr
    config = OmegaConf.create(proc.stdout)
    assert config.activation.name == "relu"
    assert list(config.topology.hidden) == [203, 203]
    assert not (workdir / "mlruns").exists()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "sweeper activation=",
            {"activation=sigmoid", "activation=tanh", "activation=relu", "activation=leaky_relu"},
        ),
        ("sweeper optimizer.", {"optimizer.lr=", "optimizer.momentum=", "optimizer.form="}),
    ],
)
def test_tab_completion_offers_groups_and_keys(
    workdir: Path, line: str, expected: set[str]
) -> None:
    # The bash hook that `sweeper --shell-completion install=bash` installs asks exactly this.
    script = shutil.which("sweeper", path=str(Path(sys.executable).parent))
    assert script is not None, "the sweeper console script is not installed"
    proc = subprocess.run(
        [script, "-sc", "query=bash"],
        cwd=workdir,
        env={**os.environ, "COMP_LINE": line, "COMP_POINT": str(len(line))},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected <= set(proc.stdout.split())


def test_cfg_with_a_sweep_is_one_line(workdir: Path) -> None:
    proc = run_cli(["-m", "activation=relu,tanh", "--cfg", "job"], workdir)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "Error: Only one of --run, --multirun, --cfg, --info and --shell_completion can be"
        " specified"
    )
