"""Nothing lost, every error clear: interruption, killed workers, resume, concurrent sweeps,
bad data and untrusted files, through the real command line."""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from conftest import QUICK, REPO, all_runs, child_runs, parent_run, run_cli, store_uri
from helpers import (
    RunsCommand,
    Sweep,
    batch,
    run_here,
    write_cifar,
    write_idx,
    write_mnist_like,
    write_pickle,
)
from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred
from sweeper import store, store_calls
from sweeper.config import config_hash
from sweeper.core.training import EpochMetrics
from sweeper.data.locations import cache_root
from sweeper.outcome import OUTCOME_FILE, PROGRESS_FILE, RunOutcome, RunProgress
from sweeper.pruning import Pruning
from sweeper.run_records import tracked_run
from sweeper.stopping import SweepStop
from sweeper.store_setup import prepare_store
from sweeper.store_uri import ui_command
from sweeper.sweep_info import SweepBusyError, SweepInfo, hold_sweep
from sweeper.sweep_runs import start_sweep_run
from sweeper.words import plural

# Python's own report of an exception raised in a finalizer or weakref callback, which it
# cannot propagate: a Ctrl-C sent to the whole process group can land inside one, in any of
# the sweep's processes, outside any code of ours.
IGNORED_IN_FINALIZER = re.compile(
    r"Exception ignored in: [^\n]*\n"
    r"(Traceback \(most recent call last\):\n((  [^\n]*)?\n)*)?"
    r"KeyboardInterrupt[^\n]*\n"
)
# Two quick runs, then two that train long enough to be cut short.
QUICK_THEN_LONG = [
    "-m",
    "train.epochs=1,300",
    "seed=0,1",
    "train.batch_size=8",
    "train.patience=null",
    "gradcheck.enabled=false",
    "hydra.launcher.n_jobs=2",
    # Every epoch written at once, so a run killed after its first epoch has it in the store
    # (by default a killed run loses at most tracking.flush_seconds of its history).
    "tracking.flush_seconds=0",
]


def statuses(cwd: Path) -> dict[str, str]:
    return {r.data.tags["overrides"]: r.info.status for r in child_runs(all_runs(cwd))}


def test_ctrl_c_keeps_finished_runs_marks_the_rest_killed_and_exits_130(workdir: Path) -> None:
    sweep = Sweep(QUICK_THEN_LONG, workdir)
    # A long run in progress (a quick one seen running may end before the Ctrl-C arrives).
    sweep.wait_until(lambda: sweep.outcomes() >= 1 and sweep.running_children("300"))
    assert list(workdir.glob("multirun/*/dataset-cache"))
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()

    assert rc == 130, stderr
    # The workers' shared copy of the data goes, as when a sweep finishes.
    assert not list(workdir.glob("multirun/*/dataset-cache"))
    assert "Traceback" not in IGNORED_IN_FINALIZER.sub("", stderr)
    assert "interrupted (Ctrl-C)" in stderr
    assert "resume=true" in stderr
    runs = child_runs(all_runs(workdir))
    finished = [r for r in runs if r.info.status == "FINISHED"]
    assert len(finished) >= 1
    for run in finished:
        assert run.data.params["train.epochs"] == "1"
        assert run.data.metrics["epochs_run"] == 1
    cut_short = [r for r in runs if r.info.status != "FINISHED"]
    assert len(cut_short) >= 1
    assert {r.info.status for r in cut_short} == {"KILLED"}
    assert {r.data.tags["reason"] for r in cut_short} == {"interrupted (Ctrl-C)"}
    parent = parent_run(all_runs(workdir))
    assert parent.info.status == "KILLED"
    # The parent counts the runs as the message does: those cut short have not failed.
    assert parent.data.metrics == {
        "runs": len(runs),
        "failed_runs": 0,
        "killed_runs": len(cut_short),
    }
    # The message counts the runs cut short with those not run, never as failed, and names them.
    assert (
        f"{plural(len(finished), 'run')} finished and kept, 0 failed, {4 - len(finished)} not run "
        "or cut short (the runs in progress are marked KILLED)."
    ) in stderr
    for run in cut_short:
        assert f"  KILLED: {run.data.tags['overrides']}\n" in stderr
    # Each outcome left for the monitor names its run, the ones cut short included.
    recorded = {RunOutcome.load(p).run_id for p in workdir.glob("multirun/*/*/outcome.json")}
    assert recorded == {r.info.run_id for r in runs}


# Runs long enough that none ends within a test: two layers of 2,000 units, batches of 2.
SLOW_RUNS = ["-m", "seed=0,1", "train.epochs=3", "train.batch_size=2",
             "topology.hidden=[2000,2000]", "gradcheck.enabled=false"]  # fmt: skip


