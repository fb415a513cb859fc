"""Helpers several test modules share: where the real datasets are, the store's default
policy restored after each test, small data files in the real formats, a run made in the
test's own process, a sweep's runs written straight to a store and a run's artifacts listed
from it, a sweep started through the command line as a terminal would start it, the command run on a
terminal of its own and what it drew there, a search's study read against its MLflow runs, and
a report's tables read back."""

from __future__ import annotations

import gzip
import os
import pickle
import pty
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import FrozenTrial, TrialState

from conftest import REPO, all_runs, child_runs, cli_env, store_uri
from hydra_plugins.sweeper_search.study import INTERRUPTED, RETRY_OF, SWEEP_ATTR
from sweeper.config import ExperimentConfig, flat_params, to_experiment_config
from sweeper.outcome import PROGRESS_FILE, RunOutcome, RunProgress
from sweeper.run import run_config
from sweeper.store import configure
from sweeper.store_setup import prepare_store
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import start_sweep_run

# Real datasets where a machine has them (tests that read one skip elsewhere): Fashion-MNIST as
# `make data` installs it, the official MNIST files beside the repository (CI provides them).
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"


@pytest.fixture(autouse=True)
def default_store_policy() -> Iterator[None]:
    """configure() sets this process's store; each test starts from the default. Autouse in
    the modules that import it."""
    yield
    configure("", 300.0)


def artifact_paths(uri: str, run_id: str, path: str = "") -> set[str]:
    """Every artifact file of run ``run_id`` under ``path``, at any depth."""
    client = MlflowClient(uri)
    paths = set()
    for info in client.list_artifacts(run_id, path):
        paths |= artifact_paths(uri, run_id, info.path) if info.is_dir else {info.path}
    return paths


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist_like(
    directory: Path, n_train: int = 100, n_test: int = 30, gz: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_images = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_labels = np.arange(n_train) % 10
    write_idx(directory / "train-images-idx3-ubyte", train_images, gz)
    write_idx(directory / "train-labels-idx1-ubyte", train_labels, gz)
    write_idx(directory / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(directory / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, gz)
    return train_images, train_labels


def random_images(n: int, seed: int) -> np.ndarray:
    """``n`` CIFAR-10 rows of random pixels."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def batch(
    n: int, seed: int = 0, labels: list[int] | None = None, data: np.ndarray | None = None
) -> dict[bytes, object]:
    """A CIFAR-10 batch as the archive pickles it: ``data`` rows (random ones by default)."""
    data = random_images(n, seed) if data is None else data
    return {
        b"batch_label": b"training batch",
        b"labels": labels if labels is not None else [i % 10 for i in range(n)],
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


def write_pickle(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return path


def write_cifar(
    directory: Path,
    per_batch: int = 20,
    n_test: int = 20,
    draw: Callable[[int, int], np.ndarray] = random_images,
) -> np.ndarray:
    """CIFAR-10's six batches, each image of class ``i % 10`` for its row ``i``, drawn by
    ``draw(n, seed)``; the test batch's rows."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_pickle(directory / f"data_batch_{i}", batch(per_batch, data=draw(per_batch, i)))
    test = draw(n_test, 9)
    write_pickle(directory / "test_batch", batch(n_test, data=test))
    return test


def run_here(tmp_path: Path, settings: dict[str, object], **kwargs: object) -> RunOutcome:
    """One run of the default config with ``settings`` merged in, made by ``run_config`` in
    this process (``kwargs`` passed on), tracked in ``tmp_path``'s store."""
    cfg = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), settings)
    out_dir = tmp_path / "out"
    (out_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / ".hydra" / "config.yaml")
    uri = store_uri(tmp_path)
    sweep = SweepInfo("here", uri, prepare_store(uri, "sweeper"), "")
    config, params = to_experiment_config(cfg), flat_params(cfg)
    return run_config(config, params, out_dir, 0, [], sweep, **kwargs)  # type: ignore[arg-type]


