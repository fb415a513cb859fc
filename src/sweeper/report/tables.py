"""The sweep's runs as pandas tables: which params vary, repeats aggregated over seeds.

Rows are sorted by validation loss (the value at each run's best epoch, the epoch whose
checkpoint was kept), best first; runs that did not finish come last with their reason, and
runs a pruner stopped early are kept apart from the ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sweeper.config import NOT_HASHED
from sweeper.report.runs import RunRecord

SEED = "seed"
# (column, metric key, decimals): the values at each run's best epoch, then its totals.
METRIC_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("train acc", "best_train_acc", 4),
    ("train loss", "best_train_loss", 4),
    ("val acc", "best_val_acc", 4),
    ("val loss", "best_val_loss", 4),
    ("test acc", "test_acc", 4),
    ("best epoch", "best_epoch", 0),
    ("epochs run", "epochs_run", 0),
    ("seconds", "train_seconds", 1),
)
METRICS = [key for _, key, _ in METRIC_COLUMNS]
CSV_METRICS = [*METRICS, "test_loss"]
SORT_METRIC = "best_val_loss"
CONFIG = "configuration"  # the column holding a configuration's label


@dataclass(frozen=True)
class Table:
    """Cells as strings; ``best`` is the row marked as best, ``muted`` rows are greyed."""

    frame: pd.DataFrame
    best: int | None = None
    muted: frozenset[int] = field(default_factory=frozenset)

    def markdown(self) -> str:
        # Padded columns, so that the table reads in a terminal as well as rendered.
        cells = self.frame.map(lambda c: str(c).replace("|", "\\|"))
        cells.columns = [str(c).replace("|", "\\|") for c in cells.columns]
        return cells.to_markdown(index=False, disable_numparse=True)


def _override_keys(overrides: str) -> list[str]:
    return [token.partition("=")[0].lstrip("+~") for token in overrides.split() if "=" in token]


def varying_keys(records: Sequence[RunRecord], overrides: str = "") -> list[str]:
    """The params whose values differ between runs, in the order of the sweep's overrides;
    never the keys that name no configuration (``NOT_HASHED``: ``resume``, ``tracking.*``)."""
    params = pd.DataFrame([r.params for r in records if r.params])
    if params.empty:
        return []
    varying = [
        k
        for k in sorted(params.columns)
        if params[k].nunique(dropna=False) > 1 and not k.startswith(NOT_HASHED)
    ]
    order = _override_keys(overrides)

    def rank(key: str) -> int:
        return next(
            (i for i, o in enumerate(order) if key == o or key.startswith(f"{o}.")), len(order)
        )

    return sorted(varying, key=lambda k: (k == SEED, rank(k), k))


def constant_params(records: Sequence[RunRecord], varying: Sequence[str]) -> dict[str, str]:
    logged = [r for r in records if r.params]
    if not logged:
        return {}
    return {k: v for k, v in sorted(logged[0].params.items()) if k not in varying}


def param_cell(value: str) -> str:
    """A param as the tables show it: a float with more than 4 significant digits (as an
    Optuna search draws them: 0.09092050849502302) to 4, anything else as logged. runs.csv
    keeps every digit."""
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.4g}"
    return value if float(short) == number else short


def label(params: dict[str, str] | RunRecord, keys: Sequence[str]) -> str:
    values = params.params if isinstance(params, RunRecord) else params
    return " ".join(f"{k}={param_cell(values.get(k, ''))}" for k in keys) or "(defaults)"


def runs_frame(records: Sequence[RunRecord], keys: Sequence[str]) -> pd.DataFrame:
    """One row per run in report order: finished runs by validation loss, then the others in
    the order they started, pruned ones last; params ``keys`` as logged (strings), metrics as
    floats, and the label of the run's configuration (its ``keys`` but the seed)."""
    config_keys = [k for k in keys if k != SEED]
    rows = [
        {
            "run_id": r.run_id,
            "run_name": r.name,
            "status": r.status,
            "reason": r.reason,
            "config_hash": r.config_hash,
            "start_time": r.start_time,
            "pruned": r.pruned,
            CONFIG: label(r, config_keys),
            **{k: r.params.get(k, "") for k in keys},
            **{k: r.metrics.get(k, float("nan")) for k in CSV_METRICS},
        }
        for r in records
    ]
    columns = ["run_id", "run_name", "status", "reason", "config_hash", "start_time", "pruned"]
    frame = pd.DataFrame(rows, columns=[*columns, CONFIG, *keys, *CSV_METRICS])
    frame["finished"] = (
        (frame["status"] == "FINISHED") & ~frame["pruned"] & frame[SORT_METRIC].notna()
    )
    frame["_order"] = frame[SORT_METRIC].where(frame["finished"])
    frame = frame.sort_values(
        ["pruned", "_order", "start_time"], na_position="last", kind="stable"
    ).drop(columns="_order")
    return frame.reset_index(drop=True)


