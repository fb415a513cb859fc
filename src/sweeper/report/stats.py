"""Which differences between configurations are real: Welch's t-test against the best, Holm's
correction over the comparisons, and the Pareto front of accuracy against a cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from sweeper.ranking import RANKED_BY
from sweeper.report.tables import CONFIG

ALPHA = 0.05  # the family-wise error rate Holm's correction holds the comparisons to
REAL, NOISE = "real", "within noise"
VERDICT_START = "Best `"  # how the verdict sentence begins


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given: the k-th smallest p times the
    number of hypotheses not yet rejected, made monotone, at most 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def compare_with_best(runs: pd.DataFrame, configs: pd.DataFrame) -> pd.DataFrame:
    """``configs`` (best first) with ``p`` (Welch's two-sided t-test of the configuration's
    validation losses against the best's), ``p_holm`` (Holm-adjusted over the configurations
    tested) and ``vs best``: ``real`` or ``within noise`` and the adjusted p. Only complete
    configurations (ranked, first in ``configs``) with two or more finished seeds, and a best
    with two or more, are tested."""
    out = configs.copy()
    out["p"] = np.nan
    out["p_holm"] = np.nan
    out["vs best"] = ""
    if configs.empty or not configs["complete"].iloc[0] or configs["n"].iloc[0] < 2:
        return out
    # Here, not at the top: the report runs this in its worker process (worker.analyse).
    from scipy import stats

    losses = runs[runs["finished"]].groupby(CONFIG)[RANKED_BY].apply(list)
    best = losses[configs.index[0]]
    tested = [c for c in configs.index[1:] if configs.at[c, "complete"] and configs.at[c, "n"] >= 2]
    if not tested:
        return out
    p = [float(stats.ttest_ind(best, losses[c], equal_var=False).pvalue) for c in tested]
    # Two sets of identical values (std 0) give no p-value; an equal one says nothing either.
    p = [1.0 if np.isnan(v) else v for v in p]
    out.loc[tested, "p"] = p
    out.loc[tested, "p_holm"] = holm(p)
    out.loc[tested, "vs best"] = [
        f"{REAL if q < ALPHA else NOISE} (p={q:.3g})" for q in out.loc[tested, "p_holm"]
    ]
    out.loc[configs.index[0], "vs best"] = "best"
    return out


def verdict(configs: pd.DataFrame) -> str:
    """The sentence under the table: how many configurations the best (the first, complete)
    beats beyond noise."""
    best = configs.index[0]
    tested = configs[configs["p_holm"].notna()]
    head = (
        f"{VERDICT_START}{best}`: validation loss {configs.at[best, f'{RANKED_BY}_mean']:.4f} "
        f"(n={configs.at[best, 'n']}). "
    )
    if tested.empty:
        return head + (
            "Whether its lead is real needs at least 2 finished seeds of the best and of "
            "another configuration."
        )
    real = tested[tested["p_holm"] < ALPHA]
    noise = tested[tested["p_holm"] >= ALPHA]
    text = head + (
        f"Welch's t-test against each of the {len(tested)} other configurations with two or "
        f"more seeds, Holm-adjusted: {len(real)} worse beyond seed noise (adjusted p < "
        f"{ALPHA:g})"
    )
    if noise.empty:
        return text + ", none within noise."
    names = ", ".join(f"`{c}`" for c in noise.index[:5])
    more = f" and {len(noise) - 5} more" if len(noise) > 5 else ""
    return text + f", {len(noise)} within noise of it: {names}{more}."


def pareto_front(cost: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """True where no other point is at least as cheap and as accurate, and better in one."""
    c, a = np.asarray(cost, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    dominated = (
        (c[None, :] <= c[:, None])
        & (a[None, :] >= a[:, None])
        & ((c[None, :] < c[:, None]) | (a[None, :] > a[:, None]))
    )
    return np.asarray(~dominated.any(axis=1))
