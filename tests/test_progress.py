"""What a person sees while a sweep runs: each finished run once, with the count it brings the
sweep to; on a terminal, a live line per run in progress."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import OnATerminal, add_child_run
from sweeper import run
from sweeper.core.training import EpochMetrics
from sweeper.outcome import (
    LIVE_FILE,
    OUTPUT_FILE,
    PROGRESS_FILE,
    PROGRESS_SECONDS,
    RunOutcome,
    RunProgress,
    count_killed,
    count_runs,
)
from sweeper.progress import (
    ProgressMonitor,
    describe,
    eta_seconds,
    failed_checks,
    progress_line,
    running_line,
    summary_table,
)
from sweeper.resume import finished_before
from sweeper.store_setup import prepare_store
from sweeper.sweep_runs import start_sweep_run

_METRICS = {"best_val_acc": 0.9, "test_acc": 0.8, "epochs_run": 3.0}


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as rich asks."""

    def isatty(self) -> bool:
        return True


def finish(sweep_dir: Path, job: int, status: str = "FINISHED") -> None:
    outcome = RunOutcome(job, [f"seed={job}"], status, "max_epochs", 1.0, f"r{job}", _METRICS)
    (sweep_dir / str(job)).mkdir(parents=True, exist_ok=True)
    outcome.save(sweep_dir / str(job))


def test_runs_that_finish_in_the_same_poll_each_get_their_own_count(tmp_path: Path) -> None:
    out = io.StringIO()
    monitor = ProgressMonitor(tmp_path, 3, {"seed"}, out=out)
    finish(tmp_path, 0)
    finish(tmp_path, 1, "FAILED")
    assert len(monitor.poll()) == 2
    finish(tmp_path, 2)
    monitor.poll()
    lines = out.getvalue().splitlines()
    assert [line.split(" | ")[0].split("]")[0] for line in lines] == [
        "[1/3 done",
        "[2/3 done",
        "[3/3 done",
    ]
    assert "] 1 failed" in lines[1] and lines[1].endswith("#1 seed=1: FAILED: max_epochs")
    assert lines[2].endswith("#2 seed=2: best_val_acc=0.9000 test_acc=0.8000 epochs=3 1.0s")


def test_the_summary_labels_the_best_epoch_values_as_best() -> None:
    # MLflow's val_loss and val_acc are the last epoch's; the table shows the best epoch's.
    metrics = {**_METRICS, "best_val_loss": 0.25, "val_loss": 0.5, "val_acc": 0.5}
    table = summary_table([RunOutcome(0, ["seed=0"], "FINISHED", "max_epochs", 1.0, "r0", metrics)])
    header, _, row = table.splitlines()
    assert header == (
        "| # | run | status | best_val_loss | best_val_acc | test_acc | epochs | seconds |"
    )
    assert row == "| 0 | seed=0 | FINISHED | 0.2500 | 0.9000 | 0.8000 | 3 | 1.0 |"


def test_the_summary_ranks_no_run_of_a_configuration_that_failed_on_a_seed() -> None:
    # b's seed 0 has the lowest loss, but its seed 1 diverged: the best run is a's, first.
    def run(job: int, overrides: str, loss: float | None, status: str = "FINISHED") -> RunOutcome:
        metrics = {} if loss is None else {**_METRICS, "best_val_loss": loss}
        return RunOutcome(job, overrides.split(), status, "", 1.0, f"r{job}", metrics)

    outcomes = [
        run(0, "lr=a seed=0", 0.3),
        run(1, "lr=a seed=1", 0.4),
        run(2, "lr=b seed=0", 0.1),
        run(3, "lr=b seed=1", None, "FAILED"),
        # Killed, then run again to its end (a search's retry): c is complete.
        run(4, "lr=c seed=0", None, "FAILED"),
        run(5, "lr=c seed=0", 0.35),
        run(6, "lr=c seed=1", 0.45),
    ]
    table = summary_table(outcomes, {"lr", "seed"})
    rows = [line.split(" | ")[:3] for line in table.splitlines()[2:] if line.startswith("| ")]
    assert rows == [
        ["| 0", "lr=a seed=0", "FINISHED"],
        ["| 5", "lr=c seed=0", "FINISHED"],
        ["| 1", "lr=a seed=1", "FINISHED"],
        ["| 6", "lr=c seed=1", "FINISHED"],
        ["| 2", "lr=b seed=0", "FINISHED (not ranked)"],
        ["| 3", "lr=b seed=1", "FAILED: "],
        ["| 4", "lr=c seed=0", "FAILED: "],
    ]
    assert table.endswith(
        "\nnot ranked: another run of its configuration (the same settings but the seed) "
        "failed or was not run; only complete configurations are ranked"
    )
    assert "not ranked" not in summary_table(outcomes[:2], {"lr", "seed"})
    # Seeds alone, one diverged: no configuration is complete, and none better to choose.
    assert "not ranked" not in summary_table(outcomes[2:4], {"lr", "seed"})


