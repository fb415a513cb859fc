"""Helpers for tests that run the real command line and read the MLflow store it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

# Few epochs: the CLI tests check records, not accuracy.
FAST = ["train.epochs=3", "train.patience=null"]
QUICK = [*FAST, "gradcheck.enabled=false"]
# The repository's root: its conf/, experiments/, bench/ and src/.
REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # A shell's background job starts with Ctrl-C ignored, and its children inherit that: the
    # tests of Ctrl-C would wait for an interrupt that never comes. A handler, unlike an
    # ignored signal, is reset on exec: the commands the tests start take Ctrl-C too.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    full_env.update(env or {})
    return full_env


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full_env = cli_env(env)
    return subprocess.run(
        [sys.executable, "-m", "sweeper", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def store_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"


def all_runs(cwd: Path, experiment: str = "sweeper") -> list[Run]:
    client = MlflowClient(store_uri(cwd))
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {store_uri(cwd)}"
    return list(client.search_runs([exp.experiment_id], max_results=1000))


def child_runs(runs: list[Run]) -> list[Run]:
    return [r for r in runs if r.data.tags.get("kind") != "sweep"]


def parent_run(runs: list[Run]) -> Run:
    """The one sweep run among ``runs``, the parent of the others."""
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    return parent


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty working directory: the CLI's default store lands in ./mlruns inside it."""
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def _venv_on_path() -> Iterator[None]:
    """As in an activated virtualenv: the commands sweeper prints start with ``python``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        yield


@pytest.fixture(autouse=True, scope="session")
def _own_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or fills the user's dataset cache (``data_dir: null`` resolves into it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield
