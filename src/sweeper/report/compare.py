"""Two sweeps side by side: runs matched by ``config_hash`` (the same composed config, seed
included), their differences per configuration, in ``reports/<a>_vs_<b>/``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from sweeper.names import BEST_VAL_LOSS, CONFIG_HASH_TAG, SEED, TEST_ACC
from sweeper.report.build import REPORT_HTML, REPORT_MD, Report
from sweeper.report.document import Block, Heading, Text, to_html, to_markdown
from sweeper.report.provenance import provenance_summary
from sweeper.report.runs import (
    REPORT_STORE_OPTIONS,
    ReportError,
    find_sweep,
    kept_runs,
    open_client,
    sweep_runs,
)
from sweeper.report.tables import CONFIG, Table, configurations, runs_frame, varying_keys
from sweeper.store_uri import resolve_tracking_uri

# (column, metric key, decimals) compared between the two sweeps.
COMPARED = (("val loss", BEST_VAL_LOSS, 4), ("test acc", TEST_ACC, 4))


def _finished_runs(
    client: MlflowClient, experiment: str, sweep_id: str
) -> tuple[pd.DataFrame, str, str]:
    """The sweep's finished runs, its id, and the sentence on what its runs share."""
    sweep = find_sweep(client, experiment, sweep_id)
    records = kept_runs(sweep_runs(client, sweep))
    varying = varying_keys(records, sweep.overrides, sweep.swept)
    runs = runs_frame(records, varying)
    provenance = provenance_summary([r.tags for r in records])[0]
    return runs[runs["finished"]], sweep.sweep_id, provenance


def _per_hash(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per config_hash, in the order of ``runs``: its configuration's label and the
    mean of each compared metric over its runs (a search may run one configuration twice)."""
    keys = [m for _, m, _ in COMPARED]
    grouped = runs.groupby(CONFIG_HASH_TAG, sort=False)
    means = grouped.agg(**{CONFIG: (CONFIG, "first")}, **{k: (k, "mean") for k in keys})
    return means.reset_index()


def compare_table(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (as labelled in ``a``): the mean of each compared metric over the
    config_hashes finished in both sweeps (each one's runs averaged first), in each sweep,
    and the difference ``b - a``; the configurations in the order of ``a``'s own report
    (``tables.configurations``: the complete ones by mean validation loss, best first).
    ``a`` and ``b``: finished runs as ``tables.runs_frame`` makes them."""
    matched = _per_hash(a).merge(_per_hash(b), on=CONFIG_HASH_TAG, suffixes=("_a", "_b"))
    keys = [m for _, m, _ in COMPARED]
    means = matched.groupby(f"{CONFIG}_a").agg(
        n=(CONFIG_HASH_TAG, "count"),
        **{f"{k}_{s}": (f"{k}_{s}", "mean") for k in keys for s in ("a", "b")},
    )
    for k in keys:
        means[f"{k}_diff"] = means[f"{k}_b"] - means[f"{k}_a"]
    means.index.name = CONFIG
    # Ranked as a's own report ranks them (by mean over seeds), not by a's single best run.
    ranking = configurations(a, [])
    return means.reindex([c for c in ranking.index if c in means.index])


def _table(means: pd.DataFrame, names: tuple[str, str]) -> Table:
    frame = pd.DataFrame({CONFIG: means.index, "n": means["n"].astype(str).to_numpy()})
    for column, key, decimals in COMPARED:
        frame[f"{column} {names[0]}"] = [f"{v:.{decimals}f}" for v in means[f"{key}_a"]]
        frame[f"{column} {names[1]}"] = [f"{v:.{decimals}f}" for v in means[f"{key}_b"]]
        frame[f"{column} diff"] = [f"{v:+.{decimals}f}" for v in means[f"{key}_diff"]]
    return Table(frame)


def compare_sweeps(
    tracking_uri: str | None,
    experiment: str,
    sweep_ids: tuple[str, str],
    out_dir: Path = Path("reports"),
) -> Report:
    """Write ``report.md``, ``report.html`` and ``compare.csv`` comparing two sweeps."""
    client = open_client(resolve_tracking_uri(tracking_uri), elsewhere=REPORT_STORE_OPTIONS)
    (a, name_a, provenance_a), (b, name_b, provenance_b) = (
        _finished_runs(client, experiment, s) for s in sweep_ids
    )
    hashes_a, hashes_b = set(a[CONFIG_HASH_TAG]), set(b[CONFIG_HASH_TAG])
    shared = hashes_a & hashes_b
    if not shared:
        raise ReportError(
            f"sweeps {name_a} and {name_b} share no finished run with the same {CONFIG_HASH_TAG} "
            "(the same composed config, seed included): nothing to compare"
        )
    names = (name_a, name_b)
    means = compare_table(a, b)
    directory = out_dir / f"{name_a}_vs_{name_b}"
    directory.mkdir(parents=True, exist_ok=True)
    seeds = f" (n: matched runs, over seeds; `{SEED}` is part of the hash)" if SEED in a else ""
    summary: list[Block] = [
        Text(
            f"Experiment `{experiment}`: {len(shared)} finished runs of sweep `{name_a}` and "
            f"sweep `{name_b}` share a {CONFIG_HASH_TAG}; {len(hashes_a - shared)} "
            f"only in `{name_a}`, {len(hashes_b - shared)} only in `{name_b}`."
        ),
        # A difference between the sweeps is the code's or the data's only if that is all
        # that changed.
        Text(f"Sweep `{name_a}`: {provenance_a}"),
        Text(f"Sweep `{name_b}`: {provenance_b}"),
        Heading(f"Per configuration: {name_a} vs {name_b}, diff = {name_b} - {name_a}{seeds}"),
        _table(means, names),
    ]
    blocks: list[Block] = [Heading(f"Sweep {name_a} vs sweep {name_b}", 1), *summary]
    markdown = directory / REPORT_MD
    markdown.write_text(to_markdown(blocks, directory))
    page = directory / REPORT_HTML
    page.write_text(to_html(blocks, f"Sweep {name_a} vs {name_b}"))
    csv = directory / "compare.csv"
    means.to_csv(csv)
    sweep = find_sweep(client, experiment, name_b)
    return Report(sweep, directory, to_markdown(summary, directory), [csv, markdown, page])
