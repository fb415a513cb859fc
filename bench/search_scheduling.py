"""The search with and without a pruner, batched and asynchronous, side by side.

Runs ``+experiment=search`` through the real command line, one variant after another in a
fresh directory (its own MLflow and Optuna stores): the batched scheduler without a pruner,
the asynchronous one without a pruner, the asynchronous one with successive halving, and then
a pruned search given the asynchronous unpruned one's wall time (``hydra.sweeper.timeout``).
From the runs' start and end times in MLflow it reports the wall time, the epochs trained in
all, the core utilisation (sum of run times / (n_jobs x wall time)) and the test accuracy of the
trial chosen on validation loss (the best unpruned, finished run).

    python bench/search_scheduling.py --trials 24 --epochs 40          # the issue's size
    python bench/search_scheduling.py --trials 12 --epochs 12 --out DIR
    python bench/search_scheduling.py --sampler random --only scheduling   # same trials both ways
    python bench/search_scheduling.py --only pruning     # the asynchronous variants only
    python bench/search_scheduling.py --only pruning --budget 1107 --min-resource 12 \
        --reduction-factor 4 --name halving_12x4      # other pruner settings, a known budget
    python bench/search_scheduling.py --only pruning --budget 1107 --no-same-time  # no budget run
    python bench/search_scheduling.py --only given-time --budget 450 --pruner hyperband \
        --name hyperband_450     # the pruned search given a time alone
    python bench/search_scheduling.py --only given-time --budget 450 --pruner hyperband \
        --name hyperband_450_seed1 --seed 1   # the same, another draw of TPE's

With ``--sampler random`` both schedulers run the very same trials (a seeded random sampler
draws the same values in the same order whatever the results), so their difference is the
scheduling alone; TPE draws from the results so far, which arrive in a different order.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model, load_average
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def run_search(workdir: Path, name: str, args: argparse.Namespace, extra: list[str]) -> float:
    command = [
        sys.executable, "-m", "sweeper", "-m", "+experiment=search",
        f"dataset={args.dataset}", f"train.epochs={args.epochs}",
        f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.n_jobs={args.n_jobs}",
        f"hydra.launcher.n_jobs={args.n_jobs}", f"tracking.experiment={name}",
        f"hydra.sweeper.sampler.name={args.sampler}",
        f"hydra.sweeper.sampler.seed={args.seed}", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    with (workdir / f"{name}.log").open("w") as log:
        subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, check=False)
    return time.perf_counter() - start


def searched(overrides: str) -> str:
    """The drawn values of a trial's overrides (the preset's search space)."""
    keys = ("optimizer.lr=", "regularizer", "topology.hidden=")
    return " ".join(o for o in overrides.split() if o.startswith(keys))


def summarise(workdir: Path, name: str, wall: float, n_jobs: int) -> dict[str, object]:
    client = MlflowClient(f"sqlite:///{workdir}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    runs = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=5000)
        if "mlflow.parentRunId" in r.data.tags
    ]
    busy = sum((r.info.end_time - r.info.start_time) / 1000 for r in runs if r.info.end_time)
    pruned = [r for r in runs if r.data.tags.get("status") == "PRUNED"]
    finished = [
        r
        for r in runs
        if r.data.tags.get("status") == "FINISHED" and "best_val_loss" in r.data.metrics
    ]
    chosen = min(finished, key=lambda r: r.data.metrics["best_val_loss"]) if finished else None
    return {
        "variant": name,
        "trials": len(runs),
        "pruned": len(pruned),
        "epochs": int(sum(r.data.metrics.get("epochs_run", 0) for r in runs)),
        "wall_s": round(wall, 1),
        "utilisation": round(busy / (n_jobs * wall), 3),
        "chosen_val_loss": round(chosen.data.metrics["best_val_loss"], 4) if chosen else None,
        "chosen_test_acc": round(chosen.data.metrics["test_acc"], 4) if chosen else None,
        "chosen": searched(chosen.data.tags["overrides"]) if chosen else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--min-resource", type=int, default=2)
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument(
        "--pruner", choices=["successive_halving", "hyperband"], default="successive_halving"
    )
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds for the last pruned search (default: the unpruned one's)",
    )
    parser.add_argument("--name", default="async_halving", help="the pruned searches' experiment")
    parser.add_argument(
        "--no-same-time", action="store_true", help="skip the pruned search given the time"
    )
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    parser.add_argument(
        "--only", choices=["all", "scheduling", "pruning", "given-time"], default="all"
    )
    parser.add_argument("--out", type=Path, default=Path("bench-search"))
    args = parser.parse_args()
    if args.only == "given-time" and (args.budget is None or args.no_same_time):
        parser.error("--only given-time needs --budget (and not --no-same-time)")
    workdir = args.out.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}; {load_average()}", flush=True)
    pruner = [
        f"hydra.sweeper.pruner.name={args.pruner}",
        f"hydra.sweeper.pruner.min_resource={args.min_resource}",
        f"hydra.sweeper.pruner.reduction_factor={args.reduction_factor}",
    ]
    if args.pruner == "hyperband":
        pruner.append(f"hydra.sweeper.pruner.max_resource={args.epochs}")
    variants = [
        ("batched_none", ["hydra.sweeper.asynchronous=false"]),
        ("async_none", []),
        (args.name, pruner),
    ]
    if args.only == "scheduling":
        variants = variants[:2]
    elif args.only == "pruning":
        variants = variants[1:] if args.budget is None else variants[2:]
    elif args.only == "given-time":
        variants = []
    rows = []
    walls: dict[str, float] = {}
    for name, extra in variants:
        walls[name] = run_search(workdir, name, args, extra)
        rows.append(summarise(workdir, name, walls[name], args.n_jobs))
        print(rows[-1], flush=True)
    if args.only != "scheduling" and not args.no_same_time:
        budget = walls["async_none"] if args.budget is None else args.budget
        name = f"{args.name}_same_time"
        extra = [*pruner, f"hydra.sweeper.timeout={budget:.0f}", "hydra.sweeper.n_trials=1000"]
        wall = run_search(workdir, name, args, extra)
        rows.append(summarise(workdir, name, wall, args.n_jobs))
        print(rows[-1], flush=True)
    print(f"CPU: {cpu_model()}; {load_average()}", flush=True)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
