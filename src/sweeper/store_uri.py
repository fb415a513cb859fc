"""Where the tracking store is, how long it is waited for, and how a person browses it;
nothing here opens it.

The default store is a SQLite database in ``./mlruns`` with the artifacts beside it, because
MLflow 3 no longer accepts a bare file store. ``tracking.uri`` (or ``MLFLOW_TRACKING_URI``)
points elsewhere, a tracking server included. A search's Optuna study lives beside a SQLite
store (``study_storage``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

from sweeper.shell import this_script

DEFAULT_STORE_DIR = "mlruns"
DEFAULT_DB_NAME = "mlflow.db"
# A search's studies, beside the tracking store's database (``study_storage``).
STUDY_DB_NAME = "optuna.db"
# Beside the database, where store_setup puts a new experiment's artifacts.
ARTIFACTS_DIR = "artifacts"
# A database's own file, SQLite's beside it (write-ahead log, its index, rollback journal) and
# the lock store_setup takes to create a schema: whether or not they are there yet.
_BESIDE_DATABASE = ("", "-wal", "-shm", "-journal", ".lock")
# In the environment of a sweep's process: the store its runs record to, for the local
# launcher's fork server to open once for all of them (sweeper.preload).
SWEEP_STORE_VARIABLE = "SWEEPER_SWEEP_STORE"
# tracking.connect_timeout's and tracking.max_outage's defaults, in seconds: also how long a
# command with no tracking config (the report, reproduce) waits, and a process's store before
# it is configured (sweeper.store).
CONNECT_TIMEOUT_S = 10.0
MAX_OUTAGE_S = 300.0
# The option that names the store to the commands that read one (report, artifacts,
# reproduce), as their errors name it, and its help (resolve_tracking_uri reads it).
TRACKING_URI_OPTION = "--tracking-uri"
TRACKING_URI_HELP = (
    "MLflow store, or a directory holding its mlflow.db (default: "
    f"$MLFLOW_TRACKING_URI, else sqlite:///./{DEFAULT_STORE_DIR}/{DEFAULT_DB_NAME})"
)


def resolve_tracking_uri(configured: str | None, base: Path | None = None) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``./mlruns/mlflow.db``; a SQLite
    file named relative to ``base`` (the working directory unless given), ``sqlite:///mlflow.db``,
    made absolute, so every process of a sweep finds the same file, and ``~`` expanded as a
    shell would. A path with no scheme that names a file (``mlruns/mlflow.db``) or ends in
    ``.db`` is that SQLite database; any other (``mlruns``, as MLflow's users are used to) is a
    directory, whose ``mlflow.db`` is: MLflow would take it for its file store, which it no
    longer opens."""
    base = base or Path.cwd()
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or local_store_uri(base)
    if "://" not in uri:
        named = base / Path(uri).expanduser()
        if not named.is_file() and named.suffix != ".db":
            named = named / DEFAULT_DB_NAME
        return sqlite_uri(named.resolve())
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        return sqlite_uri(base / path.expanduser(), uri.partition("?")[2])
    return uri


def study_storage(tracking_uri: str | None, launch_dir: str) -> str:
    """Where a search keeps its Optuna study unless told (``hydra.sweeper.storage``): beside
    the tracking store's SQLite database (``tracking_uri`` as ``resolve_tracking_uri`` reads
    it), so that the two travel together; with a tracking server, in ``launch_dir/mlruns``."""
    database = sqlite_path(resolve_tracking_uri(tracking_uri))
    directory = database.parent if database is not None else Path(launch_dir) / DEFAULT_STORE_DIR
    return sqlite_uri(directory / STUDY_DB_NAME)


def local_store_uri(base: Path | None = None) -> str:
    """``./mlruns/mlflow.db`` (under ``base``, else the working directory), the store
    ``make ui`` browses."""
    return sqlite_uri((base or Path.cwd()) / DEFAULT_STORE_DIR / DEFAULT_DB_NAME)


def store_paths(uri: str) -> list[Path]:
    """What a SQLite store (``uri`` as ``resolve_tracking_uri`` returns it) writes: the
    artifacts of the experiments it makes, its database and a search's study, each with the
    files beside it that SQLite keeps and the locks taken on it (``mlflow.db.lock``,
    ``mlflow.db.sweep-<id>.lock``: those there now); nothing for a tracking server."""
    database = sqlite_path(uri)
    if database is None:
        return []
    paths = {database.with_name(ARTIFACTS_DIR)}
    for db in (database, database.with_name(STUDY_DB_NAME)):
        paths |= {db.with_name(db.name + suffix) for suffix in _BESIDE_DATABASE}
        paths |= set(db.parent.glob(glob.escape(db.name) + "*"))
    return sorted(paths)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite URI, read as SQLAlchemy (MLflow's opener) reads it: up
    to the query string (``?timeout=60``, which goes to SQLAlchemy as given), percent-decoded."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(unquote(uri.removeprefix("sqlite:///").partition("?")[0]))


def sqlite_uri(path: Path, query: str = "") -> str:
    """The SQLite URI of the database file ``path`` (absolute), ``query`` appended: the two
    characters SQLAlchemy reads otherwise in a path escaped."""
    escaped = str(path).replace("%", "%25").replace("?", "%3F")
    return f"sqlite:///{escaped}" + (f"?{query}" if query else "")


# A directory name that means the same on every filesystem: lower case (macOS folds case),
# no separator, not starting with a dot.
_PLAIN_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


def artifact_dir_name(experiment: str) -> str:
    """The directory, under the store's ``artifacts/``, of a new experiment's artifacts: its
    name where that is a plain directory name (``sweeper``), else the name's letters, digits
    and ``_.-`` (any others as ``_``, 60 at most) and 12 hex digits of its SHA-256, so that a
    name never leaves ``artifacts/`` (``/Shared/study``, ``..``) and two names never share a
    directory (``/Shared/study`` is ``Shared_study-9f3d661ed51a``)."""
    if _PLAIN_NAME.fullmatch(experiment):
        return experiment
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).strip("_.-")[:60]
    digest = hashlib.sha256(experiment.encode()).hexdigest()[:12]
    return f"{readable}-{digest}" if readable else digest


def is_http(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https")


# MLflow's UI server imports a module Starlette deprecates, which warns once per worker.
UI_QUIET = "ignore:starlette.middleware.wsgi"


def ui_command(uri: str) -> str:
    """The shell command that browses this store in the MLflow UI."""
    if is_http(uri):
        return f"open {shlex.quote(uri)}"
    return (
        f"PYTHONWARNINGS={shlex.quote(UI_QUIET)} {this_script('mlflow')} ui "
        f"--backend-store-uri {shlex.quote(uri)} --host 127.0.0.1"
    )