def add_child_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    name: str,
    status: str = "FINISHED",
    tags: dict[str, str] | None = None,
    start_time: int | None = None,
    params: dict[str, str] | None = None,
    **metrics: float,
) -> str:
    """A child run of the sweep ``parent_run_id`` with ``params`` and final ``metrics``, ended
    ``status``, as a sweep's run leaves it (a run a search pruned ends FINISHED with the tag
    status=PRUNED, which ``tags`` sets); its id."""
    run = client.create_run(
        experiment_id,
        start_time=start_time,
        run_name=name,
        tags={"mlflow.parentRunId": parent_run_id, "status": status, **(tags or {})},
    )
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.from_string(status)))
    return str(run.info.run_id)


def sweep_of_two_runs(uri: str) -> tuple[str, str]:
    """Sweep ``s`` of two finished runs in a new store at ``uri``: its parent run's id, and its
    best run's."""
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "s", "", "sweep")
    client = MlflowClient(uri)
    add_child_run(client, experiment_id, parent, "worse", best_val_loss=0.9)
    best = add_child_run(client, experiment_id, parent, "better", best_val_loss=0.3)
    return parent, best


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (self.command,)


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Sweep:
    """A CLI sweep running in its own process group, as a terminal's foreground job."""

    def __init__(
        self,
        args: list[str],
        cwd: Path,
        name: str = "sweep",
        env: dict[str, str] | None = None,
        ctrl_c_ignored: bool = False,
    ) -> None:
        """``ctrl_c_ignored``: started as a script's ``command &`` starts it, Ctrl-C ignored."""
        self.cwd = cwd
        self.stdout = cwd / f"{name}.out"
        self.stderr = cwd / f"{name}.err"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sweeper", *args],
                cwd=cwd,
                env=cli_env(env),
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_ignore_ctrl_c if ctrl_c_ignored else None,
            )

    def wait_until(
        self, condition: Callable[[], bool], timeout: float = 240, every: float = 0.2
    ) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.proc.poll() is None, self.stderr.read_text()
            assert time.monotonic() < deadline, "timed out"
            time.sleep(every)

    def store_ready(self) -> bool:
        # The parent prepares the store before it writes sweep.json; opening the store earlier
        # would race it creating the schema.
        return any(self.cwd.glob("multirun/*/sweep.json"))

    def outcomes(self) -> int:
        return len(list(self.cwd.glob("multirun/*/*/outcome.json")))

    def running_children(self, epochs: str | None = None) -> list[Run]:
        """The sweep's runs in progress; with ``epochs``, those set to train that many."""
        if not self.store_ready():
            return []
        return [
            r
            for r in child_runs(all_runs(self.cwd))
            if r.info.status == "RUNNING" and epochs in (None, r.data.params.get("train.epochs"))
        ]

    def epochs_done(self, job: int) -> int:
        """The epochs job ``job`` has finished, as its live-view file says."""
        found = list(self.cwd.glob(f"multirun/*/{job}/{PROGRESS_FILE}"))
        return RunProgress.load(found[0]).epoch if found else 0

    def kill_a_run_past_its_first_epoch(self, epochs: str) -> Run:
        """SIGKILL the process of a run with ``train.epochs=epochs`` once one has logged an
        epoch; return that run as it was."""

        def past_an_epoch() -> list[Run]:
            # The run's own progress file, not the store: its metrics may wait to be written
            # (tracking.flush_seconds).
            return [
                r
                for r in self.running_children()
                if r.data.params.get("train.epochs") == epochs
                and self.epochs_done(int(r.data.tags["job"])) >= 1
            ]

        self.wait_until(lambda: bool(past_an_epoch()))
        victim = past_an_epoch()[0]
        os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)
        return victim

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        rc = self.proc.wait(timeout)
        return rc, self.stderr.read_text()


