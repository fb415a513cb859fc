"""Machine facts printed beside every benchmark table: cores, load, library versions, BLAS."""

from __future__ import annotations

import os
import platform

import numpy as np
from threadpoolctl import threadpool_info


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def describe_machine() -> str:
    """A few lines: CPU, cores, load, numpy and the BLAS/OpenMP libraries it and others use."""
    lines = [
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        f" (nproc), {load_average()}",
        f"python {platform.python_version()}, numpy {np.__version__}",
    ]
    for lib in threadpool_info():
        arch = f" {lib['architecture']}" if lib.get("architecture") else ""
        lines.append(
            f"  {lib['user_api']}: {lib['internal_api']} {lib.get('version') or ''}{arch}"
            f" ({os.path.basename(lib['filepath'])})"
        )
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
