"""What a search given a shorter timeout would have chosen, replayed from a longer one's runs.

``hydra.sweeper.timeout`` starts no trial after it and lets the running ones finish, so up to
the timeout a search runs as one given more time (the same seeded sampler, the same results)
but for the order in which trials end. For each timeout this keeps the runs that started before
it and reports when the last of them ended and the trial the search would have chosen (the
finished run with the lowest validation loss) with its test accuracy.

    python bench/timeout_replay.py --store DIR/mlruns/mlflow.db --experiment \\
        hyperband_same_time --at 300,400,450,500,550
"""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the MLflow SQLite file")
    parser.add_argument("--experiment", required=True, help="the longer search's experiment")
    parser.add_argument("--at", required=True, help="timeouts in seconds, comma-separated")
    parser.add_argument("--top", type=int, default=3, help="finished runs shown per timeout")
    args = parser.parse_args()
    client = MlflowClient(f"sqlite:///{args.store}")
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        parser.error(f"no experiment {args.experiment!r} in {args.store}")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    start = min(r.info.start_time for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    print("| timeout | trials started | last run ended | best finished runs: val loss / test acc |")
    print("|---|---|---|---|")
    for timeout in (float(t) for t in args.at.split(",")):
        started = [r for r in trials if (r.info.start_time - start) / 1000 < timeout]
        ended = max((r.info.end_time - start) / 1000 for r in started)
        finished = sorted(
            (
                r
                for r in started
                if r.data.tags.get("status") == "FINISHED" and "best_val_loss" in r.data.metrics
            ),
            key=lambda r: r.data.metrics["best_val_loss"],
        )
        best = "; ".join(
            f"trial {r.data.tags['trial']}: {r.data.metrics['best_val_loss']:.4f} / "
            f"{r.data.metrics['test_acc']:.4f}"
            for r in finished[: args.top]
        )
        print(f"| {timeout:.0f} s | {len(started)} | {ended:.0f} s | {best} |")


if __name__ == "__main__":
    main()
