"""End to end: every study preset in experiments/ as one sweep on the embedded digits.

Each preset runs once with a single epoch into one shared store, in an MLflow experiment of
its own, and the store must hold the sweep the preset promises: its number of runs and the
values it varies (about 10 to 15 s a preset on two idle cores).
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.entities import Run

from conftest import REPO, all_runs, child_runs, run_cli

EXPERIMENTS_DIR = REPO / "experiments"
TINY = ["train.epochs=1", "hydra.launcher.n_jobs=2"]
NO_GRADCHECK = [*TINY, "gradcheck.enabled=false"]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One working directory (and so one MLflow store) for every sweep of this module."""
    return tmp_path_factory.mktemp("study")


def sweep(store_dir: Path, experiment: str, args: list[str]) -> list[Run]:
    """Run a preset sweep into its own MLflow experiment; return its finished child runs."""
    proc = run_cli(
        ["-m", f"+experiment={experiment}", f"tracking.experiment={experiment}", *args], store_dir
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(store_dir, experiment))
    assert all(r.info.status == "FINISHED" for r in runs)
    # The progress line knows the sweep's size, from the preset's params or Optuna's n_trials.
    assert f"[{len(runs)}/{len(runs)} done] 0 failed" in proc.stdout
    return runs


def values(runs: list[Run], *keys: str) -> list[tuple[str, ...]]:
    return sorted(tuple(r.data.params[k] for k in keys) for r in runs)


def optuna_trials(store_dir: Path, runs: list[Run]) -> list[optuna.trial.FrozenTrial]:
    """The trials of the study the search sweeper kept for the sweep these runs belong to."""
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    storage = f"sqlite:///{store_dir / 'mlruns' / 'optuna.db'}"
    (study,) = [
        s
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.user_attrs.get("sweep") == sweep_id
    ]
    return optuna.load_study(study_name=study.study_name, storage=storage).get_trials()


