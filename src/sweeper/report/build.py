"""One sweep's report: runs from MLflow to tables, figures and files in ``reports/<sweep>/``."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from sweeper.artifacts import CHECKPOINT_ARTIFACT
from sweeper.checkpoint import load_checkpoint
from sweeper.config import HIDDEN
from sweeper.data import DatasetError
from sweeper.experiment import GRADCHECK_FILE
from sweeper.names import (
    BEST_EPOCH,
    CONFIG_HASH_TAG,
    DEFAULT_EXPERIMENT,
    FAILED,
    FINISHED,
    KILLED,
    PRUNED,
    SEED,
    TEST_ACC,
    TRAIN_ACC,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    VAL_ACC,
    VAL_LOSS,
)
from sweeper.plots import TRAIN_CURVE_LABELS
from sweeper.provenance import DATA_DIR_TAG
from sweeper.ranking import RANKED_BY
from sweeper.report import worker
from sweeper.report.confusion import confusion_on_test_set
from sweeper.report.document import Block, Heading, Image, Text, to_html, to_markdown
from sweeper.report.figures import (
    accuracy_bars,
    confusion_figure,
    heatmap,
    importance_bars,
    parallel_coordinates,
    pareto_figure,
    train_vs_validation,
    validation_curves,
)
from sweeper.report.importance import FOREST_SEEDS, Importances
from sweeper.report.provenance import provenance_summary
from sweeper.report.runs import (
    REPORT_STORE_OPTIONS,
    ReportError,
    RunRecord,
    Sweep,
    download_artifact,
    find_sweep,
    kept_runs,
    open_client,
    ran_as_trials,
    ranked_runs,
    sweep_runs,
)
from sweeper.report.stats import ALPHA, VERDICT_START, pareto_front, verdict
from sweeper.report.tables import (
    CONFIG,
    TRAIN_MEASURE,
    Table,
    configurations,
    configurations_table,
    constant_params,
    gradcheck_runs_table,
    knobs,
    pivot_knobs,
    pivot_means,
    pivot_table,
    runs_frame,
    runs_table,
    shown_params,
    varying_keys,
    write_runs_csv,
)
from sweeper.store_reads import metric_curves
from sweeper.store_uri import resolve_tracking_uri
from sweeper.words import plural

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
RUNS_CSV = "runs.csv"
FIGURES_DIR = "figures"
INTERACTIONS = "(interactions)"  # the importance table's row of what no parameter explains

WELCH_EXPLAINED = (
    "How `vs best` is decided: for each configuration with two or more finished seeds, "
    "Welch's t-test (two-sided, unequal variances) compares its validation losses with "
    "those of the best configuration. Testing many configurations at once makes some look "
    "different by chance, so the p-values are adjusted with Holm's step-down correction, "
    f"which keeps the chance of any false `real` below {ALPHA:g}. `real`: the adjusted p is "
    f"below {ALPHA:g}, the gap is larger than seed-to-seed noise explains; `within noise`: "
    "it is not, and more seeds (or none) would be needed to tell the two apart. A "
    "configuration with a run that failed, diverged or was killed, or without a seed the "
    "others ran (a sweep stopped before it), is incomplete: it is neither ranked nor tested."
)


@dataclass(frozen=True)
class Report:
    sweep: Sweep
    directory: Path
    summary: str  # what the terminal shows: the main table and its verdicts
    files: list[Path]


def _counts(records: list[RunRecord]) -> str:
    by_status: dict[str, int] = {}
    for r in records:
        status = PRUNED if r.pruned else r.status
        by_status[status] = by_status.get(status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in sorted(by_status.items()))


def _gradcheck_table(path: Path) -> Table:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)

    def short(cell: str) -> str:
        try:
            return f"{float(cell):.6g}"
        except ValueError:
            return cell

    return Table(frame.map(short))


def parameter_count(hidden: str, d_in: int, n_classes: int) -> int | None:
    """Weights and biases of a ``d_in``-``hidden``-``n_classes`` MLP; None if ``hidden`` is not
    a list of sizes."""
    try:
        sizes = [d_in, *json.loads(hidden), n_classes]
    except (json.JSONDecodeError, TypeError):
        return None
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


class _FigureWriter:
    """Draws the figures of the complete configurations into ``figures``: some here, the
    others in ``worker`` (the analysis process, once its analysis is done) at the same time."""

    def __init__(
        self,
        client: MlflowClient,
        figures: Path,
        keys: list[str],
        crossed: tuple[str, str] | None,
        pool: Executor,
    ) -> None:
        self.client = client
        self.figures = figures
        self.keys = keys
        self.crossed = crossed
        self.pool = pool
        self.drawn_apart: list[Future[Path]] = []
        self.figures.mkdir(parents=True, exist_ok=True)

    def png(
        self, name: str, alt: str, draw: Callable[..., Figure], *args: object, apart: bool = False
    ) -> Image:
        """``draw(*args)`` saved as ``figures/<name>.png``; ``apart``: by the worker, the file
        there once ``wait`` returns."""
        path = self.figures / f"{name}.png"
        if apart:
            self.drawn_apart.append(self.pool.submit(worker.draw, draw, args, path))
        else:
            worker.draw(draw, args, path)
        return Image(path, alt)

    def wait(self) -> None:
        """Until the figures drawn apart are saved; raises what drawing one raised."""
        for drawn in self.drawn_apart:
            drawn.result()

    def curves(
        self,
        runs: pd.DataFrame,
        configs: pd.DataFrame,
        best_run: RunRecord,
        best_label: str,
        repeats: bool,
    ) -> list[Block]:
        ranked = configs[configs["complete"]]
        done = runs[runs["finished"]]
        pruned = runs[runs["pruned"]]
        curves = metric_curves(
            self.client, [*done["run_id"], *pruned["run_id"]], [VAL_LOSS, VAL_ACC]
        )
        curves[best_run.run_id] |= metric_curves(
            self.client, [best_run.run_id], [TRAIN_LOSS, TRAIN_ACC]
        )[best_run.run_id]
        by_config = {
            name: [curves[run_id] for run_id in group["run_id"]]
            for name, group in done.groupby(CONFIG, sort=False)
        }
        by_config = {name: by_config[name] for name in ranked.index}
        best_measure = runs.loc[runs["run_id"] == best_run.run_id, TRAIN_MEASURE].iloc[0]
        return [
            Heading("Figures"),
            self.png(
                "validation_curves",
                "validation loss and accuracy of every configuration",
                validation_curves,
                by_config,
                ranked.index[0],
                repeats,
                [curves[run_id] for run_id in pruned["run_id"]],
            ),
            self.png(
                "test_accuracy",
                "test accuracy per configuration",
                accuracy_bars,
                list(ranked.index),
                list(ranked[f"{TEST_ACC}_mean"]),
                list(ranked[f"{TEST_ACC}_std"]) if repeats else None,
            ),
            Heading(f"Best run: `{best_label}` ({best_run.run_id})"),
            self.png(
                "best_run_curves",
                "train and validation curves of the best run",
                train_vs_validation,
                curves[best_run.run_id],
                int(best_run.metrics[BEST_EPOCH]),
                f"best run: {best_label}",
                TRAIN_CURVE_LABELS[best_measure],
            ),
        ]

    def confusion(self, run: RunRecord, checkpoint: Path | None) -> list[Block]:
        if checkpoint is None:
            return [Text("No confusion matrix: the run logged no checkpoint.")]
        try:
            matrix = confusion_on_test_set(checkpoint, run.params, run.tags.get(DATA_DIR_TAG))
        except (DatasetError, ValueError, OSError) as err:
            return [Text(f"No confusion matrix: {err}")]
        accuracy = matrix.trace() / matrix.sum()
        title = f"test set, {int(matrix.sum())} images, accuracy {accuracy:.4f}"
        return [
            self.png(
                "confusion_matrix",
                "confusion matrix of the best run on the test set",
                confusion_figure,
                matrix,
                title,
            )
        ]

    def gradcheck(self, run_id: str, tmp: Path) -> list[Block]:
        gradcheck = download_artifact(self.client, run_id, GRADCHECK_FILE, tmp)
        blocks: list[Block] = [Heading("Gradient check of the best run", 3)]
        if gradcheck is None:
            return [*blocks, Text(f"The run logged no gradient check (no {GRADCHECK_FILE}).")]
        return [*blocks, _gradcheck_table(gradcheck)]

    def importance(self, result: Importances) -> list[Block]:
        if result.exact:
            label = "share of the variance of the mean validation loss (exact; sums to 1)"
        else:
            label = (
                "fANOVA share of the variance of the mean validation loss (sums to 1), mean "
                f"and std over {len(FOREST_SEEDS)} forests"
            )
        shares = _shares(result)
        draw = (shares, label, result.spread)
        return [self.png("importance", "parameter importance", importance_bars, *draw)]

    def interactions(self, runs: pd.DataFrame, configs: pd.DataFrame) -> list[Block]:
        ranked = configs[configs["complete"]]
        blocks: list[Block] = [Heading("How the choices interact")]
        if self.keys and len(ranked) > 1:
            blocks.append(
                self.png(
                    "parallel_coordinates",
                    "parallel coordinates of every configuration",
                    parallel_coordinates,
                    # As the tables show them: a search's draws to 4 digits, not 17.
                    {k: list(shown_params(ranked[k])) for k in self.keys},
                    list(ranked[f"{RANKED_BY}_mean"]),
                    apart=True,
                )
            )
        if self.crossed is not None:
            blocks += [
                self.png(
                    "pivot_heatmap",
                    "heatmap of the pivot of test accuracy",
                    heatmap,
                    pivot_means(runs, *self.crossed),
                    "mean test accuracy",
                    apart=True,
                ),
            ]
        return blocks if len(blocks) > 1 else []

    def costs(self, configs: pd.DataFrame, layer_sizes: list[int] | None) -> list[Block]:
        """Test accuracy against training seconds and, when the topology varies, against the
        parameter count (input and class sizes from the best run's checkpoint)."""
        ranked = configs[configs["complete"]]
        if len(ranked) < 2:
            return []
        accuracy = ranked[f"{TEST_ACC}_mean"].to_numpy()
        costs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        notes = []
        seconds = ranked[f"{TRAIN_SECONDS}_mean"].to_numpy()
        costs["training seconds (mean)"] = (seconds, pareto_front(seconds, accuracy))
        if layer_sizes is None:
            notes.append("No parameter count: the best run logged no checkpoint.")
        elif HIDDEN not in self.keys:
            count = parameter_count(json.dumps(layer_sizes[1:-1]), layer_sizes[0], layer_sizes[-1])
            notes.append(f"Every configuration has {count:,} parameters (one topology).")
        else:
            counts = [parameter_count(h, layer_sizes[0], layer_sizes[-1]) for h in ranked[HIDDEN]]
            if None not in counts:
                count_arr = np.asarray(counts, dtype=np.float64)
                costs["parameters"] = (count_arr, pareto_front(count_arr, accuracy))
        lines = []
        for name, (cost, front) in costs.items():
            names = ", ".join(
                f"`{c}` ({v:.4g}, {a:.4f})"
                for c, v, a in zip(ranked.index[front], cost[front], accuracy[front], strict=True)
            )
            lines.append(f"Pareto-optimal in test accuracy against {name}: {names}.")
        return [
            Heading("What accuracy costs"),
            Text(" ".join(lines + notes)),
            self.png(
                "pareto",
                "test accuracy against its costs",
                pareto_figure,
                accuracy,
                costs,
                apart=True,
            ),
        ]


def _shares(result: Importances) -> pd.Series:
    """The shares as the table and the figure show them: a grid's with its interactions."""
    if not result.exact:
        return result.shares
    return pd.concat([result.shares, pd.Series({INTERACTIONS: result.interactions})])


def _importance(result: Importances | str) -> list[Block]:
    """The importance section: the table, or why there is none."""
    blocks: list[Block] = [Heading("Which hyperparameter matters")]
    if isinstance(result, str):
        return [*blocks, Text(f"No importance: {result}.")]
    n = result.configurations
    shares = _shares(result)
    if result.exact:
        cells = [f"{v:.3f}" for v in shares]
        text = (
            "Each parameter's share of the variance of the mean validation loss (over seeds) "
            f"of the {n} complete configurations, every combination of the parameters' "
            "values: the variance of its mean loss over its values, divided by the variance "
            "of the configurations' (an exact functional ANOVA). "
            f"`{INTERACTIONS}`: the rest, which no parameter explains alone."
        )
    else:
        assert result.spread is not None
        cells = [f"{v:.3f} ± {e:.3f}" for v, e in zip(shares, result.spread, strict=True)]
        text = (
            f"Optuna's fANOVA estimate from the {n} complete configurations (each one's mean "
            "validation loss over its seeds, handed to Optuna as a completed trial), which "
            "are not every combination of the parameters' values: each parameter's share of "
            "the variance that its random forest explains by that parameter alone, scaled to "
            "sum to 1 (interactions left out), mean ± std over "
            f"{len(FOREST_SEEDS)} forests."
        )
    if result.left_out:
        names = ", ".join(f"`{k}`" for k in result.left_out)
        text += f" Left out, one value in every complete configuration: {names}."
    table = pd.DataFrame({"parameter": shares.index, "importance": cells})
    return [*blocks, Text(text), Table(table)]


def _intro(experiment: str, sweep: Sweep, every_run: int, records: list[RunRecord]) -> Text:
    text = (
        f"Experiment `{experiment}`, parent run `{sweep.parent_run_id}`, overrides "
        f"`{sweep.overrides or '(none)'}`: {plural(len(records), 'run')} ({_counts(records)})."
    )
    if every_run > len(records):
        text += (
            f" Left out: {plural(every_run - len(records), 'failed or cut-short run')}, each "
            "replaced by a later run of the same configuration (a resume, or a search asking "
            "a killed trial again)."
        )
    return Text(text + _unfinished(sweep))


def _unfinished(sweep: Sweep) -> str:
    """Where the sweep's parent run did not finish, that these may be only some of its runs,
    and the command that runs the rest; nothing for a sweep that ran to its end."""
    resume = f"`{sweep.resume_command}`"
    if sweep.status == FINISHED:
        return ""
    if sweep.status == KILLED:
        return (
            f" The sweep was stopped before its end (its parent run is {KILLED}): these are "
            f"the runs in so far, not every one it plans. Complete it with: {resume}."
        )
    if sweep.status == FAILED:
        return (
            f" The sweep's parent run is {FAILED} (a run failed, or the sweep stopped before "
            "its end): these may be only the runs in so far. Run what failed or did not run "
            f"with: {resume}."
        )
    return (
        f" The sweep is in progress (its parent run is {sweep.status}): these are the runs "
        "in so far, not every one it plans; report again once it ends. If its command no "
        f"longer runs, complete it with: {resume}."
    )


def _train_measure(runs: pd.DataFrame) -> Text:
    """How the tables' train accuracy and loss were measured, in the words of the runs' plots
    (``train.eval_train``)."""
    measures = runs[TRAIN_MEASURE].value_counts()
    if len(measures) == 1:
        how = TRAIN_CURVE_LABELS[measures.index[0]]
    else:
        how = "; ".join(
            f"{TRAIN_CURVE_LABELS[m]} in {plural(n, 'run')}" for m, n in measures.items()
        )
    return Text(f"The `train acc` and `train loss` columns: {how}.")


def _comparison(
    runs: pd.DataFrame,
    records: list[RunRecord],
    varying: list[str],
    configs: pd.DataFrame,
    repeats: bool,
    crossed: tuple[str, str] | None,
) -> list[Block]:
    """The constant params, the main table with its verdict, and the pruned runs apart."""
    keys = [k for k in varying if k != SEED]
    constants = ", ".join(f"`{k}={v}`" for k, v in constant_params(records, varying).items())
    blocks: list[Block] = [
        Text(f"Constant params: {constants or '(none)'}."),
        _train_measure(runs),
    ]
    if repeats:
        blocks += [
            Heading(
                "Configurations: mean ± std over seeds (n finished), best validation loss first"
            ),
            configurations_table(configs, keys),
        ]
        if configs["complete"].sum() > 1:
            blocks.append(Text(verdict(configs)))
    else:
        blocks += [
            Heading("Runs, best validation loss first"),
            runs_table(runs[~runs["pruned"]], varying),
        ]
    if runs["pruned"].any():
        blocks += [
            Heading("Pruned runs: stopped early by the search, not ranked"),
            runs_table(runs[runs["pruned"]], varying),
        ]
    checks = gradcheck_runs_table(runs, varying)
    if checks is not None:
        blocks += [Heading("Gradient checks: backprop against central differences"), checks]
    if crossed is not None:
        blocks += [
            Heading(f"Test accuracy: {crossed[0]} x {crossed[1]}"),
            pivot_table(runs, *crossed),
        ]
    return blocks


def build_report(
    tracking_uri: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    sweep_id: str | None = None,
    out_dir: Path = Path("reports"),
    analysis: ProcessPoolExecutor | None = None,
) -> Report:
    """Write ``report.md``, ``report.html``, ``runs.csv`` and the figures of a sweep (the
    newest in ``experiment`` unless ``sweep_id`` names one) under ``out_dir/<sweep id>/``.

    ``analysis``: the worker (``worker.start``), best started before MLflow was imported;
    one is started here otherwise. It analyses the runs while this process draws the figures,
    then draws those the writer hands it, and is shut down when the report is written."""
    client = open_client(resolve_tracking_uri(tracking_uri), elsewhere=REPORT_STORE_OPTIONS)
    sweep = find_sweep(client, experiment, sweep_id)
    with analysis or worker.start() as pool:
        every_run = sweep_runs(client, sweep)
        records = kept_runs(every_run)
        if not records:
            raise ReportError(f"sweep {sweep.sweep_id} has no runs yet")
        varying = varying_keys(records, sweep.overrides, sweep.swept)
        keys = [k for k in varying if k != SEED]
        # The importance and the pivot are over what the command varied: an override key
        # that sets several params (a config group) is one knob.
        knob_params = knobs(keys, sweep.overrides)
        crossed = pivot_knobs(list(knob_params), ran_as_trials(records))
        runs = runs_frame(records, varying, knob_params)
        configs = configurations(runs, list(dict.fromkeys([*keys, *knob_params])))
        # Several seeds of a configuration; the same run drawn again by a search is no repeat.
        repeats = bool((runs[~runs["pruned"]].groupby(CONFIG)[CONFIG_HASH_TAG].nunique() > 1).any())
        analysed = pool.submit(worker.analyse, runs, configs, list(knob_params), repeats)
        directory = out_dir / sweep.sweep_id
        directory.mkdir(parents=True, exist_ok=True)
        writer = _FigureWriter(client, directory / FIGURES_DIR, keys, crossed, pool)
        figures: list[Block] = []
        if configs["complete"].any():
            figures += writer.interactions(runs, configs)
            with tempfile.TemporaryDirectory() as tmp:
                # The ranked run of lowest best_val_loss, which the sweep's summary and model
                # name best (``best_child_run``): not always a seed of the best configuration.
                best_run = ranked_runs(records)[0]
                best_id = best_run.run_id
                best_label = runs.loc[runs["run_id"] == best_id, CONFIG].iloc[0]
                if SEED in varying:
                    best_label += f" {SEED}={best_run.params.get(SEED, '')}"
                checkpoint = download_artifact(client, best_id, CHECKPOINT_ARTIFACT, Path(tmp))
                sizes = None
                # A bad checkpoint: the confusion matrix below says what is wrong with it.
                with contextlib.suppress(ValueError, OSError):
                    if checkpoint is not None:
                        sizes = load_checkpoint(checkpoint)[0].layer_sizes
                figures += writer.costs(configs, sizes)
                figures += writer.curves(runs, configs, best_run, best_label, repeats)
                figures += writer.confusion(best_run, checkpoint)
                figures += writer.gradcheck(best_id, Path(tmp))
        configs, importances = analysed.result()
        writer.wait()

    summary = [
        _intro(experiment, sweep, len(every_run), records),
        Text(provenance_summary([r.tags for r in records])[0]),
        *_comparison(runs, records, varying, configs, repeats, crossed),
    ]
    if configs["complete"].any():
        summary += _importance(importances)
    blocks: list[Block] = [Heading(f"Sweep {sweep.sweep_id}", 1)]
    for block in summary:
        blocks.append(block)
        if isinstance(block, Text) and block.text.startswith(VERDICT_START):
            blocks.append(Text(WELCH_EXPLAINED))  # in the file, not in the terminal
    if repeats:
        blocks += [Heading("Every run"), runs_table(runs, varying)]
    if not isinstance(importances, str):
        blocks += writer.importance(importances)
    blocks += figures

    markdown = directory / REPORT_MD
    markdown.write_text(to_markdown(blocks, directory))
    page = directory / REPORT_HTML
    page.write_text(to_html(blocks, f"Sweep {sweep.sweep_id}"))
    images = [b.path for b in blocks if isinstance(b, Image)]
    files = [write_runs_csv(runs, varying, directory / RUNS_CSV), markdown, page, *images]
    return Report(sweep, directory, to_markdown(summary, directory), files)
