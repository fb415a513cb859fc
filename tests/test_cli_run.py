"""End to end: one run of the real command line on the embedded digits, read back from MLflow."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import FAST, all_runs, child_runs, cli_env, run_cli, store_uri
from helpers import write_mnist_like
from sweeper.checkpoint import load_checkpoint
from sweeper.data import load_dataset


def test_single_run_logs_params_metrics_and_every_artifact(workdir: Path) -> None:
    proc = run_cli([*FAST, "activation=relu"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "test_acc=" in proc.stdout

    (run,) = all_runs(workdir)
    assert run.info.status == "FINISHED"
    # What reproduce and artifacts take, and runs:/ID/model with the store it is found in.
    run_id = run.info.run_id
    (printed,) = re.findall(
        rf"\nRun: {run_id}, its model runs:/{run_id}/model \(MLFLOW_TRACKING_URI=(\S+)\)\n",
        proc.stdout,
    )
    assert printed == store_uri(workdir)
    params = run.data.params
    assert params["activation.name"] == "relu"
    assert params["optimizer.lr"] == "0.05"
    assert params["topology.hidden"] == "[64]"
    assert params["dataset.name"] == "digits"
    assert run.data.tags["status"] == "FINISHED"
    assert run.data.tags["reason"] == "max_epochs"
    assert run.data.tags["overrides"] == "train.epochs=3 train.patience=null activation=relu"
    assert len(run.data.tags["git_commit"]) > 0

    client = MlflowClient(store_uri(workdir))
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in client.get_metric_history(run.info.run_id, "lr")] == [0.05] * 3
    metrics = run.data.metrics
    assert metrics["epochs_run"] == 3
    assert 1 <= metrics["best_epoch"] <= 3
    assert metrics["train_seconds"] > 0
    # The run process's CPU time: what a search's budget is measured in.
    assert metrics["cpu_seconds"] > 0
    assert 0.85 < metrics["test_acc"] <= 1.0
    assert metrics["gradcheck_passed"] == 1.0
    assert len(client.get_metric_history(run.info.run_id, "gradcheck_passed")) == 1

    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, dst_path=str(workdir / "dl"), tracking_uri=store_uri(workdir)
        )
    )
    config = OmegaConf.load(local / "config.yaml")
    assert config.activation.name == "relu"

    for name in ("loss.png", "accuracy.png"):
        image = matplotlib.image.imread(local / "plots" / name)
        assert image.shape[0] > 100 and image.shape[1] > 100

    with (local / "gradcheck.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert {"parameter", "e_plus", "e_minus", "numerical", "backprop", "abs_diff", "passed"} <= set(
        rows[0]
    )
    assert all(r["passed"] == "True" for r in rows)

    model, standardizer = load_checkpoint(local / "checkpoint" / "best_model.npz")
    data = load_dataset("digits")
    assert model.layer_sizes == [64, 64, 10]
    test_acc = float(np.mean(model.predict(data.x_test) == data.y_test))
    assert test_acc == metrics["test_acc"]

    # The logged model takes raw images, as a user holds them, and returns classes.
    mlflow.set_tracking_uri(printed)
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    raw = standardizer_inverse(data.x_test, standardizer).reshape(-1, 8, 8)
    assert np.array_equal(served.predict(raw), model.predict(data.x_test))
    # As pasted in another directory: found in the printed store, no ./mlflow.db made there.
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    load = f"import mlflow; print(mlflow.pyfunc.load_model('runs:/{run_id}/model').metadata.run_id)"
    loaded = subprocess.run(
        [sys.executable, "-c", load],
        cwd=elsewhere, env=cli_env({"MLFLOW_TRACKING_URI": printed}),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (loaded.returncode, loaded.stdout) == (0, f"{run_id}\n"), loaded.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []


def standardizer_inverse(x: np.ndarray, standardizer) -> np.ndarray:  # type: ignore[no-untyped-def]
    return x * standardizer.std + standardizer.mean


def test_a_cosine_schedule_is_logged_as_the_lr_curve_and_a_failed_gradient_check_is_said(
    workdir: Path,
) -> None:
    # No float64 check agrees within 1e-12: training runs on, and the run's line says so.
    proc = run_cli([*FAST, "optimizer.schedule=cosine", "gradcheck.tol=1e-12"], workdir)
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("#0 ")]
    assert re.fullmatch(
        r"#0 .*: best_val_acc=\S+ test_acc=\S+ epochs=3 \S+s; "
        r"gradient check FAILED: max \|diff\| \S+ > tol 1e-12",
        line,
    ), line
    (run,) = all_runs(workdir)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["gradcheck_passed"] == 0.0
    diff = f"{run.data.metrics['gradcheck_max_abs_diff']:.2g}"
    assert line.endswith(f"max |diff| {diff} > tol 1e-12")
    assert run.data.params["optimizer.schedule"] == "cosine"
    rates = MlflowClient(store_uri(workdir)).get_metric_history(run.info.run_id, "lr")
    assert [m.value for m in rates] == pytest.approx([0.05, 0.0375, 0.0125])


def test_divergence_is_recorded_as_failed_with_its_reason(workdir: Path) -> None:
    proc = run_cli([*FAST, "optimizer.lr=1e6", "activation=relu"], workdir)
    assert proc.returncode == 1
    # On standard error, as a sweep lists its failures, with what to change.
    assert re.fullmatch(
        r"#0 train\.epochs=3 train\.patience=null optimizer\.lr=1e6 activation=relu: "
        r"FAILED: diverged at epoch 1 \(loss=\S+\); to fix: lower optimizer\.lr\n",
        proc.stderr,
    ), proc.stderr
    assert "diverged" not in proc.stdout
    (run,) = all_runs(workdir)
    assert run.info.status == "FAILED"
    assert proc.stdout.startswith(f"Run: {run.info.run_id}\n")  # and no model
    assert run.data.tags["reason"].startswith("diverged at epoch 1 (loss=")
    # The gradient check, done before training, is recorded however training ends, once.
    client = MlflowClient(store_uri(workdir))
    assert run.data.metrics["gradcheck_passed"] == 1.0
    history = client.get_metric_history(run.info.run_id, "gradcheck_max_abs_diff")
    assert len(history) == 1 and 0.0 <= history[0].value < 1e-4
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [
        "config.yaml",
        "gradcheck.csv",
        "provenance",
    ]


# The command, Ctrl-C pressed while it imports its app (MLflow, Hydra: its first seconds).
_INTERRUPTED_IMPORTING = """
import runpy, sys
class Interrupting:
    def find_spec(self, name, path=None, target=None):
        if name == "sweeper.app":
            raise KeyboardInterrupt
