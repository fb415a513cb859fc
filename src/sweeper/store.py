"""The tracking store's failures: checked for before any run, retried for a bounded time
while runs record, and told in one line.

Before any run starts, :func:`check_store` checks the store once: a tracking server must answer
within a short time, a SQLite store must be a database in a directory that can be written.
While runs record, :func:`outage_retried` repeats a call the store did not answer, for a bounded
time per process. :func:`store_problem` turns a store's failure (unreachable, not a database,
no space left) into one line.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from mlflow.tracking import MlflowClient

from sweeper.store_uri import is_http, sqlite_path

T = TypeVar("T")

SQLITE_HEADER = b"SQLite format 3\x00"
# MLflow retries a request the server did not answer 7 times with doubling waits, minutes in
# all, before it raises; a sweep bounds the outage itself (outage_retried), so each call gives
# up sooner. A user's own MLFLOW_HTTP_REQUEST_* settings win.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
# Waits between calls during an outage double from the first to the last.
OUTAGE_FIRST_WAIT = 1.0
OUTAGE_MAX_WAIT = 10.0


# Seconds a tracking server has to answer a command that has no tracking.connect_timeout
# (the report, reproduce).
CONNECT_TIMEOUT_S = 10.0


class StoreError(RuntimeError):
    """The tracking store cannot be used; the message names it and says what to check."""


@dataclass
class _Store:
    """The store this process records to, and since when it has not answered."""

    uri: str = ""
    max_outage: float = 300.0
    outage_since: float | None = None


_store = _Store()


def _not_a_retry_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Retrying")


def configure(uri: str, max_outage: float) -> None:
    """Record to ``uri`` in this process; a call it does not answer is repeated until it has
    not answered for ``max_outage`` seconds."""
    _store.uri, _store.max_outage, _store.outage_since = uri, max_outage, None
    if is_http(uri):
        for key, value in HTTP_RETRY_DEFAULTS.items():
            os.environ.setdefault(key, value)
        # urllib3 logs each retry of MLflow's; outage_retried says it once, in one line.
        logging.getLogger("urllib3.connectionpool").addFilter(_not_a_retry_warning)


def _chain(err: BaseException) -> Iterator[BaseException]:
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
        for e in _chain(err)
    )


def short_reason(err: BaseException) -> str:
    """What the network said, without the URL, the pool and the retry counts around it."""
    for e in _chain(err):
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
        if match:
            return match.group(1).strip()
    text = str(err)
    if any(isinstance(e, requests.Timeout | TimeoutError) for e in _chain(err)):
        return "timed out"
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__


def outage_retried(call: Callable[[], T]) -> T:
    """``call()``, made again with growing waits while the store does not answer; once it has
    not answered for the configured time, a :class:`StoreError` that says so. The outage
    is this process's: a later call during it waits only for what is left."""
    wait = OUTAGE_FIRST_WAIT
    while True:
        started = time.monotonic()
        try:
            result = call()
        except Exception as err:
            if not unreachable(err):
                raise
            if _store.outage_since is None:
                _store.outage_since = started
                print(
                    f"Tracking store {_store.uri or '(unknown)'} not answering "
                    f"({short_reason(err)}); retrying for up to {_store.max_outage:g} s",
                    file=sys.stderr,
                    flush=True,
                )
            down = time.monotonic() - _store.outage_since
            left = _store.max_outage - down
            if left <= 0:
                raise StoreError(
                    f"tracking store {_store.uri} not answering for {down:.0f} s "
                    f"(tracking.max_outage={_store.max_outage:g}): {short_reason(err)}"
                ) from err
            time.sleep(min(wait, left, OUTAGE_MAX_WAIT))
            wait *= 2
            continue
        _store.outage_since = None
        return result


def store_problem(err: BaseException) -> str | None:
    """One line for a failure of the store (not answering, no space left), else None."""
    if isinstance(err, StoreError):
        return str(err)
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return f"no space left on device ({e.filename or _store_location()})"
        if "database or disk is full" in str(e):
            return f"no space left on device ({_store_location()})"
    return None


def _store_location() -> str:
    path = sqlite_path(_store.uri)
    return str(path) if path is not None else _store.uri or "the tracking store"


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


def check_store(uri: str, connect_timeout: float, writable: bool = True) -> None:
    """Raise a :class:`StoreError` unless the store at ``uri`` can be used: a tracking server
    answers within ``connect_timeout`` seconds, a SQLite store is a database (in a directory
    this process can write, unless only read: ``writable=False``). Other stores are left to
    MLflow."""
    path = sqlite_path(uri)
    if path is not None:
        if writable:
            _check_writable(path.parent)
        _check_database(path)
    elif is_http(uri):
        _check_server(uri, connect_timeout)


def _check_server(uri: str, timeout: float) -> None:
    start = time.monotonic()
    try:
        with _bounded_http(timeout):
            MlflowClient(uri).search_experiments(max_results=1)
    except Exception as err:
        if unreachable(err):
            raise StoreError(
                f"tracking server {uri} not answering ({short_reason(err)}, after "
                f"{time.monotonic() - start:.1f} s): is it running, and is the URI right? "
                "(tracking.uri or MLFLOW_TRACKING_URI)"
            ) from err
        raise StoreError(
            f"{uri} answered, but not as an MLflow tracking server: {short_reason(err)}"
        ) from err


# What a command that cannot use its store is told to do.
_OTHER_STORE = "set tracking.uri or MLFLOW_TRACKING_URI to another store"


def _check_writable(directory: Path) -> None:
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
            f"the store's directory {directory} cannot be written ({why}): {_OTHER_STORE}"
        ) from err


def _check_database(path: Path) -> None:
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
    except (OSError, sqlite3.DatabaseError) as err:
        raise StoreError(
            f"the store {path} is not a usable SQLite database ({err}): move it away, or "
            f"{_OTHER_STORE}"
        ) from err
