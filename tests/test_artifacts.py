"""What each run of a sweep keeps in MLflow, what only the best run gets at the sweep's end, the
command that makes those for any run, and the batching of a run's store writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import mlflow.pyfunc
import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils import requirements_utils
from omegaconf import OmegaConf

from conftest import FAST, all_runs, child_runs, cli_env, run_cli, store_uri
from helpers import add_child_run, artifact_paths, run_here, sweep_of_two_runs
from sweeper.artifacts import main as artifacts_main
from sweeper.checkpoint import load_checkpoint
from sweeper.core.training import EpochMetrics
from sweeper.data import load_dataset
from sweeper.data.digits import load_digits_split
from sweeper.plots import curve_figure
from sweeper.reproduce import main as reproduce_main
from sweeper.run import logged_epoch
from sweeper.run_records import tracked_run
from sweeper.store_setup import open_store, prepare_store
from sweeper.sweep import SweepCallback
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import start_sweep_run
from sweeper.ui_links import NOTE_TAG

EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")


@dataclass
class Swept:
    workdir: Path
    stdout: str
    best: Run
    others: list[Run]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """A 3-run sweep with the default tracking settings."""
    workdir = tmp_path_factory.mktemp("swept")
    proc = run_cli(["-m", "activation=sigmoid,tanh,relu", *FAST], workdir)
    assert proc.returncode == 0, proc.stderr
    ranked = sorted(child_runs(all_runs(workdir)), key=lambda r: r.data.metrics["best_val_loss"])
    return Swept(workdir, proc.stdout, ranked[0], ranked[1:])


def served_predictions_match_the_checkpoint(workdir: Path, run_id: str) -> None:
    """The run's model, loaded as a user would, predicts what its checkpoint predicts."""
    local = MlflowClient(store_uri(workdir)).download_artifacts(
        run_id, "checkpoint/best_model.npz", str(workdir / f"dl-{run_id}")
    )
    model, standardizer = load_checkpoint(local)
    data = load_dataset("digits")
    assert standardizer is not None
    # The test images as the dataset holds them: 8x8 uint8 pixels, 0 to 16.
    raw, _ = load_digits_split("test", 10)
    mlflow.set_tracking_uri(store_uri(workdir))
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert np.array_equal(served.predict(raw), model.predict(data.x_test))
    assert np.array_equal(served.predict(raw.reshape(len(raw), 64)), served.predict(raw))
    assert served.predict(raw[:0]).shape == (0,)
    # Nothing a fresh environment would install from PyPI under sweeper's name (another's).
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{run_id}/model"))
    assert [line.split("=")[0] for line in requirements.read_text().split()] == ["numpy", "mlflow"]
    # One image without its batch axis, or a row of the wrong width: refused, not guessed.
    for wrong in (raw[0], raw.reshape(len(raw), 64)[:, :60]):
        with pytest.raises(Exception, match=r"expected n images as an array of shape \(n, 8, 8\)"):
            served.predict(wrong)


def test_every_run_keeps_params_metrics_tags_config_gradcheck_and_checkpoint(
    swept: Swept,
) -> None:
    uri = store_uri(swept.workdir)
    client = MlflowClient(uri)
    for run in [swept.best, *swept.others]:
        assert run.info.status == "FINISHED"
        assert run.data.params["train.epochs"] == "3"
        assert run.data.params["tracking.model"] == "best"
        for key in EPOCH_METRICS:
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
        for key in ("test_acc", "best_val_acc", "epochs_run", "gradcheck_passed"):
            assert key in run.data.metrics
        tags = run.data.tags
        assert tags["status"] == "FINISHED" and tags["reason"] == "max_epochs"
        for key in ("config_hash", "git_commit", "env.python", "data_sha256", "sweep_id", "pid"):
            assert tags[key], key
        paths = artifact_paths(uri, run.info.run_id)
        assert {
            "config.yaml",
            "gradcheck.csv",
            "checkpoint/best_model.npz",
            "provenance/requirements.txt",
        } <= paths
        config = OmegaConf.load(client.download_artifacts(run.info.run_id, "config.yaml"))
        assert config.activation.name == run.data.params["activation.name"]


