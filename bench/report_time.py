"""How long ``python -m sweeper.report`` takes on fake sweeps of 200 and 1,000 runs (20
configurations x 10 and x 50 seeds), against the report of earlier commits.

The stores are filled through MLflow's client with the records a real sweep leaves (params,
tags, per-epoch and final metrics; no artifacts, so no confusion matrix) by the same helper
the report's tests use. Each earlier commit's ``src/`` is extracted with ``git archive`` and
put first on ``PYTHONPATH``; the versions run in turn on each store (interleaved, so that all
see the same load), and each time is the whole command, imports included. Besides its wall
and CPU seconds, the CPU seconds of the command's own process alone (without its worker
processes) are printed: on a machine with a core free for the worker, what the wall time
follows.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine, load_average, markdown_table
from previous_core import DEFAULT_REF, extract

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fake_store import fill_fake_sweep  # noqa: E402 (found through the path set just above)

# ``python -m sweeper.report ARGS`` that prints the CPU seconds of its worker processes as
# it ends, whether through sys.exit or os._exit (which its forked workers call too).
REPORT_AND_WORKERS_CPU = """
import os, resource, runpy

report = os.getpid()
leave = os._exit


def workers_cpu():
    if os.getpid() == report:
        workers = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(f"workers cpu {workers.ru_utime + workers.ru_stime}", flush=True)


def exit_now(code):
    workers_cpu()
    leave(code)


os._exit = exit_now
try:
    runpy.run_module("sweeper.report", run_name="__main__", alter_sys=True)
finally:
    workers_cpu()
"""


def report_seconds(store: str, out: Path, pythonpath: Path | None) -> tuple[float, float, float]:
    """Wall-clock and CPU seconds (user + system, its worker processes included) of one
    report command, and the CPU seconds of its own process (its exit included)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [sys.executable, "-c", REPORT_AND_WORKERS_CPU, "--tracking-uri", store]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "--sweep", "fake", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, cpu - float(done.stdout.rsplit("workers cpu ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 and 40 runs, one repeat")
    parser.add_argument(
        "--baseline",
        default=DEFAULT_REF,
        help=f"the commits to compare with, comma-separated (default: {DEFAULT_REF})",
    )
    parser.add_argument("--runs", default="200,1000", help="store sizes, multiples of 20")
    parser.add_argument(
        "--stores", type=Path, help="keep the filled stores in this folder and reuse them"
    )
    args = parser.parse_args()
    sizes = [20, 40] if args.quick else [int(n) for n in args.runs.split(",")]
    repeats = 1 if args.quick else args.repeats
    print("## Report time\n" + describe_machine())
    baselines = args.baseline.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        versions: dict[str, Path | None] = {
            revision: extract(revision, ["src"], f"sweeper-report-{i}-") / "src"
            for i, revision in enumerate(baselines)
        }
        versions["this"] = None  # the working tree, as installed
        stores = {}
        for n in sizes:
            path = (args.stores or root) / f"{n}.db"
            store = f"sqlite:///{path}"
            stores[n] = store
            if path.exists():
                print(f"reusing the store of {n} runs in {path}")
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            fill_fake_sweep(store, "fake", seeds=n // 20)
            print(f"filled a store of {n} runs in {time.perf_counter() - start:.1f} s")
        times: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
        for repeat in range(repeats):
            for n, store in stores.items():
                for version, path in versions.items():
                    wall, cpu, own = report_seconds(store, root / "reports", path)
                    times.setdefault((n, version), []).append((wall, cpu, own))
                    print(
                        f"  repeat {repeat + 1}, {n} runs, {version}: {wall:.2f} s, "
                        f"cpu {cpu:.2f} s, own process {own:.2f} s"
                    )
    header, rows = ["runs", "baseline"], []
    for kind in ("wall", "cpu", "own cpu"):
        header += [f"{kind} baseline (s)", f"{kind} this (s)", f"{kind} this / baseline"]
    for n in sizes:
        for baseline in baselines:
            cells = [str(n), baseline]
            for i in (0, 1, 2):  # wall, CPU, the command's own process's CPU
                old, new = (
                    statistics.median(t[i] for t in times[(n, v)]) for v in (baseline, "this")
                )
                cells += [f"{old:.2f}", f"{new:.2f}", f"{new / old:.2f}"]
            rows.append(cells)
    print(f"Median of {repeats}; {load_average()}:")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
