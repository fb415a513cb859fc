"""`make report` on the sweeps that used to break it: no spread in the loss, a config group
varied, labels that coincide at 4 digits, pruned and one-epoch runs, odd command lines."""

from __future__ import annotations

import csv
import os
import re
import shlex
import statistics
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import REPO, all_runs, child_runs, parent_run, run_cli, store_uri
from helpers import add_child_run, markdown_tables
from sweeper.names import FINISHED, TEST_ACC
from sweeper.plots import TRAIN_CURVE_LABELS
from sweeper.ranking import RANKED_BY
from sweeper.report.__main__ import main as report_main
from sweeper.report.build import build_report
from sweeper.report.document import Text, to_html
from sweeper.report.figures import parallel_coordinates, train_vs_validation, validation_curves
from sweeper.report.provenance import provenance_summary
from sweeper.report.runs import RunRecord, kept_runs
from sweeper.report.tables import Table, runs_frame, runs_table
from sweeper.store_setup import prepare_store
from sweeper.sweep_runs import best_child_run, describe_run, start_sweep_run
from sweeper.ui_links import sweep_note

SMALL = ["train.epochs=2", "topology.hidden=[16]"]
# What the report says to do where the store it was given is not there, besides a sweep.
ANOTHER_STORE = (
    ", or name another with --tracking-uri (make report STORE=...) or MLFLOW_TRACKING_URI"
)


def sweep(workdir: Path, *overrides: str) -> tuple[str, list[Run]]:
    """Run a small sweep in ``workdir``; its id and its child runs."""
    proc = run_cli(["-m", *overrides, *SMALL], workdir)
    assert proc.returncode == 0, proc.stderr
    runs = all_runs(workdir)
    parent = parent_run(runs)
    return parent.data.tags["sweep_id"], child_runs(runs)


def report(workdir: Path, *args: str) -> str:
    """report.md of the report ``args`` ask for (the latest sweep in ``workdir``'s store)."""
    out = workdir / "reports"
    argv = ["--tracking-uri", store_uri(workdir), "--out", str(out), *args]
    assert report_main(argv) == 0
    (directory,) = out.iterdir()
    assert {p.name for p in directory.iterdir()} >= {"report.md", "report.html", "runs.csv"}
    return (directory / "report.md").read_text()


def constants_line(markdown: str) -> str:
    """The report's line of the params every run shares."""
    (line,) = [line for line in markdown.splitlines() if line.startswith("Constant params")]
    return line


def table_with(markdown: str, header: str) -> list[dict[str, str]]:
    return next(t for t in markdown_tables(markdown) if header in t[0])


def test_no_spread_in_the_loss_is_no_importance_not_a_crash(tmp_path: Path) -> None:
    # Patience and a norm cap that 2 epochs never reach: four configurations, one loss.
    _, runs = sweep(tmp_path, "train.patience=10,20", "regularizer.max_norm=null,1000")
    losses = {r.data.metrics["best_val_loss"] for r in runs}
    assert len(runs) == 4 and len(losses) == 1
    markdown = report(tmp_path)
    assert (
        "No importance: every complete configuration has the same mean validation loss "
        f"({losses.pop():.6g}), so no parameter explains any of its variance." in markdown
    )


def test_a_grids_importance_is_its_exact_functional_anova(tmp_path: Path) -> None:
    # optimizer=sgd,adam activation=tanh,relu, one seed: the activation's means over the
    # optimizers are alike (0.58175, 0.58145), yet fANOVA's forest on 4 points gave it 0.199.
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    overrides = "optimizer=sgd,adam activation=tanh,relu"
    parent = start_sweep_run(uri, experiment_id, "grid", overrides, "sweep")
    client = MlflowClient(uri)
    losses = {("sgd", "relu"): 0.4441, ("sgd", "tanh"): 0.4907,
              ("adam", "tanh"): 0.6722, ("adam", "relu"): 0.7194}  # fmt: skip
    for (optimizer, activation), loss in losses.items():
        add_child_run(
            client,
            experiment_id,
            parent,
            f"optimizer={optimizer} activation={activation}",
            tags={"config_hash": f"{optimizer}-{activation}"},
            params={"optimizer.name": optimizer, "activation.name": activation, "seed": "0"},
            best_val_loss=loss,
            test_acc=1 - loss,
            best_epoch=2,
        )
    client.set_terminated(parent, "FINISHED")
    markdown = report(tmp_path)
    # By hand: mean 0.5816; optimizer means 0.4674, 0.6958, variance 0.1142^2 = 0.013042;
    # activation means 0.58175, 0.58145, variance 0.00015^2; the four losses' variance
    # (0.1375^2 + 0.0909^2 + 0.0906^2 + 0.1378^2) / 4 = 0.013592. Shares 0.9595, 0.0000.
    rows = table_with(markdown, "importance")
    assert [(row["parameter"], row["importance"]) for row in rows] == [
        ("optimizer.name", "0.960"),
        ("activation.name", "0.000"),
        ("(interactions)", "0.040"),
    ]
    assert "of the 4 complete configurations, every combination of the parameters' values" in (
        markdown
    )
    assert "`(interactions)`: the rest, which no parameter explains alone." in markdown


