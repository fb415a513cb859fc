"""A sweep of many small runs, this checkout against an earlier commit: wall time and where
each run's time goes.

The sweep runs through the real command line (``python -m sweeper -m ...``, the default local
launcher, 2 workers on 2 cores), into a fresh store created beforehand, as for every sweep but
a project's first. The two codes alternate, repeats interleaved, so both see the same load.
``before`` is an earlier commit's ``src/`` and ``conf/``, extracted with ``git archive`` and put
first on ``PYTHONPATH``. Every job's process carries the stopwatches of
``bench/job_clock/sitecustomize.py`` (a few wrapped functions, the same for both codes), which
split a run into process start, store writes, artifacts, provenance, data, gradient check,
training and process end; what the jobs' processes do not account for is the launcher's own
time between jobs (composing each job's config, starting its process) and the sweep's start
and end.

    python bench/many_runs.py                    # issue 22: 300 runs on the digits, 2 repeats
    python bench/many_runs.py --sweep fashion8   # the 8-run Fashion-MNIST sweep of section 3
    python bench/many_runs.py --seeds 2          # a 60-run version of the digits sweep
    python bench/many_runs.py --profile DIR      # also a cProfile of every job, in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machine import describe_machine, load_average, markdown_table
from previous_core import extract, prepare_store

CLOCK_DIR = Path(__file__).resolve().parent / "job_clock"
FASHION = "/usr/share/datasets/fashion-mnist"
# The commit before issue 22's changes.
DEFAULT_BEFORE = "bea9f74"
LEARNING_RATES = "0.005,0.01,0.02,0.03,0.05,0.07,0.1,0.15,0.2,0.3"
# A run's parts as the stopwatches name them, in the table's order.
PARTS = [
    "process start",
    "store writes",
    "artifacts",
    "provenance",
    "data",
    "gradient check",
    "training",
    "run (rest)",
    "process end",
]


def sweep_overrides(name: str, seeds: int) -> list[str]:
    if name == "digits300":
        return [
            "activation=sigmoid,tanh,relu", f"optimizer.lr={LEARNING_RATES}",
            f"seed={','.join(str(s) for s in range(seeds))}", "train.epochs=5",
        ]  # fmt: skip
    if name == "fashion8":
        # docs/performance.md section 3: 8 runs of about 6 s of training each.
        return [
            "activation=tanh,relu", "optimizer.lr=0.005,0.01,0.02,0.05",
            "dataset=fashion_mnist", f"dataset.data_dir={FASHION}", "train.batch_size=128",
            "topology=h256", "train.epochs=10", "train.patience=null", "gradcheck.enabled=false",
        ]  # fmt: skip
    raise SystemExit(f"unknown sweep {name!r}")


@dataclass
class SweepResult:
    wall: float
    runs: int
    before_first: float  # command start to the first job's process
    after_last: float  # the last job's process exit to the command's exit
    # Median seconds of each part over the jobs, wall and CPU time.
    parts: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    job_seconds: float = 0.0  # the jobs' processes, fork to exit, summed
    workers: int = 2

    @property
    def between_jobs(self) -> float:
        """Per run: the workers' time in the sweep not spent in any job's process."""
        span = self.wall - self.before_first - self.after_last
        return max(0.0, self.workers * span - self.job_seconds) / self.runs


def job_parts(record: dict[str, Any], clock: str) -> dict[str, float]:
    """One job's seconds per part, in wall (``clock="wall"``) or CPU time."""
    if clock == "wall":
        seconds, first, last = dict(record["seconds"]), record["first"], record["last"]
        fork, exit_ = record["fork"], record["exit"]
    else:
        seconds, first, last = dict(record["cpu"]), record["first_cpu"], record["last_cpu"]
        fork, exit_ = 0.0, record["exit_cpu"]
    if "run (rest)" in first:
        seconds["process start"] = first["run (rest)"] - fork
        seconds["process end"] = exit_ - last["run (rest)"]
    return seconds


