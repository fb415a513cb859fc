"""Where a SQLite store's files go: the database a URI names (a query string included), each
experiment's artifacts under the store's own ``artifacts/`` whatever the experiment is called,
and the printed command that browses it, which runs as pasted."""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import FAST, QUICK, REPO, run_cli
from helpers import default_store_policy  # noqa: F401 (an autouse fixture)
from sweeper.store_check import StoreError, check_store
from sweeper.store_setup import open_store
from sweeper.store_uri import UI_QUIET, resolve_tracking_uri, sqlite_path, ui_command


def opened(uri: str, experiment: str) -> tuple[MlflowClient, str]:
    tracking = {"uri": uri, "experiment": experiment, "connect_timeout": 5, "max_outage": 7}
    uri, experiment_id = open_store(OmegaConf.create(tracking))
    return MlflowClient(uri), experiment_id


def artifact_dir(client: MlflowClient, experiment_id: str) -> Path:
    location = client.get_experiment(experiment_id).artifact_location
    assert location.startswith("file://"), location
    return Path(location.removeprefix("file://"))


# --- the experiment's artifacts ---


def test_every_experiment_name_keeps_its_artifacts_in_a_directory_of_its_own(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlruns"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    names = [
        "sweeper",
        "/Shared/study",
        "Shared/study",
        "Shared_study",
        "shared_study",
        "..",
        "../../escaped",
        f"{tmp_path}/abs",
        "a b:c*?",
    ]
    dirs = {}
    for name in names:
        client, experiment_id = opened(uri, name)
        dirs[name] = artifact_dir(client, experiment_id)
    for name, directory in dirs.items():
        assert directory.parent == store / "artifacts", name
    # A plain name is its own directory, as in stores made before.
    assert dirs["sweeper"] == store / "artifacts" / "sweeper"
    assert dirs["/Shared/study"].name.startswith("Shared_study-")
    assert len({d.name.lower() for d in dirs.values()}) == len(names)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "abs").exists()


def test_an_existing_experiment_keeps_its_recorded_artifact_location(tmp_path: Path) -> None:
    # A store made before: the experiment's artifacts where that version put them.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    earlier = (tmp_path / "artifacts" / "Shared" / "study").as_uri()
    opened(uri, "sweeper")
    made = MlflowClient(uri).create_experiment("/Shared/study", artifact_location=earlier)
    client, experiment_id = opened(uri, "/Shared/study")
    assert experiment_id == made
    assert client.get_experiment(experiment_id).artifact_location == earlier


