"""Figures of one run's training curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sweeper.config import EVAL_TRAIN_KEY
from sweeper.core.training import EVAL_TRAIN, EpochMetrics

# How the training curve was measured (``train.eval_train``), said in its legend.
TRAIN_CURVE_LABELS = {name: f"train ({measure.legend})" for name, measure in EVAL_TRAIN.items()}


def eval_train_of(params: Mapping[str, str]) -> str:
    """How a run (its logged params) measured its training curve; a run that logged no
    ``train.eval_train`` predates the option, and made a full pass."""
    return params.get(EVAL_TRAIN_KEY, "full")


def curve_figure(
    history: Sequence[EpochMetrics], best_epoch: int, metric: str, label: str, train_label: str
) -> Figure:
    """Train and validation ``metric`` ("loss" or "acc") per epoch, the best epoch marked."""
    # Figure() without pyplot: no global state and no GUI backend in worker processes. Fixed
    # margins, wide enough for the labels: a layout engine would draw the figure twice.
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots(gridspec_kw=dict(left=0.14, right=0.97, bottom=0.12, top=0.93))
    epochs = [m.epoch for m in history]
    ax.plot(epochs, [getattr(m, f"train_{metric}") for m in history], marker=".", label=train_label)
    ax.plot(epochs, [getattr(m, f"val_{metric}") for m in history], marker=".", label="validation")
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
    # Epochs are whole: a run of a few epochs would get ticks at 1.2, 1.4, ...
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def save_curves(
    history: Sequence[EpochMetrics], best_epoch: int, out_dir: Path, eval_train: str
) -> list[Path]:
    """Write ``loss.png`` and ``accuracy.png`` (train vs validation per epoch) to ``out_dir``."""
    train_label = TRAIN_CURVE_LABELS[eval_train]
    paths = []
    for metric, label, name in (("loss", "cross-entropy", "loss"), ("acc", "accuracy", "accuracy")):
        path = out_dir / f"{name}.png"
        curve_figure(history, best_epoch, metric, label, train_label).savefig(path, dpi=100)
        paths.append(path)
    return paths