def test_every_preset_is_a_global_sweep_and_is_listed_by_help(store_dir: Path) -> None:
    presets = sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))
    for name in presets:
        text = (EXPERIMENTS_DIR / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_"), name
        assert yaml.safe_load(text)["hydra"]["sweeper"]["params"], name
    proc = run_cli(["--help"], store_dir)
    assert f"experiment: {', '.join(presets)}" in proc.stdout


def test_gradcheck_checks_each_activation_at_two_eps(store_dir: Path) -> None:
    runs = sweep(store_dir, "gradcheck", TINY)
    assert len(runs) == 8
    assert values(runs, "activation.name", "gradcheck.eps") == sorted(
        (act, eps) for act in ("sigmoid", "tanh", "relu", "leaky_relu") for eps in ("0.01", "1e-05")
    )
    diffs = {}
    for run in runs:
        assert run.data.params["gradcheck.tol"] == "0.0001"
        diff = run.data.metrics["gradcheck_max_abs_diff"]
        # The verdict is the largest difference against the tolerance.
        assert run.data.metrics["gradcheck_passed"] == float(diff <= 1e-4)
        diffs[run.data.params["activation.name"], run.data.params["gradcheck.eps"]] = diff
    # The central difference's error shrinks with eps, at either eps well within the studies'
    # 1e-4 for the smooth activations.
    for act in ("sigmoid", "tanh", "relu", "leaky_relu"):
        assert diffs[act, "1e-05"] < diffs[act, "0.01"]
    assert all(diffs[act, eps] <= 1e-4 for act in ("sigmoid", "tanh") for eps in ("0.01", "1e-05"))


def test_learning_rate_sweeps_five_rates_with_momentum(store_dir: Path) -> None:
    runs = sweep(store_dir, "learning_rate", NO_GRADCHECK)
    assert values(runs, "optimizer.lr") == [("0.001",), ("0.005",), ("0.01",), ("0.05",), ("0.1",)]
    assert {r.data.params["optimizer.name"] for r in runs} == {"momentum"}


def test_momentum_compares_five_optimizers(store_dir: Path) -> None:
    runs = sweep(store_dir, "momentum", NO_GRADCHECK)
    assert values(runs, "optimizer.name", "optimizer.form", "optimizer.lr") == [
        ("adam", "classic", "0.001"),
        ("momentum", "classic", "0.05"),
        ("momentum", "ema", "0.5"),
        ("nesterov", "classic", "0.05"),
        ("sgd", "classic", "0.05"),
    ]


def test_regularization_sweeps_l1_and_l2_at_four_strengths(store_dir: Path) -> None:
    runs = sweep(store_dir, "regularization", NO_GRADCHECK)
    assert values(runs, "regularizer.name", "regularizer.lam") == sorted(
        (name, lam) for name in ("l1", "l2") for lam in ("1e-06", "0.0001", "0.001", "0.01")
    )


def test_dropout_sweeps_two_rates(store_dir: Path) -> None:
    runs = sweep(store_dir, "dropout", NO_GRADCHECK)
    assert values(runs, "regularizer.name", "regularizer.p") == [
        ("dropout", "0.2"),
        ("dropout", "0.5"),
    ]


def test_activation_sweeps_four_activations(store_dir: Path) -> None:
    runs = sweep(store_dir, "activation", NO_GRADCHECK)
    assert values(runs, "activation.name") == [("leaky_relu",), ("relu",), ("sigmoid",), ("tanh",)]


def test_topology_sweeps_widths_and_two_layers(store_dir: Path) -> None:
    runs = sweep(store_dir, "topology", NO_GRADCHECK)
    assert sorted(r.data.params["topology.hidden"] for r in runs) == sorted(
        ["[64]", "[128]", "[256]", "[100]", "[500]", "[1000]", "[2000]", "[112, 112]"]
    )


def test_baseline_compares_softmax_regression_with_one_hidden_layer(store_dir: Path) -> None:
    runs = sweep(store_dir, "baseline", NO_GRADCHECK)
    assert values(runs, "topology.hidden") == [("[128]",), ("[]",)]


def test_early_stopping_sweeps_patience_and_a_short_patience_stops_best_epoch_plus_patience(
    store_dir: Path,
) -> None:
    # A high learning rate: the validation loss is best at epoch 2, then jumps about, so
    # patience 3 and 5 stop well before the 12 epochs while 10 and none run them all.
    runs = sweep(
        store_dir,
        "early_stopping",
        [
            "train.epochs=12",
            "optimizer.lr=0.5",
            "hydra.launcher.n_jobs=2",
            "gradcheck.enabled=false",
        ],
    )
    assert values(runs, "train.patience") == [("10",), ("3",), ("5",), ("null",)]
    stopped = set()
    for run in runs:
        patience = run.data.params["train.patience"]
        epochs_run = run.data.metrics["epochs_run"]
        best_epoch = run.data.metrics["best_epoch"]
        if run.data.tags["reason"] == "early_stopping":
            assert epochs_run == best_epoch + int(patience) < 12
            stopped.add(patience)
        else:
            assert (run.data.tags["reason"], epochs_run) == ("max_epochs", 12)
    assert stopped == {"3", "5"}


def test_seeds_composes_with_another_preset(store_dir: Path) -> None:
    proc = run_cli(
        ["-m", "+experiment=[baseline,seeds]", "tracking.experiment=seeds", *NO_GRADCHECK],
        store_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(store_dir, "seeds"))
    assert values(runs, "topology.hidden", "seed") == sorted(
        (hidden, seed) for hidden in ("[]", "[128]") for seed in ("0", "1", "2")
    )


def test_search_runs_its_trials_and_optuna_gets_the_best_val_loss(store_dir: Path) -> None:
    runs = sweep(store_dir, "search", ["train.epochs=2", "hydra.sweeper.n_trials=4"])
    assert len(runs) == 4
    assert {r.data.params["activation.name"] for r in runs} == {"relu"}
    # Every trial trains its whole budget on an annealed rate, a tenth held out.
    for run in runs:
        assert run.data.params["optimizer.schedule"] == "cosine"
        assert run.data.params["train.patience"] == "null"
        assert run.data.params["dataset.val_fraction"] == "0.1"
        assert run.data.metrics["epochs_run"] == 2
    trials = optuna_trials(store_dir, runs)
    best_value = min(t.value for t in trials if t.value is not None)
    assert best_value == pytest.approx(min(r.data.metrics["best_val_loss"] for r in runs))


def test_search_goes_on_past_diverged_trials(store_dir: Path) -> None:
    proc = run_cli(
        [
            "-m",
            "+experiment=search",
            "tracking.experiment=diverging_search",
            "optimizer.lr=tag(log, interval(1e4, 1e6))",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.study_name=diverging",
            *TINY,
        ],
        store_dir,
    )
    assert proc.returncode == 1
    assert "3 runs failed" in proc.stderr
    runs = child_runs(all_runs(store_dir, "diverging_search"))
    assert len(runs) == 3
    assert all(r.data.tags["reason"].startswith("diverged at epoch") for r in runs)
    # Told to Optuna as failed: the sampler learns nothing from them, the search goes on.
    states = {t.state for t in optuna_trials(store_dir, runs)}
    assert states == {optuna.trial.TrialState.FAIL}
