"""Runs read back from an MLflow store, for whatever reads them: every run a filter matches,
page after page, runs' per-epoch curves, and artifacts downloaded quietly; nothing here
records.

The report, the tracking code and ``reproduce`` all read runs this way, on any tracking URI, a
tracking server included. MLflow is imported by the caller, who passes its client: the
report's tables and statistics load without it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

PAGE_SIZE = 1000
# Metric-history calls to a tracking server wait on the network; threads overlap the waits.
HISTORY_THREADS = 8
# Run ids per bulk metric query: under every database's limit on bound parameters.
BULK_RUNS = 500

# (step, value) pairs of one metric, in step order (a per-epoch metric's step is its epoch).
Curve = list[tuple[int, float]]


def quiet_downloads() -> None:
    """No progress bar per artifact MLflow downloads (or copies, logging a model) from here
    on: the commands print their own summary, and the sweep's lines share the terminal; a
    user's own MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR wins."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every run of the experiment that matches, page after page."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=PAGE_SIZE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def metric_curves(
    client: MlflowClient, run_ids: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, Curve]]:
    """``{run_id: {key: [(step, value), ...]}}`` for every run and metric key."""
    result: dict[str, dict[str, Curve]] = {run_id: {key: [] for key in keys} for run_id in run_ids}
    # MlflowClient has no bulk history call; its database store has one (MLflow's own server
    # looks for it the same way), a REST store has not.
    bulk = getattr(client._tracking_client.store, "get_metric_history_bulk", None)
    if bulk is not None:
        for key in keys:
            for start in range(0, len(run_ids), BULK_RUNS):
                # max_results=None: no limit, every epoch of every run.
                for found in bulk(run_ids[start : start + BULK_RUNS], key, None):
                    result[found.run_id][key].append((found.step, found.value))
        for by_key in result.values():
            for curve in by_key.values():
                curve.sort()
        return result

    pairs = [(run_id, key) for run_id in run_ids for key in keys]

    def fetch(pair: tuple[str, str]) -> Curve:
        history = client.get_metric_history(*pair)
        return sorted((m.step, m.value) for m in history)

    with ThreadPoolExecutor(HISTORY_THREADS) as pool:
        for (run_id, key), curve in zip(pairs, pool.map(fetch, pairs), strict=True):
            result[run_id][key] = curve
    return result