@pytest.fixture(scope="module")
def group_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Run], str]:
    """A config group (four optimizers, which set name, lr and momentum) against an
    activation, reported."""
    workdir = tmp_path_factory.mktemp("group")
    _, runs = sweep(workdir, "optimizer=sgd,momentum,nesterov,adam", "activation=tanh,relu")
    return runs, report(workdir)


def test_a_config_group_is_one_knob_of_the_pivot_and_the_importance(
    group_sweep: tuple[list[Run], str],
) -> None:
    runs, markdown = group_sweep
    assert "## Test accuracy: optimizer x activation.name" in markdown
    pivot = table_with(markdown, "optimizer \\ activation.name")
    cells = {row["optimizer \\ activation.name"]: row for row in pivot}
    assert set(cells) == {"sgd", "momentum", "nesterov", "adam"}
    for run in runs:
        optimizer = run.data.tags["overrides"].split()[0].removeprefix("optimizer=")
        acc = run.data.metrics["test_acc"]
        assert cells[optimizer][run.data.params["activation.name"]] == f"{acc:.4f}"
    importance = table_with(markdown, "importance")
    assert {row["parameter"] for row in importance} == {
        "optimizer",
        "activation.name",
        "(interactions)",
    }
    assert sum(float(row["importance"]) for row in importance) == pytest.approx(1, abs=2e-3)


def test_train_columns_say_they_are_running_means(group_sweep: tuple[list[Run], str]) -> None:
    runs, markdown = group_sweep
    assert {r.data.params["train.eval_train"] for r in runs} == {"running"}
    assert f"The `train acc` and `train loss` columns: {TRAIN_CURVE_LABELS['running']}." in (
        markdown
    )
    figure = train_vs_validation(
        {"train_loss": [(1, 1.0)], "val_loss": [(1, 1.1)], "train_acc": [(1, 0.5)]}
        | {"val_acc": [(1, 0.4)]},
        1,
        "best run",
        TRAIN_CURVE_LABELS["running"],
    )
    legend = figure.axes[0].get_legend()
    assert legend is not None
    assert TRAIN_CURVE_LABELS["running"] in [t.get_text() for t in legend.get_texts()]


def test_seconds_of_a_short_run_show_three_significant_figures(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "short", seeds=1, epochs=2)
    client = MlflowClient(uri)
    finished = [
        r
        for r in child_runs(client.search_runs(["1"], max_results=100))
        if r.info.status == "FINISHED"
    ]
    # What the digits train in (well under a second), at a later step than the fake's 1.0.
    shown = [(0.0123456, "0.0123"), (0.456789, "0.457"), (1.5, "1.5")]
    for run, (value, _) in zip(finished, shown, strict=False):
        client.log_metric(run.info.run_id, "train_seconds", value, step=1)
    built = build_report(uri, sweep_id="short", out_dir=tmp_path / "reports")
    cells = {row["run id"]: row["seconds"] for row in table_with(built.summary, "run id")}
    assert [cells[run.info.run_id] for run in finished[:3]] == [text for _, text in shown]


def test_a_search_gets_no_pivot(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "search", seeds=1, epochs=2)
    client = MlflowClient(uri)
    for number, run in enumerate(child_runs(client.search_runs(["1"], max_results=100))):
        client.set_tag(run.info.run_id, "trial", str(number))
    built = build_report(uri, sweep_id="search", out_dir=tmp_path / "reports")
    assert "Test accuracy:" not in built.summary
    assert not (built.directory / "figures" / "pivot_heatmap.png").exists()
    # Its draws happen to fill a grid (4 x 4 complete configurations): its shares are exact.
    importance = table_with(built.summary, "importance")
    assert [row["parameter"] for row in importance] == [
        "optimizer.lr",
        "activation.name",
        "(interactions)",
    ]


@pytest.fixture(scope="module")
def close_rates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[Run]]:
    """Two learning rates that 4 significant digits cannot tell apart, two seeds each."""
    workdir = tmp_path_factory.mktemp("close")
    sweep_id, runs = sweep(workdir, "optimizer.lr=0.050001,0.050002", "seed=0,1")
    return workdir, sweep_id, runs


def test_configurations_alike_at_four_digits_stay_apart(
    close_rates: tuple[Path, str, list[Run]],
) -> None:
    workdir, _, runs = close_rates
    markdown = report(workdir, "--sweep", close_rates[1])
    table = markdown_tables(markdown)[0]
    assert sorted(row["optimizer.lr"] for row in table) == ["0.050001", "0.050002"]
    assert [row["n"] for row in table] == ["2", "2"]
    for row in table:
        losses = [
            r.data.metrics["best_val_loss"]
            for r in runs
            if r.data.params["optimizer.lr"] == row["optimizer.lr"]
        ]
        mean, std = statistics.mean(losses), statistics.stdev(losses)
        assert row["val loss"] == f"{mean:.4f} ± {std:.4f}"


