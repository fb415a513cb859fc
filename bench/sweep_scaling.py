"""Sweep scaling and the cost of tracking.

Scaling: the same 8-run sweep through the real command line three ways, repeats interleaved:
on one core (``taskset -c 0``, one run at a time with one BLAS thread), on both cores with
``hydra.launcher.n_jobs=1`` (one run at a time, both cores to its BLAS) and with ``n_jobs=2``
(two runs at a time, one BLAS thread each). The wall time of the whole command, so process
start-up, the store and the summary are in it; the store exists beforehand, as it does for
every sweep but a project's first. From the runs' start and end times in the store, the
script also splits each sweep's time into what one run takes and what comes before the
first run starts and after the last one ends, which no number of workers shortens.

Tracking: one ~10-second run, in this process, timed as ``train_and_evaluate`` alone (data,
gradient check, training, test, checkpoint, curves: no MLflow) and as the app's
``run_config`` (the same call inside an MLflow run, logging params, every epoch's metrics,
the files and the model). Same process, interleaved, store created beforehand as a sweep does,
so the difference is what MLflow logging costs and nothing else (not Python or Hydra start-up).

    python bench/sweep_scaling.py                 # the full tables (a few minutes)
    python bench/sweep_scaling.py --epochs 30     # the same sweep with runs 3 times as long
    python bench/sweep_scaling.py --quick         # a smoke run on the embedded digits
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from hydra import compose, initialize_config_dir
from machine import describe_machine, load_average, markdown_table
from omegaconf import OmegaConf
from threadpoolctl import threadpool_limits

import sweeper.run
from sweeper.app import CONF_DIR
from sweeper.config import flat_params, to_experiment_config
from sweeper.experiment import train_and_evaluate
from sweeper.run import run_config
from sweeper.run_records import RunLogger
from sweeper.store_setup import prepare_store
from sweeper.sweep_info import SweepInfo

FASHION = "/usr/share/datasets/fashion-mnist"
# 8 runs on one dataset split: activation x learning rate, seed fixed.
SWEEP = ["activation=tanh,relu", "optimizer.lr=0.005,0.01,0.02,0.05"]


# How each contender runs the sweep: (name, command prefix, n_jobs).
CONTENDERS = [
    ("1 core", ["taskset", "-c", "0"], 1),
    ("2 cores, n_jobs=1", [], 1),
    ("2 cores, n_jobs=2", [], 2),
]


@dataclass
class SweepTiming:
    wall: float  # the whole command
    before_first_run: float  # command start to the first run's start
    after_last_run: float  # the last run's end to the command's exit
    per_run: float  # median of the runs' own durations


def store_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"


def timed_sweep(workdir: Path, prefix: list[str], n_jobs: int, overrides: list[str]) -> SweepTiming:
    args = ["-m", *overrides, f"hydra.launcher.n_jobs={n_jobs}"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start_clock, start = time.time(), time.perf_counter()
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "sweeper", *args], cwd=workdir, env=env,
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(args)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    sweep_id = re.search(r"^Sweep (\S+):", proc.stdout, re.MULTILINE)
    assert sweep_id is not None, proc.stdout
    runs = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.sweep_id = '{sweep_id[1]}' and tags.job != ''",
        output_format="list",
    )
    starts = [r.info.start_time / 1000 for r in runs]
    ends = [r.info.end_time / 1000 for r in runs]
    return SweepTiming(
        wall=wall,
        before_first_run=min(starts) - start_clock,
        after_last_run=start_clock + wall - max(ends),
        per_run=statistics.median(e - s for s, e in zip(starts, ends, strict=True)),
    )


def scaling(workdir: Path, overrides: list[str], repeats: int) -> tuple[list[str], list[list[str]]]:
    """The speedup table's row, and one row per contender for the table of where the time goes."""
    prepare_store(store_uri(workdir), "sweeper")
    mlflow.set_tracking_uri(store_uri(workdir))
    timings: dict[str, list[SweepTiming]] = {name: [] for name, _, _ in CONTENDERS}
    for _ in range(repeats):
        for name, prefix, n_jobs in CONTENDERS:
            timings[name].append(timed_sweep(workdir, prefix, n_jobs, overrides))
            t = timings[name][-1]
            print(
                f"  {name}: {t.wall:.1f} s (first run at {t.before_first_run:.1f} s, one run"
                f" {t.per_run:.1f} s, {t.after_last_run:.1f} s after the last)",
                flush=True,
            )

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(t, field) for t in timings[name])

    one_core, one_job, two_jobs = (median(name, "wall") for name, _, _ in CONTENDERS)
    speedups = [
        f"{one_core:.1f}",
        f"{one_job:.1f}",
        f"{two_jobs:.1f}",
        f"{one_core / two_jobs:.2f}",
        f"{one_job / two_jobs:.2f}",
        f"{os.getloadavg()[0]:.1f}",
    ]
    parts = [
        [name, *(f"{median(name, f):.1f}" for f in ("wall", "before_first_run", "per_run",
                                                      "after_last_run"))]
        for name, _, _ in CONTENDERS
    ]  # fmt: skip
    return speedups, parts


# How many wrapped calls are under way: one called inside another (a flush that a logging
# call sets off) is timed once, in the outer one.
_open_calls = [0]


