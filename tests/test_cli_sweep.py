"""End to end: sweeps through the real command line, the joblib launcher and MLflow."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import FAST, QUICK, all_runs, child_runs, cli_env, parent_run, run_cli, store_uri
from helpers import Sweep
from hydra_plugins.sweeper_launcher.config import RayClusterLauncherConf
from hydra_plugins.sweeper_launcher.ray_launcher import RAY_LAUNCHER_PACKAGE
from services import free_port
from sweeper.config import ConfigError
from sweeper.plan import check_launcher
from sweeper.report.build import build_report
from sweeper.store_uri import local_store_uri
from sweeper.sweep import commands_to_look


def test_activation_sweep_is_one_parent_with_a_child_per_config(workdir: Path) -> None:
    proc = run_cli(["-m", "activation=sigmoid,tanh,relu", *FAST], workdir)
    assert proc.returncode == 0, proc.stderr
    # Hydra turns a callback's exception into a warning and goes on.
    assert "Callback" not in proc.stderr

    runs = all_runs(workdir)
    parent = parent_run(runs)
    children = child_runs(runs)
    assert len(children) == 3
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["runs"] == 3
    sweep_id = parent.data.tags["sweep_id"]
    assert {c.data.params["activation.name"] for c in children} == {"sigmoid", "tanh", "relu"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["sweep_id"] == sweep_id
        assert child.data.metrics["epochs_run"] == 3

    # What the person at the terminal sees: progress with an ETA, then the summary.
    assert "[3/3 done] 0 failed" in proc.stdout
    assert "ETA" in proc.stdout
    assert proc.stdout.count(": best_val_acc=") == 3
    assert (
        "| # | run | status | best_val_loss | best_val_acc | test_acc | epochs | seconds |"
        in proc.stdout
    )
    # Away from the checkout, where make's targets are not.
    assert f"Report:  python -m sweeper.report --sweep {sweep_id} --experiment sweeper\n" in (
        proc.stdout
    )
    assert "mlflow ui --backend-store-uri" in proc.stdout


def test_the_printed_commands_run_as_pasted_where_the_venv_is_not_activated(
    workdir: Path,
) -> None:
    # As under make: this Python is run by its path, and the shell finds no sweeper.
    bare = {"PATH": "/usr/bin:/bin"}
    if str(Path(sys.executable).parent) in bare["PATH"].split(":"):
        pytest.skip("this Python is the system's: the shell finds it by name")
    proc = run_cli(["-m", "seed=0,1", *QUICK, "train.epochs=1"], workdir, env=bare)
    assert proc.returncode == 0, proc.stderr
    (report,) = [line for line in proc.stdout.splitlines() if line.startswith("Report:")]
    command = report.removeprefix("Report:").strip()
    assert shlex.split(command)[:3] == [sys.executable, "-m", "sweeper.report"]
    shown = subprocess.run(
        ["sh", "-c", f"{command} --out reports"], cwd=workdir, env=cli_env(bare),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert [p.parent.name for p in (workdir / "reports").glob("*/report.md")] == [
        shlex.split(command)[4]
    ]


def test_a_failed_run_does_not_stop_the_others(workdir: Path) -> None:
    proc = run_cli(["-m", "optimizer.lr=0.05,1e6", "activation=relu", *QUICK], workdir)
    assert proc.returncode == 1
    assert "1 run failed" in proc.stderr
    assert "diverged at epoch" in proc.stderr
    # Run again as it is, it diverges again: the command says what to change instead.
    assert "(loss=nan); to fix: lower optimizer.lr\n" in proc.stderr
    assert proc.stderr.endswith(
        "As they are, they would fail the same way again: make the change each line gives and "
        "run them as a new sweep (changed, they are other configurations than this sweep's, "
        "which keeps what finished).\n"
    )
    assert "Run them again with:" not in proc.stderr

    children = {r.data.params["optimizer.lr"]: r for r in child_runs(all_runs(workdir))}
    assert children["0.05"].info.status == "FINISHED"
    assert children["1000000.0"].info.status == "FAILED"
    assert children["1000000.0"].data.tags["reason"].startswith("diverged at epoch")
    parent = parent_run(all_runs(workdir))
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["failed_runs"] == 1
    assert parent.data.metrics["killed_runs"] == 0


def test_invalid_values_in_a_sweep_fail_before_any_run(workdir: Path) -> None:
    proc = run_cli(["-m", "optimizer.lr=0.1,-1", "regularizer.p=0.5,1.5", *QUICK], workdir)
    assert proc.returncode == 1
    assert "optimizer.lr=-1.0 is invalid: must be finite, > 0" in proc.stderr
    assert "regularizer.p=1.5 is invalid" in proc.stderr
    assert "nothing was run" in proc.stderr
    assert not (workdir / "mlruns").exists()


def test_unknown_group_option_lists_the_choices(workdir: Path) -> None:
    proc = run_cli(["-m", "activation=tanh,softsign", *QUICK], workdir)
    assert proc.returncode == 1
    assert "softsign" in proc.stderr
    assert "leaky_relu" in proc.stderr


def test_sixteen_runs_with_four_workers_all_land(workdir: Path) -> None:
    proc = run_cli(
        ["-m", "seed=range(16)", "hydra.launcher.n_jobs=4", "train.epochs=1", *QUICK], workdir
    )
    assert proc.returncode == 0, proc.stderr
    children = child_runs(all_runs(workdir))
    assert len(children) == 16
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(int(c.data.params["seed"]) for c in children) == list(range(16))


def test_metrics_do_not_depend_on_the_number_of_workers(workdir: Path) -> None:
    def sweep_metrics(n_jobs: int, experiment: str) -> dict[str, list[float]]:
        proc = run_cli(
            [
                "-m",
                "activation=tanh,relu",
                f"hydra.launcher.n_jobs={n_jobs}",
                f"tracking.experiment={experiment}",
                *QUICK,
            ],
            workdir,
        )
        assert proc.returncode == 0, proc.stderr
        client = MlflowClient(store_uri(workdir))
        out = {}
        for run in child_runs(all_runs(workdir, experiment)):
            history = client.get_metric_history(run.info.run_id, "val_loss")
            out[run.data.params["activation.name"]] = [m.value for m in history]
        return out

    assert sweep_metrics(1, "one_worker") == sweep_metrics(2, "two_workers")


def test_a_sweep_directory_used_again_gives_the_new_sweep_an_id_of_its_own(workdir: Path) -> None:
    fixed = "hydra.sweep.dir=multirun/fixed"
    first = run_cli(["-m", "seed=0,1", *QUICK, fixed], workdir)
    assert first.returncode == 0, first.stderr
    assert "Sweep fixed: 2 runs, tracking to " in first.stdout
    # The same two job directories, now one run diverging: its failure is what is shown.
    again = run_cli(["-m", "optimizer.lr=0.05,1e6", "activation=relu", *QUICK, fixed], workdir)
    assert again.returncode == 1
    assert "Sweep fixed-2 (fixed is an earlier sweep's id): 2 runs, tracking to " in again.stdout
    assert "[2/2 done] 1 failed" in again.stdout
    assert "\nSweep fixed-2: 1 finished, 1 failed\n" in again.stdout
    assert "seed=1" not in again.stdout
    assert "Report:  python -m sweeper.report --sweep fixed-2 --experiment sweeper\n" in (
        again.stdout
    )
    runs = all_runs(workdir)
    parents = {
        r.info.run_id: r.data.tags["sweep_id"] for r in runs if r.data.tags.get("kind") == "sweep"
    }
    assert sorted(parents.values()) == ["fixed", "fixed-2"]
    for child in child_runs(runs):
        assert child.data.tags["sweep_id"] == parents[child.data.tags["mlflow.parentRunId"]]
    # Each sweep is reported under its own id, the older one still reached.
    reports = workdir / "reports"
    older = build_report(store_uri(workdir), sweep_id="fixed", out_dir=reports)
    assert "2 runs (2 finished)" in (reports / "fixed" / "report.md").read_text()
    assert older.sweep.parent_run_id == next(k for k, v in parents.items() if v == "fixed")
    build_report(store_uri(workdir), sweep_id="fixed-2", out_dir=reports)
    assert "2 runs (1 failed, 1 finished)" in (reports / "fixed-2" / "report.md").read_text()


def test_a_second_sweep_in_a_running_sweeps_directory_stops_in_one_line(workdir: Path) -> None:
    fixed = "hydra.sweep.dir=multirun/fixed"
    # Runs that would last hours, stopped once the second sweep has answered: the first sweep
    # holds the directory while the second starts, however fast the machine.
    running = Sweep(["-m", "seed=0,1", "train.epochs=100000", "train.patience=null",
                     "gradcheck.enabled=false", fixed], workdir)  # fmt: skip
    try:
        running.wait_until(lambda: bool(running.running_children()))
        second = run_cli(["-m", "seed=2,3", *QUICK, fixed], workdir)
    finally:
        os.killpg(running.proc.pid, signal.SIGINT)
        running.finish()
    assert second.returncode == 1
    (line,) = second.stderr.strip().splitlines()
    assert line == (
        "Error: the sweep could not start: another sweep is running in multirun/fixed: start "
        "this one again a second later, or give each its own hydra.sweep.dir"
    )
    assert {r.data.params["seed"] for r in child_runs(all_runs(workdir))} == {"0", "1"}


def test_the_commands_a_sweep_prints_run_as_they_read(workdir: Path) -> None:
    store = f"sqlite:///{workdir / 'else where' / 'mlflow.db'}"
    # Data not there yet: once it is, the same command runs them, and the sweep offers it.
    args = ["-m", "optimizer.lr=0.05,0.1", "dataset=mnist", "dataset.data_dir=absent", *QUICK,
            f"tracking.uri='{store}'", "hydra.launcher.n_jobs=1"]  # fmt: skip
    proc = run_cli(args, workdir)
    assert proc.returncode == 1
    (again,) = [line for line in proc.stderr.splitlines() if "Run them again with:" in line]
    command = shlex.split(again.partition("Run them again with:")[2])
    # Hydra's own settings go with it, the sweep's directory and mode do not.
    assert "hydra.launcher.n_jobs=1" in command
    assert not [word for word in command if word.startswith(("hydra.mode", "hydra.sweep.dir"))]
    assert command[-1] == "resume=true"
    rerun = subprocess.run(
        [sys.executable, *command[1:]], cwd=workdir, env=cli_env(),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Resuming sweep" in rerun.stdout

    (report,) = [line for line in proc.stdout.splitlines() if line.startswith("Report:")]
    assert "(or: make ui)" not in proc.stdout
    words = shlex.split(report.removeprefix("Report:"))
    assert words[:3] == ["python", "-m", "sweeper.report"]
    assert words[-2:] == ["--tracking-uri", store]
    shown = subprocess.run(
        [sys.executable, *words[1:], "--out", str(workdir / "reports")],
        cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert f"# Sweep {words[4]}" in shown.stdout


def test_in_the_checkout_a_sweep_names_makes_targets_which_read_the_store_it_used(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = local_store_uri()
    store = "sqlite:////data/else where/mlflow.db"
    browse, report = commands_to_look(local, "2026-01-01_00-00-00", "my study", True)
    assert browse.endswith("   (or: make ui)")
    assert report == "make report SWEEP=2026-01-01_00-00-00 EXPERIMENT='my study'"
    browse, report = commands_to_look(store, "s", "e", True)
    assert "make ui" not in browse
    words = shlex.split(report)
    assert words[:4] == ["make", "report", "SWEEP=s", "EXPERIMENT=e"]
    # make hands ARGS to the shell as it is, which splits it once more.
    assert shlex.split(words[4].removeprefix("ARGS=")) == ["--tracking-uri", store]
    assert commands_to_look(local, "s", "e", False)[0].endswith("--host 127.0.0.1")


@pytest.mark.parametrize("in_checkout", [True, False])
def test_the_report_command_names_a_sweep_id_with_a_space_or_quote_as_one_word(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, in_checkout: bool
) -> None:
    # hydra.sweep.dir="multirun/my study": make would run `make report SWEEP=my` and `study`.
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for sweep_id in ("my study", "it's"):
        _, report = commands_to_look(local_store_uri(), sweep_id, "e", in_checkout)
        words = shlex.split(report)
        assert words[:3] == ["python", "-m", "sweeper.report"]
        assert words[words.index("--sweep") + 1] == sweep_id


def test_a_key_every_run_of_a_sweep_shares_cannot_vary(workdir: Path) -> None:
    search = ["+experiment=search", "tracking.experiment=choice(a, b)"]
    for args in (["-m", "tracking.experiment=a,b", *QUICK], ["-m", *search, *QUICK]):
        proc = run_cli(args, workdir)
        assert proc.returncode == 1
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("Error: tracking.experiment cannot vary within a sweep")
    assert not (workdir / "mlruns").exists()


def test_runs_that_would_train_the_same_network_stop_the_sweep_in_one_line(workdir: Path) -> None:
    cases = {
        # The default regularizer (none) reads no lam; plain SGD no momentum.
        "regularizer.lam=1e-4,1e-3": "#0 (regularizer.lam=0.0001) and #1 (regularizer.lam=0.001) "
        "would train the same network: they differ only in regularizer.lam, which "
        "regularizer=none does not read",
        "optimizer=sgd,momentum optimizer.momentum=0.5,0.9": "#0 (optimizer.momentum=0.5) and #1 "
        "(optimizer.momentum=0.9) would train the same network: they differ only in "
        "optimizer.momentum, which optimizer=sgd does not read",
        "seed=1,1": "#0 and #1 (seed=1 train.epochs=1) are the same configuration",
        "activation.init=auto,xavier": "#0 (activation.init=auto) and #1 (activation.init="
        "xavier) would train the same network: activation.init=auto is xavier for "
        "activation=tanh; run it once",
        "dataset.data_dir=data,./data/../data": "#0 (dataset.data_dir=data) and #1 "
        "(dataset.data_dir=./data/../data) would train the same network: dataset.data_dir=data "
        "and dataset.data_dir=./data/../data name one directory; run it once",
        # No hidden layer: no unit to drop out; the activation only picks the init (xavier).
        "topology=softmax_regression regularizer=dropout regularizer.p=0.2,0.5": "#0 "
        "(regularizer.p=0.2) and #1 (regularizer.p=0.5) would train the same network: they "
        "differ only in regularizer.p, which topology.hidden=[] does not read",
        "topology=softmax_regression activation=sigmoid,tanh": "#0 (activation=sigmoid) and "
        "#1 (activation=tanh) would train the same network: they differ only in "
        "activation.name, which topology.hidden=[] does not read",
    }
    for sweep, said in cases.items():
        proc = run_cli(["-m", *sweep.split(), "train.epochs=1"], workdir)
        assert proc.returncode == 1
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith(f"Error: runs {said}"), line
    assert not (workdir / "mlruns").exists()
    # (l1 and l2 both read lam: the regularization preset sweeps them, test_experiments.)


def test_a_store_named_by_the_environment_is_reported_as_make_report_reads_it(
    workdir: Path,
) -> None:
    # make report reads $MLFLOW_TRACKING_URI as the sweep did; make ui browses ./mlruns only.
    store = f"sqlite:///{workdir / 'elsewhere' / 'mlflow.db'}"
    proc = run_cli(["-m", "seed=0,1", *QUICK], workdir, env={"MLFLOW_TRACKING_URI": store})
    assert proc.returncode == 0, proc.stderr
    (report,) = [line for line in proc.stdout.splitlines() if line.startswith("Report:")]
    assert "--tracking-uri" not in report
    assert "(or: make ui)" not in proc.stdout


# The sweep command, interrupted (Ctrl-C) as it opens its parent run: just after, before its
# Ctrl-C handler is in place; or as MLflow has made the run, before the sweep kept its id.
_INTERRUPTED_AT_START = """
import os, signal, sys
from sweeper import app, sweep
def interrupted(*args, **kwargs):
    raise KeyboardInterrupt
