"""The names a run goes by in MLflow (``sweeper.names``): defined once, and true to what a run
logs."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from sweeper import names, provenance
from sweeper.core.training import EpochMetrics
from sweeper.experiment import CHECKPOINT_FILE, GRADCHECK_FILE
from sweeper.report.build import REPORT_HTML, REPORT_MD

SRC = Path(__file__).resolve().parents[1] / "src" / "sweeper"
# What MLflow's own RunStatus and tags name; not for a module to spell again.
STATUSES = {names.FINISHED, names.FAILED, names.KILLED, names.PRUNED}
# Names that are words with other meanings in the code too: the package (``sweeper``), a run's
# checkpoint directory, the report's columns and an HTTP error's ``reason``.
WORDS = (
    "KIND_TAG",
    "SWEEP_KIND",
    "DEFAULT_EXPERIMENT",
    "MODEL_CHECKPOINT",
    "STATUS_TAG",
    "REASON_TAG",
)
METRICS = (
    {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and key not in WORDS
    }
    - STATUSES
    - {names.SWEEP_FILTER}
)


def test_the_per_epoch_metrics_are_what_training_reports() -> None:
    fields = {f.name for f in dataclasses.fields(EpochMetrics)}
    assert set(names.EPOCH_METRICS) <= fields


def _string_constants(path: Path) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_statuses_metrics_and_tags_are_spelled_in_one_place() -> None:
    # Docstrings and messages may mention a status; a whole string that is one is a definition.
    spelled = {
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "names.py" and "core" not in path.parts
        for line, value in _string_constants(path)
        if value in STATUSES | METRICS or re.search(r"tags\.kind\s*=", value)
    }
    assert spelled == set()


def test_the_files_a_run_and_a_report_write_are_named_once() -> None:
    # The report finds a run's checkpoint and gradient check by the names the run gave them.
    files = {CHECKPOINT_FILE, GRADCHECK_FILE, REPORT_MD, REPORT_HTML}
    spelled = sorted(
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        for line, value in _string_constants(path)
        if value in files or value.endswith(tuple(f"/{name}" for name in files))
    )
    assert len(spelled) == len(files), spelled


def test_artifact_progress_bars_are_turned_off_in_one_place() -> None:
    spelled = [
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted(SRC.rglob("*.py"))
        for line, value in _string_constants(path)
        if value == "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    ]
    assert spelled == ["store_reads.py:" + spelled[0].partition(":")[2]]


def test_the_provenance_tags_are_spelled_in_provenance_alone() -> None:
    # The report and reproduce read them by the names the run wrote them under.
    tags = {
        *provenance.COMMIT_TAGS,
        *provenance.ENVIRONMENT_TAGS,
        provenance.DATA_TAG,
        provenance.DATA_DIR_TAG,
    }
    spelled = [
        f"{path.relative_to(SRC)}:{line}: {value!r}"
        for path in sorted(SRC.rglob("*.py"))
        if path != SRC / "provenance.py"
        for line, value in _string_constants(path)
        if value in tags
    ]
    assert spelled == []
