"""The sweep's runs as pandas tables: which params vary, repeats aggregated over seeds.

Rows are sorted by validation loss (the value at each run's best epoch, the epoch whose
checkpoint was kept), best first; only complete configurations (``runs.complete``) are ranked,
the finished runs of the others come after them, runs that did not finish come last with
their reason, and runs a pruner stopped early are kept apart from the ranking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sweeper import names
from sweeper.config import names_configuration, params_of_keys
from sweeper.names import CONFIG_HASH_TAG, FINISHED, OVERRIDES_TAG, PRUNED, SEED
from sweeper.plots import eval_train_of
from sweeper.ranking import RANK_ASCENDING, RANKED_BY
from sweeper.report.runs import RunRecord, complete, seeds_not_run, varying_params
from sweeper.ui_links import short_number

# (column, metric key, format): the values at each run's best epoch, then its totals; seconds
# to 3 significant figures, since a small run trains in hundredths of a second.
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("train acc", names.BEST_TRAIN_ACC, ".4f"),
    ("train loss", names.BEST_TRAIN_LOSS, ".4f"),
    ("val acc", names.BEST_VAL_ACC, ".4f"),
    ("val loss", names.BEST_VAL_LOSS, ".4f"),
    ("test acc", names.TEST_ACC, ".4f"),
    ("best epoch", names.BEST_EPOCH, ".0f"),
    ("epochs run", names.EPOCHS_RUN, ".0f"),
    ("seconds", names.TRAIN_SECONDS, ".3g"),
)
METRICS = [key for _, key, _ in METRIC_COLUMNS]
# How each run measured its train accuracy and loss (``plots.eval_train_of``): a column.
TRAIN_MEASURE = "train_measure"
# The gradient check, made before training: a table of its own where the sweep studies it.
GRADCHECK_METRICS = [names.GRADCHECK_MAX_ABS_DIFF, names.GRADCHECK_PASSED]
CSV_METRICS = [*METRICS, names.TEST_LOSS, *GRADCHECK_METRICS]
CONFIG = "configuration"  # the column holding a configuration's label
# The column of how many of the sweep's seeds each run's configuration has no run of.
NOT_RUN = "seeds_not_run"


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


def _override_value(overrides: str, key: str) -> str | None:
    for token in overrides.split():
        name, equals, value = token.partition("=")
        if equals and name.lstrip("+~") == key:
            return value
    return None


def knobs(keys: Sequence[str], overrides: str) -> dict[str, list[str]]:
    """The varied params (``keys``, the seed left out) grouped by the override key that sets
    them, each under the most specific one (``optimizer=sgd,adam`` sets ``optimizer.name``,
    ``optimizer.momentum``, ...: one knob). A knob of one param is named by that param; a
    param no override key sets (a search draws it) is a knob of its own."""
    order = _override_keys(overrides)
    groups: dict[str, list[str]] = {}
    for key in keys:
        if key == SEED:
            continue
        groups.setdefault(_owner(key, order), []).append(key)
    return {(params[0] if len(params) == 1 else owner): params for owner, params in groups.items()}


def _owner(key: str, override_keys: Sequence[str]) -> str:
    """The most specific of ``override_keys`` that sets the param ``key``
    (``config.params_of_keys`` in reverse), else ``key`` itself."""
    owners = [o for o in override_keys if params_of_keys({key: None}, [o])]
    return max(owners, key=len, default=key)


def varying_keys(
    records: Sequence[RunRecord], overrides: str = "", swept: Sequence[str] = ()
) -> list[str]:
    """The params whose values differ between runs, and for an override key the sweep varies
    (``swept``, ``runs.Sweep.swept``) where none of its params differs yet (a sweep stopped
    or still running may have run one value of it, a search drawn one) the param it sets,
    or a group's choice (``regularizer.name``), in the order of the sweep's overrides; never
    the keys that name no configuration (``runs.varying_params``)."""
    varying = varying_params(records)
    logged = dict.fromkeys(k for r in records for k in r.params if names_configuration(k))
    for key in swept:
        # A group's params that a more specific swept key sets (regularizer.lam, searched
        # apart from regularizer) vary whatever the group's choice did.
        params = [p for p in params_of_keys(logged, [key]) if _owner(p, swept) == key]
        if varying.isdisjoint(params):
            # The group's other params (regularizer.input_p) are the same under each choice
            # it drew: constants, not columns.
            choice = f"{key.lstrip('+~')}.name"
            varying.update([choice] if choice in params else params)
    order = _override_keys(overrides)

    def rank(key: str) -> int:
        return next(
            (i for i, o in enumerate(order) if key == o or key.startswith(f"{o}.")), len(order)
        )

    return sorted(varying, key=lambda k: (k == SEED, rank(k), k))


def constant_params(records: Sequence[RunRecord], varying: Sequence[str]) -> dict[str, str]:
    """The params every run that logged params logged with one value, but ``varying``: not
    a key that names no configuration where the runs differ in it (a resumed sweep's
    ``resume``), which ``varying_keys`` leaves out too."""
    logged = [r.params for r in records if r.params]
    keys = sorted({k for params in logged for k in params}.difference(varying))
    return {k: logged[0][k] for k in keys if all(p.get(k) == logged[0].get(k) for p in logged)}


def param_cells(values: Sequence[str]) -> dict[str, str]:
    """Each of a column's values as the tables show it (``ui_links.short_number``; runs.csv
    keeps every digit), but as logged where two values would show alike (0.050001 and
    0.050002 are two configurations, not one)."""
    unique = set(values)
    shown: dict[str, set[str]] = {}
    for value in unique:
        shown.setdefault(short_number(value), set()).add(value)
    return {v: short_number(v) if len(shown[short_number(v)]) == 1 else v for v in unique}


def shown_params(column: pd.Series) -> pd.Series:
    """A column of params as the tables show it (:func:`param_cells`)."""
    return column.map(param_cells(list(column)))


def _knob_value(record: RunRecord, knob: str, params: Sequence[str]) -> str:
    """A run's value of a knob: the param's, or for a group the choice its overrides name
    (``sgd`` of ``optimizer=sgd``), else its params' values together."""
    if params == [knob]:
        return record.params.get(knob, "")
    chosen = _override_value(record.tags.get(OVERRIDES_TAG, ""), knob)
    return chosen if chosen is not None else " ".join(record.params.get(p, "") for p in params)