def test_a_directory_holding_the_store_is_the_store(
    close_rates: tuple[Path, str, list[Run]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workdir, sweep_id, _ = close_rates
    monkeypatch.chdir(workdir)
    out = workdir / "by-directory"
    assert report_main(["--tracking-uri", "mlruns", "--out", str(out)]) == 0
    assert (out / sweep_id / "report.md").is_file()
    capsys.readouterr()
    # A directory with no mlflow.db in it: its mlflow.db, not MLflow's file store, is not there.
    assert report_main(["--tracking-uri", str(out), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"error: no MLflow store at sqlite:///{out / 'mlflow.db'}: run a sweep first (make sweep)"
        f"{ANOTHER_STORE}\n"
    )


def test_the_database_file_is_the_store_and_a_path_to_nothing_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_store import fill_fake_sweep

    fill_fake_sweep(store_uri(tmp_path), "by-file", seeds=1, epochs=2)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "reports"
    assert report_main(["--tracking-uri", "mlruns/mlflow.db", "--out", str(out)]) == 0
    assert (out / "by-file" / "report.md").is_file()
    capsys.readouterr()
    assert report_main(["--tracking-uri", "no/such/dir", "--out", str(out)]) == 1
    missing = tmp_path / "no" / "such" / "dir" / "mlflow.db"
    assert capsys.readouterr().err == (
        f"error: no MLflow store at sqlite:///{missing}: run a sweep first (make sweep)"
        f"{ANOTHER_STORE}\n"
    )
    assert not (tmp_path / "no").exists()


def _make_report_line(*variables: str) -> list[str]:
    """The command `make report` runs with ``variables``, as make would run it, its words."""
    # -n prints the commands without running them; -o: the venv counts as made.
    printed = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed-stamp", "report", *variables],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "STORE"},
    ).stdout
    (line,) = [
        line for line in printed.replace("\\\n", " ").splitlines() if "sweeper.report" in line
    ]
    return shlex.split(line)


def test_make_report_reads_the_store_it_is_given() -> None:
    # make report STORE=... read ./mlruns all the same, unlike make ui and make dashboard.
    store = "sqlite:////home/me/my runs/store/mlflow.db"
    words = _make_report_line(f"STORE={store}")
    assert words[words.index("--tracking-uri") + 1] == store
    # Not given, the report reads MLFLOW_TRACKING_URI, else ./mlruns/mlflow.db, itself.
    assert "--tracking-uri" not in _make_report_line()


def test_help_names_the_real_default_store(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        report_main(["--help"])
    assert "sqlite:///./mlruns/mlflow.db" in " ".join(capsys.readouterr().out.split())


def test_pruned_runs_show_the_metrics_they_reached(tmp_path: Path) -> None:
    from fake_store import fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "pruned", seeds=1, epochs=2)
    client = MlflowClient(uri)
    pruned = child_runs(client.search_runs(["1"], "params.`optimizer.lr` = '0.1'"))
    for run in pruned:
        client.set_tag(run.info.run_id, "status", "PRUNED")
        client.set_tag(run.info.run_id, "reason", "pruned at epoch 2")
    built = build_report(uri, sweep_id="pruned", out_dir=tmp_path / "reports")
    ranked, shown = markdown_tables(built.summary)[:2]
    ids = {r.info.run_id for r in pruned}
    assert not ids & {row["run id"] for row in ranked}
    assert {row["run id"] for row in shown} == ids
    metrics = {r.info.run_id: r.data.metrics for r in pruned}
    for row in shown:
        assert row["#"] == "-"
        assert row["val loss"] == f"{metrics[row['run id']]['best_val_loss']:.4f}"
        assert row["test acc"] == f"{metrics[row['run id']]['test_acc']:.4f}"
    with (built.directory / "runs.csv").open() as f:
        assert {row["run_id"] for row in csv.DictReader(f) if row["status"] == "PRUNED"} == ids


def _drawn(figure: Figure) -> list[tuple[int, str]]:
    """Each line of the loss panel: its number of points and its marker."""
    return [(len(line.get_xdata()), str(line.get_marker())) for line in figure.axes[0].lines]


def test_a_run_pruned_after_one_epoch_is_drawn() -> None:
    kept = {"a": [{"val_loss": [(1, 1.0), (2, 0.8)], "val_acc": [(1, 0.5), (2, 0.6)]}]}
    stopped = [{"val_loss": [(1, 2.0)], "val_acc": [(1, 0.2)]}]
    lines = _drawn(validation_curves(kept, "a", False, stopped))
    # A line through one point draws nothing; a marker does.
    assert sorted(lines) == [(1, "o"), (2, "None")]


def test_bold_markdown_is_strong_in_html() -> None:
    sentence, shared = provenance_summary([{"git_commit": "a" * 40}, {"git_commit": "b" * 40}])
    assert not shared
    page = to_html([Text(sentence)], "provenance")
    assert "<strong>Provenance differs between the runs of this sweep</strong>" in page
    assert "**" not in page


def test_a_table_wider_than_the_page_scrolls_on_its_own() -> None:
    # The configurations table's last columns (vs best, status) stayed off-screen at 1920 px,
    # and the whole page scrolled sideways.
    wide = Table(pd.DataFrame({f"column {i}": ["x" * 40] for i in range(12)}))
    page = to_html([Text("before"), wide], "wide")
    assert page.count('<div class="table"><table>') == page.count("<table>") == 1
    assert "</table></div>" in page
    assert re.search(r"\.table \{[^}]*overflow-x: auto", page)


def test_a_finished_run_without_its_val_loss_is_unranked_everywhere() -> None:
    # One definition of finished (RunRecord.finished): which runs the report keeps and which
    # it ranks agree on a FINISHED run whose val loss never reached the store.
    # Two configurations, so that the one whose run has a val loss is complete and ranked.
    metrics = {RANKED_BY: 0.5, TEST_ACC: 0.9}
    params = {"optimizer.lr": "0.1", "seed": "0"}
    lost = RunRecord("lost", "lost", FINISHED, "", 1, "h", params, {})
    again = RunRecord("again", "again", FINISHED, "", 2, "h", params, metrics)
    only = RunRecord("only", "only", FINISHED, "", 3, "g", {"optimizer.lr": "0.2"}, {})
    kept = kept_runs([lost, again, only])
    assert [r.run_id for r in kept] == ["again", "only"]
    runs = runs_frame(kept, ["optimizer.lr"])
    assert list(runs["run_id"]) == ["again", "only"]
    assert list(runs["finished"]) == [True, False]
    assert list(runs_table(runs, ["optimizer.lr"]).frame["#"]) == ["1 (best)", "-"]


def test_the_best_run_section_is_the_run_of_lowest_loss_even_in_a_worse_configuration(
    tmp_path: Path,
) -> None:
    # The sweep's summary and its model name the run of lowest best_val_loss best; a lucky seed
    # of a worse configuration can be it, and the report's best run must be the same run.
    from fake_store import LEARNING_RATES, fill_fake_sweep

    uri = store_uri(tmp_path)
    fill_fake_sweep(uri, "lucky", seeds=2, epochs=2)
    client = MlflowClient(uri)
    # The largest rate's last seed failed: the others' configurations have both seeds.
    runs = [
        r
        for r in child_runs(client.search_runs(["1"]))
        if r.data.params["optimizer.lr"] != LEARNING_RATES[-1]
    ]
    lowest = min(r.data.metrics[RANKED_BY] for r in runs)
    worst = max(runs, key=lambda r: r.data.metrics[RANKED_BY])
    lucky, params = worst.info.run_id, worst.data.params
    client.log_metric(lucky, RANKED_BY, lowest - 0.01, step=1)
    built = build_report(uri, sweep_id="lucky", out_dir=tmp_path / "reports")
    (heading,) = [
        line
        for line in (built.directory / "report.md").read_text().splitlines()
        if line.startswith("## Best run: ")
    ]
    assert heading.endswith(f"({lucky})")
    assert f"seed={params['seed']}" in heading
    best_configuration = table_with(built.summary, "activation.name")[0]
    assert best_configuration["#"] == "1 (best)"
    knobs = ("activation.name", "optimizer.lr")
    assert [best_configuration[k] for k in knobs] != [params[k] for k in knobs]


def _lucky_seed_of_an_incomplete_configuration(uri: str, sweep_id: str) -> tuple[Run, Run]:
    """``fill_fake_sweep`` of 2 seeds, where the last seed of each configuration of the largest
    rate fails; its first seed under tanh gets the lowest val loss of the sweep. That run,
    and the parent run."""
    from fake_store import LEARNING_RATES, fill_fake_sweep

    fill_fake_sweep(uri, sweep_id, seeds=2, epochs=2)
    client = MlflowClient(uri)
    runs = all_runs_of(client)
    (lucky,) = [
        r
        for r in child_runs(runs)
        if r.data.params["optimizer.lr"] == LEARNING_RATES[-1]
        and r.data.params["activation.name"] == "tanh"
        and r.info.status == FINISHED
    ]
    lowest = min(r.data.metrics.get(RANKED_BY, 9.0) for r in runs)
    client.log_metric(lucky.info.run_id, RANKED_BY, lowest - 0.01, step=1)
    return client.get_run(lucky.info.run_id), parent_run(runs)


def all_runs_of(client: MlflowClient) -> list[Run]:
    return client.search_runs(["1"], max_results=1000)


def _best_run_heading(directory: Path) -> str:
    (heading,) = [
        line
        for line in (directory / "report.md").read_text().splitlines()
        if line.startswith("## Best run: ")
    ]
    return heading


def test_a_configuration_with_a_failed_seed_is_not_ranked_and_holds_no_best_run(
    tmp_path: Path,
) -> None:
    # A grid whose seed diverged (or a search's trial whose run was killed, no retry): the
    # configuration's finished seed has the lowest loss of the sweep, but a mean over fewer
    # seeds is another statistic: its row stays, unranked, after the ranked ones.
    from fake_store import LEARNING_RATES

    uri = store_uri(tmp_path)
    lucky, parent = _lucky_seed_of_an_incomplete_configuration(uri, "diverged")
    built = build_report(uri, sweep_id="diverged", out_dir=tmp_path / "reports")
    table = table_with(built.summary, "activation.name")
    knobs = ("activation.name", "optimizer.lr")
    (row,) = [r for r in table if [r[k] for k in knobs] == ["tanh", LEARNING_RATES[-1]]]
    assert row["#"] == "-"
    assert row["n"] == "1"
    assert row["status"] == "1 FAILED, 1 FINISHED: diverged at epoch 1 (loss=nan)"
    assert row["val loss"] == f"{lucky.data.metrics[RANKED_BY]:.4f}"
    # The 16 complete configurations ranked, then the 4 of the largest rate.
    assert [row["#"] for row in table] == ["1 (best)", *map(str, range(2, 17)), *["-"] * 4]
    assert {row["optimizer.lr"] for row in table[16:]} == {LEARNING_RATES[-1]}
    assert "of the 16 complete configurations, every combination" in built.summary
    # The report's best run is the sweep's (its model, its summary): never the lucky seed.
    best = best_child_run(uri, "1", parent.info.run_id)
    assert best is not None and best.info.run_id != lucky.info.run_id
    assert _best_run_heading(built.directory).endswith(f"({best.info.run_id})")
    assert [best.data.params[k] for k in knobs] == [table[0][k] for k in knobs]
    every_run = table_with((built.directory / "report.md").read_text(), "run id")
    (shown,) = [r for r in every_run if r["run id"] == lucky.info.run_id]
    assert shown["#"] == "-"
    assert every_run[0]["run id"] == best.info.run_id and every_run[0]["#"] == "1 (best)"


def test_a_failed_seed_run_again_to_its_end_completes_its_configuration(tmp_path: Path) -> None:
    # A resumed sweep (or a search asking a killed trial again) reruns a failed seed under its
    # config_hash: the newer finished run supersedes the failed one, and the configuration is
    # ranked; the others of the largest rate, their failed seed not run again, are not.
    from fake_store import LEARNING_RATES

    uri = store_uri(tmp_path)
    lucky, parent = _lucky_seed_of_an_incomplete_configuration(uri, "rerun")
    client = MlflowClient(uri)
    (failed,) = [
        r
        for r in child_runs(all_runs_of(client))
        if r.data.params["activation.name"] == "sigmoid" and r.info.status == "FAILED"
    ]
    # sigmoid's runs of the largest rate, its first seed and its rerun, are now the best
    # complete pair, the lucky seed of tanh's lower still.
    (first,) = [
        r
        for r in child_runs(all_runs_of(client))
        if r.data.params["activation.name"] == "sigmoid"
        and r.data.params["optimizer.lr"] == LEARNING_RATES[-1]
        and r.info.status == FINISHED
    ]
    low = lucky.data.metrics[RANKED_BY]
    client.log_metric(first.info.run_id, RANKED_BY, low + 0.001, step=1)
    rerun = add_child_run(
        client,
        "1",
        parent.info.run_id,
        "sigmoid rerun",
        tags={"config_hash": failed.data.tags["config_hash"]},
        params=dict(failed.data.params),
        best_val_loss=low + 0.002,
        test_acc=0.9,
    )
    best = best_child_run(uri, "1", parent.info.run_id)
    assert best is not None and best.info.run_id == first.info.run_id
    built = build_report(uri, sweep_id="rerun", out_dir=tmp_path / "reports")
    assert _best_run_heading(built.directory).endswith(f"({first.info.run_id})")
    table = table_with(built.summary, "activation.name")
    top = table[0]
    assert (top["#"], top["activation.name"], top["optimizer.lr"]) == (
        "1 (best)",
        "sigmoid",
        LEARNING_RATES[-1],
    )
    assert (top["n"], top["status"]) == ("2", FINISHED)
    assert [row["#"] for row in table[-3:]] == ["-"] * 3
    every_run = table_with((built.directory / "report.md").read_text(), "run id")
    assert {r["run id"] for r in every_run} >= {rerun, first.info.run_id}
    assert failed.info.run_id not in {r["run id"] for r in every_run}


def test_losses_that_span_decades_keep_the_good_configurations_apart() -> None:
    # One diverging configuration: on a linear axis and colour scale, 0.1258 and 0.1613 would
    # meet at the lowest tick in one colour.
    losses = [0.1258, 0.1613, 1358.6]
    figure = parallel_coordinates({"optimizer.lr": ["0.05", "0.1", "1000"]}, losses)
    (ax, _colorbar) = figure.axes
    lines = sorted(ax.get_lines(), key=lambda line: line.get_ydata()[-1])
    (low, low_colour), (middle, middle_colour) = [
        (line.get_ydata()[-1], line.get_color()) for line in lines[:2]
    ]
    assert middle - low > 0.02
    assert low_colour != middle_colour
    assert ax.get_xticklabels()[-1].get_text() == "val loss (log scale)"
    figure = parallel_coordinates({"optimizer.lr": ["0.05", "0.1"]}, losses[:2])
    assert figure.axes[0].get_xticklabels()[-1].get_text() == "val loss"


def test_validation_curves_on_a_log_scale_label_ticks_within_a_decade() -> None:
    kept = {
        "a": [{"val_loss": [(1, 0.21), (2, 0.14)], "val_acc": [(1, 0.9), (2, 0.95)]}],
        "b": [{"val_loss": [(1, 17.7), (2, 9.0)], "val_acc": [(1, 0.1), (2, 0.1)]}],
    }
    (loss_ax, _) = validation_curves(kept, "a", False).axes
    assert loss_ax.get_yscale() == "log"
    labelled = [
        float(t.get_text())
        for t in loss_ax.yaxis.get_majorticklabels()
        if t.get_text() and 0.1 <= t.get_position()[1] <= 0.3
    ]
    assert labelled, "no labelled tick near the best curve (0.14 to 0.21)"


def test_parallel_coordinates_name_drawn_values_as_the_tables_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A search's draws carry 17 digits; the figure's ticks show the tables' 4.
    import concurrent.futures

    from helpers import add_child_run
    from sweeper.report import build
    from sweeper.store_setup import prepare_store
    from sweeper.sweep_runs import start_sweep_run

    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "drawn", "", "sweep")
    client = MlflowClient(uri)
    client.set_tag(parent, "sweep_id", "drawn")
    for i, lr in enumerate(("0.03529190911219516", "0.00023723300729921917", "0.4559684085310095")):
        add_child_run(
            client, experiment_id, parent, f"r{i}", params={"optimizer.lr": lr},
            tags={"config_hash": lr, "sweep_id": "drawn"},
            best_val_loss=0.2 + i, best_val_acc=0.9, test_acc=0.9, test_loss=0.3,
            epochs_run=2, best_epoch=2, train_seconds=1.0,
        )  # fmt: skip
    drawn: list[dict[str, list[str]]] = []

    def recorded(params: dict[str, list[str]], loss: list[float]) -> Figure:
        drawn.append(params)
        return parallel_coordinates(params, loss)

    monkeypatch.setattr(build, "parallel_coordinates", recorded)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        build.build_report(
            uri,
            sweep_id="drawn",
            out_dir=tmp_path / "reports",
            analysis=pool,  # type: ignore[arg-type]
        )
    assert drawn == [{"optimizer.lr": ["0.03529", "0.0002372", "0.456"]}]


def test_a_sweep_whose_every_run_failed_is_reported_without_a_best_run(tmp_path: Path) -> None:
    from helpers import add_child_run
    from sweeper.store_setup import prepare_store
    from sweeper.sweep_runs import best_child_run, start_sweep_run

    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "failed", "", "sweep")
    client = MlflowClient(uri)
    for lr in ("0.05", "0.1"):
        add_child_run(
            client, experiment_id, parent, lr, "FAILED", params={"optimizer.lr": lr},
            tags={"config_hash": lr, "reason": "no such data"},
        )  # fmt: skip
    built = build_report(uri, sweep_id="failed", out_dir=tmp_path / "reports")
    assert "## Best run" not in (built.directory / "report.md").read_text()
    assert [row["#"] for row in table_with(built.summary, "optimizer.lr")] == ["-", "-"]
    assert best_child_run(uri, experiment_id, parent) is None


