"""Which hyperparameter matters: Optuna's fANOVA importance for the validation loss, computed
on each configuration's mean over its seeds, for grids and searches alike (every
configuration is handed to Optuna as a completed trial)."""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.importance import FanovaImportanceEvaluator

from sweeper.report.tables import SORT_METRIC

SEED = 0  # fANOVA's random forest: a fixed seed, so a report is the same each time
MIN_CONFIGURATIONS = 4
# A numeric param spanning this ratio or more is searched on a log scale.
LOG_RATIO = 20.0


def _scalar_node_values() -> None:
    """Optuna 2's fANOVA reads a tree node's value as scikit-learn's (1, 1) array, which
    NumPy 2 refuses to store as a number; Optuna 3 reads a float. Until hydra-optuna-sweeper
    allows Optuna 3, give Optuna 2 the float."""
    if int(optuna.__version__.split(".")[0]) >= 3:
        return
    tree = importlib.import_module("optuna.importance._fanova._tree")
    read = tree._FanovaTree._get_node_value
    if getattr(read, "scalar", False):
        return

    def scalar(self: object, node_index: int) -> float:
        return float(np.asarray(read(self, node_index)).reshape(-1)[0])

    scalar.scalar = True  # type: ignore[attr-defined]
    tree._FanovaTree._get_node_value = scalar


_scalar_node_values()


class ImportanceUnavailableError(Exception):
    """Why the importance cannot be computed for this sweep, in words."""


def _numbers(values: pd.Series) -> pd.Series | None:
    try:
        return values.astype(float)
    except ValueError:
        return None


def _float_distribution(low: float, high: float, log: bool) -> BaseDistribution:
    # FloatDistribution from Optuna 3; the Uniform ones it replaced before.
    if hasattr(optuna.distributions, "FloatDistribution"):
        return optuna.distributions.FloatDistribution(low, high, log=log)
    if log:
        return optuna.distributions.LogUniformDistribution(low, high)
    return optuna.distributions.UniformDistribution(low, high)


def distributions(configs: pd.DataFrame, keys: Sequence[str]) -> dict[str, BaseDistribution]:
    """A float range for a numeric param (log when it is positive and spans ``LOG_RATIO``), a
    categorical one for anything else."""
    out: dict[str, BaseDistribution] = {}
    for key in keys:
        numbers = _numbers(configs[key])
        if numbers is None:
            out[key] = CategoricalDistribution(sorted(configs[key].unique()))
            continue
        low, high = float(numbers.min()), float(numbers.max())
        out[key] = _float_distribution(low, high, low > 0 and high / low >= LOG_RATIO)
    return out


def trials(configs: pd.DataFrame, keys: Sequence[str]) -> list[optuna.trial.FrozenTrial]:
    """One completed trial per finished configuration, its value the mean validation loss,
    in the order of ``configs`` (best first; fANOVA's random forest depends on the order)."""
    spaces = distributions(configs, keys)
    done = configs[configs["n"] > 0]
    made = []
    for _, row in done.iterrows():
        params = {
            k: row[k] if isinstance(spaces[k], CategoricalDistribution) else float(row[k])
            for k in keys
        }
        made.append(
            optuna.trial.create_trial(
                params=params, distributions=spaces, value=float(row[f"{SORT_METRIC}_mean"])
            )
        )
    return made


def param_importances(configs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each varying param's share of the variance of the mean validation loss (fANOVA),
    largest first; raises ``ImportanceUnavailableError`` with the reason when it cannot say."""
    if len(keys) < 2:
        raise ImportanceUnavailableError(
            f"it needs at least 2 varied parameters besides the seed; this sweep varies {len(keys)}"
        )
    finished = int((configs["n"] > 0).sum())
    if finished < MIN_CONFIGURATIONS:
        raise ImportanceUnavailableError(
            f"it needs at least {MIN_CONFIGURATIONS} finished configurations; this sweep has "
            f"{finished}"
        )
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "A new study created" line in the report
    try:
        with warnings.catch_warnings():
            # create_trial and add_trials are "experimental" in Optuna 2.
            warnings.simplefilter("ignore")
            study = optuna.create_study(direction="minimize")
            study.add_trials(trials(configs, keys))
            importances = optuna.importance.get_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=SEED)
            )
    finally:
        optuna_logger.setLevel(level)
    return pd.Series(importances, name="importance").sort_values(ascending=False)
