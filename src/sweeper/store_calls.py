"""Every MLflow call on a store that several processes share goes through :func:`store_call`:
never cut in half by Ctrl-C, and made again while SQLite answers "database is locked" or, for
a bounded time, while the store does not answer.

Several processes (a sweep's workers, or two sweeps) write one SQLite file. MLflow waits 20 s
for the lock, but SQLite answers "database is locked" at once when a transaction that read must
turn into a writer after another wrote; the transaction was rolled back, so repeating the call
is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred
from sweeper.store import outage_retried

# Waits double from LOCK_RETRY_FIRST_WAIT, LOCK_RETRIES times, then the error is raised.
LOCK_RETRIES = 8
LOCK_RETRY_FIRST_WAIT = 0.05

P = ParamSpec("P")
T = TypeVar("T")


def _locked(err: BaseException) -> bool:
    return "database is locked" in str(err)


def store_call(func: Callable[P, T]) -> Callable[P, T]:
    """``func`` as a call on the shared store (the module's docstring)."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return outage_retried(lambda: locks_retried(*args, **kwargs))

    def locks_retried(*args: P.args, **kwargs: P.kwargs) -> T:
        # Ctrl-C inside an MLflow call can leave a SQLite write transaction half done, its
        # lock held, and every later write (the run's KILLED tag, the sweep's) waiting on it.
        with interrupts_deferred():
            for attempt in Retrying(
                retry=retry_if_exception(_locked),
                wait=wait_exponential(multiplier=LOCK_RETRY_FIRST_WAIT),
                stop=stop_after_attempt(LOCK_RETRIES + 1),
                reraise=True,
            ):
                with attempt:
                    return func(*args, **kwargs)
        raise AssertionError("unreachable: tenacity returns or reraises")

    return wrapper


def _not_a_locked_or_full_database(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "database is locked" not in message and "database or disk is full" not in message


# MLflow logs each SQLite "database is locked" or "database or disk is full" with a full
# traceback before it raises it. store_call retries the locked ones, and one that still fails
# raises and is reported as the run's failure in one line, so the log is only a traceback that
# reads as a crash (several processes writing at once, as when Ctrl-C stops a sweep's runs
# together, meet it; a full disk, in every run).
logging.getLogger("mlflow.store.db.utils").addFilter(_not_a_locked_or_full_database)
