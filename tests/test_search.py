"""The search sweeper (hydra/sweeper=search) through the real command line on the digits:
its space, pruning, asynchronous slots, resume after Ctrl-C, a killed trial asked again,
and the Optuna study agreeing with MLflow on every trial."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import Future
from pathlib import Path

import optuna
import pytest
from hydra._internal.callbacks import Callbacks
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from conftest import REPO, all_runs, child_runs, parent_run, run_cli, store_uri
from helpers import (
    Sweep,
    assert_killed_trial_asked_again,
    assert_pruned_search_agrees,
    assert_study_agrees_with_mlflow,
    markdown_tables,
    refilled_while_another_runs,
    run_here,
    runs_by_trial,
    study_of,
)
from hydra_plugins.sweeper_search.config import SearchSweeperConf
from hydra_plugins.sweeper_search.search_sweeper import (
    SearchSweeper,
    check_settings,
    fixed_settings,
    repeat_values,
    study_key,
    study_to_resume,
    unused_name,
)
from hydra_plugins.sweeper_search.space import SearchSpaceError, parse_space
from hydra_plugins.sweeper_search.study import (
    CREATED_ATTR,
    FIXED_ATTR,
    GRPC_READY_TIMEOUT_S,
    INTERRUPTED,
    RETRY_OF,
    SPACE_ATTR,
    StudyConfigError,
    done_trials,
    load_settled,
    make_pruner,
    make_sampler,
    make_storage,
    value_attr,
)
from hydra_plugins.sweeper_search.trial import TrialReporter
from services import free_port
from sweeper import app  # noqa: F401  (registers the resolvers that search.yaml names)
from sweeper.config import NOT_HASHED
from sweeper.core.training import EpochMetrics
from sweeper.outcome import OUTCOME_FILE, RunOutcome
from sweeper.pruning import Pruning
from sweeper.report.build import build_report
from sweeper.store_uri import study_storage
from sweeper.ui_links import NOTE_TAG, short_number
from sweeper.words import plural

# A search on the digits: small nets, few epochs, no gradient check, two trials at a time.
SEARCH = [
    "-m",
    "+experiment=search",
    "dataset.val_fraction=0.2",
    "hydra.launcher.n_jobs=2",
    "hydra.sweeper.n_jobs=2",
    "hydra.sweeper.sampler.name=random",
]

# The preset's other keys fixed, so that the epochs alone vary (and no trial diverges).
ONE_CONFIGURATION = ["optimizer.lr=0.01", "regularizer=l2", "regularizer.lam=1e-4"]

# Five trials one at a time, so the median pruner sees the same history every time: a trial
# worse than the median of the ones before at the same epoch stops there (lr 1e-5 trials).
MEDIAN_PRUNED = [
    *SEARCH,
    "train.epochs=4",
    "hydra.sweeper.n_trials=5",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.sampler.seed=3",
    "hydra.sweeper.pruner.name=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "optimizer.lr=choice(0.00001, 0.05)",
    "topology.hidden=[32]",
]


def test_the_override_grammar_becomes_optunas_distributions() -> None:
    space = parse_space(
        {
            "optimizer.lr": "tag(log, interval(0.002, 0.05))",
            "regularizer.p": "interval(0.2, 0.6)",
            "topology.hidden": "choice([256], [512,512])",
            "train.batch_size": "range(32, 129, 32)",
            "seed": "range(0, 4)",
        },
        ["train.epochs=3", "regularizer=choice(l2, dropout)", "regularizer.p=0.5"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.002, 0.05, log=True),
        "topology.hidden": CategoricalDistribution(["[256]", "[512,512]"]),
        "train.batch_size": IntDistribution(32, 128, step=32),
        "seed": IntDistribution(0, 3),
        "regularizer": CategoricalDistribution(["l2", "dropout"]),
    }
    # A plain override on the command line fixes a key, a searched one included.
    assert space.fixed == ["train.epochs=3", "regularizer.p=0.5"]
    overrides = space.overrides(
        {
            "optimizer.lr": 0.01,
            "topology.hidden": "[512,512]",
            "train.batch_size": 64,
            "seed": 2,
            "regularizer": "l2",
        }
    )
    assert overrides == [
        "train.epochs=3",
        "regularizer.p=0.5",
        "optimizer.lr=0.01",
        "topology.hidden=[512,512]",
        "train.batch_size=64",
        "seed=2",
        "regularizer=l2",
    ]


def test_a_log_tagged_range_is_a_log_scaled_int_range() -> None:
    space = parse_space({"train.batch_size": "tag(log, range(16, 257))"}, [])
    assert space.distributions == {"train.batch_size": IntDistribution(16, 256, log=True)}


def search_settings(**changes: object) -> DictConfig:
    """The search sweeper's settings as Hydra gives them, a storage URL set, and ``changes``
    (dotted keys) merged in."""
    settings = OmegaConf.structured(SearchSweeperConf)
    settings.storage = "sqlite://"
    for key, value in changes.items():
        OmegaConf.update(settings, key, value)
    return settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # Optuna checks these only once a run reports (every run would fail), or never.
        (
            {"pruner.name": "hyperband", "pruner.max_resource": -3},
            "hydra.sweeper.pruner.max_resource=-3 is invalid: 'auto' or an integer >= "
            "min_resource (1)",
        ),
        (
            {"pruner.name": "hyperband", "pruner.min_resource": 4, "pruner.max_resource": 3},
            "hydra.sweeper.pruner.max_resource=3 is invalid",
        ),
        (
            {"pruner.name": "hyperband", "pruner.min_resource": 0},
            "hydra.sweeper.pruner.min_resource=0 is invalid: an integer >= 1",
        ),
        (
            {"pruner.name": "hyperband", "pruner.reduction_factor": 1},
            "hydra.sweeper.pruner.reduction_factor=1 is invalid: an integer >= 2",
        ),
        (
            {"pruner.name": "hyperband", "pruner.min_resource": "auto"},
            "hydra.sweeper.pruner.min_resource=auto is invalid: an integer >= 1",
        ),
        (
            {"sampler.n_startup_trials": -2},
            "hydra.sweeper.sampler.n_startup_trials=-2 is invalid: must be >= 0",
        ),
        (
            {"pruner.name": "median", "pruner.n_warmup_steps": -1},
            "hydra.sweeper.pruner.n_warmup_steps=-1 is invalid: must be >= 0",
        ),
        # A time budget that has run out before the search starts.
        ({"timeout": -5}, "hydra.sweeper.timeout=-5.0 is invalid: seconds > 0"),
        ({"timeout": 0}, "hydra.sweeper.timeout=0.0 is invalid: seconds > 0"),
        ({"target": float("nan")}, "hydra.sweeper.target=nan is invalid: a finite"),
        ({"target": float("inf")}, "hydra.sweeper.target=inf is invalid: a finite"),
        # The objective is the best validation loss: maximizing it would pick the worst run.
        (
            {"direction": "maximize"},
            "hydra.sweeper.direction='maximize' is invalid: the value each job returns is one "
            "to minimize",
        ),
    ],
)
def test_a_setting_that_would_fail_every_run_or_run_none_fails_in_one_line(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(StudyConfigError) as raised:
        check_settings(search_settings(**changes), ["optimizer.lr=interval(0.01, 0.1)"])
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"pruner.name": "hyperband", "pruner.min_resource": 2, "pruner.max_resource": 2},
        {"pruner.name": "hyperband", "pruner.max_resource": "auto"},
        {"pruner.name": "successive_halving", "pruner.min_resource": "auto"},
        {"timeout": 0.5, "target": 0.25, "direction": "minimize"},
        {"sampler.n_startup_trials": 0},
    ],
)
def test_settings_at_their_limits_are_accepted(changes: dict[str, object]) -> None:
    check_settings(search_settings(**changes), ["optimizer.lr=interval(0.01, 0.1)"])


def epoch(number: int, val_loss: float) -> EpochMetrics:
    return EpochMetrics(number, val_loss, 0.5, val_loss, 0.5, 0.1, 0.01)


def test_n_warmup_steps_is_the_epochs_a_trial_trains_before_the_median_pruner_judges_it() -> None:
    # One finished trial's curve, then a trial far worse at every epoch: with
    # n_warmup_steps=1 its epoch 1 is not judged, its epoch 2 is (runs count epochs from 1).
    pruner = search_settings(
        **{"pruner.name": "median", "pruner.n_startup_trials": 1, "pruner.n_warmup_steps": 1}
    ).pruner
    study = optuna.create_study(pruner=make_pruner(pruner))
    first = study.ask()
    for number in (1, 2, 3):
        first.report(0.5, number)
    study.tell(first, 0.5)
    worse = Pruning(TrialReporter(1, study.ask()), epochs=3)
    assert worse.on_epoch(epoch(1, 2.0)) is None
    assert worse.on_epoch(epoch(2, 2.0)) == "pruned at epoch 2"
    assert worse.pruned_at == 2


def killed_on_a_trial_failed_first(tmp_path: Path, repeat: int) -> Run:
    """The run of repeat ``repeat`` (of 2) on a trial that Ctrl-C failed before it ended,
    as its job leaves it in the store: KILLED, interrupted (Ctrl-C)."""
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, state=TrialState.FAIL)
    pruning = Pruning(TrialReporter(0, trial, repeat=repeat, repeats=2), 2)
    with pytest.raises(KeyboardInterrupt):
        run_here(tmp_path, {"train": {"epochs": 2}}, pruning=pruning)
    (run,) = MlflowClient(store_uri(tmp_path)).search_runs(["1"])
    assert (run.info.status, run.data.tags["status"]) == ("KILLED", "KILLED")
    assert run.data.tags["reason"] == "interrupted (Ctrl-C)"
    return run


def test_a_run_whose_trial_the_sweeper_ended_at_ctrl_c_ends_killed_not_failed(
    tmp_path: Path,
) -> None:
    # Ctrl-C fails the search's open trials at once; a job forked at that moment gets the
    # signal only from the launcher's second one, and reports to a finished trial first.
    killed_on_a_trial_failed_first(tmp_path, repeat=0)


def test_a_run_that_ends_after_ctrl_c_ended_its_trial_ends_killed_not_finished(
    tmp_path: Path,
) -> None:
    # A later repeat (it reports no step) whose trial the sweeper failed as it trained: ended
    # FINISHED, its value would be kept nowhere and a resumed search would run it again.
    run = killed_on_a_trial_failed_first(tmp_path, repeat=1)
    assert run.data.metrics["epochs_run"] == 2  # it trained to its end


def test_the_qmc_sampler_is_made_without_optunas_experimental_warning() -> None:
    sampler = search_settings(**{"sampler.name": "qmc"}).sampler
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert isinstance(make_sampler(sampler), optuna.samplers.QMCSampler)
        # Another experimental feature still warns.
        optuna.samplers.QMCSampler(seed=0)
    assert [str(w.message).split(" is experimental")[0] for w in caught] == ["QMCSampler"]


@pytest.mark.parametrize(
    "option",
    ["'a,b'", "'5'", "'true'", "'x=y'", '"it\'s"', "' pad '", "'[1,2]'", "[1,2]", "{a: 1}"],
)
def test_each_choice_reaches_the_run_as_the_value_it_was_written_as(option: str) -> None:
    parser = OverridesParser.create()
    (written,) = parser.parse_overrides([f"k={option}"])
    space = parse_space({"k": f"choice({option}, other)"}, [])
    drawn = space.distributions["k"].choices[0]  # type: ignore[attr-defined]
    (override,) = parser.parse_overrides(space.overrides({"k": drawn}))
    assert override.value() == written.value()
    assert type(override.value()) is type(written.value())


def test_one_run_per_trial_leaves_a_non_integer_repeat_key_alone() -> None:
    settings = OmegaConf.create({"repeats": 1, "repeat_key": "optimizer.name"})
    assert repeat_values(settings, OmegaConf.create({"optimizer": {"name": "sgd"}})) == []


def test_a_sweep_directory_used_again_names_its_study_anew() -> None:
    storage = optuna.storages.InMemoryStorage()
    assert unused_name(storage, "mlp_search_fixed") == "mlp_search_fixed"
    optuna.create_study(study_name="mlp_search_fixed", storage=storage)
    optuna.create_study(study_name="mlp_search_fixed_2", storage=storage)
    assert unused_name(storage, "mlp_search_fixed") == "mlp_search_fixed_3"


def test_the_study_proxy_on_a_taken_port_fails_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "hydra_plugins.sweeper_search.proxy",
             f"sqlite:///{tmp_path / 'optuna.db'}", "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert proc.returncode == 1
    assert "Serving" not in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("interval(0.5, 0.1)", "search space entry optimizer.lr: 'interval(0.5, 0.1)' is invalid"),
        ("tag(log, interval(0, 1))", "search space entry optimizer.lr: "),
        ("choice()", "search space entry optimizer.lr: 'choice()' is invalid: empty choice is"),
        ("glob(*)", "search space entry optimizer.lr: 'glob(*)' is invalid"),
        ("interval(0.1", "search space entry optimizer.lr: 'interval(0.1' is invalid: "),
        # Hydra's reason, not its header that repeats the entry.
        (
            "chioce(l2, dropout)",
            "search space entry optimizer.lr: 'chioce(l2, dropout)' is invalid: Unknown function "
            "'chioce'",
        ),
        (
            "interval(0.001 0.1)",
            "search space entry optimizer.lr: 'interval(0.001 0.1)' is invalid: missing a "
            "required argument: 'end'",
        ),
        (
            "choice(0.3, null)",
            "search space entry optimizer.lr: 'choice(0.3, null)' is invalid: mismatch type "
            "argument args[1]: NoneType is incompatible with ",
        ),
        # A tag the search does not read, or log where it means nothing, is no silent uniform.
        (
            "tag(lgo, interval(0.01, 0.1))",
            "search space entry optimizer.lr: 'tag(lgo, interval(0.01, 0.1))' is invalid: "
            "tag 'lgo' is not one a search reads: log alone",
        ),
        (
            "tag(log, choice(0.01, 0.1))",
            "search space entry optimizer.lr: 'tag(log, choice(0.01, 0.1))' is invalid: "
            "log applies to interval and range",
        ),
        (
            "interval(0.01, 0.01)",
            "search space entry optimizer.lr: 'interval(0.01, 0.01)' is invalid: an interval of "
            "one value: give the value itself (0.01)",
        ),
    ],
)
def test_a_bad_entry_fails_in_one_line_naming_its_key(entry: str, message: str) -> None:
    with pytest.raises(SearchSpaceError) as raised:
        parse_space({"optimizer.lr": entry}, [])
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["regularizer.p=interval(0.2, 1.5)"], "regularizer.p=1.5 is invalid: dropout p must be"),
        (["optimizer.lrr=interval(0.01, 0.1)"], "optimizer.lrr"),
        (["hydra.sweeper.sampler.name=grid"], "hydra.sweeper.sampler.name='grid' is invalid"),
        (["hydra.sweeper.pruner.name=asha"], "hydra.sweeper.pruner.name='asha' is invalid"),
        (
            ["hydra.sweeper.storage=null", "hydra.sweeper.pruner.name=median"],
            "hydra.sweeper.storage=null keeps the study in this process",
        ),
        (
            ["hydra.sweeper.storage=foo://x"],
            "hydra.sweeper.storage='foo://x' cannot be used: Can't load plugin",
        ),
        (["hydra.sweeper.repeats=0"], "hydra.sweeper.repeats=0 is invalid: must be >= 1"),
        (
            ["hydra.sweeper.repeats=2", "hydra.sweeper.repeat_key=optimizer.lr"],
            "optimizer.lr is searched, but a search repeats each trial over it",
        ),
        (
            ["hydra.sweeper.repeats=2", "hydra.sweeper.repeat_key=optimizer.name"],
            "hydra.sweeper.repeat_key=optimizer.name is invalid: repeats need an integer key",
        ),
        (
            ["hydra.sweeper.repeats=2", "hydra.sweeper.repeat_key=sed"],
            "hydra.sweeper.repeat_key=sed is invalid: repeats need an integer key",
        ),
        (
            ["hydra.sweeper.pruner.name=hyperband", "hydra.sweeper.pruner.max_resource=-3"],
            "hydra.sweeper.pruner.max_resource=-3 is invalid",
        ),
        (["hydra.sweeper.timeout=-5"], "hydra.sweeper.timeout=-5.0 is invalid: seconds > 0"),
        (
            ["++seed=0,1,2"],
            "seed is searched, but a search repeats each trial over it (hydra.sweeper.repeat_key):"
            " leave it out of the space and score each trial over several with "
            "hydra.sweeper.repeats=3",
        ),
        (
            ["regularizer=choice(l2, 1, true)"],
            "Error: search space: regularizer=1 is invalid: regularizer is a config group; give "
            "the name of one of its options: dropout, l1, l2, none",
        ),
    ],
)
def test_a_bad_search_stops_before_any_run_in_one_line(
    workdir: Path, args: list[str], message: str
) -> None:
    proc = run_cli([*SEARCH, "train.epochs=1", *args], workdir)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ") and message in lines[0]
    assert not (workdir / "mlruns" / "optuna.db").exists()
    assert not list(workdir.glob("multirun/*/*/outcome.json"))


def test_the_seeds_preset_does_not_make_a_search_search_its_seed(workdir: Path) -> None:
    proc = run_cli(["-m", "+experiment=[search,seeds]", "train.epochs=1"], workdir)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: seed is searched, but a search repeats each trial over it")
    assert line.endswith("score each trial over several with hydra.sweeper.repeats=3")
    assert not list(workdir.glob("multirun/*/*/outcome.json"))


@pytest.mark.parametrize("url", ["grpc://127.0.0.1", "grpc://127.0.0.1:port", "grpc://:13000"])
def test_a_grpc_storage_needs_a_host_and_a_port(url: str) -> None:
    with pytest.raises(StudyConfigError) as raised:
        make_storage(url)
    assert str(raised.value) == f"hydra.sweeper.storage={url!r} is invalid: grpc://HOST:PORT"


def test_a_grpc_storage_that_does_not_answer_fails_in_one_line() -> None:
    url = f"grpc://127.0.0.1:{free_port()}"
    with pytest.raises(StudyConfigError) as raised:
        make_storage(url)
    assert str(raised.value) == (
        f"hydra.sweeper.storage={url!r} cannot be used: no storage proxy answers there "
        f"within {GRPC_READY_TIMEOUT_S} s"
    )


@pytest.mark.slow
def test_pruned_runs_stop_early_keep_their_best_and_agree_with_the_study(workdir: Path) -> None:
    proc = run_cli(MEDIAN_PRUNED, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 5
    pruned = [r for r in runs if r.data.tags["status"] == "PRUNED"]
    assert pruned, [r.data.params["optimizer.lr"] for r in runs]
    for run in pruned:
        epoch = int(run.data.tags["pruned_epoch"])
        assert run.data.metrics["epochs_run"] == epoch < 4
        assert run.data.tags["reason"] == f"pruned at epoch {epoch}"
        assert run.info.status == "FINISHED"  # its metrics and checkpoint are kept
        assert f"PRUNED at epoch {epoch}" in proc.stdout
    assert {r.data.metrics["epochs_run"] for r in runs if r not in pruned} == {4}
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    assert_pruned_search_agrees(study_of(workdir, sweep_id).get_trials(), runs, pruned, 5)


def test_a_run_is_not_pruned_at_its_last_epoch(workdir: Path) -> None:
    # One epoch each: the lr 1e-5 trials, pruned at epoch 1 when it is not their last, finish.
    args = [a.replace("train.epochs=4", "train.epochs=1") for a in MEDIAN_PRUNED]
    proc = run_cli(args, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    assert {r.data.tags["status"] for r in runs} == {"FINISHED"}
    assert "PRUNED" not in proc.stdout
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert_study_agrees_with_mlflow(trials, runs)


# Four trials of two choices, one at a time: lr 0.0005 is drawn three times, and lr 1000 is
# pruned after its first epoch with a validation accuracy above theirs and a far worse loss.
REDRAWN_AND_PRUNED = [
    "-m",
    "+experiment=search",
    "hydra.launcher.n_jobs=1",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.n_trials=4",
    "train.epochs=3",
    "activation=sigmoid",
    "optimizer.lr=choice(1000.0, 0.0005)",
    "regularizer=l2",
    "regularizer.lam=1e-6",
    "regularizer.p=0.3",
    "topology.hidden=[32]",
    "hydra.sweeper.pruner.name=successive_halving",
    "hydra.sweeper.pruner.min_resource=1",
    "hydra.sweeper.pruner.reduction_factor=2",
]


@pytest.mark.slow
def test_a_search_names_its_studys_best_trial_best_and_reports_every_trial(
    workdir: Path,
) -> None:
    proc = run_cli(REDRAWN_AND_PRUNED, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    pruned = [r for r in runs if r.data.tags["status"] == "PRUNED"]
    trained = [r for r in runs if r not in pruned]
    assert pruned and len({r.data.tags["config_hash"] for r in trained}) < len(trained)
    assert max(r.data.metrics["best_val_acc"] for r in pruned) > max(
        r.data.metrics["best_val_acc"] for r in trained
    )
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    assert f"Sweep {sweep_id}: {len(trained)} finished, {len(pruned)} pruned, 0 failed\n" in (
        proc.stdout
    )
    # The model, the curves and the parent's description go to the study's best trial.
    best = runs_by_trial(runs)[study_of(workdir, sweep_id).best_trial.number]
    assert best in trained
    assert f"Made for the best run: runs:/{best.info.run_id}/model" in proc.stdout
    parent = parent_run(all_runs(workdir))
    assert f"/runs/{best.info.run_id}?" in parent.data.tags[NOTE_TAG]
    # The report keeps every trial, the redrawn ones and the pruned one, and ranks as the
    # sweep's end did.
    report = build_report(store_uri(workdir), sweep_id=sweep_id, out_dir=workdir / "reports")
    assert f": {len(runs)} runs ({len(trained)} finished, {len(pruned)} pruned)." in (
        report.summary
    )
    assert "left out" not in report.summary
    ranked, pruned_table = markdown_tables(report.summary)[:2]
    assert ranked[0]["#"] == "1 (best)" and ranked[0]["run id"] == best.info.run_id
    assert sorted(row["run id"] for row in ranked) == sorted(r.info.run_id for r in trained)
    assert [row["run id"] for row in pruned_table] == [r.info.run_id for r in pruned]


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_freed_slot_takes_the_next_trial_without_waiting_for_the_batch(
    workdir: Path, asynchronous: bool
) -> None:
    # Long and short trials: asynchronously, short ones come and go in one slot while a long
    # one holds the other; in batches, each waits for its batch's slowest.
    proc = run_cli(
        [
            *SEARCH,
            "hydra.sweeper.n_trials=6",
            # Draws 200 epochs, then 1 five times: the long trial outlasts several short ones
            # even on a loaded machine.
            "hydra.sweeper.sampler.seed=2",
            f"hydra.sweeper.asynchronous={str(asynchronous).lower()}",
            "train.epochs=choice(1, 200)",
            "topology.hidden=[256,256]",
            *ONE_CONFIGURATION,
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 6
    epochs = sorted(r.data.metrics["epochs_run"] for r in runs)
    assert epochs[0] == 1 and epochs[-1] == 200
    assert refilled_while_another_runs(runs) == asynchronous


class CtrlCWhileDrawing(optuna.samplers.RandomSampler):
    """Ctrl-C arrives while the first trial's first param is drawn."""

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        if trial.number == 0 and not trial.params:
            os.kill(os.getpid(), signal.SIGINT)
        return super().sample_independent(study, trial, param_name, param_distribution)


