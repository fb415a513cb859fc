"""Where the tracking store is, and how a person browses it; nothing here opens it.

The default store is a SQLite database in ``./mlruns`` with the artifacts beside it, because
MLflow 3 no longer accepts a bare file store. ``tracking.uri`` (or ``MLFLOW_TRACKING_URI``)
points elsewhere, a tracking server included.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"
# In the environment of a sweep's process: the store its runs record to, for the local
# launcher's fork server to open once for all of them (sweeper.preload).
SWEEP_STORE_VARIABLE = "SWEEPER_SWEEP_STORE"


def resolve_tracking_uri(configured: str | None) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``; a SQLite
    file named relative to the working directory (``sqlite:///mlflow.db``) made absolute, so
    every process of a sweep finds the same file."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri()
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{Path.cwd() / path}"
    return uri


def local_store_uri() -> str:
    """``./mlruns/mlflow.db``, the store ``make ui`` browses."""
    return f"sqlite:///{Path.cwd() / DEFAULT_STORE_DIR / DEFAULT_DB_NAME}"


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def is_http(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


def ui_command(uri: str) -> str:
    """The shell command that browses this store in the MLflow UI."""
    if is_http(uri):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1"