def runs_frame(
    records: Sequence[RunRecord],
    keys: Sequence[str],
    knob_params: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """One row per run in report order: the ranked runs (``ranked``: finished, of a complete
    configuration, ``runs.complete``) by validation loss, then the other finished ones so,
    then the others in the order they started, pruned ones last; params ``keys`` as logged
    (strings), a column per group of ``knob_params`` (:func:`knobs`; the group's value for
    the run), metrics as floats, the label of the run's configuration (its ``keys`` but
    the seed) and how many seeds it has not run (``NOT_RUN``). Labels differ exactly where
    the params do, so that grouping by label is grouping by the params' values, as
    ``runs.complete`` groups them."""
    config_keys = [k for k in keys if k != SEED]
    groups = {k: p for k, p in (knob_params or {}).items() if p != [k]}
    rows = [
        {
            "run_id": r.run_id,
            "run_name": r.name,
            "status": r.status,
            "reason": r.reason,
            CONFIG_HASH_TAG: r.config_hash,
            "start_time": r.start_time,
            "pruned": r.pruned,
            TRAIN_MEASURE: eval_train_of(r.params),
            **{k: r.params.get(k, "") for k in keys},
            **{k: _knob_value(r, k, p) for k, p in groups.items()},
            **{k: r.metrics.get(k, float("nan")) for k in CSV_METRICS},
        }
        for r in records
    ]
    columns = ["run_id", "run_name", "status", "reason", CONFIG_HASH_TAG, "start_time", "pruned"]
    frame = pd.DataFrame(
        rows, columns=[*columns, TRAIN_MEASURE, *dict.fromkeys([*keys, *groups]), *CSV_METRICS]
    )
    shown = pd.DataFrame({k: shown_params(frame[k]) for k in config_keys}, index=frame.index)
    frame.insert(len(columns), CONFIG, _labels(shown, config_keys))
    # dtype=bool: a sweep with no runs yet still selects by it.
    frame["finished"] = pd.Series([r.finished for r in records], index=frame.index, dtype=bool)
    frame["complete"] = pd.Series(complete(records, keys), index=frame.index, dtype=bool)
    frame[NOT_RUN] = seeds_not_run(records, keys)
    frame["ranked"] = frame["finished"] & frame["complete"]
    frame["_order"] = frame[RANKED_BY].where(frame["finished"])
    frame = frame.sort_values(
        ["pruned", "ranked", "_order", "start_time"],
        ascending=[True, False, RANK_ASCENDING, True],
        na_position="last",
        kind="stable",
    ).drop(columns="_order")
    return frame.reset_index(drop=True)


def _labels(shown: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    if not keys:
        return ["(defaults)"] * len(shown)
    return [" ".join(f"{k}={row[k]}" for k in keys) for _, row in shown.iterrows()]


def status_text(runs: pd.DataFrame) -> str:
    """FINISHED, a run's status and reason, or the count of each status, of the seeds not
    run (``NOT_RUN``, the most any of the runs' configurations lacks) and the reasons."""
    not_run = int(runs[NOT_RUN].max()) if len(runs) else 0
    if runs["finished"].all() and not not_run:
        return FINISHED
    statuses = runs["status"].where(~runs["pruned"], PRUNED)
    if len(runs) == 1 and not not_run:
        reason = runs["reason"].iloc[0]
        return f"{statuses.iloc[0]}: {reason}" if reason else str(statuses.iloc[0])
    counts = statuses.value_counts().sort_index()
    text = ", ".join(
        [f"{n} {status}" for status, n in counts.items()] + ([f"{not_run} not run"] * bool(not_run))
    )
    reasons = sorted(set(runs.loc[~runs["finished"] & (runs["reason"] != ""), "reason"]))
    return f"{text}: {'; '.join(reasons)}" if reasons else text


def configurations(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per configuration (the runs sharing every varying param but the seed), indexed
    by its label: its params, ``<metric>_mean``/``_std`` over its finished runs and their
    count ``n``, whether it is ``complete`` (``runs.complete``) and its status; the complete
    ones first, best mean validation loss first. Pruned runs are left out."""
    kept = runs[~runs["pruned"]]
    groups = kept.groupby(CONFIG, sort=False)
    params = groups[list(keys)].first()
    params["complete"] = groups["complete"].all()
    stats = (
        kept[kept["finished"]]
        .groupby(CONFIG, sort=False)
        .agg(
            n=(RANKED_BY, "count"),
            **{f"{k}_{f}": (k, f) for k in METRICS for f in ("mean", "std")},
        )
    )
    table = params.join(stats)
    table["n"] = table["n"].fillna(0).astype(int)
    table["status"] = groups.apply(status_text, include_groups=False)
    return table.sort_values(
        ["complete", f"{RANKED_BY}_mean"],
        ascending=[False, RANK_ASCENDING],
        na_position="last",
        kind="stable",
    )


def mean_std(mean: float, std: float, n: int, spec: str) -> str:
    """``mean ± std`` (sample std) over ``n`` values, each formatted by ``spec``; the mean
    alone for one value."""
    if n == 0:
        return ""
    if n == 1:
        return f"{mean:{spec}}"
    # Means of whole numbers (epochs) get one decimal, or they would hide the spread.
    spec = ".1f" if spec == ".0f" else spec
    return f"{mean:{spec}} ± {std:{spec}}"


def _rank_cells(ranked: pd.Series) -> list[str]:
    cells, rank = [], 0
    for is_ranked in ranked:
        rank += bool(is_ranked)
        cells.append(("1 (best)" if rank == 1 else str(rank)) if is_ranked else "-")
    return cells


def configurations_table(configs: pd.DataFrame, keys: Sequence[str]) -> Table:
    """One row per configuration, mean ± std over its finished seeds and their count n, and
    how it compares with the best (``vs best``, from ``stats.compare_with_best``); only the
    complete ones are ranked."""
    frame = pd.DataFrame({"#": _rank_cells(configs["complete"])}, index=configs.index)
    for k in keys:
        frame[k] = shown_params(configs[k])
    frame["n"] = configs["n"].astype(str)
    for column, key, spec in METRIC_COLUMNS:
        means, stds = configs[f"{key}_mean"], configs[f"{key}_std"]
        frame[column] = [
            mean_std(m, s, n, spec) for m, s, n in zip(means, stds, configs["n"], strict=True)
        ]
    if "vs best" in configs:
        frame["vs best"] = configs["vs best"]
    frame["status"] = configs["status"]
    return Table(frame.reset_index(drop=True), best=0 if configs["complete"].iloc[0] else None)


def runs_table(runs: pd.DataFrame, keys: Sequence[str]) -> Table:
    """One row per run, in the frame's (report) order, the ranked ones ranked: the metrics
    of the finished runs and of those a pruner stopped (ranked or not, they trained)."""
    frame = pd.DataFrame({"#": _rank_cells(runs["ranked"])})
    for k in keys:
        frame[k] = shown_params(runs[k]).to_numpy()
    trained = runs["finished"] | runs["pruned"]
    for column, key, spec in METRIC_COLUMNS:
        values = runs[key].where(trained)
        frame[column] = [f"{v:{spec}}" if pd.notna(v) else "" for v in values]
    status = runs["status"].where(~runs["pruned"], PRUNED)
    with_reason = status + ": " + runs["reason"]
    shown = status.where(runs["reason"] == "", with_reason).where(~runs["finished"], FINISHED)
    frame["status"] = shown.to_numpy()
    frame["run id"] = runs["run_id"].to_numpy()
    muted = frozenset(i for i, pruned in enumerate(runs["pruned"]) if pruned)
    best = 0 if len(runs) and runs["ranked"].iloc[0] else None
    return Table(frame, best=best, muted=muted)


def gradcheck_runs_table(runs: pd.DataFrame, keys: Sequence[str]) -> Table | None:
    """Every run's gradient check (max |numerical - backprop| and whether it passed), in the
    frame's order, where the sweep varies a ``gradcheck.*`` key or a check failed; else None."""
    checked = runs[runs[names.GRADCHECK_PASSED].notna()]
    studied = any(k.startswith("gradcheck.") for k in keys)
    if checked.empty or not (studied or (checked[names.GRADCHECK_PASSED] == 0).any()):
        return None
    frame = pd.DataFrame({k: shown_params(checked[k]).to_numpy() for k in keys})
    frame["max abs diff"] = [f"{v:.3g}" for v in checked[names.GRADCHECK_MAX_ABS_DIFF]]
    frame["passed"] = ["yes" if v == 1 else "NO" for v in checked[names.GRADCHECK_PASSED]]
    frame["run id"] = checked["run_id"].to_numpy()
    return Table(frame)


def _cells(values: list[str]) -> list[str]:
    shown = param_cells(values)
    return [shown[v] for v in values]


def _ordered(values: pd.Series) -> list[str]:
    unique = list(values.unique())
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def pivot_knobs(knobs: Sequence[str], search: bool) -> tuple[str, str] | None:
    """The two knobs a grid crosses, or None: a search's trials fill no grid, and a sweep over
    one key or three has no table of two."""
    if search or len(knobs) != 2:
        return None
    return knobs[0], knobs[1]


def pivot_means(runs: pd.DataFrame, rows_key: str, columns_key: str) -> pd.DataFrame:
    """Mean test accuracy over the finished runs of each pair of values (seeds, and any other
    varying key), rows and columns in value order."""
    done = runs[runs["finished"]]
    means = done.pivot_table(
        index=rows_key, columns=columns_key, values=names.TEST_ACC, aggfunc="mean"
    )
    kept = runs[~runs["pruned"]]
    rows, columns = _ordered(kept[rows_key]), _ordered(kept[columns_key])
    means = means.reindex(index=rows, columns=columns)
    means.index = pd.Index(_cells(rows), name=rows_key)
    means.columns = pd.Index(_cells(columns), name=columns_key)
    return means


def pivot_table(runs: pd.DataFrame, rows_key: str, columns_key: str) -> Table:
    """Test accuracy for each pair of values, mean ± std over the finished runs that share
    it; a pair with none shows the status of its runs."""
    kept = runs[~runs["pruned"]]
    done = kept[kept["finished"]]
    stats = done.groupby([rows_key, columns_key])[names.TEST_ACC].agg(["mean", "std", "count"])
    row_values, column_values = _ordered(kept[rows_key]), _ordered(kept[columns_key])
    statuses = kept.groupby([rows_key, columns_key]).apply(status_text, include_groups=False)
    rows = []
    for rv, shown in zip(row_values, _cells(row_values), strict=True):
        cells = [shown]
        for cv in column_values:
            if (rv, cv) in stats.index:
                mean, std, n = stats.loc[(rv, cv)]
                cells.append(mean_std(mean, std, int(n), ".4f"))
            else:
                cells.append(statuses.get((rv, cv), ""))
        rows.append(cells)
    headers = [f"{rows_key} \\ {columns_key}", *_cells(column_values)]
    return Table(pd.DataFrame(rows, columns=headers))


def write_runs_csv(runs: pd.DataFrame, keys: Sequence[str], path: Path) -> Path:
    """Every run, one row each, values as MLflow holds them (full precision)."""
    columns = ["run_id", "run_name", "status", "reason", CONFIG_HASH_TAG, *keys, *CSV_METRICS]
    frame = runs[columns].copy()
    frame.loc[runs["pruned"].to_numpy(), "status"] = PRUNED
    frame.to_csv(path, index=False)
    return path
