"""The core-throughput benchmark still runs and prints its tables (no timing is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO
from helpers import write_mnist_like

BENCH = REPO / "bench" / "core_throughput.py"


def test_core_throughput_quick_run_prints_every_table(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data", n_train=640, n_test=100)
    proc = subprocess.run(
        # sklearn and torch are optional (the bench extra) and slow to import: NumPy alone.
        [sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "data"),
         "--threads", "1", "--against", "floor"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "512 training samples, 100 test; 784-128-10, batch 128" in out
    for table in ("Samples per CPU second", "GEMM limit", "wall-clock", "Test accuracy after 2"):
        assert table in out
    rows = [line for line in out.splitlines() if line.startswith("| 784-128-10 b128 | tanh |")]
    # One row in each of the four tables.
    assert len(rows) == 4
    header = next(line for line in out.splitlines() if line.startswith("| network |"))
    # The earlier commit's core is timed beside this one, and what no step can skip.
    assert "| sweeper | before | floor |" in header
    accuracy = rows[-1].split("|")
    # Same seeds, same arithmetic: the two cores reach the same test accuracy.
    assert accuracy[5] == accuracy[6]


def test_an_activation_some_contender_lacks_is_refused_before_any_timing() -> None:
    # scikit-learn calls it logistic and the bare step would run tanh under its name.
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--activations", "sigmoid"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "argument --activations: invalid choice: 'sigmoid'" in proc.stderr