def test_only_the_best_run_gets_the_model_and_curves_at_the_sweeps_end(swept: Swept) -> None:
    uri = store_uri(swept.workdir)
    best = swept.best.info.run_id
    model = f"runs:/{best}/model (MLFLOW_TRACKING_URI={uri})"
    assert f"Made for the best run: {model}, plots/loss.png" in swept.stdout
    assert {"plots/loss.png", "plots/accuracy.png"} <= artifact_paths(uri, best)
    image = matplotlib.image.imread(
        MlflowClient(uri).download_artifacts(best, "plots/accuracy.png", str(swept.workdir))
    )
    assert image.shape[0] > 100 and image.shape[1] > 100
    served_predictions_match_the_checkpoint(swept.workdir, best)
    for run in swept.others:
        assert not any(p.startswith("plots/") for p in artifact_paths(uri, run.info.run_id))
        assert not MlflowClient(uri).get_run(run.info.run_id).outputs.model_outputs


def best_at_the_sweeps_end(uri: str, runs: list[dict[str, object]]) -> tuple[str, str]:
    """A sweep of ``runs`` (``add_child_run``'s keywords) in a new store; the name of the run
    its end names best (and makes the model and curves for), and the parent's description."""
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "s", "", "sweep")
    client = MlflowClient(uri)
    for run in runs:
        add_child_run(client, experiment_id, parent, **run)  # type: ignore[arg-type]
    sweep = SweepCallback()
    sweep._info = SweepInfo("s", uri, experiment_id, parent)
    best = sweep._describe_best()
    assert best is not None
    return best.info.run_name, client.get_run(parent).data.tags[NOTE_TAG]


def test_the_best_run_is_the_lowest_validation_loss_not_the_highest_accuracy(
    tmp_path: Path,
) -> None:
    # As the report's first row and a search's objective rank them.
    best, note = best_at_the_sweeps_end(
        store_uri(tmp_path),
        [
            {"name": f"lr={lr}", "params": {"optimizer.lr": lr}, **run}
            for lr, run in (
                ("0.1", {"best_val_loss": 0.30, "best_val_acc": 0.95, "test_acc": 0.94}),
                ("0.05", {"best_val_loss": 0.25, "best_val_acc": 0.93, "test_acc": 0.92}),
                ("1e6", {"status": "FAILED"}),
            )
        ],
    )
    assert best == "lr=0.05"
    assert "**Best run** (by lowest best_val_loss): [lr=0.05](" in note
    assert "best_val_loss 0.2500, best_val_acc 0.9300, test_acc 0.9200" in note


def test_a_run_a_search_pruned_is_never_the_best(tmp_path: Path) -> None:
    pruned = {"tags": {"status": "PRUNED"}, "best_val_loss": 0.1, "best_val_acc": 0.99}
    best, note = best_at_the_sweeps_end(
        store_uri(tmp_path),
        [
            {"name": "pruned", **pruned, "test_acc": 0.99},
            {"name": "trained", "best_val_loss": 0.5, "best_val_acc": 0.9, "test_acc": 0.9},
        ],
    )
    assert best == "trained"
    assert "[trained](" in note and "[pruned]" not in note


def artifacts_command(args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.artifacts", *args, "--tracking-uri", store_uri(workdir)],
        cwd=workdir,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_store_is_named_with_tracking_uri_as_the_report_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        artifacts_main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        "--tracking-uri TRACKING_URI MLflow store, or a directory holding its mlflow.db "
        "(default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db)"
    ) in shown
    assert "--uri" not in shown
    # --uri, its name before, still works.
    missing = tmp_path / "nowhere"
    for option in ("--tracking-uri", "--uri"):
        assert artifacts_main(["0123456789abcdef", option, str(missing)]) == 1
        assert capsys.readouterr().err == (
            f"Error: no MLflow store at sqlite:///{missing / 'mlflow.db'}: run a sweep first "
            "(make sweep)\n"
        )


