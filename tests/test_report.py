"""`make report` end to end: a real sweep with repeats and a failure, reported from MLflow."""

from __future__ import annotations

import base64
import csv
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.stats
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import FAST, all_runs, child_runs, parent_run, run_cli, store_uri
from helpers import markdown_tables, sweep_of_two_runs
from services import CHROMIUM, CHROMIUM_ARGS, mlflow_service
from sweeper import store_reads
from sweeper.report.__main__ import main as report_main
from sweeper.report.build import build_report, parameter_count
from sweeper.report.compare import compare_sweeps, compare_table
from sweeper.report.confusion import confusion_on_test_set
from sweeper.report.importance import (
    FOREST_SEEDS,
    MIN_FANOVA_CONFIGURATIONS,
    ImportanceUnavailableError,
    param_importances,
)
from sweeper.report.runs import (
    ReportError,
    RunRecord,
    find_sweep,
    kept_runs,
    sweep_runs,
)
from sweeper.report.stats import holm, pareto_front
from sweeper.report.tables import runs_frame
from sweeper.store_reads import metric_curves
from sweeper.ui_links import short_number

# Two keys, two seeds each; relu at lr=1e6 diverges, so two runs fail with a reason.
SWEEP = ["-m", "activation=tanh,relu", "optimizer.lr=0.05,1e6", "seed=0,1", *FAST]
KEYS = ("activation.name", "optimizer.lr")
FIGURES = (
    "parallel_coordinates",
    "pivot_heatmap",
    "pareto",
    "validation_curves",
    "test_accuracy",
    "best_run_curves",
    "confusion_matrix",
)
CURVE_KEYS = ["val_loss", "train_acc"]
FOUR_DECIMALS = {
    "train acc": "best_train_acc",
    "train loss": "best_train_loss",
    "val acc": "best_val_acc",
    "val loss": "best_val_loss",
    "test acc": "test_acc",
}


@dataclass
class Reported:
    workdir: Path
    stdout: str
    directory: Path
    sweep_id: str
    children: list[Run]


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Reported:
    """One sweep shared by the tests, reported from another directory through the
    tracking URI."""
    workdir = tmp_path_factory.mktemp("sweep")
    proc = run_cli(SWEEP, workdir)
    assert proc.returncode == 1, proc.stderr  # the diverged runs
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    env = {**os.environ, "MLFLOW_TRACKING_URI": store_uri(workdir)}
    report = subprocess.run(
        [sys.executable, "-m", "sweeper.report"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.returncode == 0, report.stderr
    runs = all_runs(workdir)
    parent = parent_run(runs)
    sweep_id = parent.data.tags["sweep_id"]
    return Reported(
        workdir, report.stdout, elsewhere / "reports" / sweep_id, sweep_id, child_runs(runs)
    )


def groups(children: list[Run]) -> dict[tuple[str, str], list[Run]]:
    out: dict[tuple[str, str], list[Run]] = {}
    for run in children:
        out.setdefault((run.data.params[KEYS[0]], run.data.params[KEYS[1]]), []).append(run)
    return out


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def finished_values(runs: list[Run], key: str) -> list[float]:
    return [r.data.metrics[key] for r in runs if r.info.status == "FINISHED"]


def test_printed_table_aggregates_seeds_to_mean_and_std(reported: Reported) -> None:
    table = markdown_tables(reported.stdout)[0]
    expected = groups(reported.children)
    finished = {k: v for k, v in expected.items() if finished_values(v, "best_val_loss")}
    order = sorted(
        finished, key=lambda k: statistics.mean(finished_values(finished[k], "best_val_loss"))
    )
    assert [(row["activation.name"], row["optimizer.lr"]) for row in table[: len(order)]] == order
    assert table[0]["#"] == "1 (best)"
    for row in table[: len(order)]:
        runs = finished[(row["activation.name"], row["optimizer.lr"])]
        assert row["n"] == "2"
        assert row["status"] == "FINISHED"
        for column, key in FOUR_DECIMALS.items():
            assert row[column] == mean_std(finished_values(runs, key)), column
    (failed,) = table[len(order) :]
    assert (failed["activation.name"], failed["optimizer.lr"]) == ("relu", "1000000.0")
    assert failed["n"] == "0"
    assert failed["status"].startswith("2 FAILED: diverged at epoch")
    assert "seed" not in table[0]


def test_constant_params_are_listed_once_above_the_table(reported: Reported) -> None:
    intro, table_start = reported.stdout.split("\n| # ", 1)
    constants = re.search(r"Constant params: (.*)\.", intro)
    assert constants is not None
    assert "`train.epochs=3`" in constants.group(1)
    assert "`dataset.name=digits`" in constants.group(1)
    assert "activation.name" not in constants.group(1)
    assert "train.epochs" not in table_start.splitlines()[0]


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm's adjusted p-values, written as the step-down procedure reads in a textbook."""
    m = len(p)
    order = sorted(range(m), key=p.__getitem__)
    adjusted, running = [0.0] * m, 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[i]))
        adjusted[i] = running
    return adjusted