def status_text(runs: pd.DataFrame) -> str:
    """FINISHED, a run's status and reason, or the count of each status and the reasons."""
    if runs["finished"].all():
        return "FINISHED"
    statuses = runs["status"].where(~runs["pruned"], "PRUNED")
    if len(runs) == 1:
        reason = runs["reason"].iloc[0]
        return f"{statuses.iloc[0]}: {reason}" if reason else str(statuses.iloc[0])
    counts = statuses.value_counts().sort_index()
    text = ", ".join(f"{n} {status}" for status, n in counts.items())
    reasons = sorted(set(runs.loc[~runs["finished"] & (runs["reason"] != ""), "reason"]))
    return f"{text}: {'; '.join(reasons)}" if reasons else text


def configurations(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (the runs sharing every varying param but the seed), indexed
    by its label: its params, ``<metric>_mean``/``_std`` over its finished runs and their
    count ``n``, and its status; best mean validation loss first. Pruned runs are left out."""
    kept = runs[~runs["pruned"]]
    groups = kept.groupby(CONFIG, sort=False)
    params = groups[list(keys)].first()
    stats = (
        kept[kept["finished"]]
        .groupby(CONFIG, sort=False)
        .agg(
            n=(SORT_METRIC, "count"),
            **{f"{k}_{f}": (k, f) for k in METRICS for f in ("mean", "std")},
        )
    )
    table = params.join(stats)
    table["n"] = table["n"].fillna(0).astype(int)
    table["status"] = groups.apply(status_text, include_groups=False)
    return table.sort_values(f"{SORT_METRIC}_mean", na_position="last", kind="stable")


def mean_std(mean: float, std: float, n: int, decimals: int) -> str:
    """``mean ± std`` (sample std) over ``n`` values; the mean alone for one value."""
    if n == 0:
        return ""
    if n == 1:
        return f"{mean:.{decimals}f}"
    # Means of whole numbers (epochs) get one decimal, or they would hide the spread.
    decimals = max(decimals, 1)
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _rank_cells(ranked: pd.Series) -> list[str]:
    cells, rank = [], 0
    for is_ranked in ranked:
        rank += bool(is_ranked)
        cells.append(("1 (best)" if rank == 1 else str(rank)) if is_ranked else "-")
    return cells


def configurations_table(configs: pd.DataFrame, keys: Sequence[str]) -> Table:
    """One row per configuration, mean ± std over its finished seeds and their count n, and
    how it compares with the best (``vs best``, from ``stats.compare_with_best``)."""
    frame = pd.DataFrame({"#": _rank_cells(configs["n"] > 0)}, index=configs.index)
    for k in keys:
        frame[k] = configs[k].map(param_cell)
    frame["n"] = configs["n"].astype(str)
    for column, key, decimals in METRIC_COLUMNS:
        means, stds = configs[f"{key}_mean"], configs[f"{key}_std"]
        frame[column] = [
            mean_std(m, s, n, decimals) for m, s, n in zip(means, stds, configs["n"], strict=True)
        ]
    if "vs best" in configs:
        frame["vs best"] = configs["vs best"]
    frame["status"] = configs["status"]
    return Table(frame.reset_index(drop=True), best=0 if configs["n"].iloc[0] > 0 else None)


def runs_table(runs: pd.DataFrame, keys: Sequence[str]) -> Table:
    """One row per run, in the frame's (report) order."""
    frame = pd.DataFrame({"#": _rank_cells(runs["finished"])})
    for k in keys:
        frame[k] = runs[k].map(param_cell).to_numpy()
    for column, key, decimals in METRIC_COLUMNS:
        values = runs[key].where(runs["finished"])
        frame[column] = [f"{v:.{decimals}f}" if pd.notna(v) else "" for v in values]
    status = runs["status"].where(~runs["pruned"], "PRUNED")
    with_reason = status + ": " + runs["reason"]
    shown = status.where(runs["reason"] == "", with_reason).where(~runs["finished"], "FINISHED")
    frame["status"] = shown.to_numpy()
    frame["run id"] = runs["run_id"].to_numpy()
    muted = frozenset(i for i, pruned in enumerate(runs["pruned"]) if pruned)
    best = 0 if len(runs) and runs["finished"].iloc[0] else None
    return Table(frame, best=best, muted=muted)


def _ordered(values: pd.Series) -> list[str]:
    unique = list(values.unique())
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def pivot_keys(configs: pd.DataFrame, keys: Sequence[str]) -> tuple[str, str] | None:
    """Two independent keys to cross, or None.

    A key that a group choice sets along with another (``optimizer=sgd,adam`` varies
    ``optimizer.name`` and ``optimizer.lr`` together) adds no second dimension.
    """
    if len(keys) < 2:
        return None
    rows = keys[0]
    for columns in keys[1:]:
        if (configs.groupby(rows)[columns].nunique() > 1).any():
            return rows, columns
    return None


def pivot_means(runs: pd.DataFrame, rows_key: str, columns_key: str) -> pd.DataFrame:
    """Mean test accuracy over the finished runs of each pair of values (seeds, and any other
    varying key), rows and columns in value order."""
    done = runs[runs["finished"]]
    means = done.pivot_table(index=rows_key, columns=columns_key, values="test_acc", aggfunc="mean")
    kept = runs[~runs["pruned"]]
    return means.reindex(index=_ordered(kept[rows_key]), columns=_ordered(kept[columns_key]))


def pivot_table(runs: pd.DataFrame, rows_key: str, columns_key: str) -> Table:
    """Test accuracy for each pair of values, mean ± std over the finished runs that share
    it; a pair with none shows the status of its runs."""
    kept = runs[~runs["pruned"]]
    done = kept[kept["finished"]]
    stats = done.groupby([rows_key, columns_key])["test_acc"].agg(["mean", "std", "count"])
    row_values, column_values = _ordered(kept[rows_key]), _ordered(kept[columns_key])
    statuses = kept.groupby([rows_key, columns_key]).apply(status_text, include_groups=False)
    rows = []
    for rv in row_values:
        cells = [rv]
        for cv in column_values:
            if (rv, cv) in stats.index:
                mean, std, n = stats.loc[(rv, cv)]
                cells.append(mean_std(mean, std, int(n), 4))
            else:
                cells.append(statuses.get((rv, cv), ""))
        rows.append(cells)
    return Table(pd.DataFrame(rows, columns=[f"{rows_key} \\ {columns_key}", *column_values]))


def write_runs_csv(runs: pd.DataFrame, keys: Sequence[str], path: Path) -> Path:
    """Every run, one row each, values as MLflow holds them (full precision)."""
    columns = ["run_id", "run_name", "status", "reason", "config_hash", *keys, *CSV_METRICS]
    frame = runs[columns].copy()
    frame.loc[runs["pruned"].to_numpy(), "status"] = "PRUNED"
    frame.to_csv(path, index=False)
    return path