# Each command's status for a run it refuses: artifacts 1, reproduce 2 (its "refused").
@pytest.mark.parametrize(("main", "refused"), [(artifacts_main, 1), (reproduce_main, 2)])
def test_a_sweeps_parent_run_is_refused_naming_its_best_run(
    main: Callable[[list[str]], int],
    refused: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = store_uri(tmp_path)
    parent, best = sweep_of_two_runs(uri)
    assert main([parent, "--tracking-uri", uri]) == refused
    out = capsys.readouterr()
    assert out.err == (
        f"Error: run {parent} is sweep s's parent run, which trains nothing: give one of its "
        f"child runs (its best: {best})\n"
    )
    assert out.out == ""


def test_a_store_moved_away_from_its_artifacts_is_one_line_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    settings = {"train": {"epochs": 1}, "gradcheck": {"enabled": False}}
    outcome = run_here(first, {**settings, "tracking": {"model": "none", "curves": "none"}})
    run_id = str(outcome.run_id)
    artifacts = MlflowClient(store_uri(first)).get_run(run_id).info.artifact_uri
    # Copied elsewhere, the original renamed: the artifacts' recorded path leads nowhere.
    shutil.copytree(first / "mlruns", second / "mlruns")
    (first / "mlruns").rename(first / "mlruns-old")
    line = (
        f"Error: the artifacts of run {run_id} are not at {artifacts}, where the store records "
        "them: was the store moved? Move its artifacts back there (MLflow keeps that path)\n"
    )
    monkeypatch.chdir(tmp_path)  # where the reproduction's outputs/ would go
    for main, refused in ((artifacts_main, 1), (reproduce_main, 2)):
        assert main([run_id, "--tracking-uri", store_uri(second)]) == refused
        assert capsys.readouterr().err == line
    # Nothing made: not the recorded directory again, nor the reproduction's.
    assert sorted(p.name for p in first.iterdir()) == ["mlruns-old", "out"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "second"]


def test_a_runs_curves_tick_whole_epochs_only() -> None:
    history = [EpochMetrics(e, 1 / e, 0.5, 1.2 / e, 0.4, 0.0, 0.01) for e in (1, 2, 3)]
    for metric in ("loss", "acc"):
        ticks = curve_figure(history, 2, metric, metric, "train").axes[0].get_xticks()
        assert len(ticks) and all(tick == round(tick) for tick in ticks), ticks


def test_a_runs_model_is_logged_without_scanning_every_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans: list[object] = []
    scan = requirements_utils.importlib_metadata.packages_distributions

    def counted() -> object:
        scans.append(None)
        return scan()

    monkeypatch.setattr(requirements_utils.importlib_metadata, "packages_distributions", counted)
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    outcome = run_here(tmp_path, {"train": {"epochs": 1}})
    assert outcome.model == f"runs:/{outcome.run_id}/model"
    assert scans == []
    # The process's own map is left as it was found: MLflow builds it whole when it needs it.
    assert requirements_utils._MODULES_TO_PACKAGES is None
    mlflow.set_tracking_uri(store_uri(tmp_path))
    requirements = Path(mlflow.pyfunc.get_model_dependencies(outcome.model))
    assert [line.split("=")[0] for line in requirements.read_text().split()] == ["numpy", "mlflow"]


def test_the_command_makes_model_and_curves_for_any_run(swept: Swept) -> None:
    uri = store_uri(swept.workdir)
    other = swept.others[-1].info.run_id
    proc = artifacts_command([other], swept.workdir)
    assert proc.returncode == 0, proc.stderr
    model = f"runs:/{other}/model (MLFLOW_TRACKING_URI={uri})"
    assert f"{other}: {model}, plots/loss.png, plots/accuracy.png\n" in proc.stdout
    assert proc.stderr == ""
    assert {"plots/loss.png", "plots/accuracy.png"} <= artifact_paths(uri, other)
    served_predictions_match_the_checkpoint(swept.workdir, other)
    # The run itself is left as it was.
    again = MlflowClient(uri).get_run(other)
    assert again.info.status == "FINISHED"
    assert again.info.end_time == swept.others[-1].info.end_time

    proc = artifacts_command([other, "no-such-run"], swept.workdir)
    assert proc.returncode == 1
    assert f"{other}: nothing to make, already there" in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: run no-such-run: ")


def test_every_run_gets_a_model_when_asked_and_none_gets_curves(workdir: Path) -> None:
    proc = run_cli(
        ["-m", "seed=0,1", *FAST, "tracking.model=every", "tracking.curves=none"], workdir
    )
    assert proc.returncode == 0, proc.stderr
    assert "Made for the best run" not in proc.stdout
    best = min(child_runs(all_runs(workdir)), key=lambda r: r.data.metrics["best_val_loss"])
    model = f"runs:/{best.info.run_id}/model (MLFLOW_TRACKING_URI={store_uri(workdir)})"
    assert f"\nThe best run's model: {model}\n" in proc.stdout
    for run in child_runs(all_runs(workdir)):
        assert MlflowClient(store_uri(workdir)).get_run(run.info.run_id).outputs.model_outputs
        assert not any(
            p.startswith("plots/") for p in artifact_paths(store_uri(workdir), run.info.run_id)
        )


def test_a_negative_flush_interval_is_a_config_error(workdir: Path) -> None:
    proc = run_cli(["tracking.flush_seconds=-1"], workdir)
    assert proc.returncode == 1
    assert "tracking.flush_seconds=-1.0 is invalid: must be >= 0" in proc.stderr


def epoch(k: int) -> EpochMetrics:
    return EpochMetrics(k, 1.0 / k, 0.5, 2.0 / k, 0.4, 0.01, 0.05)


def test_metrics_wait_for_the_flush_interval_and_the_runs_end(tmp_path: Path) -> None:
    tracking = OmegaConf.create(
        {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "x"}
        | {"connect_timeout": 5, "max_outage": 5}
    )
    uri, experiment_id = open_store(tracking)
    client = MlflowClient(uri)
    with tracked_run(uri, experiment_id, "held", tags={}, flush_seconds=3600) as run:
        for k in (1, 2, 3):
            logged_epoch(run)(epoch(k))
        run.set_tags({"data_sha256": "{}"})
        assert client.get_metric_history(run.run_id, "val_loss") == []
        assert "data_sha256" not in client.get_run(run.run_id).data.tags
    assert [m.value for m in client.get_metric_history(run.run_id, "val_loss")] == [2.0, 1.0, 2 / 3]
    assert client.get_run(run.run_id).data.tags["data_sha256"] == "{}"

    with tracked_run(uri, experiment_id, "at once", tags={}, flush_seconds=0) as run:
        logged_epoch(run)(epoch(1))
        assert [m.step for m in client.get_metric_history(run.run_id, "val_loss")] == [1]

    with (
        pytest.raises(RuntimeError),
        tracked_run(uri, experiment_id, "failed", tags={}, flush_seconds=3600) as run,
    ):
        logged_epoch(run)(epoch(1))
        logged_epoch(run)(epoch(2))
        raise RuntimeError("diverged at epoch 2")
    failed = client.get_run(run.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["reason"] == "diverged at epoch 2"
    assert [m.step for m in client.get_metric_history(run.run_id, "val_loss")] == [1, 2]


def test_a_long_history_is_written_in_batches_mlflow_accepts(tmp_path: Path) -> None:
    tracking = OmegaConf.create(
        {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "x"}
        | {"connect_timeout": 5, "max_outage": 5}
    )
    uri, experiment_id = open_store(tracking)
    with tracked_run(uri, experiment_id, "long", tags={}, flush_seconds=3600) as run:
        for k in range(1, 501):
            logged_epoch(run)(epoch(k))
    history = MlflowClient(uri).get_metric_history(run.run_id, "train_loss")
    assert [m.step for m in history] == list(range(1, 501))


def test_a_run_that_failed_before_its_end_is_told_what_it_lacks(workdir: Path) -> None:
    proc = run_cli([*FAST, "optimizer.lr=1e6", "activation=relu"], workdir)
    assert proc.returncode == 1
    (failed,) = all_runs(workdir)
    reason = failed.data.tags["reason"]
    assert reason.startswith("diverged at epoch 1")
    run_id = failed.info.run_id
    for only, lacks in (("model", "no checkpoint to make a model of"),
                        ("curves", "no epoch's metrics to draw")):  # fmt: skip
        proc = artifacts_command([run_id, "--only", only], workdir)
        assert proc.returncode == 1
        assert proc.stderr == f"Error: run {run_id}: {lacks} (it ended FAILED: {reason})\n"


def test_a_killed_run_gets_its_curves_and_is_told_why_it_has_no_model(workdir: Path) -> None:
    tracking = OmegaConf.create(
        {"uri": store_uri(workdir), "experiment": "x", "connect_timeout": 5, "max_outage": 5}
    )
    uri, experiment_id = open_store(tracking)
    # Ctrl-C after two epochs: its metrics are kept, its checkpoint never logged.
    with (
        pytest.raises(KeyboardInterrupt),
        tracked_run(uri, experiment_id, "killed", tags={}, flush_seconds=3600) as run,
    ):
        logged_epoch(run)(epoch(1))
        logged_epoch(run)(epoch(2))
        raise KeyboardInterrupt
    run_id = run.run_id
    lacks = "no checkpoint to make a model of (it ended KILLED: interrupted (Ctrl-C))"

    # The model asked by name cannot be made: an error, and nothing else is made.
    proc = artifacts_command([run_id, "--only", "model"], workdir)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"Error: run {run_id}: {lacks}\n"
    assert not artifact_paths(uri, run_id)

    # Both asked for: the curves are made, and why the model is not is said in one line.
    proc = artifacts_command([run_id], workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{run_id}: plots/loss.png, plots/accuracy.png\n"
    assert proc.stderr == f"run {run_id}: {lacks}\n"
    assert artifact_paths(uri, run_id) == {"plots/loss.png", "plots/accuracy.png"}


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (None, "sqlite:///{cwd}/mlruns/mlflow.db"),
        ("sqlite:///typo/mlflow.db", "sqlite:///{cwd}/typo/mlflow.db"),
        ("typo/mlruns", "sqlite:///{cwd}/typo/mlruns/mlflow.db"),  # not MLflow's file store
    ],
    ids=["default", "typo", "path"],
)
def test_the_command_makes_no_store_where_none_is(
    tmp_path: Path, uri: str | None, shown: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.artifacts", "0123abcd", *(["--uri", uri] if uri else [])],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    where = shown.format(cwd=tmp_path)
    assert proc.stderr == f"Error: no MLflow store at {where}: run a sweep first (make sweep)\n"
    assert list(tmp_path.iterdir()) == []


def test_the_command_takes_the_database_file_as_its_store(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "fake", seeds=1, epochs=2)
    run = next(r for r in child_runs(all_runs(tmp_path)) if r.info.status == "FINISHED")
    run_id = run.info.run_id
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.artifacts", run_id, "--only", "curves"]
        + ["--uri", "mlruns/mlflow.db"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{run_id}: plots/loss.png, plots/accuracy.png\n"
    assert artifact_paths(uri, run_id, "plots") == {"plots/loss.png", "plots/accuracy.png"}