def test_every_configuration_is_tested_against_the_best(reported: Reported) -> None:
    losses = {
        k: finished_values(v, "best_val_loss")
        for k, v in groups(reported.children).items()
        if finished_values(v, "best_val_loss")
    }
    best, *others = sorted(losses, key=lambda k: statistics.mean(losses[k]))
    assert others and all(len(losses[k]) == 2 for k in (best, *others))
    p = [
        float(scipy.stats.ttest_ind(losses[best], losses[k], equal_var=False).pvalue)
        for k in others
    ]
    adjusted = holm_by_hand(p)
    table = {
        (row["activation.name"], row["optimizer.lr"]): row
        for row in markdown_tables(reported.stdout)[0]
    }
    assert table[best]["vs best"] == "best"
    for key, q in zip(others, adjusted, strict=True):
        word = "real" if q < 0.05 else "within noise"
        assert table[key]["vs best"] == f"{word} (p={q:.3g})"
    assert table[("relu", "1000000.0")]["vs best"] == ""  # no finished seed
    n_real = sum(q < 0.05 for q in adjusted)
    verdict = next(x for x in reported.stdout.splitlines() if x.startswith("Best `"))
    assert verdict.startswith(f"Best `activation.name={best[0]} optimizer.lr={best[1]}`")
    assert (
        f"against each of the {len(others)} other configurations with two or more seeds, "
        f"Holm-adjusted: {n_real} worse beyond seed noise" in verdict
    )