class OneJobEnds:
    """A launcher whose first job returns 0.5 at once and whose others never end."""

    def __init__(self) -> None:
        self.submitted: list[list[str]] = []

    def submit(self, overrides: list[str], job: int) -> Future[JobReturn]:
        self.submitted.append(overrides)
        future: Future[JobReturn] = Future()
        if job == 0:
            future.set_result(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))
        return future


def test_ctrl_c_while_a_trial_is_drawn_keeps_whole_trials_and_the_ended_jobs_value() -> None:
    settings = OmegaConf.to_container(OmegaConf.structured(SearchSweeperConf))
    assert isinstance(settings, dict)
    del settings["_target_"]
    sweeper = SearchSweeper(**settings)
    launcher = OneJobEnds()
    sweeper.launcher = launcher  # type: ignore[assignment]
    sweeper.repeat_values = [0]
    searched = {"optimizer.lr": "interval(0.01, 0.1)", "regularizer.p": "interval(0, 1)"}
    space = parse_space(searched, [])
    study = optuna.create_study(sampler=CtrlCWhileDrawing(seed=0))
    with pytest.raises(KeyboardInterrupt):
        sweeper._run_asynchronously(study, space, time.monotonic())
    # Both slots' trials were drawn whole and started before Ctrl-C was raised; the job that
    # ended told its trial, the other's is failed, for resume=true to ask again.
    first, second = study.get_trials()
    assert len(launcher.submitted) == 2
    assert set(first.params) == set(second.params) == set(searched)
    assert first.state == TrialState.COMPLETE and first.value == 0.5
    assert second.state == TrialState.FAIL and second.user_attrs[INTERRUPTED]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_resume_after_ctrl_c_continues_the_numbering_and_reruns_nothing_finished(
    workdir: Path,
) -> None:
    args = [
        *SEARCH,
        "hydra.sweeper.n_trials=6",
        # Draws 300 epochs for trials 0 and 5 alone: trial 0 is still training when short
        # ones have ended, even on a quiet machine, and resuming reruns at most two long ones.
        "hydra.sweeper.sampler.seed=2",
        "train.epochs=choice(1, 300)",
        "topology.hidden=[32]",
        *ONE_CONFIGURATION,
        "train.batch_size=8",
    ]
    sweep = Sweep(args, workdir)
    sweep.wait_until(lambda: sweep.outcomes() >= 2 and sweep.running_children("300"))
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()
    assert rc == 130, stderr
    first = child_runs(all_runs(workdir))
    finished = {int(r.data.tags["trial"]) for r in first if r.info.status == "FINISHED"}
    cut_short = {int(r.data.tags["trial"]) for r in first if r.info.status == "KILLED"}
    assert finished and cut_short

    proc = run_cli([*args, "resume=true"], workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Resuming study mlp_search_{first[0].data.tags['sweep_id']}: {len(finished)} of 6" in (
        proc.stdout
    )
    # The progress counts the trials left, not the budget.
    assert f": {plural(6 - len(finished), 'run')}, tracking to " in proc.stdout
    assert f"[{6 - len(finished)}/{6 - len(finished)} done]" in proc.stdout
    (sweep_id,) = {r.data.tags["sweep_id"] for r in first}
    study = study_of(workdir, sweep_id)
    trials = study.get_trials()
    runs = [r for r in child_runs(all_runs(workdir)) if r.data.tags["sweep_id"] == sweep_id]
    by_trial = runs_by_trial(runs)
    # Numbering goes on; each cut-short trial (its run KILLED, or asked but not started yet)
    # is asked again with its params, once; no finished one is.
    asked_again = {t.user_attrs[RETRY_OF]: t for t in trials if RETRY_OF in t.user_attrs}
    assert cut_short <= set(asked_again)
    assert not finished & set(asked_again)
    for number, again in asked_again.items():
        assert again.number > max(finished | set(asked_again))
        assert again.params == study.trials[number].params
        assert again.state == TrialState.COMPLETE
    # Nothing finished ran again: one MLflow run per trial, its trial number its own.
    assert len(runs) == len(by_trial)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 6
    assert {t.number for t in done} >= finished
    assert_study_agrees_with_mlflow(trials, runs)


