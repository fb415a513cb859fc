"""A command's imports, made without collecting garbage and then frozen out of it."""

from __future__ import annotations

import subprocess
import sys


def test_a_commands_imports_are_frozen_out_of_collection_and_collection_goes_on() -> None:
    # In a process of its own: the collector's state is the process's.
    probe = (
        "import gc\n"
        "from sweeper.frozen_imports import imports_frozen\n"
        "with imports_frozen():\n"
        "    during = gc.isenabled()\n"
        "    import mlflow\n"
        "frozen = gc.get_freeze_count()\n"
        "with imports_frozen():\n"
        "    import mlflow\n"
        "print(during, gc.isenabled(), frozen, gc.get_freeze_count())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    during, after, frozen, frozen_again = proc.stdout.split()
    assert (during, after) == ("False", "True")
    assert int(frozen) > 10_000
    # Nothing new imported, nothing frozen: the objects made since are still collected.
    assert frozen_again == frozen