# A grid of 12 runs (activation x seed), as the command line gave it.
STOPPED_OVERRIDES = ("activation=tanh,relu,sigmoid", "seed=0,1,2,3", "train.epochs=5")
STOPPED_COMMAND = shlex.join(
    ["python", "-m", "sweeper", "-m", "hydra.launcher.n_jobs=1", *STOPPED_OVERRIDES]
)


def _sweep_of_two_tanh_seeds(
    uri: str,
    status: str,
    described: bool = True,
    overrides: tuple[str, ...] = STOPPED_OVERRIDES,
) -> None:
    """Sweep ``stopped`` of ``overrides`` (activation x seed) of which the two runs of tanh's
    first seeds finished, its parent run ``status`` (RUNNING: still open) and, if
    ``described``, its description (``ui_links.sweep_note``) set as the sweep sets it."""
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "stopped", " ".join(overrides), "sweep")
    if described:
        command = shlex.join(
            ["python", "-m", "sweeper", "-m", "hydra.launcher.n_jobs=1", *overrides]
        )
        describe_run(uri, parent, sweep_note(command, {"activation", "seed"}))
    client = MlflowClient(uri)
    for seed, loss in ((0, 0.4), (1, 0.5)):
        add_child_run(
            client,
            experiment_id,
            parent,
            f"activation=tanh seed={seed}",
            tags={"config_hash": f"tanh-{seed}"},
            params={
                "activation.name": "tanh",
                "activation.init": "auto",
                "seed": str(seed),
                "train.epochs": "5",
            },
            best_val_loss=loss,
            test_acc=0.9,
            best_epoch=5,
        )
    if status != "RUNNING":
        client.set_terminated(parent, status)