def test_holm_matches_the_step_down_procedure() -> None:
    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 30):
        p = list(rng.uniform(0, 0.1, m))
        assert holm(p) == pytest.approx(holm_by_hand(p), abs=1e-15)
    assert list(holm([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def test_pareto_front_is_the_set_of_undominated_points() -> None:
    rng = np.random.default_rng(4)
    cost, accuracy = rng.integers(0, 8, 60).astype(float), rng.integers(0, 8, 60) / 8
    front = pareto_front(cost, accuracy)
    for i in range(60):
        dominated = any(
            cost[j] <= cost[i]
            and accuracy[j] >= accuracy[i]
            and (cost[j] < cost[i] or accuracy[j] > accuracy[i])
            for j in range(60)
        )
        assert front[i] == (not dominated)


def test_parameter_count_of_a_topology() -> None:
    assert parameter_count("[64]", 64, 10) == 65 * 64 + 65 * 10
    assert parameter_count("[112, 112]", 784, 10) == 785 * 112 + 113 * 112 + 113 * 10
    assert parameter_count("[]", 784, 10) == 785 * 10
    assert parameter_count("h64", 784, 10) is None


def test_pivot_crosses_the_two_keys_with_test_accuracy(reported: Reported) -> None:
    pivot = next(
        t for t in markdown_tables(reported.stdout) if "activation.name \\ optimizer.lr" in t[0]
    )
    cells = {row["activation.name \\ optimizer.lr"]: row for row in pivot}
    expected = groups(reported.children)
    assert set(cells) == {"relu", "tanh"}
    assert cells["tanh"]["0.05"] == mean_std(
        finished_values(expected[("tanh", "0.05")], "test_acc")
    )
    assert cells["relu"]["1000000.0"].startswith("2 FAILED")


def test_runs_csv_holds_every_run_as_mlflow_has_it(reported: Reported) -> None:
    with (reported.directory / "runs.csv").open() as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    assert len(rows) == len(reported.children) == 8
    for run in reported.children:
        row = rows[run.info.run_id]
        assert row["status"] == run.info.status
        assert row["reason"] == run.data.tags["reason"]
        for key in (*KEYS, "seed"):
            assert row[key] == run.data.params[key]
        for key, value in run.data.metrics.items():
            if key in row:
                assert float(row[key]) == value, key
    failed = [r for r in rows.values() if r["status"] == "FAILED"]
    assert len(failed) == 2
    assert all(r["reason"].startswith("diverged at epoch") and r["test_acc"] == "" for r in failed)


def test_report_files_and_self_contained_html(reported: Reported) -> None:
    directory = reported.directory
    markdown = (directory / "report.md").read_text()
    for name in FIGURES:
        path = directory / "figures" / f"{name}.png"
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"
        assert f"(figures/{name}.png)" in markdown
    page = (directory / "report.html").read_text()
    sources = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page and 'class="best"' in page
    assert f"Report written to reports/{reported.sweep_id}/" in reported.stdout


def test_confusion_matrix_of_the_best_run_reproduces_its_test_accuracy(
    reported: Reported, tmp_path: Path
) -> None:
    finished = [r for r in reported.children if r.info.status == "FINISHED"]
    by_config = groups(finished)
    best_config = min(
        by_config.values(),
        key=lambda runs: statistics.mean(r.data.metrics["best_val_loss"] for r in runs),
    )
    best = min(best_config, key=lambda r: r.data.metrics["best_val_loss"])
    markdown = (reported.directory / "report.md").read_text()
    assert f"({best.info.run_id})" in markdown
    client = MlflowClient(store_uri(reported.workdir))
    checkpoint = client.download_artifacts(
        best.info.run_id, "checkpoint/best_model.npz", str(tmp_path)
    )
    matrix = confusion_on_test_set(Path(checkpoint), best.data.params)
    assert matrix.sum() == 359  # the embedded digits' test split
    assert matrix.trace() / matrix.sum() == pytest.approx(best.data.metrics["test_acc"], abs=1e-9)
    gradcheck = client.download_artifacts(best.info.run_id, "gradcheck.csv", str(tmp_path))
    header, *rows = Path(gradcheck).read_text().splitlines()
    gradcheck_table = next(t for t in markdown_tables(markdown) if "abs_diff" in t[0])
    assert len(gradcheck_table) == len(rows)
    assert list(gradcheck_table[0]) == header.split(",")


def test_unknown_sweep_names_the_latest(
    reported: Reported, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = report_main(
        [
            "--sweep",
            "no-such-sweep",
            "--tracking-uri",
            store_uri(reported.workdir),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert (
        f"no sweep 'no-such-sweep' in experiment 'sweeper'; the latest are: "
        f"{reported.sweep_id}" in err
    )


def test_a_missing_store_is_reported_not_created(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no MLflow store at sqlite:///"):
        build_report(store_uri(tmp_path), out_dir=tmp_path / "reports")
    assert not (tmp_path / "mlruns").exists()
    # The command ends without the interpreter's teardown: its exit status and words stay.
    command = [sys.executable, "-m", "sweeper.report", "--tracking-uri", store_uri(tmp_path)]
    # In tmp_path: a regression that writes reports/ cannot write it into the repository.
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no MLflow store at sqlite:///")
    assert proc.stdout == ""
    assert not (tmp_path / "mlruns").exists()


def test_a_store_that_is_no_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_text("garbage")
    command = [sys.executable, "-m", "sweeper.report", "--tracking-uri", store_uri(tmp_path)]
    # In tmp_path: a regression that writes reports/ cannot write it into the repository.
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: the store {tmp_path / 'mlruns' / 'mlflow.db'} is not a usable")
    # The command's own option, not the app's tracking.uri.
    assert line.endswith("or set --tracking-uri or MLFLOW_TRACKING_URI to another store")


def test_a_sweep_compared_with_itself_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = store_uri(tmp_path)
    sweep_of_two_runs(uri)
    argv = ["--sweep", "s,s", "--tracking-uri", uri, "--out", str(tmp_path / "reports")]
    assert report_main(argv) == 1
    out = capsys.readouterr()
    assert out.err == (
        "error: --sweep s,s names sweep s twice: A,B compares two different sweeps "
        "(--sweep s reports this one)\n"
    )
    assert out.out == ""
    assert not (tmp_path / "reports").exists()


def test_a_sweep_id_left_empty_is_refused_not_reported_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `make report SWEEP=$A,$B` with B unset.
    uri = store_uri(tmp_path)
    sweep_of_two_runs(uri)
    for given in ("s,", ",s", ""):
        argv = ["--sweep", given, "--tracking-uri", uri, "--out", str(tmp_path / "reports")]
        assert report_main(argv) == 1
        assert capsys.readouterr().err == (
            f"error: --sweep {given!r} has an empty sweep id: give one sweep id, or two (A,B) "
            "to compare them\n"
        )
    assert not (tmp_path / "reports").exists()


def test_a_tracking_server_that_does_not_answer_names_the_commands_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tracking-uri", "http://127.0.0.1:9", "--out", str(tmp_path / "reports")]
    assert report_main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: tracking server http://127.0.0.1:9 not answering (")
    assert line.endswith("is the URI right? (--tracking-uri or MLFLOW_TRACKING_URI)")


def test_a_reports_directory_that_cannot_be_made_is_one_line(
    reported: Reported, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    argv = ["--tracking-uri", store_uri(reported.workdir), "--out", str(tmp_path / "afile" / "r")]
    assert report_main(argv) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the report cannot be written: [Errno 20] Not a directory")


def record(
    config_hash: str, status: str, start_time: int, pruned: bool = False, **metrics: float
) -> RunRecord:
    return RunRecord(
        run_id=f"{config_hash}-{start_time}",
        name="",
        status=status,
        reason="",
        start_time=start_time,
        config_hash=config_hash,
        params={},
        metrics=metrics,
        pruned=pruned,
    )


def test_every_finished_and_pruned_run_stays_and_a_failed_one_until_it_runs_again() -> None:
    # A search drew configuration "a" three times: two runs finished, one was pruned.
    loss = 0.5  # a finished run's best_val_loss, which ranks it
    drawn = [record("a", "FINISHED", 1, best_val_loss=loss)]
    drawn += [
        record("a", "FINISHED", 3, pruned=True),
        record("a", "FINISHED", 5, best_val_loss=loss),
    ]
    # A resume ran "b" again after it failed; "c" failed twice.
    old_failed, resumed = record("b", "FAILED", 2), record("b", "FINISHED", 6, best_val_loss=loss)
    failed_twice = [record("c", "FAILED", 4), record("c", "KILLED", 7)]
    kept = kept_runs([resumed, *failed_twice, old_failed, *drawn])
    assert kept == [drawn[0], drawn[1], drawn[2], resumed, failed_twice[1]]


def test_params_an_optuna_search_drew_show_four_significant_digits() -> None:
    assert short_number("0.09092050849502302") == "0.09092"
    assert short_number("4.311710058685491e-05") == "4.312e-05"
    for as_logged in ("0.05", "1000000.0", "128", "relu", "[512, 512]", "True", "null", ""):
        assert short_number(as_logged) == as_logged


def test_latest_sweep_is_the_newest_parent_run(tmp_path: Path) -> None:
    uri = store_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(uri)
    experiment = client.create_experiment("study", (tmp_path / "artifacts").as_uri())
    for sweep_id, start in (("older", 1_000), ("newer", 2_000)):
        client.create_run(
            experiment,
            start_time=start,
            tags={"kind": "sweep", "sweep_id": sweep_id, "overrides": ""},
        )
    assert find_sweep(client, "study", None).sweep_id == "newer"
    assert find_sweep(client, "study", "older").sweep_id == "older"
    with pytest.raises(ReportError, match="experiment 'sweeper' in the store"):
        find_sweep(client, "sweeper", None)
    with pytest.raises(ReportError, match="has no runs yet"):
        build_report(uri, "study", out_dir=tmp_path / "reports")


def test_single_seed_sweep_lists_runs_and_leaves_out_superseded_ones(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    n = fill_fake_sweep(uri, "one-seed", seeds=1, epochs=3)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None
    # A run that a resumed sweep replaced: same parent and config_hash, started earlier, failed.
    parent = find_sweep(client, "sweeper", "one-seed").parent_run_id
    replaced = client.create_run(
        experiment.experiment_id,
        start_time=1,  # not 0, which MLflow reads as now
        tags={"sweep_id": "one-seed", "config_hash": "relu-0.05-0", "reason": "killed",
              "mlflow.parentRunId": parent},
    )  # fmt: skip
    client.set_terminated(replaced.info.run_id, "FAILED")
    # The runs kept record one commit; the one replaced (killed before it began) none, and a
    # resumed sweep's runs log resume=True: neither splits the sweep.
    for run in child_runs(client.search_runs([experiment.experiment_id])):
        if run.info.run_id != replaced.info.run_id:
            client.set_tag(run.info.run_id, "git_commit", "0123456789abcdef")
            client.log_param(run.info.run_id, "resume", str(run.info.start_time % 2 == 0))

    report = build_report(uri, sweep_id="one-seed", out_dir=tmp_path / "reports")
    assert (
        ": 20 runs (4 failed, 16 finished). Left out: 1 failed or cut-short run, each replaced "
        "by a later run of the same configuration"
    ) in report.summary
    assert "one commit (0123456789ab)" in report.summary
    assert "Provenance differs" not in report.summary
    table, pivot, _ = markdown_tables(report.summary)  # runs, pivot, importance
    assert len(table) == n == 20
    assert "n" not in table[0] and "seed" not in table[0] and "resume" not in table[0]
    assert [row["#"] for row in table[:2]] == ["1 (best)", "2"]
    # The largest learning rate fails for every activation: last, with the reason.
    assert [row["status"] for row in table[-4:]] == ["FAILED: diverged at epoch 1 (loss=nan)"] * 4
    assert all(row["#"] == "-" and row["optimizer.lr"] == "0.2" for row in table[-4:])
    assert len(pivot) == 4  # activations x learning rates
    with (report.directory / "runs.csv").open() as f:
        assert replaced.info.run_id not in {row["run_id"] for row in csv.DictReader(f)}
    assert "No confusion matrix: the run logged no checkpoint." in (
        (report.directory / "report.md").read_text()
    )


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
)
def test_report_in_a_browser(reported: Reported, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        page.goto((reported.directory / "report.html").as_uri())
        rows = page.locator("table").first.locator("tbody tr")
        assert rows.count() == len(groups(reported.children))
        assert "1 (best)" in rows.first.inner_text()
        loaded = page.eval_on_selector_all(
            "img", "images => images.map(i => i.complete ? i.naturalWidth : 0)"
        )
        assert len(loaded) == len(FIGURES) and all(width > 0 for width in loaded)
        alts = page.eval_on_selector_all("img", "images => images.map(i => i.alt)")
        for new_figure in (
            "parallel coordinates of every configuration",
            "heatmap of the pivot of test accuracy",
            "test accuracy against its costs",
        ):
            assert new_figure in alts
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [10, 50])
def test_report_over_hundreds_of_runs(tmp_path: Path, seeds: int) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    n = fill_fake_sweep(uri, "fake", seeds=seeds)
    start = time.perf_counter()
    report = build_report(uri, sweep_id="fake", out_dir=tmp_path / "reports")
    print(f"report of {n} runs in {time.perf_counter() - start:.1f}s")
    with (report.directory / "runs.csv").open() as f:
        assert len(list(csv.DictReader(f))) == n == 20 * seeds
    assert len(markdown_tables(report.summary)[0]) == 20  # 4 activations x 5 learning rates


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 4 activations x 5 learning rates x 3 seeds fake sweep (no artifacts), reported."""
    from fake_store import fill_fake_sweep

    root = tmp_path_factory.mktemp("fake")
    uri = store_uri(root)
    fill_fake_sweep(uri, "fake", seeds=3, epochs=3)
    report = build_report(uri, sweep_id="fake", out_dir=root / "reports")
    return uri, report.directory


def test_importance_of_the_complete_grid_is_exact_on_the_means_over_seeds(
    fake_report: tuple[str, Path],
) -> None:
    uri, directory = fake_report
    client = MlflowClient(uri)
    runs = [
        r
        for r in client.search_runs(
            [client.get_experiment_by_name("sweeper").experiment_id],  # type: ignore[union-attr]
            "tags.sweep_id = 'fake'",
        )
        if r.data.tags.get("kind") != "sweep"
    ]
    losses: dict[tuple[str, str], list[float]] = {}
    for r in runs:
        key = (r.data.params["activation.name"], r.data.params["optimizer.lr"])
        losses.setdefault(key, []).append(r.data.metrics.get("best_val_loss", math.nan))
    # Only complete configurations: the largest rate's last seed failed under each activation,
    # which leaves a full 4 x 4 grid.
    means = {k: statistics.mean(v) for k, v in losses.items() if not any(map(math.isnan, v))}
    assert len(means) == 16
    grand = statistics.mean(means.values())
    total = statistics.mean((m - grand) ** 2 for m in means.values())

    def share(position: int) -> float:
        levels = {key[position] for key in means}
        marginal = [
            statistics.mean(m for k, m in means.items() if k[position] == v) for v in levels
        ]
        return statistics.mean((m - grand) ** 2 for m in marginal) / total

    expected = {"activation.name": share(0), "optimizer.lr": share(1)}
    expected["(interactions)"] = 1 - sum(expected.values())
    markdown = (directory / "report.md").read_text()
    table = next(t for t in markdown_tables(markdown) if "importance" in t[0])
    assert [row["parameter"] for row in table] == [
        "optimizer.lr",
        "activation.name",
        "(interactions)",
    ]
    for row in table:
        assert row["importance"] == f"{expected[row['parameter']]:.3f}"
    assert "of the 16 complete configurations, every combination" in markdown
    assert "(figures/importance.png)" in markdown


def _searched(n: int) -> pd.DataFrame:
    """``n`` complete configurations a search drew (no grid): the rate matters, the
    activation a little, best first as the report hands them over."""
    rng = np.random.default_rng(3)
    lr = rng.uniform(0.01, 0.2, size=n)
    activation = rng.choice(["relu", "tanh"], size=n)
    loss = 10 * (lr - 0.05) ** 2 + 0.01 * (activation == "relu") + rng.uniform(0, 0.001, n)
    configs = pd.DataFrame(
        {
            "activation.name": activation,
            "optimizer.lr": [str(v) for v in lr],
            "best_val_loss_mean": loss,
            "complete": True,
        }
    )
    return configs.sort_values("best_val_loss_mean").reset_index(drop=True)


def test_a_searchs_importance_is_fanova_over_several_forests() -> None:
    configs = _searched(MIN_FANOVA_CONFIGURATIONS)
    keys = ["activation.name", "optimizer.lr"]
    result = param_importances(configs, keys)
    assert not result.exact
    space = {
        "activation.name": optuna.distributions.CategoricalDistribution(["relu", "tanh"]),
        "optimizer.lr": optuna.distributions.FloatDistribution(
            float(configs["optimizer.lr"].astype(float).min()),
            float(configs["optimizer.lr"].astype(float).max()),
        ),
    }
    study = optuna.create_study()
    study.add_trials(
        [
            optuna.trial.create_trial(
                params={"activation.name": a, "optimizer.lr": float(lr)},
                distributions=space,
                value=v,
            )
            for a, lr, v in zip(
                configs["activation.name"],
                configs["optimizer.lr"],
                configs["best_val_loss_mean"],
                strict=True,
            )
        ]
    )
    forests = [
        optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed)
        )
        for seed in FOREST_SEEDS
    ]
    assert len(forests) > 1
    for key in keys:
        values = [forest[key] for forest in forests]
        assert result.shares[key] == pytest.approx(statistics.mean(values))
        assert result.spread is not None
        assert result.spread[key] == pytest.approx(statistics.stdev(values))
    assert list(result.shares.index) == ["optimizer.lr", "activation.name"]


def test_a_search_of_too_few_configurations_gets_no_importance() -> None:
    n = MIN_FANOVA_CONFIGURATIONS - 1
    with pytest.raises(ImportanceUnavailableError) as raised:
        param_importances(_searched(n), ["activation.name", "optimizer.lr"])
    assert str(raised.value) == (
        f"the {n} complete configurations are not every combination of the parameters' "
        "values (a full grid, whose shares are exact), and fANOVA's estimate needs at least "
        f"{MIN_FANOVA_CONFIGURATIONS} (with fewer, a parameter without effect gets a sizeable "
        "share)"
    )


def test_importance_needs_enough_configurations(reported: Reported) -> None:
    # 2 x 2 configurations, one with a diverged seed: the 3 complete ones are no grid.
    markdown = (reported.directory / "report.md").read_text()
    assert (
        "No importance: the 3 complete configurations are not every combination of the "
        "parameters' values (a full grid, whose shares are exact), and fANOVA's estimate "
        f"needs at least {MIN_FANOVA_CONFIGURATIONS}" in markdown
    )


def test_a_pruned_run_is_kept_apart(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "pruned", seeds=2, epochs=3)
    client = MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("sweeper").experiment_id],  # type: ignore[union-attr]
        "tags.config_hash = 'tanh-0.01-0'",
    )
    client.set_tag(run.info.run_id, "status", "PRUNED")
    client.set_tag(run.info.run_id, "reason", "pruned at epoch 3")
    report = build_report(uri, sweep_id="pruned", out_dir=tmp_path / "reports")
    configs, pruned = markdown_tables(report.summary)[:2]
    tanh = next(r for r in configs if (r["activation.name"], r["optimizer.lr"]) == ("tanh", "0.01"))
    assert tanh["n"] == "1"
    assert "## Pruned runs: stopped early by the search, not ranked" in report.summary
    assert [(r["#"], r["status"], r["run id"]) for r in pruned] == [
        ("-", "PRUNED: pruned at epoch 3", run.info.run_id)
    ]
    with (report.directory / "runs.csv").open() as f:
        rows = {row["run_id"]: row for row in csv.DictReader(f)}
    assert rows[run.info.run_id]["status"] == "PRUNED"
    page = (report.directory / "report.html").read_text()
    assert page.count('<tr class="muted">') == 2  # in the pruned table and among every run


def test_two_sweeps_side_by_side_by_config_hash(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "before", seeds=2, epochs=3)
    fill_fake_sweep(uri, "after", seeds=2, epochs=3, values_seed=1)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sweeper")
    assert experiment is not None

    def finished(sweep: str) -> dict[str, Run]:
        runs = client.search_runs([experiment.experiment_id], f"tags.sweep_id = '{sweep}'")
        return {
            r.data.tags["config_hash"]: r
            for r in runs
            if r.info.status == "FINISHED" and r.data.tags.get("kind") != "sweep"
        }

    before, after = finished("before"), finished("after")
    for run in child_runs(
        client.search_runs([experiment.experiment_id], "tags.sweep_id = 'after'")
    ):
        client.set_tag(run.info.run_id, "git_commit", "0123456789abcdef")
    code = report_main(
        ["--sweep", "before,after", "--tracking-uri", uri, "--out", str(tmp_path / "reports")]
    )
    assert code == 0
    markdown = (tmp_path / "reports" / "before_vs_after" / "report.md").read_text()
    assert f"{len(before)} finished runs of sweep `before` and sweep `after`" in markdown
    # A difference is the code's only if the two sweeps say what each ran on.
    assert "Sweep `before`: Provenance: every run shares one commit (not recorded)" in markdown
    assert "Sweep `after`: Provenance: every run shares one commit (0123456789ab)" in markdown
    (table,) = markdown_tables(markdown)
    assert len(table) == 20
    for row in table:
        act, lr = (part.split("=")[1] for part in row["configuration"].split())
        pairs = [
            (before[h], after[h]) for h in before if h.startswith(f"{act}-{lr}-") and h in after
        ]
        assert row["n"] == str(len(pairs))
        a = statistics.mean(x.data.metrics["test_acc"] for x, _ in pairs)
        b = statistics.mean(y.data.metrics["test_acc"] for _, y in pairs)
        assert row["test acc before"] == f"{a:.4f}"
        assert row["test acc after"] == f"{b:.4f}"
        assert row["test acc diff"] == f"{b - a:+.4f}"
    client.create_run(
        experiment.experiment_id, tags={"kind": "sweep", "sweep_id": "other", "overrides": ""}
    )
    other = client.create_run(
        experiment.experiment_id, tags={"sweep_id": "other", "config_hash": "elsewhere"}
    )
    client.log_metric(other.info.run_id, "best_val_loss", 1.0)
    client.set_terminated(other.info.run_id)
    with pytest.raises(ReportError, match="share no finished run with the same config_hash"):
        compare_sweeps(uri, "sweeper", ("before", "other"), tmp_path / "reports")


def test_a_configuration_a_sweep_ran_twice_is_matched_once_by_its_mean() -> None:
    # A search may draw one configuration (one config_hash) twice: both its runs are kept.
    def finished(*runs: tuple[str, str, float, float]) -> pd.DataFrame:
        """The finished runs (config_hash, lr, val loss, test acc) as ``runs_frame`` has them."""
        records = [
            RunRecord(
                f"{h}-{i}",
                "",
                "FINISHED",
                "",
                i,
                h,
                {"optimizer.lr": lr},
                {"best_val_loss": loss, "test_acc": acc},
            )
            for i, (h, lr, loss, acc) in enumerate(runs)
        ]
        return runs_frame(records, ["optimizer.lr"])

    a = finished(("h", "0.1", 0.2, 0.9), ("h", "0.1", 0.4, 0.8), ("k", "0.2", 0.5, 0.7))
    b = finished(("k", "0.2", 0.6, 0.6), ("h", "0.1", 0.25, 0.8))
    means = compare_table(a, b)
    assert list(means.index) == ["optimizer.lr=0.1", "optimizer.lr=0.2"]  # a's order
    assert list(means["n"]) == [1, 1]
    assert list(means["best_val_loss_a"]) == pytest.approx([0.3, 0.5])
    assert list(means["best_val_loss_diff"]) == pytest.approx([-0.05, 0.1])
    assert list(means["test_acc_diff"]) == pytest.approx([-0.05, -0.1])


def _fake_curves(uri: str) -> tuple[list[str], dict[str, dict[str, list[tuple[int, float]]]]]:
    """The run ids of the fake sweep at ``uri`` and their curves, asked of the store one run
    and metric at a time."""
    client = MlflowClient(uri)
    run_ids = [r.run_id for r in sweep_runs(client, find_sweep(client, "sweeper", "fake"))]
    return run_ids, {
        run_id: {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
            for key in CURVE_KEYS
        }
        for run_id in run_ids
    }


def test_curves_fetched_in_bulk_are_each_runs_history(
    fake_report: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, _ = fake_report
    run_ids, expected = _fake_curves(uri)
    monkeypatch.setattr(store_reads, "BULK_RUNS", 7)  # several queries of run ids
    assert metric_curves(MlflowClient(uri), run_ids, CURVE_KEYS) == expected
    lengths = sorted(len(c["val_loss"]) for c in expected.values())
    assert lengths == [0] * 4 + [3] * 56  # the failed runs logged no epoch


@pytest.mark.slow
def test_curves_from_a_tracking_server_one_call_per_run(
    fake_report: tuple[str, Path], tmp_path: Path
) -> None:
    uri, _ = fake_report
    run_ids, expected = _fake_curves(uri)
    store = ["server", "--backend-store-uri", uri, "--artifacts-destination", str(tmp_path)]
    with mlflow_service(store, tmp_path / "server.log") as address:
        assert metric_curves(MlflowClient(address), run_ids, CURVE_KEYS) == expected
