"""The report's figures, drawn on matplotlib ``Figure`` objects (no pyplot, no GUI backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence, Sized
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from sweeper.names import TRAIN_ACC, TRAIN_LOSS, VAL_ACC, VAL_LOSS
from sweeper.store_reads import Curve

# Past this many configurations a legend hides the plot: only the best one is named.
MAX_LEGEND = 12
MAX_BARS = 40
# The width of one character of a "small" tick label.
LABEL_INCHES_PER_CHAR = 0.06
LOG_SCALE_RATIO = 20.0
# Past this many numeric values, a parallel-coordinates axis is a scale, not a list.
MAX_AXIS_TICKS = 12


def save_png(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    return path


def _epoch_axis(ax: Axes) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)


def mean_curve(curves: Sequence[Curve]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and the mean value over the runs that reached each epoch (early stopping
    ends runs at different epochs)."""
    by_epoch: dict[int, list[float]] = {}
    for curve in curves:
        for epoch, value in curve:
            by_epoch.setdefault(epoch, []).append(value)
    epochs = np.array(sorted(by_epoch))
    return epochs, np.array([np.mean(by_epoch[e]) for e in epochs])


def _dot(points: Sized) -> dict[str, str]:
    """A marker for a line of one point (a run stopped after its first epoch), which a line
    alone does not draw."""
    return {"marker": "o"} if len(points) == 1 else {}


def validation_curves(
    curves: Mapping[str, Sequence[Mapping[str, Curve]]],
    best: str,
    repeats: bool,
    pruned: Sequence[Mapping[str, Curve]] = (),
) -> Figure:
    """Validation loss and accuracy per epoch, one line per configuration (``curves`` maps a
    configuration's label to its runs' curves), averaged over seeds when there are repeats;
    runs a pruner stopped early are thin grey lines, one per run."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    named = len(curves) <= MAX_LEGEND
    for (metric, title), ax in zip(
        ((VAL_LOSS, "validation loss"), (VAL_ACC, "validation accuracy")), axes, strict=True
    ):
        for i, run in enumerate(pruned):
            ax.plot(
                [e for e, _ in run[metric]],
                [v for _, v in run[metric]],
                linewidth=0.8,
                color="0.7",
                zorder=1,
                label="pruned" if i == 0 else None,
                **_dot(run[metric]),
            )
        for config_label, runs in curves.items():
            epochs, values = mean_curve([run[metric] for run in runs])
            dot = _dot(epochs)
            if config_label == best:
                ax.plot(
                    epochs,
                    values,
                    linewidth=2.5,
                    color="black",
                    zorder=3,
                    label=f"{config_label} (best)",
                    **dot,
                )
            elif named:
                ax.plot(epochs, values, linewidth=1.2, label=config_label, **dot)
            else:
                ax.plot(epochs, values, linewidth=0.8, color="tab:blue", alpha=0.3, **dot)
        ax.set_title(title + (" (mean over the seeds at each epoch)" if repeats else ""))
        _epoch_axis(ax)
    losses = np.concatenate(
        [np.asarray(line.get_ydata(), dtype=float) for line in axes[0].get_lines()]
    )
    losses = losses[np.isfinite(losses)]
    # One unstable configuration's loss would flatten every other line to zero.
    if _spans_decades(losses):
        axes[0].set_yscale("log")
        # Ticks at 1, 2 and 5 of each decade, labelled: the best lines often lie within one.
        axes[0].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes[0].yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes[0].yaxis.set_minor_formatter(NullFormatter())
    # Below the plots, where a long label (a search's five params) takes the figure's width
    # instead of squeezing the axes.
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize="small", loc="outside lower center")
    return fig


def _spans_decades(values: np.ndarray) -> bool:
    """Whether positive ``values`` span so many times their least that a linear axis would
    flatten all but the largest onto it."""
    return bool(len(values) and values.min() > 0 and values.max() / values.min() > LOG_SCALE_RATIO)


def train_vs_validation(
    curves: Mapping[str, Curve], best_epoch: int, title: str, train_label: str
) -> Figure:
    """The best run's train and validation loss and accuracy per epoch; ``train_label`` says
    how its train curve was measured."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    fig.suptitle(textwrap.fill(title, 110))
    axes = fig.subplots(1, 2)
    for (train, val, name), ax in zip(
        ((TRAIN_LOSS, VAL_LOSS, "cross-entropy"), (TRAIN_ACC, VAL_ACC, "accuracy")),
        axes,
        strict=True,
    ):
        for metric, label in ((train, train_label), (val, "validation")):
            points = curves[metric]
            ax.plot([e for e, _ in points], [v for _, v in points], marker=".", label=label)
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set_ylabel(name)
        _epoch_axis(ax)
        ax.legend()
    return fig


