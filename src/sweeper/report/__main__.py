"""The command line of ``make report``: the latest sweep unless told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from sweeper.frozen_imports import imports_frozen
from sweeper.names import DEFAULT_EXPERIMENT
from sweeper.store_reads import quiet_downloads
from sweeper.store_uri import TRACKING_URI_HELP, TRACKING_URI_OPTION

with imports_frozen():
    from sweeper.report import worker
    from sweeper.report.runs import ReportError

quiet_downloads()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.report",
        description="Compare the runs of a sweep: a Markdown table here, and report.md, "
        "runs.csv and a self-contained report.html in OUT/<sweep id>/.",
    )
    parser.add_argument(
        "--sweep",
        help="the sweep id (default: the latest sweep); A,B compares two sweeps, runs "
        "matched by config_hash, in OUT/A_vs_B/",
    )
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment name")
    parser.add_argument(TRACKING_URI_OPTION, help=TRACKING_URI_HELP)
    parser.add_argument("--out", type=Path, default=Path("reports"), help="reports directory")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sweeps = [s for s in (args.sweep or "").split(",") if s]
    # Forked before MLflow is imported, the analysis worker's imports overlap this process's.
    analysis = worker.start() if len(sweeps) < 2 else None
    with imports_frozen():
        from sweeper.report.build import build_report
        from sweeper.report.compare import compare_sweeps

    # Shut down however the report ends: no process of it outlives the command.
    with analysis or contextlib.nullcontext():
        try:
            if args.sweep is not None and "" in args.sweep.split(","):
                # `make report SWEEP=$A,$B` with B unset: comparing nothing is no report of A.
                raise ReportError(
                    f"--sweep {args.sweep!r} has an empty sweep id: give one sweep id, or two "
                    "(A,B) to compare them"
                )
            if len(sweeps) > 2:
                raise ReportError(f"--sweep takes one sweep id or two (A,B), got {len(sweeps)}")
            if len(sweeps) == 2 and sweeps[0] == sweeps[1]:
                # A sweep against itself: every difference +0.0000, nothing compared.
                raise ReportError(
                    f"--sweep {args.sweep} names sweep {sweeps[0]} twice: A,B compares two "
                    f"different sweeps (--sweep {sweeps[0]} reports this one)"
                )
            if len(sweeps) == 2:
                pair = (sweeps[0], sweeps[1])
                report = compare_sweeps(args.tracking_uri, args.experiment, pair, args.out)
                title = f"Sweep {sweeps[0]} vs sweep {sweeps[1]}"
            else:
                sweep = sweeps[0] if sweeps else None
                report = build_report(args.tracking_uri, args.experiment, sweep, args.out, analysis)
                title = f"Sweep {report.sweep.sweep_id}"
        except ReportError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        except OSError as err:  # the reports directory
            print(f"error: the report cannot be written: {err}", file=sys.stderr)
            return 1
    print(f"# {title}\n\n{report.summary}")
    print(
        f"Report written to {report.directory}/ ({len(report.files)} files) "
        f"in {time.perf_counter() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written and no run is open: skip the interpreter's teardown of MLflow's,
    # pandas' and matplotlib's modules, a good part of a small report's time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