def test_ctrl_c_as_the_sweep_starts_starts_no_run_and_prints_no_traceback(
    workdir: Path,
) -> None:
    # The fork server is importing its preload as the sweep says it has started.
    sweep = Sweep(SLOW_RUNS, workdir)
    sweep.wait_until(lambda: "Sweep " in sweep.stdout.read_text(), every=0.02)
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()
    assert rc == 130, stderr
    assert "Traceback" not in IGNORED_IN_FINALIZER.sub("", stderr)
    assert {r.info.status for r in child_runs(all_runs(workdir))} <= {"KILLED"}


def test_a_sweep_killed_outright_takes_its_runs_with_it(workdir: Path) -> None:
    sweep = Sweep(SLOW_RUNS, workdir)
    sweep.wait_until(lambda: len(sweep.running_children()) == 2)
    pids = [int(r.data.tags["pid"]) for r in sweep.running_children()]
    os.kill(sweep.proc.pid, signal.SIGKILL)
    sweep.finish()

    def gone(pid: int) -> bool:
        # Exited: no process, or one left for its parent to reap.
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 60
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"runs' processes {pids} outlived their sweep"
        time.sleep(0.2)
    # Each closed its run as Ctrl-C would have, saying why: nobody pressed Ctrl-C.
    children = child_runs(all_runs(workdir))
    assert {r.info.status for r in children} == {"KILLED"}
    assert {r.data.tags["reason"] for r in children} == {"interrupted (its sweep's process ended)"}
    # And its sweep's parent run, which the sweep's process is no longer there to close.
    assert parent_run(all_runs(workdir)).info.status == "KILLED"


def test_resume_closes_the_runs_a_sweep_killed_outright_left_running(workdir: Path) -> None:
    # A launcher whose runs die with the sweep's process (Ray kills a dead driver's workers)
    # leaves them RUNNING, untagged, and the parent RUNNING: made here from a finished sweep.
    args = ["-m", "seed=0,1", *QUICK]
    assert run_cli(args, workdir).returncode == 0
    client = MlflowClient(store_uri(workdir))
    parent = parent_run(all_runs(workdir))
    (orphan,) = [r for r in child_runs(all_runs(workdir)) if r.data.params["seed"] == "1"]
    for run_id in (orphan.info.run_id, parent.info.run_id):
        client.update_run(run_id, status="RUNNING")
    for tag in ("status", "reason"):
        client.delete_tag(orphan.info.run_id, tag)

    again = run_cli([*args, "resume=true"], workdir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "skipping 1 of 2 runs, FINISHED there already" in again.stdout
    assert ": 1 finished, 0 failed, 1 skipped (finished before)\n" in again.stdout
    assert "| 0 | seed=0 | FINISHED (before) | " in again.stdout
    assert "| 1 | seed=1 | FINISHED | " in again.stdout
    closed = client.get_run(orphan.info.run_id)
    assert closed.info.status == "KILLED"
    assert closed.data.tags["status"] == "KILLED"
    assert closed.data.tags["reason"] == "interrupted (its sweep's process ended)"
    # Said as the command resumes the sweep.
    assert again.stdout.startswith(
        "1 run left RUNNING by the sweep's ended process: marked KILLED, interrupted (its "
        "sweep's process ended)\nResuming sweep "
    )
    children = child_runs(all_runs(workdir))
    assert sorted((r.data.params["seed"], r.info.status) for r in children) == [
        ("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED")
    ]  # fmt: skip
    ended = parent_run(all_runs(workdir))
    assert ended.info.status == "FINISHED"
    assert ended.data.metrics == {"runs": 2, "failed_runs": 0, "killed_runs": 0}


def test_ctrl_c_as_the_best_runs_model_is_made_still_ends_the_sweeps_run(workdir: Path) -> None:
    sweep = Sweep(["-m", "seed=0,1", *QUICK], workdir)
    # The summary is printed; the best run's model and curves are being made (a second or so).
    sweep.wait_until(lambda: "Report:" in sweep.stdout.read_text(), every=0.02)
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()

    assert rc == 130, stderr
    assert "Traceback" not in IGNORED_IN_FINALIZER.sub("", stderr)
    assert "2 runs finished and kept, 0 failed, 0 not run or cut short" in stderr
    assert {r.info.status for r in child_runs(all_runs(workdir))} == {"FINISHED"}
    assert parent_run(all_runs(workdir)).info.status == "KILLED"


def test_a_stopped_search_counts_its_pruned_runs_apart_from_its_finished_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "s", "", "sweep")
    metrics = {"best_val_loss": 0.5, "best_val_acc": 0.9, "test_acc": 0.9, "epochs_run": 1.0}
    outcomes = [
        RunOutcome(0, ["lr=0.1"], "FINISHED", "max_epochs", 1.0, metrics=metrics),
        RunOutcome(1, ["lr=9"], "PRUNED", "pruned at epoch 1", 1.0, metrics=metrics),
        RunOutcome(2, ["lr=1e6"], "FAILED", "diverged at epoch 1 (loss=nan)", 1.0),
    ]
    info = SweepInfo("s", uri, experiment_id, parent)
    # A search resumed after 4 runs, 2 of them failed: the parent counts the sweep's runs.
    stop = SweepStop(info, lambda: outcomes, None, 4, 2, "python -m sweeper -m resume=true")
    stop.stop(False, RuntimeError("the launcher gave up"))
    assert (
        "1 run finished, 1 pruned and kept, 1 failed, the others not run or cut short"
        in capsys.readouterr().err
    )
    metrics = MlflowClient(uri).get_run(parent).data.metrics
    assert metrics == {"runs": 7.0, "failed_runs": 3.0, "killed_runs": 0.0}


