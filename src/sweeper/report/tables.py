"""The sweep's runs as comparison tables: which params vary, repeats aggregated over seeds.

Rows are sorted by validation loss (the value at each run's best epoch, the epoch whose
checkpoint was kept), best first; runs that did not finish come last with their reason.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
CSV_METRICS = [key for _, key, _ in METRIC_COLUMNS] + ["test_loss"]
SORT_METRIC = "best_val_loss"
# The best configuration beats the runner-up beyond seed-to-seed noise when the gap in mean
# validation accuracy is larger than twice its standard error, sqrt(s1^2/n1 + s2^2/n2)
# (about a 95% two-sided test for a normal difference).
NOISE_SE_FACTOR = 2.0


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    best: int | None = None  # the row marked as best

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        return "\n".join(
            [line(self.headers), "|" + "---|" * len(self.headers), *map(line, self.rows)]
        )


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; nan for a single value) over n runs."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
        return cls(float(arr.mean()), std, len(arr))

    def format(self, decimals: int) -> str:
        if self.n == 1:
            return f"{self.mean:.{decimals}f}"
        # Means of whole numbers (epochs) get one decimal, or they would hide the spread.
        decimals = max(decimals, 1)
        return f"{self.mean:.{decimals}f} ± {self.std:.{decimals}f}"


def _override_keys(overrides: str) -> list[str]:
    return [token.partition("=")[0].lstrip("+~") for token in overrides.split() if "=" in token]


def varying_keys(records: Sequence[RunRecord], overrides: str = "") -> list[str]:
    """The params whose values differ between runs, in the order of the sweep's overrides."""
    logged = [r for r in records if r.params]
    keys = sorted({k for r in logged for k in r.params})
    varying = [k for k in keys if len({r.params.get(k) for r in logged}) > 1]
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
    first = logged[0].params
    return {k: v for k, v in sorted(first.items()) if k not in varying}


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


def _status(records: Sequence[RunRecord]) -> str:
    if all(r.finished for r in records):
        return "FINISHED"
    if len(records) == 1:
        r = records[0]
        return f"{r.status}: {r.reason}" if r.reason else r.status
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    reasons = sorted({r.reason for r in records if not r.finished and r.reason})
    return f"{text}: {'; '.join(reasons)}" if reasons else text


@dataclass(frozen=True)
class Configuration:
    """The runs that share every varying param but the seed."""

    params: dict[str, str]
    runs: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.runs if r.finished and SORT_METRIC in r.metrics]

    def stat(self, key: str) -> Stat | None:
        values = [r.metrics[key] for r in self.finished if key in r.metrics]
        return Stat.of(values) if values else None

    def best_run(self) -> RunRecord:
        return min(self.finished, key=lambda r: r.metrics[SORT_METRIC])

    @property
    def status(self) -> str:
        return _status(self.runs)


def _sort_key(value: float | None) -> tuple[bool, float]:
    return value is None, math.inf if value is None else value


def configurations(records: Sequence[RunRecord], keys: Sequence[str]) -> list[Configuration]:
    """Runs grouped by ``keys`` (the varying params but the seed), best validation loss first."""
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for r in records:
        groups.setdefault(tuple(r.params.get(k, "") for k in keys), []).append(r)
    configs = [
        Configuration(dict(zip(keys, values, strict=True)), runs) for values, runs in groups.items()
    ]

    def mean_val_loss(config: Configuration) -> float | None:
        stat = config.stat(SORT_METRIC)
        return None if stat is None else stat.mean

    return sorted(configs, key=lambda c: _sort_key(mean_val_loss(c)))


def has_repeats(configs: Sequence[Configuration]) -> bool:
    return any(len(c.runs) > 1 for c in configs)


def _rank_cell(index: int, ranked: bool) -> str:
    if not ranked:
        return "-"
    return "1 (best)" if index == 0 else str(index + 1)


def configurations_table(configs: Sequence[Configuration], keys: Sequence[str]) -> Table:
    """One row per configuration, mean ± std over its finished seeds and their count n."""
    headers = ["#", *keys, "n", *(column for column, _, _ in METRIC_COLUMNS), "status"]
    rows = []
    for i, config in enumerate(configs):
        stats = [config.stat(key) for _, key, _ in METRIC_COLUMNS]
        cells = [
            s.format(d) if s else "" for s, (_, _, d) in zip(stats, METRIC_COLUMNS, strict=True)
        ]
        ranked = bool(config.finished)
        rows.append(
            [
                _rank_cell(i, ranked),
                *map(param_cell, config.params.values()),
                str(len(config.finished)),
                *cells,
                config.status,
            ]
        )
    return Table(headers, rows, best=0 if configs and configs[0].finished else None)


