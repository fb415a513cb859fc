"""A tracking store that cannot be used: unreachable, not a database, not writable, on a
read-only filesystem, full, or gone in the middle of a sweep. Each says so in one line, the
exit status is non-zero, and nothing already logged is lost."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import FAST, QUICK, run_cli
from helpers import Sweep, default_store_policy  # noqa: F401 (an autouse fixture)
from services import free_port, mlflow_service
from sweeper import store, store_check, sweep
from sweeper.failures import failure_reason
from sweeper.outcome import RunOutcome
from sweeper.progress import ProgressMonitor
from sweeper.run_records import tracked_run
from sweeper.store import configure, outage_retried
from sweeper.store_check import StoreError, check_store
from sweeper.store_setup import open_store, prepare_store
from sweeper.sweep import SweepCallback
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import free_sweep_id, start_sweep_run


def one_line_error(stderr: str) -> str:
    """The command's error: exactly one line on stderr, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --- before any run: the check ---


def test_unreachable_server_fails_at_its_first_try_naming_the_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    attempts = []

    def counted(*args: object, **kwargs: object) -> socket.socket:
        attempts.append(args[0])
        return create_connection(*args, **kwargs)  # type: ignore[arg-type]

    create_connection = urllib3.util.connection.create_connection
    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    with pytest.raises(StoreError) as caught:
        check_store(uri, connect_timeout=5)
    message = str(caught.value)
    assert uri in message
    assert "Connection refused" in message
    assert "\n" not in message
    # One try, not MLflow's seven retries with doubling waits (minutes).
    assert len(attempts) == 1


def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout() -> None:
    # Listening, so connecting succeeds, but nothing ever reads the request or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(StoreError, match="timed out") as caught:
            check_store(uri, connect_timeout=1)
        # One try, not MLflow's seven retries with doubling waits (minutes): each try is a
        # connection waiting in the listening socket's queue.
        silent.setblocking(False)
        connections = []
        with contextlib.suppress(BlockingIOError):
            while True:
                connections.append(silent.accept()[0])
        for connection in connections:
            connection.close()
    assert uri in str(caught.value)
    assert len(connections) == 1


def test_a_garbage_file_as_the_database_is_named_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    garbage = bytes(range(256)) * 20
    db.write_bytes(garbage)
    with pytest.raises(StoreError) as caught:
        check_store(f"sqlite:///{db}", connect_timeout=5)
    assert str(caught.value) == (
        f"the store {db} is not a usable SQLite database (file is not a database): move it "
        "away, or set tracking.uri or MLFLOW_TRACKING_URI to another store"
    )
    assert db.read_bytes() == garbage