@pytest.mark.parametrize(
    ("status", "described", "says"),
    [
        (
            "KILLED",
            True,
            "The sweep was stopped before its end (its parent run is KILLED): these are the "
            "runs in so far, not every one it plans. Complete it with: "
            f"`{STOPPED_COMMAND} resume=true`.",
        ),
        (
            "RUNNING",
            True,
            "The sweep is in progress (its parent run is RUNNING): these are the runs in so "
            "far, not every one it plans; report again once it ends. If its command no longer "
            f"runs, complete it with: `{STOPPED_COMMAND} resume=true`.",
        ),
        (
            # Stopped before it described itself: the command is its own overrides'.
            "FAILED",
            False,
            "The sweep's parent run is FAILED (a run failed, or the sweep stopped before its "
            "end): these may be only the runs in so far. Run what failed or did not run with: "
            f"`python -m sweeper -m {' '.join(STOPPED_OVERRIDES)} resume=true`.",
        ),
    ],
)
def test_a_sweep_stopped_or_running_says_its_runs_are_those_in_so_far(
    tmp_path: Path, status: str, described: bool, says: str
) -> None:
    # SIGINT after 2 of 12 runs: the report read as a complete sweep of 2 runs, the
    # activation it sweeps listed as a constant.
    _sweep_of_two_tanh_seeds(store_uri(tmp_path), status, described)
    markdown = report(tmp_path)
    (intro,) = [line for line in markdown.splitlines() if line.startswith("Experiment `")]
    assert intro.endswith(says)
    html = (tmp_path / "reports" / "stopped" / "report.html").read_text()
    assert str(escape(says.split(": `")[0])) in html