def sorted_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Finished runs by validation loss, then the others in the order they started."""
    return sorted(
        records, key=lambda r: _sort_key(r.metrics.get(SORT_METRIC) if r.finished else None)
    )


def runs_table(records: Sequence[RunRecord], keys: Sequence[str]) -> Table:
    """One row per run; ``records`` already in report order (``sorted_runs``)."""
    headers = ["#", *keys, *(column for column, _, _ in METRIC_COLUMNS), "status", "run id"]
    rows = []
    for i, r in enumerate(records):
        cells = [
            f"{r.metrics[key]:.{d}f}" if r.finished and key in r.metrics else ""
            for _, key, d in METRIC_COLUMNS
        ]
        rows.append(
            [
                _rank_cell(i, r.finished),
                *(param_cell(r.params.get(k, "")) for k in keys),
                *cells,
                _status([r]),
                r.run_id,
            ]
        )
    best = 0 if records and records[0].finished else None
    return Table(headers, rows, best=best)


def _ordered(values: Iterable[str]) -> list[str]:
    unique = set(values)
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)


def pivot_keys(configs: Sequence[Configuration], keys: Sequence[str]) -> tuple[str, str] | None:
    """Two independent keys to cross, or None.

    A key that a group choice sets along with another (``optimizer=sgd,adam`` varies
    ``optimizer.name`` and ``optimizer.lr`` together) adds no second dimension.
    """
    if len(keys) < 2:
        return None
    rows = keys[0]
    for columns in keys[1:]:
        seen: dict[str, set[str]] = {}
        for c in configs:
            seen.setdefault(c.params[rows], set()).add(c.params[columns])
        if any(len(v) > 1 for v in seen.values()):
            return rows, columns
    return None


def pivot_table(configs: Sequence[Configuration], rows_key: str, columns_key: str) -> Table:
    """Test accuracy for each pair of values, mean ± std over the finished runs that share it
    (seeds, and any other varying key)."""
    row_values = _ordered(c.params[rows_key] for c in configs)
    column_values = _ordered(c.params[columns_key] for c in configs)
    rows = []
    for rv in row_values:
        cells = [rv]
        for cv in column_values:
            runs = [
                r
                for c in configs
                if c.params[rows_key] == rv and c.params[columns_key] == cv
                for r in c.runs
            ]
            accs = [r.metrics["test_acc"] for r in runs if r.finished and "test_acc" in r.metrics]
            if accs:
                cells.append(Stat.of(accs).format(4))
            else:
                cells.append(_status(runs) if runs else "")
        rows.append(cells)
    return Table([f"{rows_key} \\ {columns_key}", *column_values], rows)


def noise_verdict(best: Configuration, runner_up: Configuration, keys: Sequence[str]) -> str:
    """Whether the best configuration's lead in validation accuracy exceeds seed noise."""
    a, b = best.stat("best_val_acc"), runner_up.stat("best_val_acc")
    assert a is not None and b is not None
    head = (
        f"Best `{label(best.params, keys)}` vs runner-up `{label(runner_up.params, keys)}`: "
        f"val acc {a.format(4)} (n={a.n}) vs {b.format(4)} (n={b.n}); "
    )
    if a.n < 2 or b.n < 2:
        return head + "the seed-to-seed noise needs at least 2 finished seeds of each."
    gap = a.mean - b.mean
    se = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
    exceeds = abs(gap) > NOISE_SE_FACTOR * se
    verdict = "exceeds" if exceeds else "does not exceed"
    return head + (
        f"the gap {gap:+.4f} {verdict} the seed-to-seed noise "
        f"(rule: |gap| > {NOISE_SE_FACTOR:g} x standard error of the gap = "
        f"{NOISE_SE_FACTOR:g} x {se:.4f})."
    )


def write_runs_csv(records: Sequence[RunRecord], keys: Sequence[str], path: Path) -> Path:
    """Every run, one row each, values as MLflow holds them (full precision)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["run_id", "run_name", "status", "reason", "config_hash", *keys, *CSV_METRICS]
        )
        for r in records:
            writer.writerow(
                [
                    r.run_id,
                    r.name,
                    r.status,
                    r.reason,
                    r.config_hash,
                    *(r.params.get(k, "") for k in keys),
                    *(repr(r.metrics[k]) if k in r.metrics else "" for k in CSV_METRICS),
                ]
            )
    return path