@pytest.mark.parametrize("ctrl_c_ignored", [False, True], ids=["foreground", "background"])
def test_sigterm_ends_a_run_of_its_own_as_ctrl_c_does_with_its_metrics(
    workdir: Path, ctrl_c_ignored: bool
) -> None:
    # kill, timeout, docker stop, systemd, SLURM: SIGTERM. A script's `command &` also
    # starts the run with Ctrl-C ignored, so SIGTERM is the only stop it gets.
    args = ["train.epochs=6000", "train.patience=null", "gradcheck.enabled=false"]
    run = Sweep(args, workdir, name="run", ctrl_c_ignored=ctrl_c_ignored)

    def epochs_done() -> int:
        found = list(workdir.glob(f"outputs/*/{PROGRESS_FILE}"))
        return RunProgress.load(found[0]).epoch if found else 0

    # Past a few epochs, all still waiting in memory (tracking.flush_seconds: 30).
    run.wait_until(lambda: epochs_done() >= 3)
    os.kill(run.proc.pid, signal.SIGTERM)
    rc, stderr = run.finish()

    assert rc == 143, stderr
    assert stderr == "Interrupted (SIGTERM).\n"
    (killed,) = all_runs(workdir)
    assert killed.info.status == "KILLED"
    assert killed.info.end_time is not None
    assert killed.data.tags["status"] == "KILLED"
    assert killed.data.tags["reason"] == "interrupted (SIGTERM)"
    history = MlflowClient(store_uri(workdir)).get_metric_history(killed.info.run_id, "val_loss")
    assert len(history) >= 3
    assert [m.step for m in history] == list(range(1, len(history) + 1))


@pytest.mark.parametrize("whom", ["group", "sweep"])
def test_sigterm_stops_a_sweep_as_ctrl_c_does_and_exits_143(workdir: Path, whom: str) -> None:
    # group: timeout, systemd and SLURM signal every process; sweep: kill or docker stop
    # signal the sweep's own, which stops its runs.
    sweep = Sweep(SLOW_RUNS, workdir)
    sweep.wait_until(lambda: len(sweep.running_children()) == 2)
    if whom == "group":
        os.killpg(sweep.proc.pid, signal.SIGTERM)
    else:
        os.kill(sweep.proc.pid, signal.SIGTERM)
    rc, stderr = sweep.finish()

    assert rc == 143, stderr
    assert "Traceback" not in IGNORED_IN_FINALIZER.sub("", stderr)
    assert stderr.endswith("resume=true\nInterrupted (SIGTERM).\n"), stderr
    runs = child_runs(all_runs(workdir))
    assert {r.info.status for r in runs} == {"KILLED"}
    # Each run records the stop the sweep reports, whichever of its processes got it.
    assert {r.data.tags["reason"] for r in runs} == {"interrupted (SIGTERM)"}
    assert parent_run(all_runs(workdir)).info.status == "KILLED"


