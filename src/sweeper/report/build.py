"""One sweep's report: runs from MLflow to tables, figures and files in ``reports/<sweep>/``."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mlflow.tracking import MlflowClient

from sweeper.data import DatasetError
from sweeper.report.confusion import confusion_on_test_set
from sweeper.report.document import Block, Heading, Image, Text, to_html, to_markdown
from sweeper.report.figures import (
    accuracy_bars,
    confusion_figure,
    save_png,
    train_vs_validation,
    validation_curves,
)
from sweeper.report.provenance import sweep_provenance
from sweeper.report.runs import (
    ReportError,
    RunRecord,
    Sweep,
    download_artifact,
    find_sweep,
    latest_per_config,
    metric_curves,
    open_store,
    sweep_runs,
)
from sweeper.report.tables import (
    SEED,
    Configuration,
    Table,
    configurations,
    configurations_table,
    constant_params,
    has_repeats,
    label,
    noise_verdict,
    pivot_keys,
    pivot_table,
    runs_table,
    sorted_runs,
    varying_keys,
    write_runs_csv,
)
from sweeper.tracking import resolve_tracking_uri

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
RUNS_CSV = "runs.csv"
FIGURES_DIR = "figures"


@dataclass(frozen=True)
class Report:
    sweep: Sweep
    directory: Path
    summary: str  # what the terminal shows: the main table and its verdicts
    files: list[Path]


def _counts(records: list[RunRecord]) -> str:
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(by_status.items()))


def _short_number(cell: str) -> str:
    try:
        return f"{float(cell):.6g}"
    except ValueError:
        return cell


def _gradcheck_table(path: Path) -> Table:
    with path.open(newline="") as f:
        header, *rows = list(csv.reader(f))
    return Table(header, [[_short_number(c) for c in row] for row in rows])


class _FigureWriter:
    """Draws the figures of the finished configurations into ``figures``."""

    def __init__(self, client: MlflowClient, figures: Path) -> None:
        self.client = client
        self.figures = figures
        self.figures.mkdir(parents=True, exist_ok=True)

    def blocks(
        self, configs: list[Configuration], keys: list[str], varying: list[str], repeats: bool
    ) -> list[Block]:
        finished = [c for c in configs if c.finished]
        best_config = finished[0]
        best_run = best_config.best_run()
        run_ids = [r.run_id for c in finished for r in c.finished]
        curves = metric_curves(self.client, run_ids, ["val_loss", "val_acc"])
        curves[best_run.run_id] |= metric_curves(
            self.client, [best_run.run_id], ["train_loss", "train_acc"]
        )[best_run.run_id]
        labels = [label(c.params, keys) for c in finished]
        by_config = {
            lbl: [curves[r.run_id] for r in c.finished]
            for lbl, c in zip(labels, finished, strict=True)
        }
        accuracy = [stat for c in finished if (stat := c.stat("test_acc")) is not None]
        blocks: list[Block] = [
            Heading("Figures"),
            Image(
                save_png(
                    validation_curves(by_config, labels[0], repeats),
                    self.figures / "validation_curves.png",
                ),
                "validation loss and accuracy of every configuration",
            ),
            Image(
                save_png(
                    accuracy_bars(
                        labels,
                        [s.mean for s in accuracy],
                        [s.std for s in accuracy] if repeats else None,
                    ),
                    self.figures / "test_accuracy.png",
                ),
                "test accuracy per configuration",
            ),
            Heading(f"Best run: `{label(best_run, varying)}` ({best_run.run_id})"),
            Image(
                save_png(
                    train_vs_validation(
                        curves[best_run.run_id],
                        int(best_run.metrics["best_epoch"]),
                        f"best run: {label(best_run, varying)}",
                    ),
                    self.figures / "best_run_curves.png",
                ),
                "train and validation curves of the best run",
            ),
        ]
        return blocks + self.best_run_artifacts(best_run)

    def best_run_artifacts(self, run: RunRecord) -> list[Block]:
        blocks: list[Block] = []
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = download_artifact(
                self.client, run.run_id, "checkpoint/best_model.npz", Path(tmp)
            )
            if checkpoint is None:
                blocks.append(Text("No confusion matrix: the run logged no checkpoint."))
            else:
                try:
                    matrix = confusion_on_test_set(checkpoint, run.params)
                except (DatasetError, ValueError, OSError) as err:
                    blocks.append(Text(f"No confusion matrix: {err}"))
                else:
                    accuracy = matrix.trace() / matrix.sum()
                    title = f"test set, {int(matrix.sum())} images, accuracy {accuracy:.4f}"
                    blocks.append(
                        Image(
                            save_png(
                                confusion_figure(matrix, title),
                                self.figures / "confusion_matrix.png",
                            ),
                            "confusion matrix of the best run on the test set",
                        )
                    )
            gradcheck = download_artifact(self.client, run.run_id, "gradcheck.csv", Path(tmp))
            blocks.append(Heading("Gradient check of the best run", 3))
            if gradcheck is None:
                blocks.append(Text("The run logged no gradient check (no gradcheck.csv)."))
            else:
                blocks.append(_gradcheck_table(gradcheck))
        return blocks


def _intro(experiment: str, sweep: Sweep, every_run: int, records: list[RunRecord]) -> Text:
    text = (
        f"Experiment `{experiment}`, parent run `{sweep.parent_run_id}`, overrides "
        f"`{sweep.overrides or '(none)'}`: {len(records)} runs ({_counts(records)})."
    )
    if every_run > len(records):
        text += (
            f" {every_run - len(records)} older run(s) of configurations that were "
            "run again (resume) are left out."
        )
    return Text(text)


def _comparison(
    records: list[RunRecord], varying: list[str], configs: list[Configuration], repeats: bool
) -> list[Block]:
    """The constant params, the main table, the noise verdict and the pivot."""
    keys = [k for k in varying if k != SEED]
    constants = ", ".join(f"`{k}={v}`" for k, v in constant_params(records, varying).items())
    blocks: list[Block] = [Text(f"Constant params: {constants or '(none)'}.")]
    if repeats:
        blocks += [
            Heading(
                "Configurations: mean ± std over seeds (n finished), best validation loss first"
            ),
            configurations_table(configs, keys),
        ]
        finished = [c for c in configs if c.finished]
        if len(finished) > 1:
            blocks.append(Text(noise_verdict(finished[0], finished[1], keys)))
    else:
        blocks += [
            Heading("Runs, best validation loss first"),
            runs_table(sorted_runs(records), varying),
        ]
    crossed = pivot_keys(configs, keys)
    if crossed is not None:
        blocks += [
            Heading(f"Test accuracy: {crossed[0]} x {crossed[1]}"),
            pivot_table(configs, *crossed),
        ]
    return blocks


def build_report(
    tracking_uri: str | None = None,
    experiment: str = "sweeper",
    sweep_id: str | None = None,
    out_dir: Path = Path("reports"),
) -> Report:
    """Write ``report.md``, ``report.html``, ``runs.csv`` and the figures of a sweep (the
    newest in ``experiment`` unless ``sweep_id`` names one) under ``out_dir/<sweep id>/``."""
    client = open_store(resolve_tracking_uri(tracking_uri))
    sweep = find_sweep(client, experiment, sweep_id)
    every_run = sweep_runs(client, sweep)
    records = latest_per_config(every_run)
    if not records:
        raise ReportError(f"sweep {sweep.sweep_id} has no runs yet")
    varying = varying_keys(records, sweep.overrides)
    keys = [k for k in varying if k != SEED]
    configs = configurations(records, keys)
    repeats = has_repeats(configs)
    ordered = sorted_runs(records)
    directory = out_dir / sweep.sweep_id
    directory.mkdir(parents=True, exist_ok=True)

    summary = [
        _intro(experiment, sweep, len(every_run), records),
        Text(sweep_provenance(client, sweep.experiment_id, sweep.sweep_id)[0]),
        *_comparison(records, varying, configs, repeats),
    ]
    blocks: list[Block] = [Heading(f"Sweep {sweep.sweep_id}", 1), *summary]
    if repeats:
        blocks += [Heading("Every run"), runs_table(ordered, varying)]
    if any(c.finished for c in configs):
        writer = _FigureWriter(client, directory / FIGURES_DIR)
        blocks += writer.blocks(configs, keys, varying, repeats)

    markdown = directory / REPORT_MD
    markdown.write_text(to_markdown(blocks, directory))
    page = directory / REPORT_HTML
    page.write_text(to_html(blocks, f"Sweep {sweep.sweep_id}"))
    images = [b.path for b in blocks if isinstance(b, Image)]
    files = [write_runs_csv(ordered, varying, directory / RUNS_CSV), markdown, page, *images]
    return Report(sweep, directory, to_markdown(summary, directory), files)
