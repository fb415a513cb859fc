"""What a person at the terminal sees of a run of its own (no ``-m``) while it trains: the line
a sweep's live view shows for a run in progress (``progress.running_line``, read from the same
progress file), with an ETA from the pace of its epochs, redrawn in place and erased as the run
ends. Meanwhile what the process prints (a warning, a store's retries) goes to the run's
output file and is printed above the line, as a sweep's runs' is. Off a terminal nothing
changes: the run prints as it goes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.text import Text

from sweeper.outcome import (
    OUTPUT_FILE,
    PROGRESS_FILE,
    PROGRESS_SECONDS,
    RunProgress,
    send_output_to,
)
from sweeper.progress import format_duration, relay_output, running_line


class RunView:
    """Around a run of its own in this process (``with RunView(out_dir): run_config(...)``):
    on a terminal, polls its progress file in a background thread and keeps its live line."""

    def __init__(
        self, out_dir: Path, out: TextIO | None = None, interval: float = PROGRESS_SECONDS
    ) -> None:
        self.out_dir = out_dir
        self.interval = interval
        self._out = out
        # As a sweep's monitor decides whether it draws: where standard output is a terminal.
        self._terminal = Console(file=out or sys.stdout).is_terminal
        self._console: Console | None = None
        self._live: Live | None = None
        # The process's standard output and error, while they go to the run's output file.
        self._saved: tuple[int, int] | None = None
        self._relayed = 0
        self._since = 0.0
        # When the first epoch seen and the latest were seen, with their numbers: the pace.
        self._first: tuple[float, int] | None = None
        self._latest: tuple[float, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-progress", daemon=True)

    def __enter__(self) -> RunView:
        if not self._terminal:
            return self
        self._since = time.time()
        # The line goes on the terminal through a descriptor of its own: the process's go to
        # the run's output file.
        terminal = self._out or os.fdopen(
            os.dup(sys.stdout.fileno()), "w", encoding=sys.stdout.encoding
        )
        self._console = Console(file=terminal, force_terminal=True, highlight=False)
        sys.stdout.flush()
        sys.stderr.flush()
        self._saved = (os.dup(1), os.dup(2))
        try:
            send_output_to(self.out_dir)
            # An earlier run's output, where a run directory is given again, was shown then.
            self._relayed = (self.out_dir / OUTPUT_FILE).stat().st_size
            self._live = Live(
                self._view(),
                console=self._console,
                auto_refresh=False,
                transient=True,
                # All the process prints takes one way, the output file, and keeps its order.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
            self._thread.start()
        except BaseException:  # Ctrl-C as it starts too: the terminal given back
            self.__exit__(None, None, None)
            raise
        return self

    def _view(self) -> Text:
        try:
            run = RunProgress.load(self.out_dir / PROGRESS_FILE)
        except (OSError, ValueError, TypeError):
            return Text()  # not written yet, or being replaced
        if run.started < self._since:
            return Text()  # an earlier run's, in a run directory given again
        now = time.time()
        if run.epoch > 0:
            self._first = self._first or (now, run.epoch)
            if self._latest is None or run.epoch > self._latest[1]:
                self._latest = (now, run.epoch)
        eta = "?"
        if self._first is not None and self._latest is not None:
            (first_seen, first), (latest_seen, latest) = self._first, self._latest
            # The epochs seen to end here, else (one seen) the first with the data's loading.
            if latest > first:
                per_epoch = (latest_seen - first_seen) / (latest - first)
            else:
                per_epoch = (latest_seen - run.started) / latest
            left = per_epoch * (run.epochs - latest) - (now - latest_seen)
            eta = format_duration(max(left, 0.0))
        tail = f", ETA {eta}"
        return Text(running_line(run, None, now, self._width() - len(tail)) + tail)

    def _width(self) -> int:
        """The terminal's columns, asked of the descriptor the line goes to: rich asks the
        process's standard streams, which go to the output file meanwhile."""
        assert self._console is not None
        try:
            return os.get_terminal_size(self._console.file.fileno()).columns
        except (OSError, ValueError):
            return self._console.width

    def poll(self) -> None:
        """Print what the run printed since the last poll, and redraw its line."""
        assert self._live is not None
        self._relay_output()
        self._live.update(self._view(), refresh=True)

    def _relay_output(self, whole: bool = False) -> None:
        """Print what the run printed since the last poll: whole lines, or all with
        ``whole``."""
        assert self._console is not None
        self._relayed = relay_output(
            self.out_dir / OUTPUT_FILE, self._relayed, self._console, whole
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Take the line away, after all the run printed (Ctrl-C's ending of it too), and give
        the process its terminal back for the run's result."""
        if self._saved is None or self._console is None:
            return
        try:
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join()
            sys.stdout.flush()
            sys.stderr.flush()
            self._relay_output(whole=True)
        finally:
            try:
                if self._live is not None:
                    self._live.stop()
            finally:
                for saved, fd in zip(self._saved, (1, 2), strict=True):
                    os.dup2(saved, fd)
                    os.close(saved)
                if self._out is None:
                    self._console.file.close()
                self._live, self._saved = None, None
