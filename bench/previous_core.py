"""Import another commit's ``sweeper.core`` beside this one, to time and compare them in one run.

``git archive`` extracts that commit's ``src/sweeper/core`` into a temporary directory, which
is imported as a top-level package of another name (the core only imports itself and numpy).
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
# The last commit before issue 19's changes to the core.
DEFAULT_REF = "ca370c1"


def load_core(ref: str = DEFAULT_REF, name: str = "core_before") -> ModuleType:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src/sweeper/core"],
        check=True,
        capture_output=True,
    ).stdout
    root = Path(tempfile.mkdtemp(prefix=f"sweeper-{name}-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    package = root / "src" / "sweeper" / "core"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
