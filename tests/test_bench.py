"""The core-throughput benchmark still runs and prints its tables (no timing is checked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_data_idx import write_mnist_like

BENCH = Path(__file__).resolve().parents[1] / "bench" / "core_throughput.py"


def test_core_throughput_quick_run_prints_every_table(tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data", n_train=640, n_test=100)
    proc = subprocess.run(
        # sklearn and torch are optional (the bench extra) and slow to import: sweeper alone.
        [sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "data"),
         "--threads", "1", "--against"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "512 samples, 100 test; 784-128-10, batch 128" in out
    for table in ("Samples per second", "GEMM limit", "Test accuracy after 2 epochs"):
        assert table in out
    speed_rows = [line for line in out.splitlines() if line.startswith("| tanh | float32 |")]
    # One row in each of the three tables.
    assert len(speed_rows) == 3
    header = next(line for line in out.splitlines() if line.startswith("| activation |"))
    assert "| sweeper |" in header
