"""Whether a tracking store can be used, checked once before a command uses it: a tracking
server must answer within a short time, a SQLite store must be a database (in a directory that
can be written, for a command that records). What fails is told in one line, as a
:class:`StoreError` that names the store and says what to check: the setting that names the
store, the caller's (the app's ``tracking.uri``, a command's ``--tracking-uri``), or
``MLFLOW_TRACKING_URI``.
"""

from __future__ import annotations

import errno
import math
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient

from sweeper.store_uri import is_http, sqlite_path

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message names it and says what to check."""


def chain(err: BaseException) -> Iterator[BaseException]:
    """``err``, then its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the store did not answer (refused, reset, timed out), as opposed to
    a store that answered with an error. MLflow raises its own exception from within the
    handler of the requests error, which stays in the chain as its context."""
    return any(
        isinstance(e, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError)
        for e in chain(err)
    )


def short_reason(err: BaseException) -> str:
    """What the network said, without the URL, the pool and the retry counts around it."""
    for e in chain(err):
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
        if match:
            return match.group(1).strip()
    text = str(err)
    if any(isinstance(e, requests.Timeout | TimeoutError) for e in chain(err)):
        return "timed out"
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__


@contextmanager
def _bounded_http(timeout: float) -> Iterator[None]:
    """MLflow's HTTP calls in the block: one try each, ``timeout`` seconds (whole: MLflow reads
    an int) to connect and to answer."""
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout))),
    }
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def check_store(
    uri: str, connect_timeout: float, writable: bool = True, option: str = "tracking.uri"
) -> None:
    """Raise a :class:`StoreError` unless the store at ``uri`` can be used: a tracking server
    answers within ``connect_timeout`` seconds, a SQLite store is a database (in a directory
    this process can write, unless only read: ``writable=False``). Other stores are left to
    MLflow. The error names ``option`` as what sets the store."""
    path = sqlite_path(uri)
    if path is not None:
        if writable:
            _check_writable(path.parent, option)
        _check_database(path, option)
    elif is_http(uri):
        _check_server(uri, connect_timeout, option)


def _check_server(uri: str, timeout: float, option: str) -> None:
    start = time.monotonic()
    try:
        with _bounded_http(timeout):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:
        if unreachable(err):
            raise StoreError(
                f"tracking server {uri} not answering ({short_reason(err)}, after "
                f"{time.monotonic() - start:.1f} s): is it running, and is the URI right? "
                f"({option} or MLFLOW_TRACKING_URI)"
            ) from err
        raise StoreError(
            f"{uri} answered, but not as an MLflow tracking server: {short_reason(err)}"
        ) from err


def _other_store(option: str) -> str:
    """What a command that cannot use its store is told to do."""
    return f"set {option} or MLFLOW_TRACKING_URI to another store"


def _check_writable(directory: Path, option: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise StoreError(f"no space left on device ({directory})") from err
        # mkdir's answer for a path that is a file.
        why = "Not a directory" if isinstance(err, FileExistsError) else err.strerror
        raise StoreError(
            f"the store's directory {directory} cannot be written ({why}): {_other_store(option)}"
        ) from err


def read_only_filesystem(path: Path) -> bool:
    """Whether ``path`` is on a filesystem mounted read-only."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _unwritable_place(path: Path) -> str | None:
    """Where the database ``path`` is, if SQLite cannot write there: a read-only filesystem,
    or a directory (another user's store) or file this user may not write; else None."""
    if read_only_filesystem(path.parent):
        return "on a read-only filesystem"
    if not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK)):
        return "in a place this user cannot write"
    return None


def _check_database(path: Path, option: str) -> None:
    if not path.exists():
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if path.stat().st_size and header != SQLITE_HEADER:
            raise sqlite3.DatabaseError("file is not a database")
        conn = sqlite3.connect(path, timeout=20)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as err:
        # SQLite cannot open a WAL database (every store a sweep made) where it cannot create
        # the -shm file beside it: the database is fine, its place is not.
        place = _unwritable_place(path)
        if place is not None:
            raise StoreError(
                f"the store {path} is {place}, where SQLite cannot open it ({err}): copy "
                f"{path.parent} somewhere writable and use the copy"
            ) from err
        raise _not_a_database(path, err, option) from err
    except (OSError, sqlite3.DatabaseError) as err:
        raise _not_a_database(path, err, option) from err


def _not_a_database(path: Path, err: BaseException, option: str) -> StoreError:
    return StoreError(
        f"the store {path} is not a usable SQLite database ({err}): move it away, or "
        f"{_other_store(option)}"
    )