class CtrlCAsItsValueIsRecorded(TrialReporter):
    """A trial whose job gets Ctrl-C as it records the value its run ended with."""

    def __init__(self) -> None:
        super().__init__(0, None)
        self.value: float | None = None

    def ended(self, value: float, stop: bool = True) -> None:
        self.value = value
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_as_a_run_ends_leaves_it_finished_and_its_value_on_its_trial(
    tmp_path: Path,
) -> None:
    # Resuming fails and asks again a trial with no value, so a run FINISHED in the store must
    # have one: the run is closed before the Ctrl-C, which the job still obeys.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    trial = CtrlCAsItsValueIsRecorded()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_here(tmp_path, {"train": {"epochs": 2}}, threads=1, pruning=Pruning(trial))
    finally:
        signal.signal(signal.SIGINT, previous)
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED"
    assert run.data.tags["status"] == "FINISHED"
    assert trial.value == run.data.metrics["best_val_loss"]
    # Its outcome too, which the sweep's monitor counts.
    outcome = RunOutcome.load(tmp_path / "out" / OUTCOME_FILE)
    assert (outcome.status, outcome.run_id) == ("FINISHED", run.info.run_id)


@pytest.mark.slow
def test_a_killed_trial_is_asked_again_and_the_search_ends_normally(workdir: Path) -> None:
    args = [
        *SEARCH,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.sampler.seed=0",
        "train.epochs=choice(2, 300)",
        "topology.hidden=[32]",
        *ONE_CONFIGURATION,
        "train.batch_size=8",
    ]
    sweep = Sweep(args, workdir)
    victim = sweep.kill_a_run_past_its_first_epoch("300")
    rc, stderr = sweep.finish(timeout=600)
    stdout = sweep.stdout.read_text()
    assert rc == 0, stderr
    killed = int(victim.data.tags["trial"])
    assert f"Trial {killed} returned nothing" in stdout
    # Five runs for four trials: counted as they ended, with no ETA past the plan.
    assert "[5 done] 1 failed, elapsed" in stdout
    assert ": 4 finished, 0 failed, 1 failed and run again" in stdout
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 5
    by_trial = runs_by_trial(runs)
    assert by_trial[killed].data.tags["reason"] == "worker process died (killed by SIGKILL)"
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    assert_killed_trial_asked_again(trials, by_trial, killed, epochs=300, completed=4)
    assert_study_agrees_with_mlflow(trials, runs)


