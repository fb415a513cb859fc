"""The report's second process: the statistics, the importances and some figures.

It is forked before the report imports MLflow, so that its own imports (Optuna, scikit-learn,
scipy.stats, matplotlib) run on the second core while the first imports MLflow and reads the
store; it never talks to the store itself.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.figure import Figure

from sweeper.report.figures import save_png
from sweeper.report.stats import compare_with_best

if TYPE_CHECKING:
    from sweeper.report.importance import Importances


def start() -> ProcessPoolExecutor:
    """The worker, forked now, already importing what it will run."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    pool.submit(_import_analysis)
    return pool


def _import_analysis() -> None:
    import optuna.importance  # noqa: F401
    import scipy.stats  # noqa: F401


def analyse(
    runs: pd.DataFrame, configs: pd.DataFrame, keys: list[str], repeats: bool
) -> tuple[pd.DataFrame, Importances | str]:
    """``configs`` with the Welch/Holm columns (when there are repeats), and the
    importances (``importance.param_importances``) or why there are none."""
    from sweeper.report.importance import ImportanceUnavailableError, param_importances

    if repeats:
        configs = compare_with_best(runs, configs)
    try:
        return configs, param_importances(configs, keys)
    except ImportanceUnavailableError as err:
        return configs, str(err)


def draw(plot: Callable[..., Figure], args: tuple[object, ...], path: Path) -> Path:
    """``plot(*args)`` saved as a PNG at ``path``."""
    return save_png(plot(*args), path)