def made_then_interrupted(*args, start_sweep_run=sweep.start_sweep_run, **kwargs):
    run_id = start_sweep_run(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGINT)
    return run_id
if sys.argv[1] == "made":
    sweep.start_sweep_run = made_then_interrupted
else:
    sweep.share_sweep_view = interrupted
sys.argv = ["sweeper", *sys.argv[2:]]
app.cli()
"""


@pytest.mark.parametrize("moment", [pytest.param("made", marks=pytest.mark.slow), "opened"])
def test_ctrl_c_as_a_sweep_opens_its_parent_run_ends_it_and_says_how_to_run_it_again(
    workdir: Path, moment: str
) -> None:
    args = ["-m", "seed=0,1", *FAST]
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_AT_START, moment, *args],
        cwd=workdir, env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "stopped before any run started (its parent run is marked KILLED)" in proc.stderr
    (parent,) = all_runs(workdir)
    assert parent.info.status == "KILLED"
    again = proc.stderr.split("Run it again with:")[1].split("\n")[0].strip()
    assert "resume=true" not in again
    proc = run_cli(shlex.split(again)[3:], workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = all_runs(workdir)
    assert len(child_runs(runs)) == 2
    assert {r.info.status for r in runs if r.info.run_id != parent.info.run_id} == {"FINISHED"}


# --- a Ray cluster that is not there: one line before the sweep starts ---

needs_ray = pytest.mark.skipif(
    find_spec(RAY_LAUNCHER_PACKAGE) is None, reason="needs the [ray] extra (make install-ray)"
)


@needs_ray
def test_a_ray_address_where_no_cluster_listens_stops_the_sweep_in_one_line_at_once(
    workdir: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    # ray.init would retry the address for minutes.
    ray = ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={address}"]
    proc = run_cli(["-m", *ray, "seed=0,1", *QUICK], workdir, timeout=60)
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: the sweep could not start: no Ray cluster at {address} "
        "(hydra.launcher.ray.init.address): is it running?"
    ]
    # Before the store is opened: no parent run, nothing to resume.
    assert not (workdir / "mlruns").exists()


@needs_ray
def test_ray_addresses_are_found_as_ray_init_finds_them_and_a_missing_cluster_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray._private import services

    # No head on this machine, whatever else runs here: none recorded in Ray's temp
    # directory, no GCS process found.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", frozenset)
    launcher = OmegaConf.structured(RayClusterLauncherConf)

    def problem(**init: object) -> str | None:
        launcher.ray.init = {"_temp_dir": str(tmp_path), **init}
        try:
            check_launcher(launcher)
        except ConnectionError as err:  # NoRayClusterError
            return str(err)
        return None

    assert problem(address="auto") == (
        "no Ray cluster runs on this machine (hydra.launcher.ray.init.address=auto): start one "
        "with ray start --head, or give its address as hydra.launcher.ray.init.address=HOST:PORT"
    )
    # Unset or local: ray.init starts a Ray instance of the sweep's own.
    assert problem(address=None) is None
    assert problem(address="local") is None
    # The cluster `ray start` recorded, since stopped.
    recorded = f"127.0.0.1:{free_port()}"
    (tmp_path / "ray_current_cluster").write_text(recorded)
    for address in ("auto", None):
        assert problem(address=address) == (
            f"no Ray cluster at {recorded} (found by hydra.launcher.ray.init.address="
            f"{address or 'null'}): is it running?"
        )
    named = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAY_ADDRESS", f"ray://{named}")
    assert problem(address="auto") == f"no Ray cluster at {named} (RAY_ADDRESS): is it running?"
    # An address given outright wins over RAY_ADDRESS, as in ray.init.
    given = f"127.0.0.1:{free_port()}"
    assert problem(address=given) == (
        f"no Ray cluster at {given} (hydra.launcher.ray.init.address): is it running?"
    )
    with pytest.raises(ConfigError) as unreadable:
        problem(address="head")
    assert str(unreadable.value) == (
        "hydra.launcher.ray.init.address='head' is invalid: HOST:PORT, auto, or local "
        "for a Ray instance of the sweep's own"
    )


def test_an_interpolated_override_is_resolved_in_each_run_not_in_the_sweeps_config(
    workdir: Path,
) -> None:
    # As Hydra runs it: ${seed} is each run's seed, and Hydra's documented subdir pattern.
    args = [
        "-m",
        "train.epochs=${seed}",
        "seed=1,2",
        "hydra.sweep.dir=multirun/mine",
        "hydra.sweep.subdir=${hydra.job.num}_${hydra.job.override_dirname}",
        "gradcheck.enabled=false",
    ]
    proc = run_cli(args, workdir)
    assert proc.returncode == 0, proc.stderr
    runs = child_runs(all_runs(workdir))
    assert sorted(r.data.metrics["epochs_run"] for r in runs) == [1, 2]
    assert sorted(p.name.partition("_")[0] for p in (workdir / "multirun" / "mine").iterdir()
                  if p.is_dir()) == ["0", "1"]  # fmt: skip
    again = run_cli([*args, "resume=true"], workdir)
    assert again.returncode == 0, again.stderr
    assert "skipping 2 of 2 runs, FINISHED there already" in again.stdout


def test_a_group_globbed_in_a_relative_sweep_dir_runs_with_each_job_in_its_own_dir(
    workdir: Path,
) -> None:
    args = ["-m", "activation=glob([r*,t*])", "hydra.sweep.dir=multirun/s",
            "hydra.job.chdir=true", *QUICK, "train.epochs=1"]  # fmt: skip
    proc = run_cli(args, workdir)
    assert proc.returncode == 0, proc.stderr
    runs = child_runs(all_runs(workdir))
    assert sorted(r.data.params["activation.name"] for r in runs) == ["relu", "tanh"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_the_command_that_completes_a_sweep_keeps_its_config_dir_and_name(workdir: Path) -> None:
    mine = workdir / "my conf"
    mine.mkdir()
    (mine / "other.yaml").write_text("defaults: [config, _self_]\ntrain:\n  epochs: 1\n")
    missing = ["dataset=mnist", f"dataset.data_dir={workdir / 'none'}"]  # each run fails
    proc = run_cli(["-m", "--config-dir", str(mine), "-cn", "other", *missing, "seed=1,2"], workdir)
    assert proc.returncode == 1
    (line,) = [line for line in proc.stderr.splitlines() if "Run them again with:" in line]
    command = shlex.split(line.partition("Run them again with:")[2])
    assert command[1:7] == ["-m", "sweeper", "-m", "--config-dir", str(mine), "--config-name"]
    again = run_cli(command[3:], workdir)
    assert "Resuming sweep" in again.stdout
    assert {r.data.params["train.epochs"] for r in child_runs(all_runs(workdir))} == {"1"}