# --- repeats: a trial scored as the mean over seeds ---


def runs_by_repeat(runs: list[Run]) -> dict[int, list[Run]]:
    """Each trial's runs, in repeat order."""
    found: dict[int, list[Run]] = {}
    for run in runs:
        found.setdefault(int(run.data.tags["trial"]), []).append(run)
    return {t: sorted(rs, key=lambda r: int(r.data.tags["repeat"])) for t, rs in found.items()}


def best_val_losses(runs: list[Run]) -> list[float]:
    return [r.data.metrics["best_val_loss"] for r in runs]


def assert_repeats_of_one_configuration(runs: list[Run], seeds: list[str]) -> None:
    """The runs are repeats 0, 1, ... of one trial: ``seeds`` in order, every other param
    the same."""
    assert [r.data.tags["repeat"] for r in runs] == [str(i) for i in range(len(runs))]
    assert [r.data.params["seed"] for r in runs] == seeds
    others = [{k: v for k, v in r.data.params.items() if k != "seed"} for r in runs]
    assert all(o == others[0] for o in others)


@pytest.mark.slow
def test_repeats_score_each_trial_as_the_mean_over_its_seeds(workdir: Path) -> None:
    proc = run_cli(
        [
            *SEARCH,
            "train.epochs=2",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.repeats=2",
            "hydra.sweeper.sampler.seed=0",
            # The first repeat takes the seed the command line fixes, the next one the next.
            "seed=5",
            "topology.hidden=[32]",
            # In batches of n_jobs runs, as on a launcher without submit (the asynchronous
            # slots: the tests below).
            "hydra.sweeper.asynchronous=false",
        ],
        workdir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(mean of 2 runs)" in proc.stdout
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 6
    assert len({r.data.tags["job"] for r in runs}) == 6  # each its own output directory
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    study = study_of(workdir, sweep_id)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    by_trial = runs_by_repeat(runs)
    for trial in trials:
        repeats = by_trial[trial.number]
        assert_repeats_of_one_configuration(repeats, ["5", "6"])
        assert all(r.data.tags["status"] == "FINISHED" for r in repeats)
        losses = best_val_losses(repeats)
        assert trial.value == pytest.approx(statistics.mean(losses), rel=1e-6)
        recorded = [trial.user_attrs["value"], trial.user_attrs["value.1"]]
        assert recorded == pytest.approx(losses, rel=1e-6)

    # The report: one row per trial, its two seeds' mean ± std; its best is the study's.
    report = build_report(store_uri(workdir), sweep_id=sweep_id, out_dir=workdir / "reports")
    table = markdown_tables(report.summary)[0]
    assert len(table) == 3
    assert "seed" not in table[0]
    by_lr = {short_number(rs[0].data.params["optimizer.lr"]): rs for rs in by_trial.values()}
    for row in table:
        losses = best_val_losses(by_lr[row["optimizer.lr"]])
        assert row["n"] == "2"
        assert row["val loss"] == (
            f"{statistics.mean(losses):.4f} ± {statistics.stdev(losses):.4f}"
        )
    best = by_trial[study.best_trial.number][0].data.params["optimizer.lr"]
    assert table[0]["optimizer.lr"] == short_number(best)


@pytest.mark.slow
def test_with_repeats_a_pruned_trial_runs_once_and_the_pruner_judges_first_runs(
    workdir: Path,
) -> None:
    proc = run_cli([*MEDIAN_PRUNED, "hydra.sweeper.repeats=2"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    # 10 runs at most, and the count falls by the seeds of the pruned trials as they end.
    assert ": up to 10 runs, tracking to " in proc.stdout
    last = [line for line in proc.stdout.splitlines() if line.startswith("[")][-1]
    assert last.startswith(f"[{len(runs)}/{len(runs)} done] 0 failed, ")
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    by_trial = runs_by_repeat(runs)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned and completed and len(pruned) + len(completed) == 5
    assert len(runs) == len(pruned) + 2 * len(completed)
    for trial in pruned:
        (run,) = by_trial[trial.number]  # its other seed never ran
        assert run.data.tags["repeat"] == "0"
        assert run.data.tags["status"] == "PRUNED"
        assert run.data.metrics["epochs_run"] < 4
    for trial in completed:
        repeats = by_trial[trial.number]
        assert_repeats_of_one_configuration(repeats, ["0", "1"])
        assert [r.data.metrics["epochs_run"] for r in repeats] == [4, 4]
        assert trial.value == pytest.approx(statistics.mean(best_val_losses(repeats)), rel=1e-6)
    # Every trial's curve is its first run's (the best validation loss so far, each epoch):
    # the pruner compares first runs with first runs.
    client = MlflowClient(store_uri(workdir))
    for trial in trials:
        history = client.get_metric_history(by_trial[trial.number][0].info.run_id, "val_loss")
        best_so_far, curve = float("inf"), {}
        for metric in sorted(history, key=lambda m: m.step):
            best_so_far = min(best_so_far, metric.value)
            curve[metric.step] = best_so_far
        assert trial.intermediate_values == pytest.approx(curve, rel=1e-6)


# Two trials of two seeds each; a run long enough to be stopped past its first epoch.
REPEATED = [
    *SEARCH,
    "hydra.sweeper.n_trials=2",
    "hydra.sweeper.repeats=2",
    "hydra.sweeper.sampler.seed=0",
    "train.epochs=400",
    "topology.hidden=[32]",
    *ONE_CONFIGURATION,
    "train.batch_size=8",
]


def second_repeat_past_an_epoch(sweep: Sweep) -> list[Run]:
    return [
        r
        for r in sweep.running_children()
        if r.data.tags["repeat"] == "1" and sweep.epochs_done(int(r.data.tags["job"])) >= 1
    ]


def finished_by_configuration(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """The FINISHED runs of each (configuration, repeat), whichever trial ran them."""
    found: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.info.status == "FINISHED":
            key = (run.data.params["regularizer.p"], run.data.tags["repeat"])
            found.setdefault(key, []).append(run)
    return found


def assert_carried_over(again: FrozenTrial, earlier: FrozenTrial, runs: list[Run]) -> None:
    """``again`` asks ``earlier`` again: its first run's value and curve are carried over,
    it ran the second seed alone, and its value is the mean of the two runs."""
    by_trial = runs_by_repeat(runs)
    first = by_trial[earlier.number][0]
    assert first.data.tags["repeat"] == "0" and first.info.status == "FINISHED"
    (second,) = by_trial[again.number]
    assert second.data.tags["repeat"] == "1" and second.info.status == "FINISHED"
    assert second.data.params["seed"] == "1"
    assert again.params == earlier.params
    assert again.user_attrs["value"] == pytest.approx(first.data.metrics["best_val_loss"])
    assert again.intermediate_values == earlier.intermediate_values
    assert again.state == TrialState.COMPLETE
    assert again.value == pytest.approx(statistics.mean(best_val_losses([first, second])))


@pytest.mark.slow  # three 400-epoch runs one after another
def test_resume_with_repeats_reruns_no_finished_run(workdir: Path) -> None:
    sweep = Sweep(REPEATED, workdir)
    sweep.wait_until(lambda: bool(second_repeat_past_an_epoch(sweep)))
    cut = int(second_repeat_past_an_epoch(sweep)[0].data.tags["trial"])
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()
    assert rc == 130, stderr
    before = [r for r in child_runs(all_runs(workdir)) if r.info.status == "FINISHED"]

    proc = run_cli([*REPEATED, "resume=true"], workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming study" in proc.stdout
    # The cut-short trial's finished run counts as run, not as left to run; at most, as a
    # search that repeats its trials says.
    assert f": up to {plural(4 - len(before), 'run')}, tracking to " in proc.stdout
    assert f", {len(before)} skipped (finished before)\n" in proc.stdout
    runs = child_runs(all_runs(workdir))
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    # Each seed of each configuration finished once, before Ctrl-C or after resuming.
    finished = finished_by_configuration(runs)
    assert len(finished) == 4
    assert all(len(found) == 1 for found in finished.values())
    (again,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == cut]
    assert_carried_over(again, trials[cut], runs)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 2
    for trial in completed:
        p = str(trial.params["regularizer.p"])
        losses = best_val_losses([*finished[(p, "0")], *finished[(p, "1")]])
        assert trial.value == pytest.approx(statistics.mean(losses), rel=1e-6)


@pytest.mark.slow  # three 400-epoch runs one after another
def test_a_killed_repeat_runs_again_and_its_trials_finished_run_is_kept(workdir: Path) -> None:
    sweep = Sweep(REPEATED, workdir)
    sweep.wait_until(lambda: bool(second_repeat_past_an_epoch(sweep)))
    victim = second_repeat_past_an_epoch(sweep)[0]
    os.kill(int(victim.data.tags["pid"]), signal.SIGKILL)
    rc, stderr = sweep.finish(timeout=600)
    assert rc == 0, stderr
    killed = int(victim.data.tags["trial"])
    assert f"Trial {killed} returned nothing" in sweep.stdout.read_text()
    assert "it is asked again, 1 of its 2 runs kept" in sweep.stdout.read_text()
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 5  # two trials of two seeds, and the killed run
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    assert trials[killed].state == TrialState.FAIL
    (again,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == killed]
    assert_carried_over(again, trials[killed], runs)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


@pytest.mark.slow
def test_a_time_budget_ends_the_search_and_says_so(workdir: Path) -> None:
    # 1,000 trials asked for, 15 seconds given: the search ends by itself, having started
    # no trial after its budget, and shows the time left to it rather than an ETA.
    proc = run_cli(
        [*SEARCH, "train.epochs=2", "hydra.sweeper.n_trials=1000", "hydra.sweeper.timeout=15",
         "topology.hidden=[16]", *ONE_CONFIGURATION],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "up to 1000 runs, no trial started after 0:15" in proc.stdout
    assert "no new trial after" in proc.stdout
    runs = all_runs(workdir)
    parent = parent_run(runs)
    children = child_runs(runs)
    assert 1 <= len(children) < 1000
    assert all(r.data.tags["status"] == "FINISHED" for r in children)
    # The budget stops the asking, not a trial: every trial asked ran to its end.
    trials = study_of(workdir, parent.data.tags["sweep_id"]).get_trials()
    assert sorted(runs_by_trial(children)) == [t.number for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_search_asks_no_more_trials_than_the_launcher_runs_at_once(workdir: Path) -> None:
    # Asked beyond the launcher's one slot, a trial would wait, drawn before the running one
    # told anything, and start after the time budget.
    proc = run_cli(
        [*SEARCH, "train.epochs=1", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=4",
         "hydra.launcher.n_jobs=1", "topology.hidden=[16]", *ONE_CONFIGURATION],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Runs 1 at a time, not hydra.sweeper.n_jobs=4: the launcher runs no more" in proc.stdout
    sweep_id = parent_run(all_runs(workdir)).data.tags["sweep_id"]
    trials = study_of(workdir, sweep_id).get_trials()
    assert len(trials) == 3
    for told, asked in itertools.pairwise(trials):
        assert told.datetime_complete is not None and asked.datetime_start is not None
        assert told.datetime_complete <= asked.datetime_start


def test_a_target_value_ends_the_search_when_a_trial_reaches_it(workdir: Path) -> None:
    # Any digits run's best validation loss is below 10: the first trial reaches the target.
    proc = run_cli(
        [*SEARCH, "train.epochs=2", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=1",
         "hydra.sweeper.target=10", "topology.hidden=[16]", *ONE_CONFIGURATION],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = child_runs(all_runs(workdir))
    best = run.data.metrics["best_val_loss"]
    assert best <= 10
    # The header says the budget is at most, and the end says why the search stopped early.
    assert ": up to 5 runs, tracking to " in proc.stdout
    assert f"Target reached: trial 0, value {best:.4g} <= 10\n" in proc.stdout


def test_the_best_trial_is_printed_after_the_last_runs_line_to_4_figures(workdir: Path) -> None:
    proc = run_cli(
        [*SEARCH, "train.epochs=1", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1",
         "topology.hidden=[16]", "optimizer.lr=interval(0.005, 0.05)"],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = child_runs(all_runs(workdir))
    value, lr = run.data.metrics["best_val_loss"], float(run.data.params["optimizer.lr"])
    lines = proc.stdout.splitlines()
    last_run = next(i for i, line in enumerate(lines) if line.startswith("[1/1 done]"))
    (best,) = [i for i, line in enumerate(lines) if " best trial " in line]
    assert best > last_run
    assert re.match(
        rf"Study mlp_search_\S+: best trial 0, value {re.escape(f'{value:.4g}')}, "
        rf"optimizer\.lr={re.escape(f'{lr:.4g}')} ",
        lines[best],
    ), lines[best]


class EachJobReturns:
    """A launcher without ``submit``, each of whose jobs returns ``value`` at once."""

    def __init__(self, value: float) -> None:
        self.value = value

    def launch(self, overrides: list[list[str]], initial_job_idx: int) -> list[JobReturn]:
        return [JobReturn(status=JobStatus.COMPLETED, _return_value=self.value) for _ in overrides]


def test_the_search_result_follows_what_ends_the_multirun_even_an_exit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class Summary:
        """An app's callback: the runs' last lines, then a failed run's exit status."""

        def on_multirun_end(self, **kwargs: object) -> None:
            print("[1/1 done] | #0 the last run's line")
            raise SystemExit(1)

    settings = OmegaConf.to_container(OmegaConf.structured(SearchSweeperConf))
    assert isinstance(settings, dict)
    del settings["_target_"]
    settings.update(n_trials=1, storage=None, params={"optimizer.lr": "interval(0.01, 0.1)"})
    sweeper = SearchSweeper(**settings)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "seed": 0})
    sweeper.launcher = EachJobReturns(0.123456)  # type: ignore[assignment]
    callbacks = Callbacks()
    callbacks.callbacks.append(Summary())
    sweeper.hydra_context = HydraContext(config_loader=None, callbacks=callbacks)  # type: ignore[arg-type]
    sweeper.sweep([])
    with pytest.raises(SystemExit):
        callbacks.on_multirun_end(config=sweeper.config)
    first, best = capsys.readouterr().out.splitlines()
    assert first == "[1/1 done] | #0 the last run's line"
    assert re.fullmatch(
        r"Study \S+: best trial 0, value 0\.1235, optimizer\.lr=0\.0*[1-9]\d{0,3}", best
    )


def test_a_study_kept_in_memory_is_told_each_runs_value(workdir: Path) -> None:
    proc = run_cli(
        [*SEARCH, "train.epochs=1", "hydra.sweeper.n_trials=3", "hydra.sweeper.storage=null",
         "topology.hidden=[16]", "optimizer.lr=interval(0.005, 0.05)"],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "returned nothing" not in proc.stdout
    runs = child_runs(all_runs(workdir))
    assert sorted(runs_by_trial(runs)) == [0, 1, 2]
    assert all(r.data.tags["status"] == "FINISHED" for r in runs)
    best = min(runs, key=lambda r: r.data.metrics["best_val_loss"])
    assert f"best trial {best.data.tags['trial']}, value " in proc.stdout
    assert not (workdir / "mlruns" / "optuna.db").exists()
    # The runs are named by what the search drew, to 4 significant digits, never by the
    # key the command line fixed.
    parent = parent_run(all_runs(workdir))
    assert "topology.hidden" not in parent.info.run_name
    for run in runs:
        drawn = run.data.params["optimizer.lr"]
        assert f"optimizer.lr={float(drawn):.4g} " in run.info.run_name
        assert "topology.hidden" not in run.info.run_name
        assert f"optimizer.lr={float(drawn):.4g} " in proc.stdout


@pytest.mark.slow
def test_resume_in_another_experiment_than_the_searchs_fails_in_one_line(workdir: Path) -> None:
    args = [*SEARCH, "train.epochs=1", "hydra.sweeper.n_trials=1", "topology.hidden=[16]",
            "optimizer.lr=interval(0.005, 0.05)"]  # fmt: skip
    assert run_cli(args, workdir).returncode == 0
    proc = run_cli([*args, "tracking.experiment=other", "resume=true"], workdir)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("Error: resume=true: the newest search of this space is sweep ")
    assert "experiment 'other'" in line
    assert "Resuming study" not in proc.stdout


@pytest.mark.slow
def test_a_resumed_seeded_search_draws_new_trials_not_its_first_again(workdir: Path) -> None:
    args = [*SEARCH, "train.epochs=1", "hydra.sweeper.sampler.seed=0", "topology.hidden=[16]",
            "optimizer.lr=interval(0.005, 0.05)"]  # fmt: skip
    assert run_cli([*args, "hydra.sweeper.n_trials=2"], workdir).returncode == 0
    proc = run_cli([*args, "hydra.sweeper.n_trials=4", "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_id,) = {r.data.tags["sweep_id"] for r in child_runs(all_runs(workdir))}
    lrs = [t.params["optimizer.lr"] for t in study_of(workdir, sweep_id).get_trials()]
    assert len(lrs) == 4
    assert not set(lrs[2:]) & set(lrs[:2])


def test_a_search_preset_from_the_users_own_config_directory_runs(workdir: Path) -> None:
    # Hydra's hydra.searchpath adds a directory of configs: the space's check and the sweep's
    # plan compose with it as the trials do.
    presets = workdir / "my_conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "my_search.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - search\n"
        "hydra:\n  sweeper:\n    n_trials: 2\n    params:\n"
        "      optimizer.lr: interval(0.005, 0.05)\n"
        "      regularizer: choice(l2)\n"
        "      topology.hidden: choice([16])\n"
    )
    proc = run_cli(
        ["-m", "+experiment=my_search", f"hydra.searchpath=[file://{presets.parent}]",
         "dataset.val_fraction=0.2", "train.epochs=1", "hydra.sweeper.sampler.name=random"],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    assert sorted(runs_by_trial(runs)) == [0, 1]
    assert all(r.data.tags["status"] == "FINISHED" for r in runs)


# --- resume: the same settings, the budget, the numbering, the study's place ---


class ValueAtOnce:
    """A launcher whose jobs end at once, each returning the learning rate its trial drew."""

    def __init__(self) -> None:
        self.drawn: list[float] = []

    def submit(self, overrides: list[str], job: int) -> Future[JobReturn]:
        (lr,) = [float(o.partition("=")[2]) for o in overrides if o.startswith("optimizer.lr=")]
        self.drawn.append(lr)
        future: Future[JobReturn] = Future()
        future.set_result(JobReturn(status=JobStatus.COMPLETED, _return_value=lr))
        return future


def search_here(
    storage: Path, sweep_dir: Path, n_trials: int, seed: int, resume: bool = False
) -> list[float]:
    """A seeded random search of the learning rate, made in this process, its study in the
    SQLite file ``storage``; the rates it drew."""
    settings = OmegaConf.to_container(OmegaConf.structured(SearchSweeperConf))
    assert isinstance(settings, dict)
    del settings["_target_"]
    settings.update(storage=f"sqlite:///{storage}", n_trials=n_trials, n_jobs=1, resume=resume)
    settings["sampler"].update(name="random", seed=seed)
    sweeper = SearchSweeper(**settings)
    launcher = ValueAtOnce()
    sweeper.launcher = launcher  # type: ignore[assignment]
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}, "seed": 0})
    sweeper.sweep(["optimizer.lr=interval(0.001, 0.1)"])
    return launcher.drawn


def test_a_resumed_seeded_search_draws_again_what_it_drew_and_not_another_seeds_trials(
    tmp_path: Path,
) -> None:
    first = tmp_path / "first.db"
    search_here(first, tmp_path / "a", n_trials=2, seed=0)
    # The same study resumed twice, each from a copy: the same two new trials.
    resumed = []
    for copy in ("once.db", "twice.db"):
        shutil.copy(first, tmp_path / copy)
        resumed.append(
            search_here(tmp_path / copy, tmp_path / copy, n_trials=4, seed=0, resume=True)
        )
    assert len(resumed[0]) == 2
    assert resumed[0] == resumed[1]
    # Seed 0 resumed after two trials once drew what a search seeded 2 draws first.
    fresh = search_here(tmp_path / "seed2.db", tmp_path / "b", n_trials=2, seed=2)
    assert not set(resumed[0]) & set(fresh)


def test_the_settings_a_search_shares_leave_out_what_it_searches_repeats_and_records() -> None:
    config = OmegaConf.create(
        {
            "hydra": {"sweep": {"dir": "multirun/x"}},
            "seed": 5,
            "resume": True,
            "optimizer": {"name": "momentum", "lr": 0.01},
            "regularizer": {"name": "l2", "lam": 0.0001},
            "train": {"epochs": 3, "hidden": [16]},
            "tracking": {"uri": "sqlite:///x.db", "flush_seconds": 30},
        }
    )
    # regularizer.lam is fixed inside the regularizer group the space searches.
    space = parse_space(
        {"optimizer.lr": "interval(0.001, 0.1)", "regularizer": "choice(l2, dropout)"},
        ["regularizer.lam=1e-4", "train.epochs=3"],
    )
    settings = OmegaConf.create(
        {"repeats": 1, "repeat_key": "seed", "resume_ignores": ["resume", "tracking"]}
    )
    assert fixed_settings(settings, config, space) == {
        "seed": 5,
        "optimizer.name": "momentum",
        "regularizer.lam": 0.0001,
        "train.epochs": 3,
        "train.hidden": [16],
    }
    # With repeats, the repeated key varies between a trial's runs.
    repeated = OmegaConf.merge(settings, {"repeats": 2})
    assert "seed" not in fixed_settings(repeated, config, space)  # type: ignore[arg-type]
    # The app's search ignores what a configuration's hash leaves out (the app's resolver).
    preset = OmegaConf.load(REPO / "conf" / "hydra" / "sweeper" / "search.yaml")
    assert preset.resume_ignores == [key.rstrip(".") for key in NOT_HASHED]


def test_a_trial_whose_job_recorded_its_value_after_the_sweep_stopped_counts_as_done() -> None:
    # The sweep's process gone at Ctrl-C, a job still closing recorded its value: the trial
    # stays RUNNING. The resume's plan and the sweeper count it done alike.
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s")
    study.tell(study.ask(), 0.5)
    late = study.ask()
    storage.set_trial_user_attr(late._trial_id, value_attr(0), 0.4)
    settled = load_settled(storage, "s", repeats=1)
    assert [t.state for t in settled.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert settled.trials[1].value == 0.4
    assert len(done_trials(settled.get_trials())) == 2


def test_resume_finds_an_older_study_by_its_space_and_a_newer_one_by_its_settings_too() -> None:
    storage = optuna.storages.InMemoryStorage()
    settings = OmegaConf.create({"direction": "minimize", "repeats": 1, "repeat_key": "seed"})
    space = parse_space({"optimizer.lr": "interval(0.001, 0.1)"}, [])
    older = optuna.create_study(storage=storage, study_name="older")
    older.set_user_attr(SPACE_ATTR, study_key(space, settings))
    older.set_user_attr(CREATED_ATTR, 1.0)
    # A study made before its settings were recorded is resumed as it was: by its space.
    found = study_to_resume(storage, settings, space, {"train.epochs": 2})
    assert found is not None and found.study_name == "older"
    newer = optuna.create_study(storage=storage, study_name="newer")
    newer.set_user_attr(SPACE_ATTR, study_key(space, settings))
    newer.set_user_attr(CREATED_ATTR, 2.0)
    newer.set_user_attr(FIXED_ATTR, {"train.epochs": 4, "dataset.name": "digits"})
    found = study_to_resume(storage, settings, space, {"train.epochs": 4, "dataset.name": "digits"})
    assert found is not None and found.study_name == "newer"
    with pytest.raises(StudyConfigError) as raised:
        study_to_resume(storage, settings, space, {"train.epochs": 2, "topology.hidden": [16]})
    assert str(raised.value) == (
        "resume=true: the newest search of this space ran with dataset.name=digits and no "
        "topology.hidden and train.epochs=4, not no dataset.name and topology.hidden=[16] and "
        "train.epochs=2; give the same settings or drop resume=true"
    )
    # An older study of the space whose settings these are is the one continued.
    fashion = optuna.create_study(storage=storage, study_name="fashion")
    fashion.set_user_attr(SPACE_ATTR, study_key(space, settings))
    fashion.set_user_attr(CREATED_ATTR, 1.5)
    fashion.set_user_attr(FIXED_ATTR, {"train.epochs": 4, "dataset.name": "fashion_mnist"})
    found = study_to_resume(
        storage, settings, space, {"train.epochs": 4, "dataset.name": "fashion_mnist"}
    )
    assert found is not None and found.study_name == "fashion"


@pytest.mark.slow
def test_resume_refuses_a_study_whose_trials_shared_other_settings(workdir: Path) -> None:
    args = [*SEARCH, "hydra.sweeper.sampler.seed=0", "topology.hidden=[16]",
            "optimizer.lr=interval(0.005, 0.05)"]  # fmt: skip
    assert run_cli([*args, "train.epochs=2", "hydra.sweeper.n_trials=1"], workdir).returncode == 0
    # Where and how the runs are recorded (tracking.*, resume) may differ; the epochs not.
    proc = run_cli(
        [*args, "train.epochs=1", "hydra.sweeper.n_trials=2", "tracking.flush_seconds=0",
         "resume=true"],
        workdir,
    )  # fmt: skip
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line == (
        "Error: resume=true: the newest search of this space ran with train.epochs=2, not "
        "train.epochs=1; give the same settings or drop resume=true"
    )
    assert "Resuming" not in proc.stdout
    assert len(child_runs(all_runs(workdir))) == 1


@pytest.mark.slow
def test_resume_continues_its_studys_sweep_when_its_directory_named_a_later_one(
    workdir: Path,
) -> None:
    fixed = "hydra.sweep.dir=multirun/fixed"
    args = [*SEARCH, fixed, "hydra.sweeper.sampler.seed=0", "topology.hidden=[16]",
            "optimizer.lr=interval(0.005, 0.05)", "train.epochs=1"]  # fmt: skip
    assert run_cli([*args, "hydra.sweeper.n_trials=1"], workdir).returncode == 0
    search_id = parent_run(all_runs(workdir)).info.run_id
    # A grid sweep in the same directory: a second sweep of the id "fixed".
    grid = run_cli(["-m", "seed=0", "train.epochs=1", "gradcheck.enabled=false", fixed], workdir)
    assert grid.returncode == 0, grid.stderr
    proc = run_cli([*args, "hydra.sweeper.n_trials=2", "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr
    trials = [r for r in child_runs(all_runs(workdir)) if "trial" in r.data.tags]
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {search_id}


@pytest.mark.slow
def test_a_search_in_a_directory_used_again_is_a_sweep_of_its_own_that_resume_continues(
    workdir: Path,
) -> None:
    fixed = "hydra.sweep.dir=multirun/fixed"
    args = [*SEARCH, fixed, "train.epochs=1", "topology.hidden=choice([16],[32])",
            "gradcheck.enabled=false"]  # fmt: skip
    assert run_cli([*args, "hydra.sweeper.n_trials=1"], workdir).returncode == 0
    again = run_cli([*args, "hydra.sweeper.n_trials=1"], workdir)
    assert again.returncode == 0, again.stderr
    assert "Sweep fixed-2 (fixed is an earlier sweep's id): 1 run, tracking to " in (again.stdout)
    # Its study is named by its sweep's id, by which resume=true finds its MLflow sweep.
    assert study_of(workdir, "fixed-2").study_name == "mlp_search_fixed-2"
    assert study_of(workdir, "fixed").study_name == "mlp_search_fixed"
    resumed = run_cli([*args, "hydra.sweeper.n_trials=2", "resume=true"], workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming search sweep fixed-2\n" in resumed.stdout
    runs = all_runs(workdir)
    (second,) = [
        r for r in runs if r.data.tags.get("sweep_id") == "fixed-2" and "trial" not in r.data.tags
    ]
    trials = [r for r in child_runs(runs) if r.data.tags["sweep_id"] == "fixed-2"]
    assert sorted(r.data.tags["trial"] for r in trials) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {second.info.run_id}
    assert len(child_runs(runs)) == 3


@pytest.mark.slow
@pytest.mark.parametrize("repeats", [1, 2])
def test_a_search_whose_trials_failed_says_to_raise_n_trials_not_to_resume(
    workdir: Path, repeats: int
) -> None:
    # Every trial diverges: a trial run and told, counted toward n_trials; with repeats, its
    # first run fails it, and its second never runs.
    args = [*SEARCH, "train.epochs=2", "optimizer.lr=interval(20, 50)", "topology.hidden=[256]",
            "regularizer=l2", f"hydra.sweeper.repeats={repeats}"]  # fmt: skip
    proc = run_cli([*args, "hydra.sweeper.n_trials=2"], workdir)
    assert proc.returncode == 1
    assert proc.stderr.count("diverged at epoch") == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "Failed trials count toward hydra.sweeper.n_trials=2: raise it, with resume=true, "
        "to search on."
    )
    assert parent_run(all_runs(workdir)).info.status == "FAILED"
    # The same budget resumed: nothing to run, and the sweep's records stay as they were.
    proc = run_cli([*args, "hydra.sweeper.n_trials=2", "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing left to run: the study's trials done reach hydra.sweeper.n_trials" in (
        proc.stdout
    )
    assert "finished before" not in proc.stdout
    assert parent_run(all_runs(workdir)).info.status == "FAILED"
    assert len(child_runs(all_runs(workdir))) == 2
    # A larger one runs one more trial; the failed ones are not called finished.
    proc = run_cli([*args, "hydra.sweeper.n_trials=3", "resume=true"], workdir)
    assert proc.returncode == 1
    upto = "up to " if repeats > 1 else ""
    assert f": {upto}{plural(repeats, 'run')}, tracking to " in proc.stdout
    assert ": 0 finished, 1 failed, 2 skipped (2 failed before)\n" in proc.stdout
    assert len(child_runs(all_runs(workdir))) == 3
    # The parent counts the sweep's runs, those of the first command included.
    metrics = parent_run(all_runs(workdir)).data.metrics
    assert (metrics["runs"], metrics["failed_runs"], metrics["killed_runs"]) == (3, 3, 0)


@pytest.mark.slow
def test_a_resumed_search_numbers_its_jobs_on_and_names_runs_by_trial_and_repeat(
    workdir: Path,
) -> None:
    args = [*SEARCH, "train.epochs=1", "hydra.sweeper.repeats=2", "hydra.sweeper.sampler.seed=0",
            "topology.hidden=[16]", "optimizer.lr=interval(0.005, 0.05)"]  # fmt: skip
    first = run_cli([*args, "hydra.sweeper.n_trials=1"], workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    proc = run_cli([*args, "hydra.sweeper.n_trials=2", "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = child_runs(all_runs(workdir))
    # One job number per run of the sweep, the resumed ones after the first command's.
    jobs = {(r.data.tags["trial"], r.data.tags["repeat"]): r.data.tags["job"] for r in runs}
    assert jobs == {("0", "0"): "0", ("0", "1"): "1", ("1", "0"): "2", ("1", "1"): "3"}
    # Each command's lines name its runs as the study's lines do: trial.repeat.
    for out, trial in ((first.stdout, 0), (proc.stdout, 1)):
        rows = [row for row in out.splitlines() if re.match(r"\| \d", row)]
        new = [row.split(" | ")[0] for row in rows if "(before)" not in row]
        assert sorted(new) == [f"| {trial}.0", f"| {trial}.1"]
        assert f"| #{trial}.0 " in out and f"| #{trial}.1 " in out
    # The resumed command's summary holds the first command's runs too, named alike.
    before = [row.split(" | ")[0] for row in proc.stdout.splitlines() if "(before)" in row]
    assert sorted(before) == ["| 0.0", "| 0.1"]
    assert "best trial " in proc.stdout


@pytest.mark.slow
def test_the_study_lives_beside_the_tracking_stores_database(workdir: Path) -> None:
    store = workdir / "store"
    args = [*SEARCH, "train.epochs=1", "topology.hidden=[16]",
            "optimizer.lr=interval(0.005, 0.05)", f"tracking.uri=sqlite:///{store / 'mlflow.db'}",
            "hydra.sweeper.pruner.name=median"]  # fmt: skip
    assert run_cli([*args, "hydra.sweeper.n_trials=1"], workdir).returncode == 0
    proc = run_cli([*args, "hydra.sweeper.n_trials=2", "resume=true"], workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming study" in proc.stdout
    assert not (workdir / "mlruns").exists()
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    runs = child_runs(client.search_runs([experiment.experiment_id]))
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    # Each run reported to its trial there, from its own process.
    trials = study_of(workdir, sweep_id, f"sqlite:///{store / 'optuna.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert_study_agrees_with_mlflow(trials, runs)


def test_a_study_is_kept_beside_a_sqlite_store_else_in_the_launch_directory() -> None:
    assert study_storage("sqlite:////srv/runs/mlflow.db", "/home/me") == (
        "sqlite:////srv/runs/optuna.db"
    )
    assert study_storage("http://tracking:5000", "/home/me") == (
        "sqlite:////home/me/mlruns/optuna.db"
    )


def test_make_dashboard_shows_the_studies_beside_the_store_it_is_given() -> None:
    store = "sqlite:////home/me/my runs/store/mlflow.db"
    # -n prints the commands without running them; -o: the venv counts as made.
    printed = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed-stamp", "dashboard", f"STORE={store}",
         f"PY={sys.executable}"],
        cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    ).stdout  # fmt: skip
    (line,) = [line for line in printed.splitlines() if "bin/optuna-dashboard" in line]
    assert shlex.split(line)[1] == "sqlite:////home/me/my runs/store/optuna.db"


def test_make_dashboard_installs_its_extra_once(tmp_path: Path) -> None:
    def planned() -> str:
        return subprocess.run(
            ["make", "-n", f"VENV={tmp_path}", "dashboard", f"PY={sys.executable}"],
            cwd=REPO, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        ).stdout  # fmt: skip

    (tmp_path / ".installed-stamp").touch()
    assert "pip install -q -e '.[dashboard]'" in planned()
    (tmp_path / ".dashboard-stamp").touch()
    # Installed: the dashboard starts without pip, offline too.
    assert "pip install" not in planned()


def test_a_search_whose_storage_proxy_is_not_running_stops_in_one_line_before_its_sweep(
    workdir: Path,
) -> None:
    url = f"grpc://127.0.0.1:{free_port()}"  # no proxy started there
    start = time.monotonic()
    proc = run_cli(["-m", "+experiment=search", f"hydra.sweeper.storage={url}",
                    "hydra.sweeper.n_trials=2", "train.epochs=1"], workdir)  # fmt: skip
    # Refused at once, not waited for as a proxy that does not answer.
    assert time.monotonic() - start < 30
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: hydra.sweeper.storage={url!r} cannot be used: no storage proxy answers there "
        "(Connection refused): is it running?"
    ]
    # Before the store: no parent run, nothing to resume.
    assert proc.stdout == ""
    assert not (workdir / "mlruns").exists()


def test_sigterm_to_a_search_records_sigterm_in_its_runs_that_see_their_trials_end_first(
    workdir: Path,
) -> None:
    # Epochs of a few milliseconds: each run reports to its trial, failed by the sweeper as
    # it stops, before the sweep's own SIGTERM reaches the run's process.
    args = [*SEARCH, "hydra.sweeper.n_trials=4", "train.epochs=400", "topology.hidden=[32]",
            *ONE_CONFIGURATION, "train.batch_size=8"]  # fmt: skip
    sweep = Sweep(args, workdir)
    sweep.wait_until(
        lambda: (
            len(running := sweep.running_children()) == 2
            and all(sweep.epochs_done(int(r.data.tags["job"])) >= 1 for r in running)
        )
    )
    os.kill(sweep.proc.pid, signal.SIGTERM)
    rc, stderr = sweep.finish()
    assert rc == 143, stderr
    runs = child_runs(all_runs(workdir))
    assert {r.info.status for r in runs} == {"KILLED"}
    assert {r.data.tags["reason"] for r in runs} == {"interrupted (SIGTERM)"}
