"""The layers' import rules, read from the source with ``ast``: what each part may import.

A rule broken here is a layer leaking: the core importing the config, the launcher importing
the application, tracking code depending on the network's types, and so on.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from conftest import REPO

SRC = REPO / "src"
TESTS = Path(__file__).resolve().parent
# The modules that talk to MLflow on the coordination layer's behalf.
TRACKING = [
    "sweeper/store_uri.py",
    "sweeper/store.py",
    "sweeper/store_check.py",
    "sweeper/store_calls.py",
    "sweeper/store_setup.py",
    "sweeper/store_reads.py",
    "sweeper/sweep_runs.py",
    "sweeper/run_records.py",
    "sweeper/resume.py",
]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its
    package), at any depth of the file (functions included). ``from X import Y`` counts as
    both ``X`` and ``X.Y``: ``Y`` may be a module (``from sweeper import core``)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                assert node.module is not None
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def top(name: str) -> str:
    return name.split(".")[0]


def files(pattern: str) -> list[Path]:
    found = sorted(SRC.glob(pattern))
    assert found, pattern
    return found


def broken(paths: list[Path], allowed: object) -> dict[str, list[str]]:
    """For each file, the imports ``allowed(name)`` refuses."""
    problems = {}
    for path in paths:
        bad = sorted(name for name in imported(path) if not allowed(name))  # type: ignore[operator]
        if bad:
            problems[str(path.relative_to(SRC))] = bad
    return problems


def test_the_core_imports_only_numpy_and_itself() -> None:
    def allowed(name: str) -> bool:
        return (
            top(name) in sys.stdlib_module_names
            or top(name) in ("numpy", "__future__")
            or name.startswith("sweeper.core")
        )

    assert broken(files("sweeper/core/*.py"), allowed) == {}


def test_the_data_loaders_import_no_hydra_and_no_mlflow() -> None:
    # Of the rest of sweeper, only how a printed command names this Python (the fetch hint).
    def allowed(name: str) -> bool:
        return top(name) not in ("hydra", "omegaconf", "mlflow") and not (
            name.startswith("sweeper.") and not name.startswith(("sweeper.data", "sweeper.shell"))
        )

    assert broken(files("sweeper/data/*.py"), allowed) == {}


def test_the_shell_words_import_only_the_standard_library() -> None:
    def allowed(name: str) -> bool:
        return top(name) in sys.stdlib_module_names or name == "__future__"

    assert broken(files("sweeper/shell.py"), allowed) == {}


def test_the_launcher_imports_nothing_of_sweeper() -> None:
    assert broken(files("hydra_plugins/**/*.py"), lambda name: top(name) != "sweeper") == {}


def test_tracking_imports_nothing_of_the_core_or_the_data() -> None:
    def allowed(name: str) -> bool:
        return not name.startswith(("sweeper.core", "sweeper.data", "sweeper.experiment"))

    assert broken([SRC / path for path in TRACKING], allowed) == {}


@pytest.mark.parametrize("module", ["sweeper/experiment.py", "sweeper/config.py"])
def test_what_a_run_computes_and_its_schema_import_no_hydra_and_no_mlflow(module: str) -> None:
    # Transitively too: config is imported by experiment and by everything else.
    def allowed(name: str) -> bool:
        return top(name) not in ("hydra", "mlflow") and name not in (
            "sweeper.app",
            "sweeper.run",
            "sweeper.sweep",
        )

    assert broken([SRC / module], allowed) == {}


def test_the_report_reads_the_store_without_the_tracking_code() -> None:
    tracking = {path.removesuffix(".py").replace("/", ".") for path in TRACKING}
    # Where the store is, whether it can be used, and reading runs back: nothing that records.
    allowed_tracking = {"sweeper.store_uri", "sweeper.store_check", "sweeper.store_reads"}

    def allowed(name: str) -> bool:
        return name not in tracking - allowed_tracking

    assert broken(files("sweeper/report/*.py"), allowed) == {}


def test_the_modules_the_report_and_config_use_for_the_store_import_no_mlflow() -> None:
    assert broken([SRC / "sweeper/store_uri.py"], lambda name: top(name) != "mlflow") == {}


def test_test_modules_share_helpers_through_helper_modules_only() -> None:
    offenders = {
        path.name: sorted(name for name in imported_test(path) if name.startswith("test_"))
        for path in sorted(TESTS.glob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def imported_test(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names
