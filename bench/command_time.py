"""A command's own time around its runs, this checkout against an earlier commit.

Each command runs as a user types it (``python -m sweeper ...``), in a fresh directory whose
store was created beforehand, as for every command but a project's first: `make run`, then
`make sweep`, then `make report` of that sweep. For each command: its wall and CPU time (its
processes and theirs), the span of the MLflow runs it made (the first one's start to the last
one's end), and the rest, the command's own start and end (imports, composing, opening the
store, the sweep's set-up and summary, the report's reading and writing, exit). ``before`` is
an earlier commit's ``src/`` and ``conf/``, extracted with ``git archive`` and put first on
``PYTHONPATH``; the two codes alternate, repeats interleaved, and the tables give medians.

    python bench/command_time.py                 # the three commands on the digits
    python bench/command_time.py --repeats 7 --before 81ebf44
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine, load_average, markdown_table
from previous_core import DEFAULT_REF, extract, prepare_store

# (name, module, arguments): `make run`, `make sweep` and `make report` with their defaults,
# in this order in one directory (the report is the sweep's).
COMMANDS = [
    ("a run of its own (`make run`)", "sweeper", []),
    ("a 3-run sweep (`make sweep`)", "sweeper", ["-m", "activation=sigmoid,tanh,relu"]),
    ("the sweep's report (`make report`)", "sweeper.report", []),
]


def timed_commands(src: Path | None) -> list[dict[str, float]]:
    """For each of COMMANDS: wall and CPU seconds of ``python -m MODULE ARGS`` and the span of
    the MLflow runs it made."""
    with tempfile.TemporaryDirectory(prefix="sweeper-command-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        db = Path(tmp) / "mlruns" / "mlflow.db"
        prepare_store(db, env)
        results = []
        for _, module, args in COMMANDS:
            known = runs_ids(db)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", module, *args], cwd=tmp, env=env,
                capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if proc.returncode != 0:
                sys.exit(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            runs = runs_span(db, known)
            results.append({"wall": wall, "cpu": cpu, "runs": runs, "own": wall - runs})
    return results


def runs_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as store:
        return {row[0] for row in store.execute("SELECT run_uuid FROM runs")}


def runs_span(db: Path, known: set[str]) -> float:
    """Seconds from the first start to the last end of the runs that trained, not ``known``
    (a sweep's parent run spans the whole sweep)."""
    with sqlite3.connect(db) as store:
        rows = store.execute(
            "SELECT run_uuid, start_time, end_time FROM runs WHERE run_uuid NOT IN"
            " (SELECT value FROM tags WHERE key = 'mlflow.parentRunId')"
        ).fetchall()
    new = [(start, end) for run, start, end in rows if run not in known]
    return (max(end for _, end in new) - min(start for start, _ in new)) / 1000 if new else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default=DEFAULT_REF, help="commit timed as `before`")
    args = parser.parse_args()
    print("## A command's own time\n")
    print(describe_machine())
    before_src = extract(args.before, ["src", "conf"], "sweeper-before-") / "src"
    contenders = [(f"before ({args.before})", before_src), ("after", None)]
    results: dict[str, list[list[dict[str, float]]]] = {c: [] for c, _ in contenders}
    for repeat in range(args.repeats):
        for contender, src in contenders:
            results[contender].append(timed_commands(src))
            for (name, _, _), result in zip(COMMANDS, results[contender][-1], strict=True):
                times = ", ".join(f"{k} {v:.2f} s" for k, v in result.items())
                print(f"  {repeat + 1} {contender}, {name}: {times}", flush=True)
            print(f"  ({load_average()})", flush=True)
    rows = []
    for i, (name, _, _) in enumerate(COMMANDS):
        for contender, _ in contenders:
            runs = [repeat[i] for repeat in results[contender]]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append(
                [name, contender, *(f"{med[k]:.2f}" for k in ("wall", "cpu", "runs", "own"))]
            )
    print(f"\nMedians of {args.repeats} repeats, seconds:\n")
    print(
        markdown_table(
            [
                "command",
                "code",
                "wall",
                "CPU",
                "the runs' span",
                "the command's own (median of wall - span)",
            ],
            rows,
        )
    )
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