@pytest.mark.parametrize(
    ("overrides", "described"),
    [
        (STOPPED_OVERRIDES, False),  # the overrides sweep the activation
        (("+experiment=activation", "seed=0,1,2,3", "train.epochs=5"), True),  # its preset does
    ],
)
def test_a_key_the_sweep_varies_is_no_constant_before_its_other_values_ran(
    tmp_path: Path, overrides: tuple[str, ...], described: bool
) -> None:
    _sweep_of_two_tanh_seeds(store_uri(tmp_path), "KILLED", described, overrides)
    markdown = report(tmp_path)
    # The group's choice is a column; its init, auto under every activation, a constant.
    assert constants_line(markdown) == (
        "Constant params: `activation.init=auto`, `train.epochs=5`."
    )
    assert table_with(markdown, "activation.name")[0]["activation.name"] == "tanh"


L2 = {"regularizer.name": "l2"}


def search_report(
    tmp_path: Path, searched: set[str], epochs: int, trials: list[tuple[str, dict[str, str]]]
) -> str:
    """The report of a finished search of ``searched`` keys with the search preset: one run
    per trial of ``trials`` (its drawn overrides and its params), losses 0.4, 0.5, ..."""
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    overrides = f"+experiment=search train.epochs={epochs}"
    parent = start_sweep_run(uri, experiment_id, "search", overrides, "sweep")
    describe_run(uri, parent, sweep_note(f"python -m sweeper -m {overrides}", searched))
    client = MlflowClient(uri)
    for trial, (drawn, params) in enumerate(trials):
        add_child_run(
            client,
            experiment_id,
            parent,
            drawn,
            tags={
                "config_hash": f"trial-{trial}",
                "trial": str(trial),
                "overrides": f"{overrides} {drawn}",
            },
            params={**params, "seed": "0", "train.epochs": str(epochs)},
            best_val_loss=0.4 + 0.1 * trial,
            test_acc=0.9,
            best_epoch=epochs,
        )
    client.set_terminated(parent, "FINISHED")
    return report(tmp_path)


