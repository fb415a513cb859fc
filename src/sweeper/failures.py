"""How a failure reads to a person: one line that says what to fix, the traceback only when
asked for (``HYDRA_FULL_ERROR=1``, the way Hydra is asked), and whether running it again as it
is could succeed (:func:`failure_fix`)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from hydra_plugins.sweeper_launcher.interrupts import orphaned, terminated
from sweeper.config import ConfigError
from sweeper.core.training import TrainingDiverged
from sweeper.store import store_problem

# The reason a run stopped by Ctrl-C is given, in its tags and in the sweep's summary.
INTERRUPTED = "interrupted (Ctrl-C)"
# The shell's exit status for a command stopped by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130
# SIGTERM stops a command as Ctrl-C does (hydra_plugins...interrupts.terminate_as_interrupt),
# under these words and the shell's status for it (128 + SIGTERM).
TERMINATED = "interrupted (SIGTERM)"
EXIT_TERMINATED = 143
# A sweep's job whose sweep process is gone (killed outright) stops as at Ctrl-C, under these
# words (hydra_plugins...interrupts.interrupt_as_orphan).
ORPHANED = "interrupted (its sweep's process ended)"


def interruption() -> tuple[str, int]:
    """The reason and exit status of this process stopped as by Ctrl-C: by Ctrl-C, SIGTERM, or
    the end of the sweep's process that started it."""
    if orphaned():
        return ORPHANED, EXIT_INTERRUPTED
    return (TERMINATED, EXIT_TERMINATED) if terminated() else (INTERRUPTED, EXIT_INTERRUPTED)


def verbose_errors() -> bool:
    """Whether the user asked for tracebacks."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def failure_reason(err: BaseException) -> str:
    """One line a person can act on: the error's own message, not its traceback, or what
    went wrong with the store (``sweeper.store.store_problem``)."""
    problem = store_problem(err)
    if problem is not None:
        return problem
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def failure_fix(err: BaseException) -> str | None:
    """What to change in a run's config so that it does not fail the same way again, where
    the same config would (it diverged, a value is wrong); None where the same config may
    then succeed: its store did not answer, its disk was full, its data was missing or bad
    (the reason names the file and how to fetch it; the config is right), an error not
    foreseen."""
    if isinstance(err, TrainingDiverged):
        return "lower optimizer.lr"
    if isinstance(err, ConfigError):
        return "correct the value it names"
    return None


@contextmanager
def exit_on_error(what: str | None = None) -> Iterator[None]:
    """Turn an error in the block into one line on stderr and exit status 1: a ConfigError as
    ``Error: message`` (it names what to change), another error as ``Error: what: reason``."""
    try:
        yield
    except ConfigError as err:
        if verbose_errors():
            traceback.print_exc()
        print(f"Error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except Exception as err:
        if verbose_errors():
            traceback.print_exc()
        prefix = f"Error: {what}: " if what else "Error: "
        print(f"{prefix}{failure_reason(err)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