def stopwatch_calls(owner: object, names: list[str], seconds: list[float]) -> None:
    """Wrap ``owner``'s functions ``names`` so the time spent in them is added to seconds[0]."""
    for name in names:
        original = getattr(owner, name)

        def timed_call(*args: object, _original: Any = original, **kwargs: object) -> object:
            start = time.perf_counter()
            _open_calls[0] += 1
            try:
                return _original(*args, **kwargs)
            finally:
                _open_calls[0] -= 1
                if not _open_calls[0]:
                    seconds[0] += time.perf_counter() - start

        setattr(owner, name, timed_call)


def tracking_cost(workdir: Path, overrides: list[str], repeats: int) -> list[list[str]]:
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    config = to_experiment_config(cfg)
    params = flat_params(cfg)
    uri = store_uri(workdir)
    sweep = SweepInfo("bench", uri, prepare_store(uri, "bench"), parent_run_id="")
    times: dict[str, list[float]] = {"plain": [], "tracked": [], "mlflow": []}
    # The time inside MLflow calls is measured directly as well: on a busy machine the
    # difference of two whole runs is noisier than the logging it is meant to show.
    in_mlflow = [0.0]
    stopwatch_calls(mlflow, ["start_run", "end_run"], in_mlflow)
    # The store writes a run batches (flush), and the best run's model, which a lone run makes.
    logging = [n for n in vars(RunLogger) if n.startswith(("log_", "set_")) or n == "flush"]
    stopwatch_calls(RunLogger, logging, in_mlflow)
    stopwatch_calls(sweeper.run, ["log_served_model"], in_mlflow)
    with threadpool_limits(limits=1):
        for i in range(repeats):
            out = workdir / f"plain-{i}"
            start = time.perf_counter()
            train_and_evaluate(config, out)
            times["plain"].append(time.perf_counter() - start)

            out = workdir / f"tracked-{i}"
            (out / ".hydra").mkdir(parents=True)
            OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
            in_mlflow[0] = 0.0
            start = time.perf_counter()
            outcome = run_config(config, params, out, i, overrides, sweep, threads=1)
            times["tracked"].append(time.perf_counter() - start)
            times["mlflow"].append(in_mlflow[0])
            if outcome.failed:
                sys.exit(f"tracked run failed: {outcome.reason}")
            print(
                f"  run {i}: plain {times['plain'][-1]:.2f} s,"
                f" tracked {times['tracked'][-1]:.2f} s, in MLflow {in_mlflow[0]:.2f} s",
                flush=True,
            )
    plain, tracked = statistics.median(times["plain"]), statistics.median(times["tracked"])
    logging = statistics.median(times["mlflow"])
    return [
        [
            f"{plain:.2f}",
            f"{tracked:.2f}",
            f"{(tracked - plain) / plain:+.1%}",
            f"{logging:.2f}",
            f"{logging / plain:.1%}",
            f"{os.getloadavg()[0]:.1f}",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="digits, 1 repeat")
    parser.add_argument("--tracking-only", action="store_true", help="skip the sweep scaling")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each sweep run")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
        sweep = ["activation=tanh,relu", "optimizer.lr=0.01", "train.epochs=3"]
        single = ["train.epochs=5", "train.patience=null"]
    else:
        data = ["dataset=fashion_mnist", f"dataset.data_dir={FASHION}", "train.batch_size=128"]
        # Runs long enough (~6 s of training each) that training, not process start-up and
        # loading, is what the two workers share.
        sweep = [*SWEEP, *data, "topology=h256", f"train.epochs={args.epochs}",
                 "train.patience=null", "gradcheck.enabled=false"]  # fmt: skip
        # About the 10-second run the tracking target speaks of, at one BLAS thread.
        single = [*data, "train.epochs=30", "train.patience=null"]

    print("## Sweep scaling and tracking cost\n")
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="sweeper-bench-") as tmp:
        workdir = Path(tmp)
        if not args.tracking_only:
            print(f"\nsweep: python -m sweeper -m {' '.join(sweep)} hydra.launcher.n_jobs=1|2")
            speedups, parts = scaling(workdir, sweep, args.repeats)
            print(f"\nWall time of the whole command, median of {args.repeats}:\n")
            header = [
                "1 core (s)", "2 cores, n_jobs=1 (s)", "2 cores, n_jobs=2 (s)",
                "speedup 1 -> 2 cores", "speedup n_jobs 1 -> 2", "load (1 min)",
            ]  # fmt: skip
            print(markdown_table(header, [speedups]))
            print(f"\nWhere the time goes, medians of {args.repeats} (seconds):\n")
            header = ["contender", "whole command", "before the first run", "one run",
                      "after the last run"]  # fmt: skip
            print(markdown_table(header, parts))

        print(f"\nrun: {' '.join(single)} (1 BLAS thread, as in a 2-worker sweep)")
        rows = tracking_cost(workdir, single, args.repeats)
        print(f"\nOne run, median of {args.repeats}:\n")
        header = [
            "train_and_evaluate (s)", "run_config (s)", "difference", "inside MLflow calls (s)",
            "tracking cost (MLflow / train_and_evaluate)", "load (1 min)",
        ]  # fmt: skip
        print(markdown_table(header, rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