@pytest.mark.parametrize(
    ("signum", "stop"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")]
)
def test_a_sweep_of_one_run_at_a_time_stops_its_run_as_one_of_two_at_a_time(
    workdir: Path, signum: int, stop: str
) -> None:
    # hydra.launcher.n_jobs=1: joblib waits for the job in the sweep's main thread, where the
    # stop is raised; the job is stopped by the sweep all the same, not left to see it gone.
    sweep = Sweep([*SLOW_RUNS, "hydra.launcher.n_jobs=1"], workdir)
    sweep.wait_until(lambda: len(sweep.running_children()) == 1)
    os.kill(sweep.proc.pid, signum)
    rc, stderr = sweep.finish()

    assert rc == 128 + signum, stderr
    (run,) = child_runs(all_runs(workdir))
    assert (run.info.status, run.data.tags["reason"]) == ("KILLED", f"interrupted ({stop})")
    assert f"  KILLED: {run.data.tags['overrides']}\n" in stderr
    metrics = parent_run(all_runs(workdir)).data.metrics
    assert (metrics["runs"], metrics["killed_runs"]) == (1, 1)


def test_a_sweep_that_runs_its_jobs_itself_stops_its_run_as_one_with_workers(
    workdir: Path,
) -> None:
    # hydra/launcher=basic: the run trains in the sweep's own process, whose end no launcher
    # records; the run leaves its outcome itself.
    sweep = Sweep([*SLOW_RUNS, "hydra/launcher=basic"], workdir)
    sweep.wait_until(lambda: len(sweep.running_children()) == 1)
    os.kill(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()

    assert rc == 130, stderr
    (run,) = child_runs(all_runs(workdir))
    assert (run.info.status, run.data.tags["reason"]) == ("KILLED", "interrupted (Ctrl-C)")
    assert "0 runs finished and kept, 0 failed, 2 not run or cut short" in stderr
    assert f"  KILLED: {run.data.tags['overrides']}\n" in stderr
    metrics = parent_run(all_runs(workdir)).data.metrics
    assert (metrics["runs"], metrics["killed_runs"]) == (1, 1)
    (left,) = workdir.glob("multirun/*/*/outcome.json")
    assert (RunOutcome.load(left).status, RunOutcome.load(left).run_id) == (
        "KILLED",
        run.info.run_id,
    )


@pytest.mark.slow
def test_a_killed_worker_fails_its_run_alone_and_the_sweep_goes_on(workdir: Path) -> None:
    # Three quick runs, then three long ones for two workers: one long run is killed while
    # the other trains and the third waits its turn.
    args = [*QUICK_THEN_LONG[:2], "seed=0,1,2", *QUICK_THEN_LONG[3:]]
    sweep = Sweep(args, workdir)
    victim = sweep.kill_a_run_past_its_first_epoch("300")
    rc, stderr = sweep.finish()
    stdout = sweep.stdout.read_text()

    assert rc == 1  # a run failed, and the command says so
    reason = "worker process died (killed by SIGKILL)"
    assert f"1 run failed:\n  #{victim.data.tags['job']} " in stderr
    assert reason in stderr
    assert "Run them again with:" in stderr and "resume=true" in stderr
    assert "Traceback" not in stderr
    assert "[6/6 done] 1 failed" in stdout
    assert "5 finished, 1 failed" in stdout
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 6  # nothing ran twice
    by_id = {r.info.run_id: r for r in runs}
    assert by_id[victim.info.run_id].info.status == "FAILED"
    assert by_id[victim.info.run_id].data.tags["reason"] == reason
    # Its epochs up to the kill stay in the store.
    history = MlflowClient(store_uri(workdir)).get_metric_history(victim.info.run_id, "val_loss")
    assert len(history) >= 1
    others = [r for r in runs if r.info.run_id != victim.info.run_id]
    assert {r.info.status for r in others} == {"FINISHED"}
    assert sorted(r.data.metrics["epochs_run"] for r in others) == [1, 1, 1, 300, 300]
    assert parent_run(all_runs(workdir)).info.status == "FAILED"

    proc = run_cli([*args, "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "skipping 5 of 6 runs, FINISHED there already" in proc.stdout
    children = child_runs(all_runs(workdir))
    assert len({r.data.tags["config_hash"] for r in children}) == 6
    assert {r.data.tags["config_hash"] for r in children if r.info.status == "FINISHED"} == {
        r.data.tags["config_hash"] for r in children
    }
    assert parent_run(all_runs(workdir)).info.status == "FINISHED"


def test_resume_runs_only_what_the_sweep_did_not_finish(workdir: Path) -> None:
    first = run_cli(["-m", "optimizer.lr=0.05,1e6", "activation=relu", *QUICK], workdir)
    assert first.returncode == 1  # lr=1e6 diverges
    original = parent_run(all_runs(workdir))

    again = run_cli(
        ["-m", "optimizer.lr=0.05,1e6,0.1", "activation=relu", *QUICK, "resume=true"], workdir
    )
    assert "skipping 1 of 3 runs, FINISHED there already" in again.stdout
    # The failure's overrides as the command gave them, not as Hydra hands them to the job,
    # less the command's resume=true, which names no configuration.
    assert " gradcheck.enabled=false: diverged at epoch" in again.stderr
    assert "2 finished" not in again.stdout and "1 finished, 1 failed" in again.stdout
    # The summary is the sweep's as a whole: the run finished by the first command too.
    assert "| 0 | optimizer.lr=0.05 | FINISHED (before) | " in again.stdout
    assert "| 2 | optimizer.lr=0.1 | FINISHED | " in again.stdout

    lrs = sorted(r.data.params["optimizer.lr"] for r in child_runs(all_runs(workdir)))
    assert lrs == ["0.05", "0.1", "1000000.0", "1000000.0"]  # the FINISHED 0.05 is not redone
    assert parent_run(all_runs(workdir)).info.run_id == original.info.run_id
    for child in child_runs(all_runs(workdir)):
        assert child.data.tags["sweep_id"] == original.data.tags["sweep_id"]
        assert child.data.tags["mlflow.parentRunId"] == original.info.run_id

    nothing_left = run_cli(
        ["-m", "optimizer.lr=0.05", "activation=relu", *QUICK, "resume=true"], workdir
    )
    assert nothing_left.returncode == 0
    assert "Nothing left to run" in nothing_left.stdout
    assert len(child_runs(all_runs(workdir))) == 4


@pytest.mark.slow
def test_two_sweeps_into_one_store_at_once_lose_nothing(workdir: Path) -> None:
    common = [
        "seed=range(6)",
        "train.epochs=2",
        "gradcheck.enabled=false",
        "hydra.launcher.n_jobs=2",
    ]
    sweeps = [
        Sweep(["-m", *common, f"activation={act}", f"hydra.sweep.dir=multirun/{act}"], workdir, act)
        for act in ("tanh", "relu")
    ]
    for sweep in sweeps:
        rc, stderr = sweep.finish(timeout=600)
        assert rc == 0, stderr
        assert "database is locked" not in stderr
    children = child_runs(all_runs(workdir))
    assert len(children) == 12
    assert all(c.info.status == "FINISHED" for c in children)
    assert sorted(
        (c.data.params["activation.name"], c.data.params["seed"]) for c in children
    ) == sorted((a, str(s)) for a in ("tanh", "relu") for s in range(6))
    client = MlflowClient(store_uri(workdir))
    for child in children:
        assert len(client.get_metric_history(child.info.run_id, "val_loss")) == 2
    assert sorted(
        r.info.status for r in all_runs(workdir) if r.data.tags.get("kind") == "sweep"
    ) == ["FINISHED", "FINISHED"]


def test_a_wrong_type_in_one_run_of_a_sweep_stops_every_run(workdir: Path) -> None:
    proc = run_cli(["-m", "train.batch_size=16,a", *QUICK], workdir)
    assert proc.returncode == 1
    assert "train.batch_size=a" in proc.stderr
    assert "could not be converted to Integer" in proc.stderr
    assert "1 of 2 runs are invalid; nothing was run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workdir / "mlruns").exists()


def test_data_errors_are_one_line_naming_the_file(tmp_path: Path) -> None:
    bad_magic, bad_labels, short = tmp_path / "magic", tmp_path / "labels", tmp_path / "short"
    for directory in (bad_magic, bad_labels, short):
        write_mnist_like(directory)
    (bad_magic / "train-images-idx3-ubyte").write_bytes(b"\x01\x00\x08\x03" + bytes(12))
    write_idx(bad_labels / "t10k-labels-idx1-ubyte", np.full(30, 12))
    write_idx(short / "train-labels-idx1-ubyte", np.arange(99) % 10)
    missing = tmp_path / "nowhere"
    workdir = tmp_path / "work"
    workdir.mkdir()
    dirs = ",".join(str(d) for d in (bad_magic, bad_labels, short, missing))
    proc = run_cli(["-m", "dataset=mnist", f"dataset.data_dir={dirs}", *QUICK], workdir)

    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    reasons = {
        r.data.params["dataset.data_dir"]: r.data.tags["reason"]
        for r in child_runs(all_runs(workdir))
    }
    assert f"{bad_magic / 'train-images-idx3-ubyte'}" in reasons[str(bad_magic)]
    assert "magic" in reasons[str(bad_magic)]
    assert "labels range over 12..12, expected 0..9" in reasons[str(bad_labels)]
    assert "100 images but 99 labels" in reasons[str(short)]
    assert f"data directory {missing} " in reasons[str(missing)]
    for reason in reasons.values():
        assert "\n" not in reason
        assert reason in proc.stderr  # the list of failures at the end names each problem


def test_full_error_shows_the_traceback(tmp_path: Path) -> None:
    proc = run_cli(
        ["dataset=mnist", f"dataset.data_dir={tmp_path / 'nowhere'}", *QUICK],
        tmp_path,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert "MissingDataError" in proc.stderr


def test_a_crafted_cifar_pickle_cannot_run_code_through_the_cli(tmp_path: Path) -> None:
    data_dir, marker = tmp_path / "cifar", tmp_path / "pwned"
    write_cifar(data_dir)
    content = batch(20)
    content[b"data"] = RunsCommand(f"touch {marker}")
    write_pickle(data_dir / "data_batch_3", content)
    proc = run_cli(["dataset=cifar10", f"dataset.data_dir={data_dir}", *QUICK], tmp_path)

    assert proc.returncode == 1
    assert not marker.exists()
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED"
    assert run.data.tags["reason"].startswith(f"refusing to unpickle {data_dir / 'data_batch_3'}")
    assert "system" in run.data.tags["reason"]


def test_config_hash_ignores_where_a_run_is_recorded() -> None:
    base = {
        "optimizer.lr": 0.05,
        "seed": 0,
        "resume": False,
        "tracking.experiment": "a",
        "tracking.uri": None,
    }
    moved = {**base, "resume": True, "tracking.experiment": "b", "tracking.uri": "sqlite:///x"}
    assert config_hash(moved) == config_hash(base)
    assert config_hash(dict(reversed(base.items()))) == config_hash(base)
    assert config_hash({**base, "optimizer.lr": 0.1}) != config_hash(base)
    assert config_hash({**base, "seed": 1}) != config_hash(base)


def test_config_hash_is_what_a_run_computes_not_how_it_was_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"dataset.name": "mnist", "dataset.data_dir": None, "activation.name": "tanh"}
    base["activation.init"] = "auto"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    # One directory, however it is named; another directory is another configuration.
    real = {**base, "dataset.data_dir": str(tmp_path / "real")}
    for named in (tmp_path / "link", tmp_path / "real" / ".." / "real"):
        assert config_hash({**base, "dataset.data_dir": str(named)}) == config_hash(real)
    assert config_hash({**base, "dataset.data_dir": str(tmp_path)}) != config_hash(real)
    # A relative one hashes alike wherever it is hashed (reproduce, a cluster's worker).
    relative = {**base, "dataset.data_dir": "data/./mnist"}
    monkeypatch.chdir(tmp_path)
    here = config_hash(relative)
    monkeypatch.chdir(tmp_path / "real")
    assert config_hash(relative) == here == config_hash({**base, "dataset.data_dir": "data/mnist"})
    # tanh's own scheme, named or not; another scheme is another network.
    assert config_hash({**base, "activation.init": "xavier"}) == config_hash(base)
    assert config_hash({**base, "activation.init": "he"}) != config_hash(base)
    relu = {**base, "activation.name": "relu"}
    assert config_hash({**relu, "activation.init": "he"}) == config_hash(relu)
    assert config_hash({**relu, "activation.init": "xavier"}) != config_hash(relu)


def test_store_calls_are_retried_while_the_database_is_locked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_calls, "LOCK_RETRY_FIRST_WAIT", 0.0)
    calls = []

    @store_calls.store_call
    def flaky(fails: int) -> str:
        calls.append(1)
        if len(calls) <= fails:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert flaky(store_calls.LOCK_RETRIES) == "written"
    assert len(calls) == store_calls.LOCK_RETRIES + 1
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        flaky(store_calls.LOCK_RETRIES + 1)

    @store_calls.store_call
    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        broken()
    assert len(calls) == 1


def test_ctrl_c_during_a_store_call_is_raised_once_the_call_is_done() -> None:
    written = []

    @store_calls.store_call
    def write() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # Ctrl-C arrives here, in the middle of the call
        written.append(True)

    with pytest.raises(KeyboardInterrupt):
        write()
    assert written == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_held_back_in_a_block_that_raises_is_raised_in_place_of_its_error() -> None:
    # A caller that catches the block's error, as one that tries again does, still sees it.
    with pytest.raises(KeyboardInterrupt) as caught:
        try:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)  # Ctrl-C arrives here, held back
                raise LookupError("the block's own error")
        except LookupError:
            pass
    assert isinstance(caught.value.__context__, LookupError)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_a_store_call_the_store_does_not_answer_stops_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An outage is retried for tracking.max_outage; Ctrl-C must not wait for it.
    monkeypatch.setattr(store, "_store", store._Store("http://store", max_outage=3))
    calls = []

    @store_calls.store_call
    def log() -> None:
        calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # Ctrl-C arrives here, in the middle of the call
        raise requests.ConnectionError("[Errno 111] Connection refused")

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as caught:
        log()
    assert time.monotonic() - started < 1
    assert calls == [1]
    assert isinstance(caught.value.__context__, requests.ConnectionError)
    assert store._store.outage_since is None


def test_ctrl_c_in_a_run_whose_store_then_cannot_close_it_is_still_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")

    def refused(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError("[Errno 111] Connection refused")

    with pytest.raises(KeyboardInterrupt), tracked_run(uri, experiment_id, "cut", {}) as run:
        # The store goes away, its outage already past tracking.max_outage.
        monkeypatch.setattr(store, "_store", store._Store(uri, max_outage=0))
        monkeypatch.setattr(run._client, "log_batch", refused)
        raise KeyboardInterrupt


def test_a_run_cut_short_by_ctrl_c_leaves_its_killed_outcome_itself(tmp_path: Path) -> None:
    # As under an in-process launcher (hydra/launcher=basic): no process death records it.
    def ctrl_c(metrics: EpochMetrics) -> None:
        if metrics.epoch == 2:
            raise KeyboardInterrupt

    settings = {"train": {"epochs": 4, "patience": None}, "gradcheck": {"enabled": False}}
    with pytest.raises(KeyboardInterrupt):
        run_here(tmp_path, settings, threads=1, epoch_callbacks=[ctrl_c])
    (run,) = all_runs(tmp_path)
    outcome = RunOutcome.load(tmp_path / "out" / OUTCOME_FILE)
    assert (outcome.status, outcome.reason) == ("KILLED", "interrupted (Ctrl-C)")
    assert (outcome.run_id, run.info.status) == (run.info.run_id, "KILLED")


class CtrlCAsTheRunEnds(Pruning):
    """No search's pruning; Ctrl-C arrives as the run's value is handed to it."""

    def ended(self, objective: float, stop: bool = True) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # Ctrl-C arrives here, held back until the outcome is left


def test_a_run_that_ended_before_a_held_ctrl_c_keeps_its_finished_outcome(tmp_path: Path) -> None:
    settings = {"train": {"epochs": 2, "patience": None}, "gradcheck": {"enabled": False}}
    with pytest.raises(KeyboardInterrupt):
        run_here(tmp_path, settings, threads=1, pruning=CtrlCAsTheRunEnds(None))
    (run,) = all_runs(tmp_path)
    outcome = RunOutcome.load(tmp_path / "out" / OUTCOME_FILE)
    assert (outcome.status, run.info.status) == ("FINISHED", "FINISHED")


@pytest.mark.parametrize("dropped", ["database is locked", "database or disk is full"])
def test_mlflows_log_of_a_locked_or_full_database_is_dropped_and_other_errors_kept(
    dropped: str,
) -> None:
    # Both are raised to the run, which retries a lock and reports a full disk in one line;
    # the log would be a traceback per attempt, in every process.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("mlflow.store.db.utils")
    log.addHandler(handler)
    try:
        for error in (f"(sqlite3.OperationalError) {dropped}", "no such table: runs"):
            log.error("SQLAlchemy database error. The following exception is caught.\n%s", error)
    finally:
        log.removeHandler(handler)
    assert [r.getMessage().splitlines()[-1] for r in records] == ["no such table: runs"]


def test_the_ui_listens_on_loopback_only() -> None:
    assert ui_command("sqlite:///x/mlflow.db").endswith("--host 127.0.0.1")
    makefile = (REPO / "Makefile").read_text()
    (ui_line,) = [line for line in makefile.splitlines() if "mlflow ui" in line]
    assert "--host 127.0.0.1" in ui_line


@pytest.mark.slow
@pytest.mark.parametrize("ended", ["KILLED", "RUNNING"])
def test_resume_of_a_sweep_interrupted_after_its_last_run_makes_its_end(
    workdir: Path, ended: str
) -> None:
    # Ctrl-C as the best run's model is made (the parent KILLED), or kill -9 then (left
    # RUNNING): every run FINISHED, no model. tracking.* names no configuration, so the
    # resume skips both runs.
    args = ["-m", "seed=0,1", *QUICK]
    assert run_cli([*args, "tracking.model=none"], workdir).returncode == 0
    parent = parent_run(all_runs(workdir))
    client = MlflowClient(store_uri(workdir))
    client.update_run(parent.info.run_id, status=ended)

    again = run_cli([*args, "resume=true"], workdir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Nothing left to run; the sweep's end is made now." in again.stdout
    assert ": no run left, tracking to " in again.stdout
    assert "| 0 | seed=0 | FINISHED (before) | " in again.stdout
    assert "| 1 | seed=1 | FINISHED (before) | " in again.stdout
    assert "Made for the best run: runs:/" in again.stdout
    assert parent_run(all_runs(workdir)).info.status == "FINISHED"
    assert len(child_runs(all_runs(workdir))) == 2


def test_a_resume_that_leaves_out_an_unfinished_configuration_does_not_end_the_sweep_finished(
    workdir: Path,
) -> None:
    # seed=1 was cut short (KILLED) with its sweep; resumed with seed=0 alone, the sweep's end
    # still counts it, and says so: the parent is not FINISHED while a run of it is not.
    args = ["-m", "seed=0,1", *QUICK, "tracking.model=none"]
    assert run_cli(args, workdir).returncode == 0
    client = MlflowClient(store_uri(workdir))
    parent = parent_run(all_runs(workdir)).info.run_id
    (cut,) = [r for r in child_runs(all_runs(workdir)) if r.data.params["seed"] == "1"]
    client.set_terminated(cut.info.run_id, "KILLED")
    client.set_terminated(parent, "KILLED")

    again = run_cli(["-m", "seed=0", *QUICK, "tracking.model=none", "resume=true"], workdir)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (
        "Not in this command's overrides, and not finished: seed=1 (KILLED); the sweep is not "
        "complete without them (resume=true with their values runs them)."
    ) in again.stdout
    ended = client.get_run(parent)
    assert ended.info.status == "FAILED"
    assert ended.data.metrics["runs"] == 2 and ended.data.metrics["killed_runs"] == 1


# A run that finishes, and one that would last hours until Ctrl-C.
FINISHED_THEN_LONG = ["-m", "train.epochs=1,100000", "seed=0", "train.patience=null",
                      "gradcheck.enabled=false", "hydra.launcher.n_jobs=2"]  # fmt: skip


def _refused_as_another_runs_the_sweep(workdir: Path, holder: Sweep) -> None:
    """``resume=true`` of a plan that shares a configuration with ``holder``'s sweep while
    ``holder`` runs it stops in one line naming ``holder``. Quick where it is not refused: it
    would run seed=1 for an epoch as that sweep's run."""
    holder.wait_until(
        lambda: bool(holder.running_children(epochs="100000")) and holder.outcomes() >= 1
    )
    other = ["-m", "train.epochs=1", "seed=0,1", "train.patience=null",
             "gradcheck.enabled=false", "resume=true"]  # fmt: skip
    proc = run_cli(other, workdir)
    assert proc.returncode == 1, proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    sweep_id = parent_run(all_runs(workdir)).data.tags["sweep_id"]
    assert line.startswith(
        f"Error: the sweep could not start: sweep {sweep_id} is being run by another command "
        f"(pid {holder.proc.pid}: python -m sweeper -m train.epochs=1,100000 seed=0 "
    )
    assert line.endswith("): wait for it to end, or stop it first")


def _statuses_by_epochs(workdir: Path) -> list[tuple[str, str]]:
    runs = child_runs(all_runs(workdir))
    return sorted((r.data.params["train.epochs"], r.info.status) for r in runs)


def test_resume_of_a_sweep_still_running_stops_in_one_line(workdir: Path) -> None:
    running = Sweep(FINISHED_THEN_LONG, workdir)
    try:
        _refused_as_another_runs_the_sweep(workdir, running)
    finally:
        os.killpg(running.proc.pid, signal.SIGINT)
    assert running.finish()[0] == 130
    assert _statuses_by_epochs(workdir) == [("1", "FINISHED"), ("100000", "KILLED")]
    # Released, and removed, as the command ended.
    assert not list((workdir / "mlruns").glob("mlflow.db.sweep-*.lock"))


@pytest.mark.slow
def test_a_second_resume_of_one_sweep_stops_in_one_line(workdir: Path) -> None:
    first = Sweep(FINISHED_THEN_LONG, workdir, "first")
    first.wait_until(lambda: bool(first.running_children(epochs="100000")) and first.outcomes())
    os.killpg(first.proc.pid, signal.SIGINT)
    assert first.finish()[0] == 130
    again = Sweep([*FINISHED_THEN_LONG, "resume=true"], workdir, "again")
    try:
        _refused_as_another_runs_the_sweep(workdir, again)
    finally:
        os.killpg(again.proc.pid, signal.SIGINT)
    assert again.finish()[0] == 130
    assert "Resuming sweep" in again.stdout.read_text()
    assert _statuses_by_epochs(workdir) == [
        ("1", "FINISHED"), ("100000", "KILLED"), ("100000", "KILLED")
    ]  # fmt: skip
    assert not list((workdir / "mlruns").glob("mlflow.db.sweep-*.lock"))


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}/mlruns/mlflow.db", "http://127.0.0.1:5000"])
def test_a_sweep_held_by_one_command_is_refused_to_another_until_released(
    tmp_path: Path, uri: str
) -> None:
    uri = uri.format(tmp=tmp_path)
    held = hold_sweep(uri, "abc", "s", "python -m sweeper -m seed=0,1")
    # A tracking server's sweeps are held on this machine, in the user's cache directory.
    assert held.path.parent == (
        tmp_path / "mlruns" if uri.startswith("sqlite") else cache_root() / "sweep-locks"
    )
    with pytest.raises(SweepBusyError) as refused:
        hold_sweep(uri, "abc", "s", "python -m sweeper -m seed=0,1 resume=true")
    assert str(refused.value) == (
        f"sweep s is being run by another command (pid {os.getpid()}: python -m sweeper -m "
        "seed=0,1): wait for it to end, or stop it first"
    )
    hold_sweep(uri, "other", "t", "").release()  # another sweep of the store is free
    if uri.startswith("http"):
        # The same server spelled otherwise is the same sweep: resume would close its runs.
        with pytest.raises(SweepBusyError):
            hold_sweep("http://localhost:5000/", "abc", "s", "")
    held.release()
    assert not held.path.exists()
    hold_sweep(uri, "abc", "s", "").release()