def test_cli_an_absolute_experiment_name_records_inside_the_store(workdir: Path) -> None:
    outside = workdir / "some" / "abs" / "study"
    result = run_cli([*QUICK, f"tracking.experiment={outside}"], workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (workdir / "some").exists()
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(str(outside))
    assert experiment is not None
    directory = artifact_dir(client, experiment.experiment_id)
    assert directory.parent == workdir / "mlruns" / "artifacts"
    (run,) = client.search_runs([experiment.experiment_id])
    assert (directory / run.info.run_id / "artifacts" / "config.yaml").is_file()


# --- a URI with a query string ---


def test_the_database_of_a_uri_with_a_query_is_the_path_before_it(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite:///{tmp_path}/mlflow.db?timeout=60") == tmp_path / "mlflow.db"
    # SQLAlchemy decodes the path; a relative one is made absolute, its query kept.
    assert sqlite_path(f"sqlite:///{tmp_path}/a%20b.db") == tmp_path / "a b.db"
    assert resolve_tracking_uri("sqlite:///here.db?timeout=60") == (
        f"sqlite:///{Path.cwd() / 'here.db'}?timeout=60"
    )


def test_a_path_to_a_database_yet_to_be_made_is_a_sqlite_store(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = workdir / "new" / "store" / "mlflow.db"
    monkeypatch.chdir(workdir)
    assert resolve_tracking_uri("new/store/mlflow.db") == f"sqlite:///{database}"
    proc = run_cli([*FAST, "tracking.uri=new/store/mlflow.db"], workdir)
    assert proc.returncode == 0, proc.stderr
    (run,) = MlflowClient(f"sqlite:///{database}").search_runs(["1"])
    assert run.info.status == "FINISHED"


def test_a_directory_named_as_mlflow_users_name_their_store_holds_its_database(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLFLOW_TRACKING_URI=./mlruns, as MLflow's own docs had it: a directory yet to be made.
    monkeypatch.chdir(workdir)
    assert resolve_tracking_uri("runs") == f"sqlite:///{workdir / 'runs' / 'mlflow.db'}"
    proc = run_cli(["-m", "seed=0,1", *FAST], workdir, env={"MLFLOW_TRACKING_URI": "./runs"})
    assert proc.returncode == 0, proc.stderr
    runs = MlflowClient(f"sqlite:///{workdir / 'runs' / 'mlflow.db'}").search_runs(["1"])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3


def test_a_store_named_with_a_query_is_switched_to_wal_and_locked(tmp_path: Path) -> None:
    db = tmp_path / "st" / "mlflow.db"
    client, experiment_id = opened(f"sqlite:///{db}?timeout=60", "x")
    assert client.get_experiment(experiment_id).name == "x"
    with sqlite3.connect(db) as conn:
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    conn.close()
    assert mode == "wal"
    files = {p.name for p in tmp_path.rglob("*") if "?" in p.name}
    assert files == set()
    assert (tmp_path / "st" / "mlflow.db.lock").is_file()


def test_a_garbage_database_named_with_a_query_is_found(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="is not a usable SQLite database"):
        check_store(f"sqlite:///{db}?timeout=60", connect_timeout=5)


# --- the printed command that browses the store ---


def test_the_browse_command_runs_as_pasted_for_a_path_with_spaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    uri = "sqlite:////home/me/my runs/mlruns/mlflow.db"
    assert shlex.split(ui_command(uri)) == [
        f"PYTHONWARNINGS={UI_QUIET}",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
    ]
    assert shlex.split(ui_command("http://host:5000/a b")) == ["open", "http://host:5000/a b"]


def _make_ui_line(store: str) -> str:
    """The line of `make ui STORE=...` that starts MLflow's UI, as make would run it."""
    # -n prints the commands without running them; -o: the venv counts as made.
    printed = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed-stamp", "ui", f"STORE={store}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in printed.replace("\\\n", " ").splitlines() if "mlflow ui" in line]
    return line


def test_make_ui_passes_a_store_with_spaces_as_one_argument() -> None:
    uri = "sqlite:////home/me/my runs/mlruns/mlflow.db"
    words = shlex.split(_make_ui_line(uri))
    assert words[words.index("--backend-store-uri") + 1] == uri


@pytest.mark.parametrize("printed_by", ["make ui", "the browse line"])
def test_the_ui_commands_silence_the_starlette_deprecation_that_mlflows_server_prints(
    tmp_path: Path, printed_by: str
) -> None:
    uri = f"sqlite:///{tmp_path}/m.db"
    line = _make_ui_line(uri) if printed_by == "make ui" else ui_command(uri)
    found = re.match(r"(.*?)\S*mlflow ui ", line)
    assert found is not None, line
    # The line, with what MLflow's server imports as it starts in place of mlflow ui, under a
    # user's own warning filter.
    imports = shlex.join([sys.executable, "-c", "import starlette.middleware.wsgi"])
    proc = subprocess.run(
        ["sh", "-c", found.group(1) + imports],
        env={**os.environ, "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_the_browse_command_names_mlflow_where_the_shell_would_not_find_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # make runs the venv's Python without putting the venv on PATH.
    monkeypatch.setenv("PATH", "/nonexistent")
    (_, mlflow, *rest) = shlex.split(ui_command("sqlite:////x/mlflow.db"))
    assert Path(mlflow) == Path(sys.executable).parent / "mlflow"
    assert rest[0] == "ui"


# --- where a relative or home-relative store is ---


def test_a_single_run_that_changes_directory_tracks_where_it_was_started(workdir: Path) -> None:
    # As a sweep does: not a new store in the run's own directory, which report never reads.
    proc = run_cli([*QUICK, "train.epochs=1", "hydra.job.chdir=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("mlflow.db")) == [
        Path("mlruns/mlflow.db")
    ]
    (run,) = MlflowClient(f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}").search_runs(["1"])
    assert run.info.status == "FINISHED"


def test_a_store_under_the_home_directory_is_named_with_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("~/st ore") == f"sqlite:///{home / 'st ore' / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///~/runs.db?timeout=60") == (
        f"sqlite:///{home / 'runs.db'}?timeout=60"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "~/st ore")
    assert resolve_tracking_uri(None) == f"sqlite:///{home / 'st ore' / 'mlflow.db'}"
    # The store is made there, not in a directory named ~ under the working directory.
    tracking = {"uri": "~/st ore", "experiment": "x", "connect_timeout": 5, "max_outage": 7}
    open_store(OmegaConf.create(tracking))
    assert (home / "st ore" / "mlflow.db").is_file()
    assert not (tmp_path / "~").exists()
