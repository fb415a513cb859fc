"""Which hyperparameter matters: each varied knob's share of the variance of the validation
loss over the complete configurations, each one's mean over its seeds (one with a failed run
is left out, its mean over fewer seeds another statistic).

Where those configurations are a full grid (every combination of the knobs' values, each
once), the shares are the exact functional ANOVA of the means: a knob's main effect is the
variance of its marginal means over its values, its share that over the variance of the
configuration means, and what the knobs' shares leave is their interactions. Other
configurations (a search's draws, a grid with holes) get Optuna's fANOVA, a random forest's
estimate of the same shares, averaged over several forests, once there are enough of them.

Optuna is imported where it is used: the report's main process reads ``Importances`` and
``FOREST_SEEDS`` while its worker (``worker``) imports Optuna and computes them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from sweeper.ranking import RANKED_BY

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

# fANOVA's random forests: fixed seeds, so that a report is the same each time, and several,
# whose mean and spread the report shows rather than one forest's draw.
FOREST_SEEDS = tuple(range(5))
# Configurations fANOVA needs. With two parameters, one without effect, over 12 random draws
# of n configurations (5 forests each) it gave the one without effect a mean share of 0.45 at
# n=4, 0.14 at 10 (up to 0.41), 0.04 at 15 (up to 0.17) and 0.025 at 20 (up to 0.10).
MIN_FANOVA_CONFIGURATIONS = 20
# A numeric param spanning this ratio or more is searched on a log scale.
LOG_RATIO = 20.0


class ImportanceUnavailableError(Exception):
    """Why the importance cannot be computed for this sweep, in words."""


@dataclass(frozen=True)
class Importances:
    """Each knob's share of the variance of the mean validation loss, largest first."""

    shares: pd.Series
    configurations: int  # the complete configurations they were computed on
    exact: bool  # a full grid's functional ANOVA; else fANOVA's estimate
    # fANOVA: the sample std of each share over the forests (``FOREST_SEEDS``).
    spread: pd.Series | None = None
    # The knobs with one value in every complete configuration: nothing to tell of them.
    left_out: tuple[str, ...] = ()

    @property
    def interactions(self) -> float:
        """The share no knob explains alone (the grid's; fANOVA's shares sum to 1)."""
        return max(0.0, 1.0 - float(self.shares.sum()))


def _numbers(values: pd.Series) -> pd.Series | None:
    try:
        return values.astype(float)
    except ValueError:
        return None


def distributions(configs: pd.DataFrame, keys: Sequence[str]) -> dict[str, BaseDistribution]:
    """A float range for a numeric param (log when it is positive and spans ``LOG_RATIO``), a
    categorical one for anything else."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out: dict[str, BaseDistribution] = {}
    for key in keys:
        numbers = _numbers(configs[key])
        if numbers is None:
            out[key] = CategoricalDistribution(sorted(configs[key].unique()))
            continue
        low, high = float(numbers.min()), float(numbers.max())
        out[key] = FloatDistribution(low, high, log=low > 0 and high / low >= LOG_RATIO)
    return out


def trials(configs: pd.DataFrame, keys: Sequence[str]) -> list[FrozenTrial]:
    """One completed trial per complete configuration, its value the mean validation loss,
    in the order of ``configs`` (best first; fANOVA's random forest depends on the order)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    done = configs[configs["complete"]]
    spaces = distributions(done, keys)
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


def is_full_grid(values: pd.DataFrame) -> bool:
    """Whether the rows are every combination of their columns' values, each once."""
    levels = [values[k].nunique() for k in values.columns]
    return not values.duplicated().any() and len(values) == math.prod(levels)


def grid_shares(values: pd.DataFrame, losses: pd.Series) -> pd.Series:
    """Each column's main-effect share of the variance of ``losses`` over a full grid
    (:func:`is_full_grid`): the variance of its marginal means over its values (each value
    weighs alike: every one has as many configurations), over the variance of ``losses``."""
    total = float(losses.var(ddof=0))
    return pd.Series(
        {k: float(losses.groupby(values[k]).mean().var(ddof=0)) / total for k in values.columns},
        name="importance",
        dtype=float,
    )


def fanova_shares(configs: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.Series, pd.Series]:
    """Optuna's fANOVA shares (summing to 1) of ``keys``, their mean and sample std over one
    forest per seed of ``FOREST_SEEDS``."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator

    optuna_logger = logging.getLogger("optuna")
    level = optuna_logger.level
    optuna_logger.setLevel(logging.WARNING)  # no "A new study created" line in the report
    try:
        study = optuna.create_study(direction="minimize")
        study.add_trials(trials(configs, keys))
        forests = pd.DataFrame(
            [
                optuna.importance.get_param_importances(
                    study, evaluator=FanovaImportanceEvaluator(seed=seed)
                )
                for seed in FOREST_SEEDS
            ],
            columns=list(keys),
        )
    except (RuntimeError, ValueError) as err:  # fANOVA's forest finds nothing to split
        raise ImportanceUnavailableError(f"Optuna's fANOVA could not compute it ({err})") from None
    finally:
        optuna_logger.setLevel(level)
    return forests.mean().rename("importance"), forests.std().rename("spread")


def param_importances(configs: pd.DataFrame, keys: Sequence[str]) -> Importances:
    """Each varied knob's (``keys``) share of the variance of the mean validation loss over
    the complete configurations, exact on a full grid, else fANOVA's; raises
    ``ImportanceUnavailableError`` with the reason when it cannot say."""
    if len(keys) < 2:
        raise ImportanceUnavailableError(
            f"it needs at least 2 varied parameters besides the seed; this sweep varies {len(keys)}"
        )
    finished = configs[configs["complete"]]
    n = len(finished)
    losses = finished[f"{RANKED_BY}_mean"]
    if n > 1 and losses.nunique() == 1:
        raise ImportanceUnavailableError(
            f"every complete configuration has the same mean validation loss "
            f"({losses.iloc[0]:.6g}), so no parameter explains any of its variance"
        )
    varied = [k for k in keys if finished[k].nunique() > 1]
    left_out = tuple(k for k in keys if k not in varied)
    if len(varied) < 2:
        raise ImportanceUnavailableError(
            "it needs at least 2 parameters that differ between the complete configurations; "
            f"they differ in {len(varied)}"
        )
    if is_full_grid(finished[varied]):
        shares = grid_shares(finished[varied], losses)
        return Importances(shares.sort_values(ascending=False), n, True, left_out=left_out)
    if n < MIN_FANOVA_CONFIGURATIONS:
        raise ImportanceUnavailableError(
            f"the {n} complete configurations are not every combination of the parameters' "
            f"values (a full grid, whose shares are exact), and fANOVA's estimate needs at "
            f"least {MIN_FANOVA_CONFIGURATIONS} (with fewer, a parameter without effect gets a "
            "sizeable share)"
        )
    shares, spread = fanova_shares(configs, varied)
    order = shares.sort_values(ascending=False).index
    return Importances(shares[order], n, False, spread[order], left_out)