def test_a_group_a_search_draws_is_no_constant_where_its_trials_drew_one_choice(
    tmp_path: Path,
) -> None:
    # The preset searches regularizer: choice(l2, dropout) and regularizer.lam on its own key;
    # both trials drew l2. regularizer.lam varying is no sign that the group's choice did.
    markdown = search_report(
        tmp_path,
        {"regularizer", "regularizer.lam", "seed"},
        4,
        [
            (f"regularizer=l2 regularizer.lam={lam} seed=0", {**L2, "regularizer.lam": lam})
            for lam in ("0.0001", "0.001")
        ],
    )
    assert constants_line(markdown) == "Constant params: `train.epochs=4`."
    rows = table_with(markdown, "regularizer.lam")
    assert [(row["regularizer.name"], row["regularizer.lam"]) for row in rows] == [
        ("l2", "0.0001"),
        ("l2", "0.001"),
    ]


def test_a_group_a_search_drew_one_choice_of_is_a_column_of_its_choice_alone(
    tmp_path: Path,
) -> None:
    # Every trial drew l2: regularizer.input_p (0.0) and max_norm (None), the same under each
    # choice, were columns that filled every label.
    l2 = {
        **L2,
        "regularizer.lam": "0.0001",
        "regularizer.input_p": "0.0",
        "regularizer.max_norm": "None",
    }
    markdown = search_report(
        tmp_path,
        {"regularizer", "topology.hidden", "seed"},
        3,
        [
            (f"regularizer=l2 topology.hidden={hidden} seed=0", {**l2, "topology.hidden": hidden})
            for hidden in ("[32]", "[64]")
        ],
    )
    rows = table_with(markdown, "topology.hidden")
    assert list(rows[0])[:3] == ["#", "regularizer.name", "topology.hidden"]
    assert "regularizer.input_p" not in rows[0] and "regularizer.max_norm" not in rows[0]
    assert constants_line(markdown) == (
        "Constant params: `regularizer.input_p=0.0`, `regularizer.lam=0.0001`, "
        "`regularizer.max_norm=None`, `train.epochs=3`."
    )


def test_a_resumed_sweep_lists_no_constant_its_runs_differ_in(tmp_path: Path) -> None:
    # Stopped by Ctrl-C after its first run, then resumed: the runs since logged resume=True.
    # That names no configuration, so no column either; tracking.* alike in every run stays.
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(uri, experiment_id, "resumed", "seed=0,1,2 resume=true", "sweep")
    client = MlflowClient(uri)
    for seed, resume, loss in ((0, "False", 0.4), (1, "True", 0.5), (2, "True", 0.6)):
        add_child_run(
            client,
            experiment_id,
            parent,
            f"seed={seed}",
            tags={"config_hash": f"seed-{seed}"},
            params={
                "seed": str(seed),
                "resume": resume,
                "tracking.experiment": "sweeper",
                "train.epochs": "3",
            },
            best_val_loss=loss,
            test_acc=0.9,
            best_epoch=3,
        )
    client.set_terminated(parent, "FINISHED")
    markdown = report(tmp_path)
    assert (
        constants_line(markdown)
        == "Constant params: `tracking.experiment=sweeper`, `train.epochs=3`."
    )
    assert "resume" not in table_with(markdown, "seed")[0]