def test_a_store_directory_that_cannot_be_created(tmp_path: Path) -> None:
    # As root, chmod does not stop a write; a directory under a regular file cannot exist.
    (tmp_path / "a_file").write_text("")
    db = tmp_path / "a_file" / "mlruns" / "mlflow.db"
    with pytest.raises(StoreError) as caught:
        check_store(f"sqlite:///{db}", connect_timeout=5)
    assert str(caught.value).startswith(
        f"the store's directory {db.parent} cannot be written (Not a directory)"
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EROFS, "the store's directory {dir} cannot be written (Read-only file system)"),
        (errno.ENOSPC, "no space left on device ({dir})"),
    ],
)
def test_a_store_directory_that_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, expected: str
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(tmp_path / "tmpXYZ"))

    monkeypatch.setattr(store_check.tempfile, "TemporaryFile", refuse)
    with pytest.raises(StoreError) as caught:
        check_store(f"sqlite:///{tmp_path / 'mlflow.db'}", connect_timeout=5)
    assert str(caught.value).startswith(expected.format(dir=tmp_path))
    assert not (tmp_path / "mlflow.db").exists()


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A sweep's store (WAL journaling, no -shm file beside it, as after its last
    connection closed) seen through a read-only bind mount (needs root and a kernel that lets
    this process mount); the ``mlruns`` directory there."""
    made, source, mount_point = tmp_path / "made", tmp_path / "source", tmp_path / "ro"
    tracking = {"uri": f"sqlite:///{made / 'mlflow.db'}", "experiment": "sweeper"}
    open_store(OmegaConf.create({**tracking, "connect_timeout": 5, "max_outage": 7}))
    with sqlite3.connect(made / "mlflow.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    (source / "mlruns").mkdir(parents=True)
    shutil.copyfile(made / "mlflow.db", source / "mlruns" / "mlflow.db")
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(source), str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {mounted.stderr.strip()}")
    try:
        yield mount_point / "mlruns"
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def read_only_message(db: Path, reason: str) -> str:
    return (
        f"the store {db} is on a read-only filesystem, where SQLite cannot open it ({reason}): "
        f"copy {db.parent} somewhere writable and use the copy"
    )


def test_a_store_this_user_may_not_write_is_said_to_be_so_not_called_broken(
    tmp_path: Path,
) -> None:
    # Another user's store: the database is fine, its directory and file not ours to write.
    made, theirs = tmp_path / "made", tmp_path / "theirs"
    tracking = {"uri": f"sqlite:///{made / 'mlflow.db'}", "experiment": "sweeper"}
    open_store(OmegaConf.create({**tracking, "connect_timeout": 5, "max_outage": 7}))
    with sqlite3.connect(made / "mlflow.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    theirs.mkdir()
    shutil.copyfile(made / "mlflow.db", theirs / "mlflow.db")
    (theirs / "mlflow.db").chmod(0o444)
    theirs.chmod(0o555)
    # Root writes anywhere: the check runs without the capability that lets it.
    drop = "-dac_override,-dac_read_search"
    as_user = (
        ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"] if os.geteuid() == 0 else []
    )
    if as_user and shutil.which("setpriv") is None:
        pytest.skip("as root, needs setpriv (util-linux) to drop the capability to write anywhere")
    check = (
        "import sys; from sweeper.store_check import check_store; "
        "check_store(sys.argv[1], connect_timeout=5, writable=False)"
    )
    try:
        proc = subprocess.run(
            [*as_user, sys.executable, "-c", check, f"sqlite:///{theirs / 'mlflow.db'}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        theirs.chmod(0o755)
    db = theirs / "mlflow.db"
    assert proc.stderr.strip().splitlines()[-1] == (
        f"sweeper.store_check.StoreError: the store {db} is in a place this user cannot write, "
        f"where SQLite cannot open it (attempt to write a readonly database): copy {theirs} "
        "somewhere writable and use the copy"
    )


def test_a_store_on_a_read_only_filesystem_is_said_to_be_so(
    read_only_store: Path, tmp_path: Path
) -> None:
    db = read_only_store / "mlflow.db"
    message = read_only_message(db, "unable to open database file")
    with pytest.raises(StoreError) as caught:
        check_store(f"sqlite:///{db}", connect_timeout=5, writable=False)
    assert str(caught.value) == message
    assert store_check.read_only_filesystem(read_only_store)
    assert not store_check.read_only_filesystem(read_only_store.parents[1] / "made")
    report = subprocess.run(
        [sys.executable, "-m", "sweeper.report", "--tracking-uri", str(read_only_store)],
        # In tmp_path: a regression that writes reports/ cannot write it into the repository.
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 1
    assert report.stderr.strip() == f"error: {message}"
    links = subprocess.run(
        [sys.executable, "-m", "sweeper.ui_links", "--tracking-uri", str(read_only_store)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert links.stdout.strip() == f"No sweep to link to yet ({message})."


@pytest.mark.parametrize("read_only", [True, False])
def test_a_database_sqlite_cannot_open_is_told_by_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_only: bool
) -> None:
    # What SQLite answers for a WAL database whose -shm file it cannot create.
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
    conn.close()

    def cannot_open(*args: object, **kwargs: object) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    real_statvfs = os.statvfs

    def statvfs(path: object) -> object:
        flags = real_statvfs(path).f_flag | (os.ST_RDONLY if read_only else 0)
        return type("Statvfs", (), {"f_flag": flags})()

    monkeypatch.setattr(store_check.sqlite3, "connect", cannot_open)
    monkeypatch.setattr(store_check.os, "statvfs", statvfs)
    with pytest.raises(StoreError) as caught:
        check_store(f"sqlite:///{db}", connect_timeout=5, writable=False)
    if read_only:
        assert str(caught.value) == read_only_message(db, "unable to open database file")
    else:
        assert str(caught.value).startswith(f"the store {db} is not a usable SQLite database")


def test_a_usable_store_is_opened(tmp_path: Path) -> None:
    tracking = OmegaConf.create(
        {
            "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "experiment": "x",
            "connect_timeout": 5,
            "max_outage": 7,
        }
    )
    uri, experiment_id = open_store(tracking)
    assert MlflowClient(uri).get_experiment(experiment_id).name == "x"
    assert store._store.max_outage == 7


def test_a_sqlite_file_named_relative_to_the_working_directory_holds_the_sweep(
    workdir: Path,
) -> None:
    # MLflow's own form for a database in the working directory.
    proc = run_cli(
        ["-m", "seed=0,1", *QUICK], workdir, env={"MLFLOW_TRACKING_URI": "sqlite:///here.db"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{workdir / 'here.db'}")
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 3  # the sweep and its 2 runs
    assert f"--backend-store-uri sqlite:///{workdir / 'here.db'}" in proc.stdout


def test_cli_unreachable_server_one_line_exit_1(workdir: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    result = run_cli(["-m", "seed=0,1", *QUICK], workdir, env={"MLFLOW_TRACKING_URI": uri})
    seconds = time.monotonic() - start
    print(f"CLI against {uri}: exit {result.returncode} after {seconds:.1f} s (imports included)")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert line.startswith(f"Error: the sweep could not start: tracking server {uri} not answering")
    assert "Retrying" not in result.stdout + result.stderr
    assert not list(workdir.glob("multirun/*/*/outcome.json"))


def test_cli_garbage_database_one_line_exit_1(workdir: Path) -> None:
    db = workdir / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"not a database" * 100)
    result = run_cli(QUICK, workdir)
    assert result.returncode == 1
    assert one_line_error(result.stderr).startswith(
        f"Error: the store {db} is not a usable SQLite database"
    )
    assert db.read_bytes() == b"not a database" * 100


def test_cli_unwritable_store_directory_one_line_exit_1(workdir: Path) -> None:
    (workdir / "a_file").write_text("")
    db = workdir / "a_file" / "mlflow.db"
    result = run_cli(["-m", "seed=0,1", *QUICK, f"tracking.uri=sqlite:///{db}"], workdir)
    assert result.returncode == 1
    assert one_line_error(result.stderr) == (
        f"Error: the sweep could not start: the store's directory {db.parent} cannot be written "
        "(Not a directory): set tracking.uri or MLFLOW_TRACKING_URI to another store"
    )


def test_bad_tracking_bounds_are_config_errors(workdir: Path) -> None:
    result = run_cli([*QUICK, "tracking.connect_timeout=0"], workdir)
    assert result.returncode == 1
    assert "tracking.connect_timeout=0" in one_line_error(result.stderr)


# --- while runs record: outages and a full disk ---


def test_a_store_back_within_the_bound_loses_nothing() -> None:
    configure("http://store", max_outage=30)
    answers = iter([requests.ConnectionError("refused"), requests.ConnectionError("refused")])

    def call() -> str:
        err = next(answers, None)
        if err is not None:
            raise err
        return "logged"

    assert outage_retried(call) == "logged"
    assert store._store.outage_since is None


def test_an_outage_past_the_bound_fails_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    configure("http://store:5000", max_outage=0.5)
    calls = []

    def mlflow_like() -> None:
        try:
            raise requests.ConnectionError("[Errno 111] Connection refused")
        except requests.ConnectionError:
            calls.append(time.monotonic())
            # As MLflow raises it: its own exception, the requests error as its context.
            raise MlflowException("API request to http://store:5000/x failed")  # noqa: B904

    with pytest.raises(StoreError) as caught:
        outage_retried(mlflow_like)
    assert str(caught.value).startswith("tracking store http://store:5000 not answering for")
    assert "(tracking.max_outage=0.5): Connection refused" in str(caught.value)
    assert len(calls) >= 2
    assert failure_reason(caught.value) == str(caught.value)
    # Said once, when the outage began.
    assert capsys.readouterr().err.count("not answering") == 1
    # Within the same outage, a later call (the run closing itself) fails at its first try.
    tries = len(calls)
    with pytest.raises(StoreError):
        outage_retried(mlflow_like)
    assert len(calls) == tries + 1


def test_an_error_the_store_answered_is_not_retried() -> None:
    configure("http://store", max_outage=30)
    calls = []

    def call() -> None:
        calls.append(1)
        raise MlflowException("RESOURCE_DOES_NOT_EXIST: no such run")

    with pytest.raises(MlflowException):
        outage_retried(call)
    assert calls == [1]


def test_a_full_disk_fails_the_run_in_one_line_and_keeps_its_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    tracking = OmegaConf.create(
        {"uri": f"sqlite:///{db}", "experiment": "x", "connect_timeout": 5, "max_outage": 5}
    )
    uri, experiment_id = open_store(tracking)
    plot = tmp_path / "plots" / "loss.png"
    plot.parent.mkdir()
    plot.write_bytes(b"png")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # The boundary: MLflow copying an artifact into the store's directory.
    from mlflow.utils import file_utils

    monkeypatch.setattr(file_utils.shutil, "copy2", disk_full)
    with (
        pytest.raises(OSError) as caught,
        tracked_run(uri, experiment_id, "full", tags={}) as run,
    ):
        for epoch in (1, 2):
            run.log_metrics({"val_loss": 1.0 / epoch, "val_acc": 0.5}, step=epoch)
        run.log_tree(plot.parent)
    assert failure_reason(caught.value) == f"no space left on device ({db})"

    client = MlflowClient(uri)
    (stored,) = client.search_runs([experiment_id])
    assert stored.info.status == "FAILED"
    assert stored.data.tags["reason"] == f"no space left on device ({db})"
    assert [m.value for m in client.get_metric_history(stored.info.run_id, "val_loss")] == [
        1.0,
        0.5,
    ]


def test_a_runs_end_the_store_missed_is_recorded_when_it_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "mlruns" / "mlflow.db"
    tracking = {"uri": f"sqlite:///{db}", "experiment": "x", "connect_timeout": 5, "max_outage": 30}
    uri, experiment_id = open_store(OmegaConf.create(tracking))
    monkeypatch.setattr(store, "OUTAGE_FIRST_WAIT", 0.01)
    set_terminated = MlflowClient.set_terminated
    outage = [requests.ConnectionError("[Errno 111] Connection refused")]

    def down_once(self: MlflowClient, *args: Any, **kwargs: Any) -> None:
        if outage:
            raise outage.pop()
        set_terminated(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", down_once)
    with tracked_run(uri, experiment_id, "ended in an outage", tags={}) as run:
        run.log_metrics({"val_loss": 0.5}, step=1)

    (stored,) = MlflowClient(uri).search_runs([experiment_id])
    assert not outage
    assert stored.info.status == "FINISHED"
    assert stored.info.end_time is not None


def make_ended_sweep(
    tmp_path: Path,
    uri: str,
    *more: RunOutcome,
    experiment_id: str = "0",
    parent_run_id: str = "parent",
) -> SweepCallback:
    """A sweep callback whose two runs have left their outcomes, one failed; and ``more``."""
    sweep_dir = tmp_path / "multirun"
    outcomes = (
        RunOutcome(0, ["seed=0"], "FINISHED", "max_epochs", 1.0, "r0", _METRICS),
        RunOutcome(1, ["seed=1"], "FAILED", "no space left on device (/x)", 1.0, "r1"),
        *more,
    )
    for outcome in outcomes:
        (sweep_dir / str(outcome.job)).mkdir(parents=True)
        outcome.save(sweep_dir / str(outcome.job))
    callback = SweepCallback()
    callback._monitor = ProgressMonitor(sweep_dir, len(outcomes), out=io.StringIO())
    callback._info = SweepInfo("s1", uri, experiment_id, parent_run_id)
    callback._resume_command = "python -m sweeper -m seed=0,1 resume=true"
    return callback


# What a grid sweep's end reads of its config.
GRID_CONFIG = OmegaConf.create({"tracking": {"experiment": "sweeper"}, "hydra": {"sweeper": {}}})
_METRICS = {"best_val_loss": 0.3, "best_val_acc": 0.9, "test_acc": 0.8, "epochs_run": 3.0}


def test_a_sweep_whose_end_cannot_be_recorded_prints_its_summary_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configure(uri, 5)

    def full(*args: object, **kwargs: object) -> None:
        raise MlflowException("(sqlite3.OperationalError) database or disk is full")

    monkeypatch.setattr(sweep, "end_sweep_run", full)
    callback = make_ended_sweep(tmp_path, uri)
    with pytest.raises(SystemExit) as exited:
        callback.on_multirun_end(GRID_CONFIG)
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assert "Sweep s1: 1 finished, 1 failed" in out
    assert "| 0 | seed=0 | FINISHED | 0.3000 | 0.9000 | 0.8000 | 3 | 1.0 |" in out
    assert "#1 seed=1: no space left on device (/x)" in err
    assert err.strip().endswith(
        f"Error: the sweep's end could not be recorded in {uri}: "
        f"no space left on device ({tmp_path / 'mlflow.db'})"
    )
    assert "Traceback" not in err


def test_a_sweeps_end_counts_a_run_cut_short_apart_from_the_failed_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run's own process stopped by Ctrl-C or SIGTERM while the sweep went on: KILLED.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    configure(uri, 5)
    experiment_id = prepare_store(uri, "sweeper")
    parent_run_id = start_sweep_run(uri, experiment_id, "s1", "seed=0,1,2", "sweep s1")
    killed = RunOutcome(2, ["seed=2"], "KILLED", "interrupted (SIGTERM)", 1.0, "r2")
    callback = make_ended_sweep(
        tmp_path, uri, killed, experiment_id=experiment_id, parent_run_id=parent_run_id
    )
    with pytest.raises(SystemExit) as exited:
        callback.on_multirun_end(GRID_CONFIG)
    assert exited.value.code == 1  # both are to run again
    out, err = capsys.readouterr()
    assert "Sweep s1: 1 finished, 1 failed, 1 cut short\n" in out
    assert "2 runs failed or cut short:\n" in err
    assert "#2 seed=2: interrupted (SIGTERM)" in err
    # The parent run counts them as the summary does.
    parent = MlflowClient(uri).get_run(parent_run_id)
    assert parent.data.metrics == {"runs": 3.0, "failed_runs": 1.0, "killed_runs": 1.0}
    assert parent.info.status == "FAILED"


def test_a_broken_summary_still_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> str:
        raise KeyError("best_val_acc")

    monkeypatch.setattr(sweep, "end_sweep_run", lambda *a, **k: None)
    monkeypatch.setattr(sweep, "summary_table", broken)
    callback = make_ended_sweep(tmp_path, "sqlite:///unused")
    with pytest.raises(SystemExit) as exited:
        callback.on_multirun_end(GRID_CONFIG)
    assert exited.value.code == 1
    assert "Error: the sweep could not be completed: 'best_val_acc'" in capsys.readouterr().err


# --- through the command line: a disk filled on purpose, a server stopped mid-sweep ---


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs (needs root and a kernel that lets this process mount)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> None:
    with (directory / "filler").open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC


def failed_sweep_output(sweep_: Sweep) -> tuple[str, str]:
    """The stdout and stderr of a sweep that exits 1 in one-line errors, its summary printed."""
    rc, stderr = sweep_.finish()
    stdout = sweep_.stdout.read_text()
    print(f"exit {rc}\n{stdout}{stderr}")
    assert rc == 1, stderr
    assert "Traceback" not in stdout + stderr
    assert "| # | run | status |" in stdout
    return stdout, stderr


def test_cli_disk_filled_mid_sweep(workdir: Path, small_disk: Path) -> None:
    db = small_disk / "mlflow.db"
    uri = f"sqlite:///{db}"
    # Four runs after the first, one at a time: some start after the disk is full, even where
    # each lasts under a second.
    sweep_ = Sweep(
        ["-m", "seed=range(5)", *QUICK, "hydra.launcher.n_jobs=1", f"tracking.uri={uri}"], workdir
    )
    sweep_.wait_until(lambda: sweep_.outcomes() >= 1)
    fill(small_disk)
    _, stderr = failed_sweep_output(sweep_)
    outcomes = {o.job: o for o in map(RunOutcome.load, workdir.glob("multirun/*/*/outcome.json"))}
    assert outcomes[0].status == "FINISHED"
    failed = [o for o in outcomes.values() if o.failed]
    assert failed
    for outcome in failed:
        assert outcome.reason.startswith("no space left on device ("), outcome.reason
        assert any(
            line.startswith(f"  #{outcome.job} seed={outcome.job} ")
            and line.endswith(f": {outcome.reason}")
            for line in stderr.splitlines()
        ), stderr

    # The store stays readable, and the run that finished before has every epoch.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id])}
    first = runs[outcomes[0].run_id]
    assert first.info.status == "FINISHED"
    history = client.get_metric_history(first.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]


def server_command(root: Path) -> list[str]:
    return [
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]


def logged_an_epoch(address: str) -> bool:
    client = MlflowClient(address)
    experiment = client.get_experiment_by_name("sweeper")
    if experiment is None:
        return False
    return any(
        "val_loss" in r.data.metrics and r.data.tags.get("kind") != "sweep"
        for r in client.search_runs([experiment.experiment_id])
    )


def children(address: str) -> list[Run]:
    client = MlflowClient(address)
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    return [
        r
        for r in client.search_runs([experiment.experiment_id])
        if r.data.tags.get("kind") != "sweep"
    ]


SERVER_SWEEP = ["-m", "seed=0,1", "train.epochs=4", "train.patience=null"]
# Every epoch written as it ends, so the server goes away while the runs are writing.
SERVER_SWEEP += ["gradcheck.enabled=false", "hydra.launcher.n_jobs=2", "tracking.flush_seconds=0"]


@pytest.mark.slow
def test_server_restarted_mid_sweep_loses_nothing(workdir: Path, tmp_path: Path) -> None:
    port = free_port()
    root = tmp_path / "server"
    args = [*SERVER_SWEEP, f"tracking.uri=http://127.0.0.1:{port}"]
    with mlflow_service(server_command(root), tmp_path / "server1.log", port=port) as address:
        sweep_ = Sweep(args, workdir)
        sweep_.wait_until(lambda: logged_an_epoch(address))
    stopped = time.monotonic()
    time.sleep(3)
    with mlflow_service(server_command(root), tmp_path / "server2.log", port=port):
        print(f"server down for {time.monotonic() - stopped:.1f} s")
        rc, stderr = sweep_.finish()
        print(f"exit {rc}\n{stderr}")
        runs = children(address)
        histories = [
            MlflowClient(address).get_metric_history(r.info.run_id, "val_loss") for r in runs
        ]

    assert rc == 0, stderr
    assert "not answering" in stderr  # the outage happened, and was retried
    assert "Traceback" not in stderr
    assert len(runs) == 2
    for run, history in zip(runs, histories, strict=True):
        assert run.info.status == "FINISHED"
        assert run.data.metrics["epochs_run"] == 4
        assert [m.step for m in history] == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_run_on_a_server_prints_no_links_of_mlflows_own(workdir: Path, tmp_path: Path) -> None:
    with mlflow_service(server_command(tmp_path / "server"), tmp_path / "server.log") as address:
        proc = run_cli([*FAST, f"tracking.uri={address}"], workdir)
    assert proc.returncode == 0, proc.stderr
    assert "View run" not in proc.stdout and "View experiment" not in proc.stdout
    assert proc.stdout.startswith("#0 ")


@pytest.mark.slow
def test_server_gone_past_the_bound_fails_the_runs_and_resume_completes(
    workdir: Path, tmp_path: Path
) -> None:
    port = free_port()
    root = tmp_path / "server"
    # Epochs enough that no run ends before the server does, on a loaded machine too.
    longer = [a.replace("train.epochs=4", "train.epochs=40") for a in SERVER_SWEEP]
    args = [*longer, f"tracking.uri=http://127.0.0.1:{port}", "tracking.max_outage=2"]
    with mlflow_service(server_command(root), tmp_path / "server1.log", port=port) as address:
        sweep_ = Sweep(args, workdir)
        sweep_.wait_until(lambda: logged_an_epoch(address))
    _, stderr = failed_sweep_output(sweep_)
    assert f"tracking store http://127.0.0.1:{port} not answering for" in stderr
    assert "(tracking.max_outage=2)" in stderr
    assert "Error: the sweep's end could not be recorded" in stderr
    for outcome in map(RunOutcome.load, workdir.glob("multirun/*/*/outcome.json")):
        assert outcome.status == "FAILED"

    with mlflow_service(server_command(root), tmp_path / "server2.log", port=port) as address:
        resumed = run_cli([*args, "resume=true"], workdir)
        assert resumed.returncode == 0, resumed.stderr
        finished = {r.data.params["seed"] for r in children(address) if r.info.status == "FINISHED"}
    assert finished == {"0", "1"}
    assert "Resuming sweep" in resumed.stdout


# A fork server's part, then two forked workers that each record a run through MlflowClient,
# as a sweep's jobs do. Prints what the parent saw of the store it opened, then what the
# workers found.
FORKED_WORKERS = textwrap.dedent(
    """
    import multiprocessing, sys, threading
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient
    from mlflow.tracking._tracking_service.utils import _get_store
    from sweeper.store_setup import open_for_forked_jobs, prepare_store

    uri = sys.argv[1]
    experiment_id = prepare_store(uri, "sweeper")
    open_for_forked_jobs(uri)
    store = _get_store(uri)
    print(threading.active_count(), store.engine.pool.checkedout(), store.engine.pool.checkedin())

    def worker(seed, answers):
        client = MlflowClient(uri)
        run = client.create_run(experiment_id, tags={"seed": str(seed)})
        client.log_batch(run.info.run_id, metrics=[Metric("val_acc", 0.5 + seed, 0, 1)])
        client.set_terminated(run.info.run_id)
        answers.put(_get_store(uri) is store)

    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    workers = [context.Process(target=worker, args=(s, answers)) for s in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print([w.exitcode for w in workers], sorted(answers.get() for _ in workers))
    """
)


def test_a_store_opened_before_forking_records_every_workers_run(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", FORKED_WORKERS, uri], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    opened, workers = proc.stdout.strip().splitlines()
    # One thread, no connection open or pooled: nothing for a fork to share.
    assert opened == "1 0 0"
    # Both workers used the store opened before the fork, and recorded their runs.
    assert workers == "[0, 0] [True, True]"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    recorded = sorted((r.data.tags["seed"], r.info.status, r.data.metrics["val_acc"]) for r in runs)
    assert recorded == [("0", "FINISHED", 0.5), ("1", "FINISHED", 1.5)]


def test_a_store_that_does_not_exist_yet_is_left_to_the_jobs(tmp_path: Path) -> None:
    from sweeper.store_setup import open_for_forked_jobs

    open_for_forked_jobs(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    assert not (tmp_path / "mlruns").exists()


def test_a_sweeps_end_lists_the_runs_whose_gradient_check_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep, "end_sweep_run", lambda *a, **k: None)
    monkeypatch.setattr(sweep.SweepCallback, "_describe_best", lambda self: None)
    checked = RunOutcome(2, ["seed=2"], "FINISHED", "max_epochs", 1.0, "r2", _METRICS)
    checked.gradcheck = "max |diff| 9.6e-06 > tol 1e-12"
    callback = make_ended_sweep(tmp_path, "sqlite:///unused", checked)
    with pytest.raises(SystemExit):
        callback.on_multirun_end(GRID_CONFIG)
    out = capsys.readouterr().out
    after = out.partition("| 2 | seed=2 | FINISHED |")[2]
    listed = "\nGradient check FAILED in 1 run:\n  #2 seed=2: max |diff| 9.6e-06 > tol 1e-12\n"
    assert listed in after


def test_a_sweeps_end_offers_to_run_again_only_the_runs_that_may_then_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep, "end_sweep_run", lambda *a, **k: None)
    monkeypatch.setattr(sweep.SweepCallback, "_describe_best", lambda self: None)
    reason = "diverged at epoch 1 (loss=nan)"
    diverged = RunOutcome(2, ["seed=2"], "FAILED", reason, 1.0, "r2", fix="lower optimizer.lr")
    callback = make_ended_sweep(tmp_path, "sqlite:///unused", diverged)
    with pytest.raises(SystemExit):
        callback.on_multirun_end(GRID_CONFIG)
    err = capsys.readouterr().err
    # The full disk's run may finish once there is room; the diverged one would diverge again.
    assert err.endswith(
        "  #1 seed=1: no space left on device (/x)\n"
        "  #2 seed=2: diverged at epoch 1 (loss=nan); to fix: lower optimizer.lr\n"
        "Run #1 again with:  python -m sweeper -m seed=0,1 resume=true\n"
        "(the others would fail the same way again: make the change their line gives and run "
        "them as a new sweep; changed, they are other configurations than this sweep's, which "
        "keeps what finished)\n"
    )


def test_a_sweep_id_an_earlier_sweep_has_is_given_the_next_free_suffix(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = prepare_store(uri, "sweeper")
    for taken in ("my_study", "my_study-3", "it's", "other"):
        start_sweep_run(uri, experiment_id, taken, "", "sweep")
    # Another experiment's sweeps, and runs that are no sweep, name no sweep of this one.
    elsewhere = prepare_store(uri, "elsewhere")
    start_sweep_run(uri, elsewhere, "my_study-2", "", "sweep")
    MlflowClient(uri).create_run(experiment_id, tags={"sweep_id": "my_study-2"})
    assert free_sweep_id(uri, experiment_id, "my_study") == "my_study-2"
    assert free_sweep_id(uri, experiment_id, "my_study-3") == "my_study-3-2"
    assert free_sweep_id(uri, experiment_id, "it's") == "it's-2"
    assert free_sweep_id(uri, experiment_id, "my") == "my"


# --- a sweep's job on a machine without the sweep's store ---


@pytest.mark.parametrize(
    ("sweeper", "trial", "label"),
    [("basic", {}, None), ("search", {"trial": 3, "repeat": 1, "repeats": 2}, "3.1")],
)
def test_a_sweeps_job_that_finds_no_sweep_store_fails_in_one_line_and_makes_none(
    tmp_path: Path, sweeper: str, trial: dict[str, object], label: str | None
) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from sweeper.app import CONF_DIR, main
    from sweeper.outcome import OUTCOME_FILE

    # The launching machine's store as a Ray worker on another machine sees it: its
    # directory there (the same checkout), empty; the sweep directory shared.
    store = tmp_path / "mlruns"
    store.mkdir()
    sweep_dir = tmp_path / "multirun" / "sweep"
    SweepInfo("sweep", f"sqlite:///{store / 'mlflow.db'}", "1", "0" * 32).save(sweep_dir)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", ["seed=0", *QUICK, f"hydra/sweeper={sweeper}"], return_hydra_config=True
        )
    with open_dict(cfg):
        # As Hydra's run_job hands a sweep's job its config.
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = str(sweep_dir)
        cfg.hydra.runtime.output_dir = str(sweep_dir / "0")
        cfg.hydra.job.num = 0
        cfg.hydra.sweeper.update(trial)
    (sweep_dir / "0").mkdir()
    task = cfg.copy()
    with read_write(task), open_dict(task):
        del task["hydra"]
    HydraConfig.instance().set_config(cfg)
    try:
        objective = main.__wrapped__(task)
    finally:
        HydraConfig.instance().cfg = None  # type: ignore[assignment]
    assert objective == float("inf")
    outcome = RunOutcome.load(sweep_dir / "0" / OUTCOME_FILE)
    assert (outcome.status, outcome.reason, outcome.fix, outcome.trial) == (
        "FAILED",
        f"the sweep's store {store / 'mlflow.db'} is not on this machine ({socket.gethostname()}): "
        "a sweep whose runs run on other machines needs a tracking server (docs/scaling.md)",
        "track to a tracking server, MLFLOW_TRACKING_URI=http://HOST:PORT",
        label,
    )
    assert list(store.iterdir()) == []