sys.meta_path.insert(0, Interrupting())
sys.argv = ["sweeper"]
runpy.run_module("sweeper", run_name="__main__")
"""


def test_ctrl_c_as_the_command_starts_is_one_line(workdir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORTING],
        cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (130, "Interrupted (Ctrl-C).\n")
    assert not (workdir / "mlruns").exists()


def test_an_invalid_value_fails_before_anything_runs(workdir: Path) -> None:
    proc = run_cli(["optimizer.lr=-0.1"], workdir)
    assert proc.returncode == 1
    assert "optimizer.lr=-0.1" in proc.stderr
    assert "must be finite, > 0" in proc.stderr
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_a_deleted_key_fails_before_anything_runs(workdir: Path) -> None:
    # The schema's default would train unrecorded: no seed param, another config_hash.
    proc = run_cli(["~seed"], workdir)
    assert proc.returncode == 1
    assert proc.stderr == "Error: ~seed is invalid: every run reads seed; give it a value instead\n"
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_a_value_left_missing_is_named_by_its_key(workdir: Path) -> None:
    for override, key in (("seed=???", "seed"), ("topology.hidden=[64,???]", "topology.hidden[1]")):
        proc = run_cli([override], workdir)
        assert proc.returncode == 1
        assert proc.stderr == f"Error: {key}=??? is invalid: give it a value\n"


def test_a_wrong_type_names_the_key(workdir: Path) -> None:
    proc = run_cli(["train.batch_size=many"], workdir)
    assert proc.returncode == 1
    assert "train.batch_size" in proc.stderr
    assert "many" in proc.stderr


def test_a_config_group_given_a_number_is_one_line_in_a_run_and_a_sweep(workdir: Path) -> None:
    message = (
        "is invalid: regularizer is a config group; give the name of one of its options: "
        "dropout, l1, l2, none"
    )
    for args, bad in ((["regularizer=1"], "regularizer=1"),
                      (["-m", "regularizer=[1,2]", "seed=0,1"], "regularizer=[1,2]")):  # fmt: skip
        proc = run_cli(args, workdir)
        assert (proc.returncode, proc.stderr) == (1, f"Error: {bad} {message}\n")
    sweep = run_cli(["-m", "regularizer=[1,2],l1"], workdir)
    assert sweep.returncode == 1
    assert f"  regularizer=[1,2] {message}  (in: regularizer=[1,2])" in sweep.stderr
    assert "Traceback" not in sweep.stderr
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_resume_without_a_sweep_is_one_line_not_a_new_run(workdir: Path) -> None:
    proc = run_cli(["resume=true", *FAST], workdir)
    assert (proc.returncode, proc.stderr) == (
        1,
        "Error: resume=true continues a sweep: add -m, with the sweep's overrides\n",
    )
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_the_command_lines_check_leaves_help_and_valid_values_to_hydra() -> None:
    from sweeper.app import CONF_DIR
    from sweeper.plan import command_line_problem

    for argv in (["--help", "regularizer=1"], ["seed=1", "regularizer=l2"], ["~regularizer"],
                 ["--version"], ["-m", "regularizer=1,l1"], ["regularizer=[l1,l2]"]):  # fmt: skip
        assert command_line_problem(CONF_DIR, argv) is None, argv


def test_a_key_the_config_lacks_added_with_plus_fails_naming_the_keys_there(
    workdir: Path,
) -> None:
    # Hydra's hint for a mistyped key ("To append to your config use +optimizer.lrr=...")
    # would otherwise run with the default learning rate.
    proc = run_cli(["+optimizer.lrr=5"], workdir)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: optimizer.lrr is not a key of optimizer, which has: name, lr, momentum, form,"
        " beta1, beta2, schedule"
    )
    sweep = run_cli(["-m", "+foo=1,2"], workdir)
    assert sweep.returncode == 1
    assert sweep.stderr.startswith("Error: 2 of 2 runs are invalid; nothing was run:\n")
    assert "foo is not a key of the config, which has: dataset, " in sweep.stderr
    assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_a_relative_data_dir_is_read_from_the_launch_directory_when_hydra_changes_into_the_runs(
    workdir: Path,
) -> None:
    write_mnist_like(workdir / "mn", gz=True)
    args = ["dataset=mnist", "dataset.data_dir=mn", "train.epochs=1", "gradcheck.enabled=false"]
    proc = run_cli([*args, "hydra.job.chdir=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = all_runs(workdir)
    assert run.info.status == "FINISHED"
    # The path as given, and the directory it named.
    assert run.data.params["dataset.data_dir"] == "mn"
    assert run.data.tags["data_dir_resolved"] == str(workdir / "mn")


def test_a_sweep_leaves_its_prepared_data_to_the_next_sweep_which_maps_it(
    workdir: Path,
) -> None:
    cache_home = workdir / "cache"
    env = {"XDG_CACHE_HOME": str(cache_home)}
    sweep = ["-m", "seed=0,1", *FAST, "gradcheck.enabled=false"]
    first = run_cli(sweep, workdir, env=env)
    assert first.returncode == 0, first.stderr
    # One entry per seed (it draws the validation split), moved out of the sweep's directory.
    prepared = cache_home / "sweeper" / "prepared"
    entries = sorted(p for p in prepared.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(entries) == 2
    assert not list(workdir.glob("multirun/*/dataset-cache"))
    written = [(e / "x_train.npy").stat().st_mtime_ns for e in entries]
    for entry in entries:
        os.utime(entry / "meta.json", (0, 0))  # a read touches it

    second = run_cli(sweep, workdir, env=env)
    assert second.returncode == 0, second.stderr
    assert [(e / "x_train.npy").stat().st_mtime_ns for e in entries] == written
    assert all((e / "meta.json").stat().st_mtime > 0 for e in entries)
    by_seed: dict[str, list[float]] = {}
    for run in child_runs(all_runs(workdir)):
        by_seed.setdefault(run.data.params["seed"], []).append(run.data.metrics["test_acc"])
    assert len(by_seed) == 2
    assert all(len(accs) == 2 and accs[0] == accs[1] for accs in by_seed.values())


@pytest.mark.slow
def test_a_second_run_reads_the_data_its_first_prepared_and_trains_the_same(
    workdir: Path,
) -> None:
    cache_home = workdir / "cache"
    env = {"XDG_CACHE_HOME": str(cache_home)}
    first = run_cli([*FAST, "gradcheck.enabled=false"], workdir, env=env)
    assert first.returncode == 0, first.stderr
    (entry,) = [
        p
        for p in (cache_home / "sweeper" / "prepared").iterdir()
        if p.is_dir() and not p.name.startswith(".")
    ]
    assert isinstance(np.load(entry / "x_train.npy", mmap_mode="r"), np.memmap)
    written = (entry / "x_train.npy").stat().st_mtime_ns
    second = run_cli([*FAST, "gradcheck.enabled=false"], workdir, env=env)
    assert second.returncode == 0, second.stderr
    assert (entry / "x_train.npy").stat().st_mtime_ns == written
    runs = all_runs(workdir)
    assert len(runs) == 2
    assert runs[0].data.metrics["test_acc"] == runs[1].data.metrics["test_acc"]
    assert runs[0].data.metrics["best_val_loss"] == runs[1].data.metrics["best_val_loss"]

    # SWEEPER_DATA_CACHE_GB=0: nothing kept; a value that is no size stops the run in one line.
    none = run_cli(
        [*FAST, "gradcheck.enabled=false"],
        workdir,
        env={"XDG_CACHE_HOME": str(workdir / "none"), "SWEEPER_DATA_CACHE_GB": "0"},
    )
    assert none.returncode == 0, none.stderr
    assert not (workdir / "none" / "sweeper" / "prepared").exists()
    bad = run_cli(FAST, workdir, env={"SWEEPER_DATA_CACHE_GB": "lots"})
    assert bad.returncode == 1
    assert (
        bad.stderr.strip()
        == "Error: SWEEPER_DATA_CACHE_GB='lots' is invalid: a size in GB, or 0 to keep none"
    )
