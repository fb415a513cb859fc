"""The report's figures, drawn on matplotlib ``Figure`` objects (no pyplot, no GUI backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweeper.report.runs import Curve

# Past this many configurations a legend hides the plot: only the best one is named.
MAX_LEGEND = 12
MAX_BARS = 40
# The width of one character of a "small" tick label.
LABEL_INCHES_PER_CHAR = 0.06
LOG_SCALE_RATIO = 20.0


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


def validation_curves(
    curves: Mapping[str, Sequence[Mapping[str, Curve]]], best: str, repeats: bool
) -> Figure:
    """Validation loss and accuracy per epoch, one line per configuration (``curves`` maps a
    configuration's label to its runs' curves), averaged over seeds when there are repeats."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    named = len(curves) <= MAX_LEGEND
    for (metric, title), ax in zip(
        (("val_loss", "validation loss"), ("val_acc", "validation accuracy")), axes, strict=True
    ):
        for config_label, runs in curves.items():
            epochs, values = mean_curve([run[metric] for run in runs])
            if config_label == best:
                ax.plot(
                    epochs,
                    values,
                    linewidth=2.5,
                    color="black",
                    zorder=3,
                    label=f"{config_label} (best)",
                )
            elif named:
                ax.plot(epochs, values, linewidth=1.2, label=config_label)
            else:
                ax.plot(epochs, values, linewidth=0.8, color="tab:blue", alpha=0.3)
        ax.set_title(title + (" (mean over the seeds at each epoch)" if repeats else ""))
        _epoch_axis(ax)
    losses = np.concatenate(
        [np.asarray(line.get_ydata(), dtype=float) for line in axes[0].get_lines()]
    )
    losses = losses[np.isfinite(losses)]
    # One unstable configuration's loss would flatten every other line to zero.
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > LOG_SCALE_RATIO:
        axes[0].set_yscale("log")
    # Below the plots, where a long label (a search's five params) takes the figure's width
    # instead of squeezing the axes.
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize="small", loc="outside lower center")
    return fig


def train_vs_validation(curves: Mapping[str, Curve], best_epoch: int, title: str) -> Figure:
    """The best run's train and validation loss and accuracy per epoch."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    fig.suptitle(textwrap.fill(title, 110))
    axes = fig.subplots(1, 2)
    for (metric, name), ax in zip(
        (("loss", "cross-entropy"), ("acc", "accuracy")), axes, strict=True
    ):
        for split in ("train", "val"):
            points = curves[f"{split}_{metric}"]
            ax.plot(
                [e for e, _ in points],
                [v for _, v in points],
                marker=".",
                label="train" if split == "train" else "validation",
            )
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
