"""Another commit's code beside this one, to time and compare the two in one benchmark run.

``git archive`` extracts that commit's files into a temporary directory. ``load_core``
imports its ``src/sweeper/core`` as a top-level package of another name (the core only
imports itself and numpy), so both cores run in one process. ``prepare_store`` makes a
tracking store with whichever commit's code a process imports.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
# The last commit before issue 19's changes to the core.
DEFAULT_REF = "ca370c1"


# Makes the store as a sweep does, before the first job; its module depends on the commit.
_PREPARE_STORE = """import sys
try:
    from sweeper.store_setup import prepare_store
except ImportError:
    from sweeper.tracking import prepare_store
prepare_store(sys.argv[1], "sweeper")
"""


def prepare_store(db: Path, env: dict[str, str]) -> None:
    """The SQLite store ``db`` made by the code ``env`` imports, as for every command but a
    project's first."""
    subprocess.run([sys.executable, "-c", _PREPARE_STORE, f"sqlite:///{db}"], env=env, check=True)


def extract(ref: str, paths: list[str], prefix: str) -> Path:
    """A temporary directory holding ``paths`` of commit ``ref`` (as ``<dir>/<path>``),
    removed when the benchmark exits."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, *paths], check=True, capture_output=True
    ).stdout
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    return root


def load_core(ref: str = DEFAULT_REF, name: str = "core_before") -> ModuleType:
    package = extract(ref, ["src/sweeper/core"], f"sweeper-{name}-") / "src" / "sweeper" / "core"
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