class OnATerminal:
    """The command line run on a pseudo-terminal (TERM=xterm, 200 columns), as a person runs
    it: its standard output and error both the terminal, all it writes there read back."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        leader, follower = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sweeper", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env=cli_env({"TERM": "xterm", "COLUMNS": "200"}),
        )
        os.close(follower)
        self._leader = leader
        self._received = b""

    @property
    def text(self) -> str:
        """What it wrote so far, the cursor's hiding as a live view starts (which puts nothing
        on a line) left out."""
        return self._received.decode(errors="replace").replace("\x1b[?25l", "")

    def read_until(self, condition: Callable[[str], bool], timeout: float = 240) -> str:
        """Read until ``condition`` holds of the text, the command ends or ``timeout``
        passes; return the text."""
        deadline = time.monotonic() + timeout
        while not condition(self.text) and time.monotonic() < deadline:
            if not select.select([self._leader], [], [], 1.0)[0]:
                if self.proc.poll() is not None:  # ended, and nothing left to read
                    break
                continue
            try:
                chunk = os.read(self._leader, 65536)
            except OSError:  # the terminal's other end closed: the command has ended
                break
            if not chunk:
                break
            self._received += chunk
        return self.text

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        """The command's exit status and all it wrote."""
        self.read_until(lambda _: False, timeout)
        return self.proc.wait(timeout=10), self.text

    def __enter__(self) -> OnATerminal:
        return self

    def __exit__(self, *exc: object) -> None:
        """The command killed if a failed test left it running, and the terminal closed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self._leader)


# --- a search's Optuna study against its MLflow runs ---


def study_of(workdir: Path, sweep_id: str, storage: str | None = None) -> optuna.Study:
    """The study of a sweep, in ``storage`` (by default the one beside ``workdir``'s store)."""
    storage = storage or f"sqlite:///{workdir / 'mlruns' / 'optuna.db'}"
    (summary,) = [
        s
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.user_attrs.get(SWEEP_ATTR) == sweep_id
    ]
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def runs_by_trial(runs: list[Run]) -> dict[int, Run]:
    return {int(r.data.tags["trial"]): r for r in runs}


def assert_study_agrees_with_mlflow(trials: list[FrozenTrial], runs: list[Run]) -> None:
    """Every ended trial has its MLflow run, with the same value and the same ending."""
    by_trial = runs_by_trial(runs)
    for trial in trials:
        run = by_trial.get(trial.number)
        if run is None:  # asked, and Ctrl-C came before its run started
            assert trial.state == TrialState.FAIL and trial.user_attrs[INTERRUPTED]
            continue
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            assert trial.value == pytest.approx(run.data.metrics["best_val_loss"], rel=1e-6)
            status = "PRUNED" if trial.state == TrialState.PRUNED else "FINISHED"
            assert run.data.tags["status"] == status
        else:  # killed (its process died, or Ctrl-C) or failed
            assert run.info.status in ("FAILED", "KILLED")


def assert_pruned_search_agrees(
    trials: list[FrozenTrial], runs: list[Run], pruned: list[Run], n_trials: int
) -> None:
    """A search of ``n_trials`` numbered from 0 whose PRUNED trials are exactly the ``pruned``
    runs', and whose every trial agrees with its run."""
    assert sorted(t.number for t in trials) == list(range(n_trials))
    assert {t.number for t in trials if t.state == TrialState.PRUNED} == {
        int(r.data.tags["trial"]) for r in pruned
    }
    assert_study_agrees_with_mlflow(trials, runs)


def assert_killed_trial_asked_again(
    trials: list[FrozenTrial], by_trial: dict[int, Run], killed: int, epochs: int, completed: int
) -> None:
    """Trial ``killed`` failed and was asked again with its values, and that retry trained
    its ``epochs`` to the end among ``completed`` complete trials."""
    (again,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == killed]
    assert again.params == trials[killed].params
    assert again.state == TrialState.COMPLETE
    assert by_trial[again.number].data.metrics["epochs_run"] == epochs
    assert sum(t.state == TrialState.COMPLETE for t in trials) == completed
    assert trials[killed].state == TrialState.FAIL


def refilled_while_another_runs(runs: list[Run]) -> bool:
    """Whether a slot freed by one run took the next trial while another run still trained:
    a run ``k`` ends during a run ``i`` and a run ``j`` starts before ``i`` ends. A batch
    barrier forbids it (the next batch starts once the whole batch has ended)."""
    spans = [(r.info.start_time, r.info.end_time) for r in runs]
    return any(s_i < e_k < s_j < e_i for s_i, e_i in spans for _, e_k in spans for s_j, _ in spans)


def markdown_tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text`` as rows of {header: cell}."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split(" | ")])
            continue
        if block:
            header, _, *rows = block
            tables.append([dict(zip(header, row, strict=True)) for row in rows])
            block = []
    return tables