def test_a_configuration_short_of_a_seed_the_sweep_stopped_before_is_not_ranked(
    tmp_path: Path,
) -> None:
    # activation=sigmoid,tanh,relu seed=0,1, SIGTERM after 3 runs: tanh's seed 1 never
    # started. Its one lucky seed was ranked best, above sigmoid's two ("(n=1)").
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    overrides = "activation=sigmoid,tanh,relu seed=0,1 train.epochs=5"
    parent = start_sweep_run(uri, experiment_id, "stopped", overrides, "sweep")
    client = MlflowClient(uri)
    for activation, seed, loss in (("sigmoid", 0, 0.30), ("sigmoid", 1, 0.32), ("tanh", 0, 0.1368)):
        add_child_run(
            client,
            experiment_id,
            parent,
            f"activation={activation} seed={seed}",
            tags={"config_hash": f"{activation}-{seed}"},
            params={"activation.name": activation, "seed": str(seed), "train.epochs": "5"},
            best_val_loss=loss,
            test_acc=1 - loss,
            best_epoch=5,
        )
    client.set_terminated(parent, "KILLED")
    markdown = report(tmp_path)
    rows = table_with(markdown, "activation.name")
    assert [(r["#"], r["activation.name"], r["n"], r["status"]) for r in rows] == [
        ("1 (best)", "sigmoid", "2", "FINISHED"),
        ("-", "tanh", "1", "1 FINISHED, 1 not run"),
    ]
    assert "## Best run: `activation.name=sigmoid seed=0`" in markdown
    # The sweep's own best run (its model, the UI's) is the report's.
    best = best_child_run(uri, experiment_id, parent)
    assert best is not None and best.data.params["activation.name"] == "sigmoid"


def test_a_finished_sweep_says_nothing_of_runs_in_so_far(tmp_path: Path) -> None:
    _sweep_of_two_tanh_seeds(store_uri(tmp_path), "FINISHED")
    assert "in so far" not in report(tmp_path)


def test_two_sweeps_list_configurations_as_the_first_sweeps_report_ranks_them(
    tmp_path: Path,
) -> None:
    # lr=0.1 has the single best run (0.1) but the worse mean (0.5 against 0.3): its own
    # report ranks lr=0.2 first, and so must the comparison.
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    client = MlflowClient(uri)
    for sweep_id in ("a", "b"):
        parent = start_sweep_run(uri, experiment_id, sweep_id, "optimizer.lr=0.1,0.2", "sweep")
        for lr, seed, loss in (("0.1", 0, 0.1), ("0.1", 1, 0.9), ("0.2", 0, 0.3), ("0.2", 1, 0.3)):
            add_child_run(
                client,
                experiment_id,
                parent,
                f"optimizer.lr={lr} seed={seed}",
                tags={"config_hash": f"{lr}-{seed}"},
                params={"optimizer.lr": lr, "seed": str(seed)},
                best_val_loss=loss,
                test_acc=1 - loss,
                best_epoch=1,
            )
    own = table_with(report(tmp_path, "--sweep", "a"), "optimizer.lr")
    assert [row["optimizer.lr"] for row in own] == ["0.2", "0.1"]
    out = tmp_path / "reports"
    assert report_main(["--tracking-uri", uri, "--out", str(out), "--sweep", "a,b"]) == 0
    (compared,) = markdown_tables((out / "a_vs_b" / "report.md").read_text())
    assert [row["configuration"] for row in compared] == ["optimizer.lr=0.2", "optimizer.lr=0.1"]


def test_a_sweep_of_the_gradient_check_reports_every_runs_check(tmp_path: Path) -> None:
    # The gradcheck preset's question: the check of each activation at each eps.
    uri = store_uri(tmp_path)
    experiment_id = prepare_store(uri, "sweeper")
    parent = start_sweep_run(
        uri, experiment_id, "gc", "activation=tanh,relu gradcheck.eps=a,b", "sweep"
    )
    client = MlflowClient(uri)
    checks = {("tanh", "0.01"): (9.6e-06, 1.0), ("tanh", "1e-05"): (4.1e-11, 1.0),
              ("relu", "0.01"): (1.1e-06, 0.0), ("relu", "1e-05"): (4.0e-11, 1.0)}  # fmt: skip
    for loss, ((activation, eps), (diff, passed)) in enumerate(checks.items()):
        add_child_run(
            client,
            experiment_id,
            parent,
            f"activation={activation} gradcheck.eps={eps}",
            tags={"config_hash": f"{activation}-{eps}"},
            params={"activation.name": activation, "gradcheck.eps": eps},
            best_val_loss=0.3 + loss / 10,
            test_acc=0.9,
            best_epoch=3,
            gradcheck_max_abs_diff=diff,
            gradcheck_passed=passed,
        )
    client.set_terminated(parent, "FINISHED")
    rows = table_with(report(tmp_path), "max abs diff")
    assert [
        (r["activation.name"], r["gradcheck.eps"], r["max abs diff"], r["passed"]) for r in rows
    ] == [
        ("tanh", "0.01", "9.6e-06", "yes"),
        ("tanh", "1e-05", "4.1e-11", "yes"),
        ("relu", "0.01", "1.1e-06", "NO"),
        ("relu", "1e-05", "4e-11", "yes"),
    ]
    with (tmp_path / "reports" / "gc" / "runs.csv").open() as f:
        assert [row["gradcheck_passed"] for row in csv.DictReader(f)] == [
            "1.0",
            "1.0",
            "0.0",
            "1.0",
        ]
