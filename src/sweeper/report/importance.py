"""Which hyperparameter matters: Optuna's fANOVA importance for the validation loss, computed
on each complete configuration's mean over its seeds, for grids and searches alike (every
one is handed to Optuna as a completed trial; one with a failed run is left out, its mean
over fewer seeds another statistic)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.importance import FanovaImportanceEvaluator

from sweeper.ranking import RANKED_BY

SEED = 0  # fANOVA's random forest: a fixed seed, so a report is the same each time
MIN_CONFIGURATIONS = 4
# A numeric param spanning this ratio or more is searched on a log scale.
LOG_RATIO = 20.0


class ImportanceUnavailableError(Exception):
    """Why the importance cannot be computed for this sweep, in words."""


def _numbers(values: pd.Series) -> pd.Series | None:
    try:
        return values.astype(float)
    except ValueError:
        return None


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
        out[key] = FloatDistribution(low, high, log=low > 0 and high / low >= LOG_RATIO)
    return out


def trials(configs: pd.DataFrame, keys: Sequence[str]) -> list[optuna.trial.FrozenTrial]:
    """One completed trial per complete configuration, its value the mean validation loss,
    in the order of ``configs`` (best first; fANOVA's random forest depends on the order)."""
    spaces = distributions(configs, keys)
    done = configs[configs["complete"]]
    made = []
    for _, row in done.iterrows():
        params = {
            k: row[k] if isinstance(spaces[k], CategoricalDistribution) else float(row[k])
            for k in keys
        }
        made.append(
            optuna.trial.create_trial(
                params=params, distributions=spaces, value=float(row[f"{RANKED_BY}_mean"])
            )
        )
    return made


def param_importances(configs: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each varied knob's (``keys``) share of the variance of the mean validation loss
    (fANOVA), largest first; raises ``ImportanceUnavailableError`` with the reason when it
    cannot say."""
    if len(keys) < 2:
        raise ImportanceUnavailableError(
            f"it needs at least 2 varied parameters besides the seed; this sweep varies {len(keys)}"
        )
    finished = configs[configs["complete"]]
    if len(finished) < MIN_CONFIGURATIONS:
        raise ImportanceUnavailableError(
            f"it needs at least {MIN_CONFIGURATIONS} complete configurations; this sweep has "
            f"{len(finished)}"
        )
    losses = finished[f"{RANKED_BY}_mean"]
    if losses.nunique() == 1:
        raise ImportanceUnavailableError(
            f"every complete configuration has the same mean validation loss "
            f"({losses.iloc[0]:.6g}), so no parameter explains any of its variance"
        )
    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "A new study created" line in the report
    try:
        study = optuna.create_study(direction="minimize")
        study.add_trials(trials(configs, keys))
        importances = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=SEED)
        )
    except (RuntimeError, ValueError) as err:  # fANOVA's forest finds nothing to split
        raise ImportanceUnavailableError(f"Optuna's fANOVA could not compute it ({err})") from None
    finally:
        optuna_logger.setLevel(level)
    return pd.Series(importances, name="importance").sort_values(ascending=False)
