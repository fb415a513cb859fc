"""Background services for the tests that need them (an MLflow UI or tracking server, a Ray
head): each in its own process group on 127.0.0.1, waited for, and stopped with everything it
spawned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 180.0
# Debian's chromium (make browser), which the browser tests drive through Playwright.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]

Service = tuple[subprocess.Popen[bytes], Path]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A service in its own process group, so that stop() ends everything it spawned."""
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM the service (it shuts down what it started), then its whole process group,
    SIGKILL what is left."""
    proc.terminate()
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and group_alive(proc.pid):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()
            if not group_alive(proc.pid):
                return
            time.sleep(0.5)


def wait_until(ready: Callable[[], bool], services: list[Service], what: str) -> None:
    """Poll ready() until it holds; fail with the logs if a service exits or time runs out."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        for proc, log in services:
            if proc.poll() is not None:
                pytest.fail(
                    f"{what}: {proc.args} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
        if ready():
            return
        time.sleep(1)
    logs = "\n".join(log.read_text()[-2000:] for _, log in services)
    pytest.fail(f"{what} not ready after {STARTUP_TIMEOUT:.0f} s:\n{logs}")


@contextmanager
def mlflow_service(command: list[str], log: Path, port: int | None = None) -> Iterator[str]:
    """``mlflow ui`` or ``mlflow server`` (``command``: the subcommand and its store options)
    on a free loopback port (or ``port``, to restart one); yields its address once /health
    answers."""
    address = f"http://127.0.0.1:{port or free_port()}"
    port = address.rsplit(":", 1)[1]
    proc = start(
        [str(BIN / "mlflow"), *command, "--host", "127.0.0.1", "--port", port, "--workers", "1"],
        log,
        {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"},
    )

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until(healthy, [(proc, log)], f"mlflow {command[0]}")
        yield address
    finally:
        stop(proc)