def timed_sweep(
    src: Path | None, overrides: list[str], workers: int, profile: Path | None
) -> SweepResult:
    with tempfile.TemporaryDirectory(prefix="sweeper-many-") as tmp:
        workdir = Path(tmp)
        clock = workdir / "clock"
        clock.mkdir()
        path = [str(CLOCK_DIR)] + ([str(src)] if src is not None else [])
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["SWEEPER_JOB_CLOCK"] = str(clock)
        if profile is not None:
            env["SWEEPER_JOB_PROFILE"] = "1"
        prepare_store(workdir / "mlruns" / "mlflow.db", env)
        args = ["-m", *overrides, f"hydra.launcher.n_jobs={workers}"]
        start = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "sweeper", *args], cwd=workdir, env=env,
            capture_output=True, text=True,
        )  # fmt: skip
        end = time.time()
        if proc.returncode != 0:
            sys.exit(
                f"sweep failed ({' '.join(args)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
            )
        if not re.search(r"^Sweep \S+: \d+ finished, 0 failed", proc.stdout, re.MULTILINE):
            sys.exit(f"unexpected summary:\n{proc.stdout[-2000:]}")
        records = [json.loads(p.read_text()) for p in clock.glob("*.json")]
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for prof in clock.glob("*.prof"):
                shutil.copy(prof, profile / prof.name)
    jobs = [job_parts(r, "wall") for r in records]
    jobs_cpu = [job_parts(r, "cpu") for r in records]
    names = sorted({name for job in jobs for name in job})
    return SweepResult(
        wall=end - start,
        runs=len(records),
        before_first=min(float(r["fork"]) for r in records) - start,
        after_last=end - max(float(r["exit"]) for r in records),
        parts={n: statistics.median(job.get(n, 0.0) for job in jobs) for n in names},
        cpu={n: statistics.median(job.get(n, 0.0) for job in jobs_cpu) for n in names},
        job_seconds=sum(float(r["exit"]) - float(r["fork"]) for r in records),
        workers=workers,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", choices=["digits300", "fashion8"], default="digits300")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of the digits sweep")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="commit timed as `before`")
    parser.add_argument("--only", choices=["before", "after"], help="time one code only")
    parser.add_argument("--profile", type=Path, help="write each job's cProfile stats here")
    args = parser.parse_args()
    overrides = sweep_overrides(args.sweep, args.seeds)

    print("## Many small runs\n")
    print(describe_machine())
    print(f"\nsweep: python -m sweeper -m {' '.join(overrides)} hydra.launcher.n_jobs=2")
    before_src = extract(args.before, ["src", "conf"], "sweeper-before-") / "src"
    contenders = [(f"before ({args.before})", before_src), ("after", None)]
    if args.only:
        contenders = [contenders[0 if args.only == "before" else 1]]
    results: dict[str, list[SweepResult]] = {name: [] for name, _ in contenders}
    for repeat in range(args.repeats):
        for name, src in contenders:
            profile = args.profile / f"{name.split()[0]}-{repeat}" if args.profile else None
            r = timed_sweep(src, overrides, 2, profile)
            results[name].append(r)
            parts = ", ".join(
                f"{p} {r.parts.get(p, 0.0):.3f}/{r.cpu.get(p, 0.0):.3f}" for p in PARTS
            )
            print(
                f"  {repeat + 1} {name}: {r.wall:.1f} s for {r.runs} runs (first job at "
                f"{r.before_first:.1f} s, {r.after_last:.1f} s after the last); per run, wall/CPU: "
                f"{parts}; between jobs {r.between_jobs:.3f} ({load_average()})",
                flush=True,
            )

    def median(name: str, get: object) -> float:
        return statistics.median(get(r) for r in results[name])  # type: ignore[operator]

    print(f"\nWall time of the whole command, median of {args.repeats}:\n")
    rows = [
        [name, *(f"{median(name, lambda r, f=f: getattr(r, f)):.1f}"
                 for f in ("wall", "before_first", "after_last")),
         f"{2 * median(name, lambda r: r.wall) / results[name][0].runs:.3f}"]
        for name, _ in contenders
    ]  # fmt: skip
    print(markdown_table(
        ["code", "wall (s)", "before the first job (s)", "after the last job (s)",
         "seconds per run x 2 workers"], rows))  # fmt: skip
    if len(contenders) == 2:
        (b, _), (a, _) = contenders
        ratio = median(a, lambda r: r.wall) / median(b, lambda r: r.wall)
        print(f"\nafter / before: {ratio:.3f} ({1 / ratio:.2f}x faster)")
    print("\nOne run's parts, seconds (median over the jobs, then over the repeats):\n")
    header = ["code", "clock", *PARTS, "job process (sum)", "launcher between jobs"]
    rows = []
    for name, _ in contenders:
        for clock in ("parts", "cpu"):
            parts = [median(name, lambda r, p=p, c=clock: getattr(r, c).get(p, 0.0)) for p in PARTS]
            between = f"{median(name, lambda r: r.between_jobs):.3f}" if clock == "parts" else ""
            rows.append(
                [name, "wall" if clock == "parts" else "CPU", *(f"{v:.3f}" for v in parts),
                 f"{sum(parts):.3f}", between]
            )  # fmt: skip
    print(markdown_table(header, rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