def test_a_stopped_sweeps_summary_ranks_no_configuration_short_of_a_seed() -> None:
    def run(job: int, overrides: str, loss: float) -> RunOutcome:
        metrics = {**_METRICS, "best_val_loss": loss}
        return RunOutcome(job, overrides.split(), "FINISHED", "", 1.0, f"r{job}", metrics)

    # Stopped before tanh's seed 1 and relu's seeds: tanh's one lucky seed is no mean of two.
    outcomes = [
        run(0, "act=sigmoid seed=0", 0.23),
        run(1, "act=sigmoid seed=1", 0.22),
        run(2, "act=tanh seed=0", 0.13),
    ]
    table = summary_table(outcomes, {"act", "seed"})
    rows = [line.split(" | ")[:3] for line in table.splitlines()[2:] if line.startswith("| ")]
    assert rows == [
        ["| 1", "act=sigmoid seed=1", "FINISHED"],
        ["| 0", "act=sigmoid seed=0", "FINISHED"],
        ["| 2", "act=tanh seed=0", "FINISHED (not ranked)"],
    ]
    assert "failed or was not run" in table
    # Stopped before any configuration had every seed: each without a failure is ranked.
    assert "not ranked" not in summary_table(outcomes[1:], {"act", "seed"})


def test_a_resumed_sweeps_summary_holds_the_runs_finished_before_marked_so() -> None:
    metrics = {**_METRICS, "best_val_loss": 0.25}
    new = RunOutcome(1, ["seed=1"], "FINISHED", "max_epochs", 1.0, "r1", metrics)
    before = RunOutcome(0, ["seed=0"], "FINISHED", "max_epochs", 2.0, "r0", metrics)
    rows = summary_table([new], {"seed"}, before=[before]).splitlines()[2:]
    assert rows == [
        "| 1 | seed=1 | FINISHED | 0.2500 | 0.9000 | 0.8000 | 3 | 1.0 |",
        "| 0 | seed=0 | FINISHED (before) | 0.2500 | 0.9000 | 0.8000 | 3 | 2.0 |",
    ]


def test_a_resumed_sweep_still_ranks_no_run_of_a_configuration_that_failed_again() -> None:
    # The runs finished before read back their overrides as run then, without resume=true or
    # this command's tracking.* keys: the same configuration all the same.
    def run(job: int, overrides: str, loss: float | None, status: str = "FINISHED") -> RunOutcome:
        metrics = {} if loss is None else {**_METRICS, "best_val_loss": loss}
        return RunOutcome(job, overrides.split(), status, "", 1.0, f"r{job}", metrics)

    this_command = "resume=true tracking.experiment=sweeper"
    before = [run(0, "lr=a seed=0", 0.1), run(1, "lr=a seed=1", 0.2), run(3, "lr=b seed=0", 0.3)]
    now = [
        run(2, f"lr=a seed=2 {this_command}", None, "FAILED"),
        run(4, f"lr=b seed=1 {this_command}", 0.4),
    ]
    table = summary_table(now, {"lr", "seed"}, before=before)
    rows = [line.split(" | ")[:3] for line in table.splitlines()[2:] if line.startswith("| ")]
    assert rows == [
        ["| 3", "lr=b seed=0", "FINISHED (before)"],
        ["| 4", "lr=b seed=1", "FINISHED"],
        ["| 0", "lr=a seed=0", "FINISHED (before, not ranked)"],
        ["| 1", "lr=a seed=1", "FINISHED (before, not ranked)"],
        ["| 2", "lr=a seed=2", "FAILED: "],
    ]
    assert table.endswith(
        "\nnot ranked: another run of its configuration (the same settings but the seed) "
        "failed or was not run; only complete configurations are ranked"
    )


