"""Figures of one run's training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from sweeper.core.training import EpochMetrics


def _curve_figure(
    history: Sequence[EpochMetrics], best_epoch: int, metric: str, label: str, path: Path
) -> Path:
    # Figure() without pyplot: no global state and no GUI backend in worker processes.
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    epochs = [m.epoch for m in history]
    ax.plot(epochs, [getattr(m, f"train_{metric}") for m in history], marker=".", label="train")
    ax.plot(epochs, [getattr(m, f"val_{metric}") for m in history], marker=".", label="validation")
    ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100)
    return path


def save_curves(history: Sequence[EpochMetrics], best_epoch: int, out_dir: Path) -> list[Path]:
    """Write ``loss.png`` and ``accuracy.png`` (train vs validation per epoch) to ``out_dir``."""
    return [
        _curve_figure(history, best_epoch, "loss", "cross-entropy", out_dir / "loss.png"),
        _curve_figure(history, best_epoch, "acc", "accuracy", out_dir / "accuracy.png"),
    ]
