"""The tracking store's failures while runs record: a call the store does not answer is
retried for a bounded time, and a failure of the store is told in one line.

:func:`outage_retried` repeats a call the store did not answer, for a bounded time per
process. :func:`store_problem` turns a store's failure (unreachable, not a database, no space
left) into one line. Whether a store can be used at all is checked before any run
(``sweeper.store_check``).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sweeper.store_check import StoreError, chain, short_reason, unreachable
from sweeper.store_uri import MAX_OUTAGE_S, is_http, sqlite_path

T = TypeVar("T")

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


@dataclass
class _Store:
    """The store this process records to, and since when it has not answered."""

    uri: str = ""
    max_outage: float = MAX_OUTAGE_S
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
        # MLflow prints a run's and its experiment's links as each run ends on a server; the
        # command prints its own, once.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # urllib3 logs each retry of MLflow's; outage_retried says it once, in one line.
        logging.getLogger("urllib3.connectionpool").addFilter(_not_a_retry_warning)


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
    for e in chain(err):
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return f"no space left on device ({e.filename or _store_location()})"
        if "database or disk is full" in str(e):
            return f"no space left on device ({_store_location()})"
    return None


def _store_location() -> str:
    path = sqlite_path(_store.uri)
    return str(path) if path is not None else _store.uri or "the tracking store"
