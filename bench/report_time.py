"""How long ``make report`` takes on a store of 200 runs (20 configurations x 10 seeds).

The store is filled through MLflow's client with the records a real sweep leaves (params,
tags, per-epoch and final metrics; no artifacts, so no confusion matrix) by the same helper
the report's tests use. Timed: ``build_report`` in this process (median of repeats), and the
whole ``python -m sweeper.report`` command, whose extra is importing MLflow and matplotlib.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine, load_average, markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fake_store import fill_fake_sweep  # noqa: E402 (found through the path set just above)
from sweeper.report.build import build_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 runs instead of 200")
    args = parser.parse_args()
    seeds = 1 if args.quick else 10
    print("## Report time\n" + describe_machine())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = f"sqlite:///{root / 'mlflow.db'}"
        start = time.perf_counter()
        n_runs = fill_fake_sweep(store, "fake", seeds=seeds)
        print(f"filled a store of {n_runs} runs in {time.perf_counter() - start:.1f} s")
        in_process, command = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            build_report(store, sweep_id="fake", out_dir=root / "reports")
            in_process.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sweeper.report",
                    "--tracking-uri",
                    store,
                    "--sweep",
                    "fake",
                    "--out",
                    str(root / "reports"),
                ],
                check=True,
                capture_output=True,
            )
            command.append(time.perf_counter() - start)
            print(
                f"  repeat {repeat + 1}: build_report {in_process[-1]:.2f} s, "
                f"command {command[-1]:.2f} s"
            )
    print(f"Median of {args.repeats}:")
    print(
        markdown_table(
            ["runs", "build_report (s)", "python -m sweeper.report (s)", "load (1 min)"],
            [
                [
                    str(n_runs),
                    f"{statistics.median(in_process):.2f}",
                    f"{statistics.median(command):.2f}",
                    load_average().split()[2].rstrip(","),
                ]
            ],
        )
    )


if __name__ == "__main__":
    main()
