"""The search sweeper (hydra/sweeper=search) through the real command line on the digits:
its space, pruning, asynchronous slots, resume after Ctrl-C, a killed trial asked again,
and the Optuna study agreeing with MLflow on every trial."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from conftest import all_runs, child_runs, run_cli
from helpers import (
    Sweep,
    assert_study_agrees_with_mlflow,
    refilled_while_another_runs,
    runs_by_trial,
    study_of,
)
from hydra_plugins.sweeper_search.space import SearchSpaceError, parse_space
from hydra_plugins.sweeper_search.study import (
    GRPC_READY_TIMEOUT_S,
    RETRY_OF,
    StudyConfigError,
    make_storage,
)
from services import free_port

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


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("interval(0.5, 0.1)", "search space entry optimizer.lr: 'interval(0.5, 0.1)' is invalid"),
        ("tag(log, interval(0, 1))", "search space entry optimizer.lr: "),
        ("choice()", "search space entry optimizer.lr: 'choice()' is invalid"),
        ("glob(*)", "search space entry optimizer.lr: 'glob(*)' is invalid"),
        ("interval(0.1", "search space entry optimizer.lr: 'interval(0.1' is invalid"),
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
    ],
)
def test_a_bad_search_stops_before_any_run_in_one_line(
    workdir: Path, args: list[str], message: str
) -> None:
    proc = run_cli([*SEARCH, "train.epochs=1", *args], workdir)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert not (workdir / "mlruns" / "optuna.db").exists()
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


def test_pruned_runs_stop_early_keep_their_best_and_agree_with_the_study(workdir: Path) -> None:
    # One trial at a time, so the median pruner sees the same history every time: a trial
    # worse than the median of the ones before at the same epoch stops there.
    proc = run_cli(
        [
            *SEARCH,
            "train.epochs=4",
            "hydra.sweeper.n_trials=5",
            "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.sampler.seed=3",
            "hydra.sweeper.pruner.name=median",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "optimizer.lr=choice(0.00001, 0.05)",
            "topology.hidden=[32]",
        ],
        workdir,
    )
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
    study = study_of(workdir, sweep_id)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(5))
    assert {t.number for t in trials if t.state == TrialState.PRUNED} == {
        int(r.data.tags["trial"]) for r in pruned
    }
    assert_study_agrees_with_mlflow(trials, runs)


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


def test_resume_after_ctrl_c_continues_the_numbering_and_reruns_nothing_finished(
    workdir: Path,
) -> None:
    args = [
        *SEARCH,
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.sampler.seed=0",
        "train.epochs=choice(1, 100)",
        "topology.hidden=[32]",
        *ONE_CONFIGURATION,
        "train.batch_size=8",
    ]
    sweep = Sweep(args, workdir)
    sweep.wait_until(lambda: sweep.outcomes() >= 2 and len(sweep.running_children()) >= 1)
    os.killpg(sweep.proc.pid, signal.SIGINT)
    rc, stderr = sweep.finish()
    assert rc == 130, stderr
    first = child_runs(all_runs(workdir))
    finished = {int(r.data.tags["trial"]) for r in first if r.info.status == "FINISHED"}
    cut_short = {int(r.data.tags["trial"]) for r in first if r.info.status == "KILLED"}
    assert finished and cut_short

    proc = run_cli([*args, "resume=true"], workdir, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resuming study" in proc.stdout
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
    runs = child_runs(all_runs(workdir))
    assert len(runs) == 5
    by_trial = runs_by_trial(runs)
    assert by_trial[killed].data.tags["reason"] == "worker process died (killed by SIGKILL)"
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(workdir, sweep_id).get_trials()
    (again,) = [t for t in trials if t.user_attrs.get(RETRY_OF) == killed]
    assert again.params == trials[killed].params
    assert again.state == TrialState.COMPLETE
    assert by_trial[again.number].data.metrics["epochs_run"] == 300
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert trials[killed].state == TrialState.FAIL
    assert_study_agrees_with_mlflow(trials, runs)
