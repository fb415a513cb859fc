"""Peak memory of a sweep on a CIFAR-10-sized dataset: 1 worker, 2 workers sharing one copy.

CIFAR-10 python batches in the real format (50,000 x 3,072 uint8 training images, 10,000
test) are generated in a temporary directory, then 2-run sweeps go through the real command
line: with one worker; with two workers on the same split (the sweep's memory-mapped
dataset cache holds one prepared copy, 50,000 x 3,072 float32 across train/val/test, which both
map); and with two workers on different seeds, so each prepares and maps its own copy, which is
what every worker paid before the cache.

Memory is the sum of the proportional set size (PSS: a page shared by k processes counts
1/k in each) over the command's process tree, sampled every 0.1 s; the peak is the largest
sum. Plain RSS would count a shared page once per process and hide the sharing.

    python bench/shared_memory.py            # CIFAR-10 size (a few minutes, ~4 GB at peak)
    python bench/shared_memory.py --quick    # 5,000 training images
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from machine import describe_machine, load_average, markdown_table

PIXELS = 3 * 32 * 32


def write_cifar(directory: Path, n_train: int, n_test: int) -> None:
    """Five training batches and a test batch, pickled as the original python version is."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    sizes = [n_train // 5] * 5 + [n_test]
    for name, n in zip([*names, "test_batch"], sizes, strict=True):
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, PIXELS), dtype=np.uint8),
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
        }
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))


def pss_bytes(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def peak_pss(args: list[str], cwd: Path, cache: Path) -> tuple[int, float]:
    """Peak summed PSS of ``python -m sweeper ARGS`` and its children, and its wall time, with
    ``cache`` as the user's cache: a sweep leaves its prepared data there for the next one."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["XDG_CACHE_HOME"] = str(cache)
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env, stdout=log, stderr=log
        )
        watched = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, pss_bytes(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        if proc.wait() != 0:
            log.seek(0)
            sys.exit(f"sweep failed ({' '.join(args)}):\n{log.read()[-4000:]}")
    return peak, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 training images")
    args = parser.parse_args()
    n_train, n_test = (5_000, 1_000) if args.quick else (50_000, 10_000)

    print("## Shared dataset memory\n")
    print(describe_machine())
    with tempfile.TemporaryDirectory(prefix="sweeper-bench-") as tmp:
        data_dir = Path(tmp) / "cifar-10-batches-py"
        write_cifar(data_dir, n_train, n_test)
        common = [
            "-m", "dataset=cifar10", f"dataset.data_dir={data_dir}", "topology=h64",
            "train.epochs=1", "train.batch_size=128", "gradcheck.enabled=false",
        ]  # fmt: skip
        cases = [
            ("1 worker, 2 runs", ["optimizer.lr=0.01,0.02", "hydra.launcher.n_jobs=1"]),
            ("2 workers, same split (one shared copy)",
             ["optimizer.lr=0.01,0.02", "hydra.launcher.n_jobs=2"]),
            ("2 workers, different seeds (one copy each)",
             ["seed=0,1", "hydra.launcher.n_jobs=2"]),
        ]  # fmt: skip
        print(
            f"\ndata: {n_train:,} x {PIXELS:,} training images, {n_test:,} test;"
            f" float32 prepared set {(n_train + n_test) * PIXELS * 4 / 2**20:,.0f} MiB"
        )
        print(f"command: python -m sweeper {' '.join(common)} <case>\n")
        rows = []
        baseline = 0
        for i, (name, extra) in enumerate(cases):
            # A cache of its own: each case prepares its data as a sweep finding none does.
            peak, seconds = peak_pss([*common, *extra], Path(tmp), Path(tmp) / f"cache-{i}")
            baseline = baseline or peak
            rows.append(
                [name, " ".join(extra), f"{peak / 2**20:,.0f}", f"{peak / baseline:.2f}",
                 f"{seconds:.0f}", f"{os.getloadavg()[0]:.1f}"]
            )  # fmt: skip
            print(f"  {name}: {peak / 2**20:,.0f} MiB", flush=True)
        header = ["case", "overrides", "peak PSS (MiB)", "vs 1 worker", "wall (s)", "load (1 min)"]
        print()
        print(markdown_table(header, rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
