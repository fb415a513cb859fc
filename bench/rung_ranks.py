"""Where an unpruned search's best trials stood along the way: how early a pruner's rung can
judge them.

For each epoch, ranks every trial by its best validation loss so far (what the search's runs
report to a pruner) and prints the places of the trials that ended best. A rung at an epoch
where they already lead prunes little of what matters; one where they trail prunes them.

    python bench/rung_ranks.py --store DIR/mlruns/mlflow.db --experiment async_none [--sweep ID]
"""

from __future__ import annotations

import argparse
import itertools

from mlflow.tracking import MlflowClient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--store", required=True, help="the MLflow SQLite file")
    parser.add_argument("--experiment", default="async_none")
    parser.add_argument("--sweep", help="the search's sweep id (default: the newest search)")
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--epochs", default="2,4,6,8,10,12,15,18,20,25,30")
    args = parser.parse_args()
    client = MlflowClient(f"sqlite:///{args.store}")
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"no experiment {args.experiment!r} in {args.store}")
    # A search's runs carry their trial's number; a grid sweep's in the same experiment do not.
    # With repeats, a trial's first run is the one its pruner judges.
    trials = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=5000)
        if "trial" in r.data.tags
        and r.data.tags.get("status") == "FINISHED"
        and r.data.tags.get("repeat", "0") == "0"
    ]
    if not trials:
        raise SystemExit(f"no finished search trial in experiment {args.experiment!r}")
    sweep = args.sweep or max(trials, key=lambda r: r.info.start_time).data.tags["sweep_id"]
    runs = [r for r in trials if r.data.tags["sweep_id"] == sweep]
    best_so_far = {}
    for run in runs:
        history = sorted(
            client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step
        )
        best_so_far[run.data.tags["trial"]] = list(
            itertools.accumulate((m.value for m in history), min)
        )
    final = sorted(best_so_far, key=lambda t: best_so_far[t][-1])[: args.top]
    print(
        f"sweep {sweep}: {len(best_so_far)} finished trials; the best {len(final)} at the end: "
        f"trials {', '.join(final)}"
    )
    print("| epoch | their places (0 = best) |")
    print("|---|---|")
    # Epochs every finished trial reached (early stopping ends some sooner).
    reached = min(len(curve) for curve in best_so_far.values())
    for epoch in (int(e) for e in args.epochs.split(",") if int(e) <= reached):
        order = sorted(best_so_far, key=lambda t: best_so_far[t][epoch - 1])
        print(f"| {epoch} | {', '.join(str(order.index(t)) for t in final)} |")


if __name__ == "__main__":
    main()
