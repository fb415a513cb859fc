"""The word a printed command starts this Python (or its mlflow) with: what runs as pasted."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sweeper.shell import python_command, this_python, this_script


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory as an interpreter's: python3.12 (this one), mlflow beside it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("python3.12", "mlflow"):
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(directory / "python3.12"))
    return directory


def test_a_python_the_shell_finds_by_its_name_is_named(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (bin_dir / "python").symlink_to("python3.12")  # an activated virtualenv's
    monkeypatch.setenv("PATH", str(bin_dir))
    assert this_python() == "python"
    assert this_script("mlflow") == "mlflow"
    assert python_command("-m", "sweeper.report", "--sweep", "my study") == (
        "python -m sweeper.report --sweep 'my study'"
    )


def test_another_python_beside_it_is_not_this_one(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # python-is-python3 beside a python3.12 that has the packages.
    (bin_dir / "python").write_text("#!/bin/sh\n")
    (bin_dir / "python").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert this_python() == "python3.12"


def test_where_the_shell_finds_no_such_python_the_path_is_printed(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert this_python() == str(bin_dir / "python3.12")
    assert this_script("mlflow") == str(bin_dir / "mlflow")
    assert this_script("ray") == "ray"  # none beside it


def test_no_interpreter_path_prints_the_plain_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "")
    assert this_python() == "python"
    assert this_script("mlflow") == "mlflow"
