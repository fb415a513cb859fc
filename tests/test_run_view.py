"""What a person sees of a run of its own (no -m): on a terminal, a live line while it trains,
what it prints above it, its result once the line is gone; elsewhere, its output as before."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import signal
import struct
import termios
from pathlib import Path

import pytest

from conftest import all_runs, run_cli
from helpers import OnATerminal
from sweeper import run_view
from sweeper.outcome import OUTPUT_FILE, RunProgress
from sweeper.run_view import RunView

# 50 training images of the digits: some test features lie far outside the training range,
# which the run warns about as it starts.
WARNS = ["dataset.max_train_samples=50", "train.batch_size=1", "gradcheck.enabled=false"]
WARNING = re.compile(r"\[\d{4}-[^\]]+\]\[sweeper\.experiment\]\[WARNING\] - digits: [^\r\n]+")
# Where the live view erased a line.
ERASED = "\x1b[2K"


def test_on_a_terminal_a_run_of_its_own_shows_its_epochs_live_then_its_result(
    workdir: Path,
) -> None:
    # A few seconds of training: the line is redrawn every half second.
    with OnATerminal([*WARNS, "train.epochs=1000", "train.patience=null"], workdir) as terminal:
        rc, text = terminal.finish()
    assert rc == 0, text
    assert re.search(r"  #0 [^\r\n]*: epoch [1-9]\d*/1000 val_acc=0\.\d{4} \d+:\d\d, ETA", text)
    assert re.search(r"epoch [1-9]\d*/1000 [^\r\n]*, ETA \d+:\d\d", text), text
    # The warning once, on a line of its own above the live line, which never showed it.
    (warning,) = WARNING.finditer(text)
    assert text[: warning.start()] in ("", "\r") or text[: warning.start()].endswith(ERASED)
    # The line taken away, then the run's result, as off a terminal.
    after = text.rsplit(ERASED, 1)[1]
    assert re.fullmatch(
        r"#0 [^\r\n]*: best_val_acc=\S+ test_acc=\S+ epochs=1000 \S+s\r\n"
        r"Run: \w+, its model runs:/\w+/model \(MLFLOW_TRACKING_URI=\S+\)\r\n"
        r"Browse: [^\r\n]+\r\n",
        after,
    ), after


def test_ctrl_c_on_a_terminal_ends_a_run_of_its_own_as_elsewhere(workdir: Path) -> None:
    with OnATerminal([*WARNS, "train.epochs=100000", "train.patience=null"], workdir) as terminal:
        text = terminal.read_until(lambda text: bool(re.search(r"epoch [1-9]\d*/100000", text)))
        assert re.search(r"epoch [1-9]\d*/100000", text), text
        terminal.proc.send_signal(signal.SIGINT)
        rc, text = terminal.finish()
    assert rc == 130, text
    # The message on the terminal once the line is gone, not in the run's output file.
    assert text.rsplit(ERASED, 1)[1] == "Interrupted (Ctrl-C).\r\n"
    (run,) = all_runs(workdir)
    assert (run.info.status, run.data.tags["reason"]) == ("KILLED", "interrupted (Ctrl-C)")


def test_off_a_terminal_a_run_of_its_own_prints_as_it_goes_and_nothing_more(
    workdir: Path,
) -> None:
    proc = run_cli([*WARNS, "train.epochs=3"], workdir)
    assert (proc.returncode, proc.stderr) == (0, "")
    warning, result, run, browse = proc.stdout.splitlines()
    assert WARNING.fullmatch(warning)
    assert re.fullmatch(r"#0 .*: best_val_acc=\S+ test_acc=\S+ epochs=3 \S+s", result)
    assert run.startswith("Run: ") and browse.startswith("Browse: ")
    assert not list(workdir.glob(f"outputs/*/{OUTPUT_FILE}"))


def test_the_line_has_an_eta_from_the_pace_of_the_epochs_and_what_the_run_prints_above_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich takes the stream for a terminal
    clock = [1000.0]
    monkeypatch.setattr(run_view.time, "time", lambda: clock[0])
    out = io.StringIO()

    def epoch(number: int, at: float) -> None:
        RunProgress(0, ["seed=3"], 30, 1000.0, epoch=number, val_acc=number / 40).save(tmp_path)
        clock[0] = at
        view.poll()

    with RunView(tmp_path, out=out, interval=60) as view:
        # As a library writes it, to the process's standard output.
        os.write(1, b"a warning\n")
        epoch(10, 1010.0)  # 10 epochs in 10 s from its start: 20 left
        epoch(20, 1020.0)  # 1 s an epoch: 10 left
        epoch(20, 1025.0)
    os.write(1, b"the result\n")
    text = out.getvalue()
    assert "  #0 seed=3: epoch 10/30 val_acc=0.2500 0:10, ETA 0:20" in text
    assert "  #0 seed=3: epoch 20/30 val_acc=0.5000 0:20, ETA 0:10" in text
    assert "  #0 seed=3: epoch 20/30 val_acc=0.5000 0:25, ETA 0:05" in text
    assert text.count("a warning") == 1 and text.index("a warning") < text.index("epoch 10")
    # The process writes to its standard output again once the run has ended.
    assert capfd.readouterr().out == "the result\n"
    assert (tmp_path / OUTPUT_FILE).read_text() == "a warning\n"


def test_the_line_fits_the_terminal_it_is_drawn_on_not_the_standard_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Meanwhile the standard streams go to the run's output file: rich would ask the terminal
    # size of stdin, or read COLUMNS.
    monkeypatch.setenv("COLUMNS", "200")
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    overrides = ["optimizer.lr=0.05", "topology.hidden=[512,512]", "train.epochs=4"]
    clock = [999.0]
    monkeypatch.setattr(run_view.time, "time", lambda: clock[0])
    with os.fdopen(side, "w") as terminal, RunView(tmp_path, out=terminal, interval=60) as view:
        RunProgress(0, overrides, 4, 1000.0, epoch=3, val_acc=0.9).save(tmp_path)
        clock[0] = 1003.0
        view.poll()
    os.set_blocking(main, False)
    drawn = os.read(main, 65536).decode()
    os.close(main)
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line) for line in drawn.split("\r")]
    (line, *_) = [line for line in lines if "epoch 3/4" in line]
    assert line.endswith(": epoch 3/4 val_acc=0.9000 0:03, ETA 0:01") and len(line) <= 60, line