# What a finished run logs as it ends, which a resumed sweep's summary reads back.
_FINAL = {"best_val_loss": 0.25, "best_val_acc": 0.9, "test_acc": 0.8, "epochs_run": 3.0}


def _sweep_in_a_store(tmp_path: Path) -> tuple[str, str, str]:
    """A new store in ``tmp_path``: its URI, its experiment, and a sweep's parent run there."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = prepare_store(uri, "sweeper")
    return uri, experiment_id, start_sweep_run(uri, experiment_id, "s", "", "sweep")


def test_a_resumed_sweep_reads_back_its_finished_runs_with_their_final_metrics(
    tmp_path: Path,
) -> None:
    uri, experiment_id, parent = _sweep_in_a_store(tmp_path)
    client = MlflowClient(uri)
    tags = {"overrides": "seed=0", "job": "0", "config_hash": "h0"}
    kept = add_child_run(client, experiment_id, parent, "kept", tags=tags, **_FINAL)
    # Ended FINISHED without the final metrics (its end was never logged), or failed: not kept.
    add_child_run(client, experiment_id, parent, "bare", tags={"config_hash": "h1"})
    add_child_run(client, experiment_id, parent, "failed", "FAILED", {"config_hash": "h2"})
    (before,) = finished_before(uri, experiment_id, parent, ["h0", "h1", "h2"])
    assert (before.run_id, before.number, before.overrides, before.status) == (
        kept,
        "0",
        ["seed=0"],
        "FINISHED",
    )
    assert (
        summary_table([], {"seed"}, [before])
        .splitlines()[2]
        .startswith("| 0 | seed=0 | FINISHED (before) | 0.2500 | 0.9000 | 0.8000 | 3 |")
    )


def test_a_grown_grids_resume_numbers_the_runs_finished_before_as_its_own_jobs(
    tmp_path: Path,
) -> None:
    # seed=0,1 ran as jobs 0 and 1; activation=a,b seed=0,1 plans (a,0) (a,1) (b,0) (b,1),
    # so (b,0), job 2 now, must not show as #0 beside the new job 0.
    uri, experiment_id, parent = _sweep_in_a_store(tmp_path)
    client = MlflowClient(uri)
    for job, seed in enumerate("01"):
        tags = {"overrides": f"seed={seed}", "job": str(job), "config_hash": f"b{seed}"}
        add_child_run(client, experiment_id, parent, f"b{seed}", tags=tags, **_FINAL)
    before = finished_before(uri, experiment_id, parent, ["a0", "a1", "b0", "b1"])
    assert sorted((o.number, o.overrides) for o in before) == [
        ("2", ["seed=0"]),
        ("3", ["seed=1"]),
    ]


def test_a_failed_gradient_check_is_in_the_runs_line_and_listed_after_the_summary() -> None:
    failed = "max |diff| 9.6e-06 > tol 1e-12"
    checked = RunOutcome(0, ["seed=0"], "FINISHED", "max_epochs", 1.0, "r0", _METRICS)
    unchecked = RunOutcome(1, ["seed=1"], "FINISHED", "max_epochs", 1.0, "r1", _METRICS)
    checked.gradcheck = failed
    diverged = RunOutcome(2, ["seed=2"], "FAILED", "diverged at epoch 1 (loss=nan)", 1.0, "r2")
    diverged.gradcheck = failed
    assert describe(checked, {"seed"}) == (
        "#0 seed=0: best_val_acc=0.9000 test_acc=0.8000 epochs=3 1.0s; "
        "gradient check FAILED: max |diff| 9.6e-06 > tol 1e-12"
    )
    assert describe(diverged, {"seed"}) == (
        "#2 seed=2: FAILED: diverged at epoch 1 (loss=nan); "
        "gradient check FAILED: max |diff| 9.6e-06 > tol 1e-12"
    )
    assert describe(unchecked, {"seed"}).endswith("epochs=3 1.0s")
    assert failed_checks([checked, unchecked, diverged], {"seed"}) == (
        "Gradient check FAILED in 2 runs:\n"
        "  #0 seed=0: max |diff| 9.6e-06 > tol 1e-12\n"
        "  #2 seed=2: max |diff| 9.6e-06 > tol 1e-12"
    )
    assert failed_checks([unchecked], {"seed"}) == ""


def test_a_run_cut_short_is_not_counted_as_failed(tmp_path: Path) -> None:
    # Ctrl-C or SIGTERM: the summary says "0 failed, 1 not run or cut short", and so does this.
    out = io.StringIO()
    monitor = ProgressMonitor(tmp_path, 2, {"seed"}, out=out)
    finish(tmp_path, 0, "KILLED")
    finish(tmp_path, 1, "FAILED")
    monitor.poll()
    lines = out.getvalue().splitlines()
    # Nor done: it did not end, and its time says nothing of a run's.
    assert lines[0].startswith("[0/2 done] 0 failed, 1 cut short, elapsed ")
    assert lines[0].endswith(": KILLED: max_epochs")
    assert lines[1].startswith("[1/2 done] 1 failed, 1 cut short, elapsed ")


def test_the_parents_counts_leave_out_a_job_stopped_before_its_run_existed() -> None:
    # A resumed sweep's job Ctrl-C cut before it opened its MLflow run: no KILLED child.
    outcomes = [
        RunOutcome(0, ["seed=0"], "KILLED", "interrupted (Ctrl-C)", 2.0, "r0"),
        RunOutcome(1, ["seed=1"], "KILLED", "interrupted (Ctrl-C)", 0.1, None),
        RunOutcome(2, ["seed=2"], "FINISHED", "max_epochs", 3.0, "r2", _METRICS),
    ]
    assert (count_runs(outcomes), count_killed(outcomes)) == (2, 1)


def test_elsewhere_than_a_terminal_only_finished_runs_are_printed(tmp_path: Path) -> None:
    out = io.StringIO()
    (tmp_path / "0").mkdir()
    RunProgress(0, ["seed=0"], 30, time.time(), epoch=4, val_acc=0.5).save(tmp_path / "0")
    monitor = ProgressMonitor(tmp_path, 1, {"seed"}, out=out).start()
    monitor.stop()
    assert out.getvalue() == ""


def test_on_a_terminal_each_running_run_has_a_live_line(tmp_path: Path) -> None:
    out = Terminal()
    (tmp_path / "0").mkdir()
    (tmp_path / "1").mkdir()
    RunProgress(0, ["seed=0"], 30, time.time() - 65, epoch=4, val_acc=0.8125).save(tmp_path / "0")
    RunProgress(1, ["seed=1"], 30, time.time()).save(tmp_path / "1")
    monitor = ProgressMonitor(tmp_path, 2, {"seed"}, out=out, interval=60).start()
    monitor.poll()
    drawn = out.getvalue()
    assert "#0 seed=0: epoch 4/30 val_acc=0.8125 1:05" in drawn
    assert "#1 seed=1: epoch 0/30 val_acc=- 0:00" in drawn
    assert "[0/2 done] 0 failed" in drawn and "2 running" in drawn
    finish(tmp_path, 0)
    monitor.stop()
    # The finished run is printed once, and its live line is gone from the last redraw.
    assert out.getvalue().count("#0 seed=0: best_val_acc=0.9000") == 1
    last = out.getvalue().rsplit("[1/2 done]", 1)[-1]
    assert "#0 seed=0: epoch" not in last


def test_on_a_narrow_terminal_a_live_line_cuts_its_label_not_its_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    out = Terminal()
    (tmp_path / "0").mkdir()
    overrides = ["optimizer.lr=0.05", "topology.hidden=[512,512]"]
    RunProgress(0, overrides, 4, time.time() - 3, epoch=3, val_acc=0.9).save(tmp_path / "0")
    monitor = ProgressMonitor(tmp_path, 1, {"optimizer.lr", "topology.hidden"}, out=out).start()
    monitor.poll()
    monitor.stop()
    line = "  #0 optimizer.lr=0.05 topol…: epoch 3/4 val_acc=0.9000 0:03"
    assert len(line) == 60 and line in out.getvalue()
    # Wide enough: the whole label.
    run = RunProgress(0, overrides, 4, _NOW - 3, epoch=3, val_acc=0.9)
    assert running_line(run, {"optimizer.lr", "topology.hidden"}, _NOW, 80) == (
        "  #0 optimizer.lr=0.05 topology.hidden=[512,512]: epoch 3/4 val_acc=0.9000 0:03"
    )


def test_a_search_with_a_time_budget_shows_the_time_left_to_it_not_an_eta() -> None:
    # 10 of 1,000 trials in 10 minutes: at that pace the rest would take 16 hours.
    assert progress_line(10, 1000, 0, 600.0, timeout=3600.0, eta=59400.0) == (
        "[10/1000 done] 0 failed, elapsed 10:00, no new trial after 50:00"
    )
    assert progress_line(0, 1000, 0, 0.0, timeout=60.0).endswith("no new trial after 1:00")
    assert progress_line(10, 1000, 1, 4000.0, timeout=3600.0).endswith("no new trial after 0:00")
    # The trials run out first: the ETA as without a budget.
    assert progress_line(10, 20, 0, 600.0, timeout=3600.0, eta=600.0).endswith("ETA 10:00")
    assert progress_line(10, 20, 0, 600.0, eta=600.0).endswith("ETA 10:00")
    # No ETA yet: the time left to the budget, else none.
    assert progress_line(10, 20, 0, 600.0, timeout=3600.0).endswith("no new trial after 50:00")
    assert progress_line(10, 20, 0, 600.0).endswith("ETA ?")


# The clock of the ETA's tests: runs started so many seconds before it.
_NOW = 1_000_000.0


def _running(seconds: float, epoch: int = 0, epochs: int = 30) -> RunProgress:
    return RunProgress(0, ["seed=0"], epochs, _NOW - seconds, epoch=epoch)


def test_the_eta_counts_the_runs_in_progress_and_the_slots() -> None:
    # 64 runs of 60 s, 16 at a time: the first ended, the other 15 of its wave half-way, 30 s
    # to go. Three waves are left to start: 3:30 (the pace since the start said 63 minutes).
    assert eta_seconds(63, [60.0], [_running(30.0, 15)] * 15, 16, _NOW) == pytest.approx(210.0)
    assert progress_line(1, 64, 0, 60.0, eta=210.0).endswith("ETA 3:30")
    # A run is not split across slots: one left to start after 8 nearly done, 10 + 600 s; one
    # just started with 7 slots idle, its 600 s (the work spread over 8 slots said 75 s).
    nearly_done = [_running(590.0, 59, 60)] * 8
    assert eta_seconds(9, [600.0] * 8, nearly_done, 8, _NOW) == pytest.approx(610.0)
    assert eta_seconds(1, [600.0] * 8, [_running(0.0)], 8, _NOW) == pytest.approx(600.0)
    assert eta_seconds(0, [10.0], [], 2, _NOW) == 0.0
    assert eta_seconds(2, [10.0], [], 0, _NOW) == pytest.approx(20.0)  # no slot said: one


def test_a_running_run_keeps_its_own_pace_to_its_last_epoch() -> None:
    # Three small runs of 1 s ended; the big one is 3 s in at epoch 1 of 4: 9 s to go, where
    # the mean of the ended runs counted it done (ETA 0:00 until it ended).
    assert eta_seconds(1, [1.0] * 3, [_running(3.0, 1, 4)], 2, _NOW) == pytest.approx(9.0)
    # Before its first epoch, a whole run's time less what it has run.
    assert eta_seconds(1, [10.0], [_running(4.0)], 2, _NOW) == pytest.approx(6.0)


def test_without_a_whole_run_the_eta_comes_from_the_running_runs_paces_or_is_unknown() -> None:
    # The first run diverged at once: 2 running, 2 queued, 2 slots. Before either has finished
    # an epoch nothing tells; once both have (2 s for 1 of 4 epochs), runs of 8 s.
    assert eta_seconds(4, [], [_running(0.6)] * 2, 2, _NOW) is None
    assert eta_seconds(4, [], [_running(2.0, 1, 4)] * 2, 2, _NOW) == pytest.approx(6.0 + 8.0)
    # A run that has spent longer than a whole run on its first epoch: no telling when it ends.
    assert eta_seconds(1, [1.0], [_running(3.0)], 2, _NOW) is None


def _ended(sweep_dir: Path, job: int, status: str, reason: str, trial: str | None = None) -> None:
    (sweep_dir / str(job)).mkdir(parents=True, exist_ok=True)
    RunOutcome(job, [f"seed={job}"], status, reason, 1.0, f"r{job}", _METRICS, trial).save(
        sweep_dir / str(job)
    )


def _lines(out: io.StringIO) -> list[str]:
    return [x.split(" | ")[0] for x in out.getvalue().splitlines() if x.startswith("[")]


def test_the_monitor_estimates_from_its_runs_that_trained_all_their_epochs(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    (tmp_path / "3").mkdir()
    RunProgress(3, ["seed=3"], 4, time.time() - 3, epoch=1).save(tmp_path / "3")
    monitor = ProgressMonitor(tmp_path, 4, {"seed"}, out=out, interval=60).start()
    for job in range(3):
        finish(tmp_path, job)  # of 1 s
    monitor.stop()
    # The last runs' line: the one running has 9 s to go at its pace.
    assert _lines(out)[-1] == "[3/4 done] 0 failed, elapsed 0:00, ETA 0:09"


def test_runs_that_failed_or_were_pruned_are_no_measure_of_a_whole_run(tmp_path: Path) -> None:
    out = io.StringIO()
    for job in (3, 4):
        (tmp_path / str(job)).mkdir()
        RunProgress(job, [f"seed={job}"], 4, time.time() - 0.6).save(tmp_path / str(job))
    monitor = ProgressMonitor(tmp_path, 6, {"seed"}, out=out, interval=60).start()
    monitor.poll()  # two running: two slots
    _ended(tmp_path, 0, "FAILED", "diverged at epoch 1 (loss=nan)")
    _ended(tmp_path, 1, "PRUNED", "pruned at epoch 1")
    _ended(tmp_path, 2, "FINISHED", "early_stopping")
    monitor.stop()
    # Each took 1 s, and the two running 0.6 s in have not finished an epoch: no ETA until a
    # run finishes, early stopping as the default does; then theirs 0.4 s, and one more 1 s.
    assert [line.rsplit(", ", 1)[-1] for line in _lines(out)] == ["ETA ?", "ETA ?", "ETA 0:01"]


def test_with_repeats_the_total_falls_by_the_runs_a_search_will_not_run(tmp_path: Path) -> None:
    # 5 trials of 2 seeds: the second seed runs once the first has finished unpruned.
    out = io.StringIO()
    monitor = ProgressMonitor(tmp_path, 10, {"seed"}, out=out, interval=60, repeats=2)
    ended = [
        ("0.0", "FINISHED", "max_epochs"),
        ("1.0", "PRUNED", "pruned at epoch 1"),
        ("0.1", "FINISHED", "max_epochs"),
        ("2.0", "FAILED", "diverged at epoch 1 (loss=nan)"),
        # Asked again, its seeds with it.
        ("3.0", "FAILED", "worker process died (killed by SIGKILL)"),
    ]
    for job, (trial, status, reason) in enumerate(ended):
        _ended(tmp_path, job, status, reason, trial)
        monitor.poll()
    assert [line.split("]")[0] for line in _lines(out)] == [
        "[1/10 done",
        "[2/9 done",
        "[3/9 done",
        "[4/8 done",
        "[5/8 done",
    ]


def test_with_repeats_a_failed_seed_drops_the_seeds_of_its_trial_not_started(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    monitor = ProgressMonitor(tmp_path, 6, {"seed"}, out=out, interval=60, repeats=3)
    _ended(tmp_path, 0, "FINISHED", "max_epochs", "0.0")
    (tmp_path / "1").mkdir()
    RunProgress(1, ["seed=1"], 4, time.time(), trial="0.1").save(tmp_path / "1")
    monitor.poll()
    _ended(tmp_path, 2, "FAILED", "diverged at epoch 1 (loss=nan)", "0.2")
    monitor.poll()  # 0.1 runs on
    _ended(tmp_path, 3, "FINISHED", "max_epochs", "1.0")
    _ended(tmp_path, 4, "FAILED", "diverged at epoch 1 (loss=nan)", "1.1")
    monitor.poll()  # 1.2 had not started
    assert [line.split("]")[0] for line in _lines(out)] == [
        "[1/6 done",
        "[2/6 done",
        "[3/6 done",
        "[4/5 done",
    ]


def test_more_runs_than_planned_show_a_count_and_no_eta() -> None:
    # A search asked a trial whose process died again: three runs of two planned.
    assert progress_line(3, 2, 1, 12.0) == "[3 done] 1 failed, elapsed 0:12"
    assert progress_line(2, 2, 1, 12.0, eta=0.0) == "[2/2 done] 1 failed, elapsed 0:12, ETA 0:00"


def test_a_run_writes_its_progress_at_most_as_often_as_the_view_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: clock[0])
    progress = RunProgress(0, ["seed=0"], 30, time.time())
    report = run.reported_epoch(progress, tmp_path)
    saved = tmp_path / PROGRESS_FILE
    assert RunProgress.load(saved).epoch == 0  # written at once, for the view's first read

    def epoch(number: int, after: float) -> int:
        clock[0] += after
        report(EpochMetrics(number, 0.5, 0.8, 0.6, 0.7 + number / 100, 0.1, 0.01))
        return RunProgress.load(saved).epoch

    assert [epoch(n, PROGRESS_SECONDS / 4) for n in (1, 2, 3)] == [0, 0, 0]
    assert epoch(4, PROGRESS_SECONDS / 4) == 4
    assert RunProgress.load(saved).val_acc == 0.74
    assert epoch(5, 0.0) == 4
    assert epoch(6, PROGRESS_SECONDS) == 6


def test_on_a_terminal_what_the_runs_print_is_shown_above_the_live_lines(tmp_path: Path) -> None:
    out = Terminal()
    (tmp_path / "0").mkdir()
    monitor = ProgressMonitor(tmp_path, 1, {"seed"}, out=out, interval=60).start()
    # The runs started after this find the marker and print to their output file.
    assert (tmp_path / LIVE_FILE).exists()
    (tmp_path / "0" / OUTPUT_FILE).write_text("a warning\npart of a")
    monitor.poll()
    with (tmp_path / "0" / OUTPUT_FILE).open("a") as file:
        file.write(" line\nthe last, unended")
    monitor.poll()
    monitor.stop()
    text = out.getvalue()
    for line in ("a warning", "part of a line", "the last, unended"):
        assert text.count(line) == 1, text
    assert text.index("a warning") < text.index("part of a line") < text.index("the last")
    assert not (tmp_path / LIVE_FILE).exists()


def test_a_sweep_on_a_terminal_keeps_its_runs_warnings_out_of_its_live_lines(
    workdir: Path,
) -> None:
    # 50 training images of the digits: some test features lie far outside the training
    # range, which each run warns about as it starts.
    args = ["-m", "seed=0,1,2,3", "dataset.max_train_samples=50", "train.epochs=5",
            "train.batch_size=1", "gradcheck.enabled=false"]  # fmt: skip
    with OnATerminal(args, workdir) as terminal:
        rc, text = terminal.finish(300)
    assert rc == 0, text
    warnings = re.findall(r"(.{0,8})\[\d{4}-[^\]]+\]\[sweeper\.experiment\]\[WARNING\]", text)
    assert len(warnings) == 4, text
    # Each on a line of its own: at a line's start ("." stops at a newline), or after the live
    # lines were cleared (ESC[2K).
    assert all(before == "" or before.endswith("\x1b[2K") for before in warnings), warnings
