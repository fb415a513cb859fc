"""Ctrl-C held back while a block that must not be cut in half runs, and SIGTERM taken as
Ctrl-C (``kill``, ``timeout``, a container or a batch system stopping the process), as is the
end of the command that started this process. A launcher in use registers here how its jobs
are stopped (:func:`register_job_stops`), so that the sweep that stops stops them without
naming the launcher."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# "terminated": whether a SIGTERM stopped this process; "ignored_from_start": whether Ctrl-C
# was ignored when terminate_as_interrupt was called (a command a script or a batch system
# started with `&`: SIGTERM is the only Ctrl-C it gets); "orphaned": whether this process
# stopped because the command that started it is gone. Kept when Hydra's plugin scan
# executes this module again, in place, after the handler is installed.
_STATE: dict[str, bool] = globals().get("_STATE") or {
    "terminated": False,
    "ignored_from_start": False,
    "orphaned": False,
}
# When a SIGTERM stopped this process (time.monotonic), kept as _STATE is.
_TERMINATED_AT: list[float] = globals().get("_TERMINATED_AT") or [0.0]
# A SIGTERM this soon after the one that stopped the process is that stop sent again.
REPEATED_STOP_S = 1.0
# How each launcher in use stops its jobs (register_job_stops), by name, kept as _STATE is.
_JOB_STOPS: dict[str, tuple[Callable[[], None], Callable[[float], None]]] = (
    globals().get("_JOB_STOPS") or {}
)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (and SIGTERM where :func:`terminate_as_interrupt` took it) back until the
    block ends, then raise it, in place of an exception the block raised (chained to it).
    Signal handlers belong to the main thread; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    held = [signal.SIGINT]
    if callable(signal.getsignal(signal.SIGTERM)):
        held.append(signal.SIGTERM)
    previous = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum))
        for signum in held
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        # Passed on however the block ended: a caller that catches its error and tries again
        # (a store call during an outage) would otherwise never see the Ctrl-C.
        for arrived in received:
            handler = previous[signal.Signals(arrived)]
            if callable(handler):
                handler(arrived, None)


def terminate_as_interrupt() -> None:
    """From now on a SIGTERM stops this process as Ctrl-C does: it is handed to whatever
    handles Ctrl-C at that moment, or raises KeyboardInterrupt where Ctrl-C was ignored from
    the start. Where Ctrl-C is ignored since (a process closing its records, one that chose
    to), SIGTERM ends the process as it would have, so such a process can still be stopped;
    but not one that comes within ``REPEATED_STOP_S`` of the SIGTERM that stopped it: the same
    stop sent again (``timeout`` signals the command, then its process group). Main thread
    only."""
    _STATE["ignored_from_start"] = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.signal(signal.SIGTERM, _terminate)


def ignore_interrupts() -> None:
    """Ignore Ctrl-C from now on, as a stopped process closing its records does (a second
    Ctrl-C must not cut them short). A SIGTERM then ends the process, as where Ctrl-C is
    ignored since (:func:`terminate_as_interrupt`), whether or not it was ignored from the
    start: a process started with it ignored has taken its stop already."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _STATE["ignored_from_start"] = False


def _terminate(signum: int, frame: FrameType | None) -> None:
    now = time.monotonic()
    if _STATE["terminated"] and now - _TERMINATED_AT[0] < REPEATED_STOP_S:
        return
    interrupt = signal.getsignal(signal.SIGINT)
    if callable(interrupt):
        _stopped_by_sigterm(now)
        interrupt(signal.SIGINT, frame)
        return
    if _STATE["ignored_from_start"] and not _STATE["terminated"]:
        _stopped_by_sigterm(now)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def stopped_by_sigterm() -> None:
    """Take this process as stopped by a SIGTERM that reached another of the sweep's processes
    (a Ray task's worker, which the sweep stops through Ray, not by a signal of its own)."""
    _stopped_by_sigterm(time.monotonic())


def forget_stop() -> None:
    """This process, reused for another job (a Ray worker), no longer counts as stopped by
    :func:`stopped_by_sigterm`."""
    _STATE["terminated"] = False


def _stopped_by_sigterm(now: float) -> None:
    _STATE["terminated"] = True
    _TERMINATED_AT[0] = now


def interrupt_as_orphan() -> None:
    """Stop this process as Ctrl-C does, because the command that started it is gone (``kill
    -9``): nobody is left to press Ctrl-C. Any thread."""
    _STATE["orphaned"] = True
    os.kill(os.getpid(), signal.SIGINT)


def orphaned() -> bool:
    """Whether :func:`interrupt_as_orphan` stopped this process."""
    return _STATE.get("orphaned", False)


def terminated() -> bool:
    """Whether a SIGTERM taken as Ctrl-C, not Ctrl-C alone, stopped this process."""
    return _STATE["terminated"]


def register_job_stops(
    launcher: str, refuse: Callable[[], None], stop: Callable[[float], None]
) -> None:
    """How ``launcher`` (a name; registered again, it replaces its hooks) stops its jobs when
    the sweep stops: ``refuse()`` starts no job from then on, and must be safe in a signal
    handler; ``stop(timeout)`` stops the jobs in progress and waits until each is done with,
    ``timeout`` seconds at most before it ends them outright."""
    _JOB_STOPS[launcher] = (refuse, stop)


def refuse_new_jobs() -> None:
    """No launcher starts a job from now on (Ctrl-C's handler calls it, before
    :func:`stop_jobs`)."""
    for refuse, _ in list(_JOB_STOPS.values()):
        refuse()


def stop_jobs(timeout: float) -> None:
    """Ctrl-C (or SIGTERM) stopped the sweep: every launcher in use stops its jobs, each its
    running ones interrupted by that stop and their ends recorded, waiting ``timeout`` seconds
    at most before ending them outright."""
    deadline = time.monotonic() + timeout
    for _, stop in list(_JOB_STOPS.values()):
        stop(max(0.0, deadline - time.monotonic()))
