"""Machine facts printed beside every benchmark table: cores, load, library versions, BLAS."""

from __future__ import annotations

import os
import platform

import numpy as np
from threadpoolctl import threadpool_info


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def _owner(library_path: str) -> str:
    """Which package ships a shared library: numpy.libs/..., torch/lib/..."""
    parts = library_path.split(os.sep)
    return "/".join(parts[-3:-1] if parts[-2] == "lib" else parts[-2:-1]) + "/" + parts[-1]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """A few lines: CPU, cores, load, numpy and the BLAS/OpenMP libraries it and others use."""
    lines = [
        f"machine: {cpu_model()}, {os.cpu_count()} cores (nproc), {load_average()}",
        f"python {platform.python_version()}, numpy {np.__version__}",
    ]
    for lib in threadpool_info():
        arch = f" {lib['architecture']}" if lib.get("architecture") else ""
        lines.append(
            f"  {lib['user_api']}: {lib['internal_api']} {lib.get('version') or ''}{arch}"
            f" ({_owner(lib['filepath'])})"
        )
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