def accuracy_bars(
    labels: Sequence[str], means: Sequence[float], stds: Sequence[float] | None
) -> Figure:
    """Test accuracy per configuration, in report order; error bars are one standard deviation
    over seeds. Only the ``MAX_BARS`` best configurations are drawn."""
    shown = min(len(labels), MAX_BARS)
    # Wide enough for the longest label (a search varies five params) beside 5 inches of bars.
    width = max(9.0, 5.0 + LABEL_INCHES_PER_CHAR * max(map(len, labels[:shown])))
    fig = Figure(figsize=(width, 1.2 + 0.32 * shown), layout="constrained")
    ax = fig.subplots()
    y = np.arange(shown)
    errors = None if stds is None else np.nan_to_num(np.asarray(stds[:shown]))
    bars = ax.barh(y, means[:shown], xerr=errors, capsize=3, color="tab:blue", alpha=0.8)
    ax.bar_label(bars, fmt="%.4f", fontsize="x-small", padding=3)
    ax.set_yticks(y, labels[:shown], fontsize="small")
    ax.invert_yaxis()
    low = min(means[:shown])
    ax.set_xlim(max(0.0, low - 0.1), 1.0)
    ax.set_xlabel("test accuracy" + (" (mean ± std over seeds)" if stds is not None else ""))
    title = "test accuracy, best validation loss first"
    if shown < len(labels):
        title += f" ({shown} best of {len(labels)})"
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def confusion_figure(matrix: np.ndarray, title: str) -> Figure:
    """Counts annotated, colour the fraction of each true class."""
    n = len(matrix)
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="fraction of the true class")
    if n <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize="small",
                color="white" if fractions[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    return fig


def _axis_positions(values: Sequence[str]) -> tuple[np.ndarray, list[float], list[str]]:
    """Where each value sits on a parallel-coordinates axis in [0, 1], with ticks: a numeric
    param with many values on a (log) scale, anything else evenly in value order."""
    unique = sorted(set(values))
    try:
        numbers = np.array([float(v) for v in values])
        order = sorted(unique, key=float)
    except ValueError:
        numbers, order = None, unique
    if numbers is not None and len(order) > MAX_AXIS_TICKS:
        scaled = np.log10(numbers) if numbers.min() > 0 else numbers
        low, high = scaled.min(), scaled.max()
        spread = high - low or 1.0
        ticks = [0.0, 1.0]
        return (scaled - low) / spread, ticks, [f"{numbers.min():.3g}", f"{numbers.max():.3g}"]
    step = 1.0 / max(len(order) - 1, 1)
    where = {v: i * step for i, v in enumerate(order)}
    return np.array([where[v] for v in values]), list(where.values()), list(order)


def parallel_coordinates(params: Mapping[str, Sequence[str]], loss: Sequence[float]) -> Figure:
    """One line per configuration through an axis per varied param and one for its mean
    validation loss, coloured by that loss (darker is lower); the best drawn on top. Losses
    that span decades go on a log scale, axis and colours, as the validation curves do."""
    loss_arr = np.asarray(loss, dtype=np.float64)
    log = _spans_decades(loss_arr)
    names = [*params, "val loss (log scale)" if log else "val loss"]
    fig = Figure(figsize=(max(6.0, 2.2 * len(names)), 4.5), layout="constrained")
    ax = fig.subplots()
    columns, ticks = [], []
    for values in params.values():
        where, positions, labels = _axis_positions(list(values))
        columns.append(where)
        ticks.append((positions, labels))
    low, high = float(loss_arr.min()), float(loss_arr.max())
    scaled = np.log10(loss_arr) if log else loss_arr
    columns.append((scaled - scaled.min()) / ((scaled.max() - scaled.min()) or 1.0))
    ticks.append(([0.0, 1.0], [f"{low:.4g}", f"{high:.4g}"]))
    ys = np.column_stack(columns)
    colours = matplotlib.colormaps["viridis"]
    norm = LogNorm(low, high) if log else Normalize(low, high)
    x = np.arange(len(names))
    for i in np.argsort(-loss_arr, kind="stable"):  # the best last, on top
        ax.plot(x, ys[i], color=colours(norm(loss_arr[i])), alpha=0.8, linewidth=1.2)
    for i, (positions, labels) in enumerate(ticks):
        ax.axvline(i, color="black", linewidth=0.8)
        for y, text in zip(positions, labels, strict=True):
            ax.text(i, y, f" {text}", fontsize="x-small", va="center", ha="left")
    ax.set_xticks(x, names, fontsize="small")
    ax.set_yticks([])
    ax.set_ylim(-0.05, 1.05)
    fig.colorbar(ScalarMappable(norm, colours), ax=ax, label="mean validation loss")
    ax.set_title("every configuration, coloured by mean validation loss")
    return fig


def heatmap(means: pd.DataFrame, title: str) -> Figure:
    """A pivot of mean test accuracy, values annotated; empty cells (no finished run) blank."""
    values = means.to_numpy(dtype=np.float64)
    fig = Figure(figsize=(1.6 + 1.1 * values.shape[1], 1.4 + 0.5 * values.shape[0]))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="mean test accuracy")
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if len(finite) else 0.0
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            colour = "white" if value < middle else "black"
            ax.text(j, i, f"{value:.4f}", ha="center", va="center", fontsize="small", color=colour)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in means.columns], fontsize="small")
    ax.set_yticks(range(values.shape[0]), [str(r) for r in means.index], fontsize="small")
    ax.set_xlabel(str(means.columns.name))
    ax.set_ylabel(str(means.index.name))
    ax.set_title(title)
    return fig


def importance_bars(shares: pd.Series, label: str, spread: pd.Series | None = None) -> Figure:
    """Each share (``Importances.shares``, an interactions row included), largest on top,
    with its spread over fANOVA's forests as error bars where given; ``label`` the x axis."""
    fig = Figure(figsize=(7, 1.2 + 0.4 * len(shares)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(shares))
    errors = None if spread is None else spread.reindex(shares.index).fillna(0).to_numpy()
    bars = ax.barh(y, shares.to_numpy(), xerr=errors, color="tab:blue", alpha=0.8)
    ax.bar_label(bars, fmt="%.3f", fontsize="x-small", padding=3)
    ax.set_yticks(y, list(shares.index), fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(label)
    return fig


def pareto_figure(
    accuracy: Sequence[float], costs: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> Figure:
    """Test accuracy against each cost (``costs``: axis label to values and Pareto mask),
    one panel each, the Pareto-optimal configurations circled and joined."""
    fig = Figure(figsize=(5.5 * len(costs), 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(costs)))
    acc = np.asarray(accuracy, dtype=np.float64)
    for ax, (name, (cost, front)) in zip(axes, costs.items(), strict=True):
        c = np.asarray(cost, dtype=np.float64)
        ax.scatter(c, acc, s=18, color="tab:blue", alpha=0.6, label="configuration")
        order = np.argsort(c[front])
        ax.plot(
            c[front][order],
            acc[front][order],
            marker="o",
            markerfacecolor="none",
            markersize=9,
            color="tab:red",
            label="Pareto-optimal",
        )
        if c.min() > 0 and c.max() / c.min() > LOG_SCALE_RATIO:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("mean test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig
