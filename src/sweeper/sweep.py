"""The sweep as a whole, around Hydra's multirun: check, announce, follow, summarise.

Before any worker starts, :class:`SweepCallback` composes and validates every planned run,
creates the MLflow store and the sweep's parent run (or, with ``resume=true``, finds the sweep
to continue), and leaves what the workers need in the sweep directory. While they run it prints
progress; at the end a summary, and the process exits non-zero if any run failed. If the
launcher gives up (Ctrl-C), :func:`stop_running_sweep` closes the records; a job whose process
died is recorded by :func:`record_dead_job` while the others go on.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from mlflow.entities import Run
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.sweeper_launcher.composing import ShapeCache
from sweeper.artifacts import make_best_run_artifacts
from sweeper.config import (
    ConfigError,
    TrackingConfig,
    config_hash,
    flat_params,
    to_experiment_config,
)
from sweeper.outcome import RunOutcome
from sweeper.progress import ProgressMonitor, summary_table, varying_overrides
from sweeper.store import StoreError, check_store, configure
from sweeper.tracking import (
    INTERRUPTED,
    ResumePoint,
    best_child_run,
    close_unfinished_runs,
    describe_run,
    end_sweep_run,
    failure_reason,
    find_resumable_sweep,
    prepare_store,
    reopen_sweep_run,
    resolve_tracking_uri,
    share_sweep_view,
    start_sweep_run,
    ui_command,
)
from sweeper.ui_links import (
    RANKED_BY,
    params_of_keys,
    runs_link,
    sweep_note,
    sweep_run_name,
    sweep_view,
    ui_address,
    varied_params,
)

SWEEP_FILE = "sweep.json"
# The shell's exit status for a command stopped by Ctrl-C (128 + SIGINT), the sweep's or a job's.
EXIT_INTERRUPTED = 130
# The workers' shared, memory-mapped copy of the prepared data; removed however the sweep
# ends (finished, interrupted, or stopped by an error).
DATASET_CACHE = "dataset-cache"
# Seconds a stopping sweep waits for its jobs' processes to close their own runs.
JOB_EXIT_WAIT = 30.0
# Hydra's own error lines that name its internals rather than the user's mistake.
_NOISE = ("full_key:", "reference_type=", "object_type=", "Config search path:")


def verbose_errors() -> bool:
    """Whether the user asked for tracebacks, the way Hydra is asked."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


@dataclass
class SweepInfo:
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    # config_hash of the planned runs that the resumed sweep already FINISHED.
    done_hashes: list[str] = field(default_factory=list)
    # The override keys that differ between runs, which name them; None: not known.
    varied_keys: list[str] | None = None

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepInfo:
        return cls(**json.loads((sweep_dir / SWEEP_FILE).read_text()))


def open_store(tracking: TrackingConfig | DictConfig) -> tuple[str, str]:
    """Check the configured store, create its experiment, and bound how long this process
    retries it later; return its URI and the experiment's id. A :class:`StoreError` says
    what is wrong with it in one line."""
    uri = resolve_tracking_uri(tracking.uri)
    check_store(uri, tracking.connect_timeout)
    try:
        experiment_id = prepare_store(uri, tracking.experiment)
    except Exception as err:
        raise StoreError(f"cannot use the tracking store {uri}: {failure_reason(err)}") from err
    configure(uri, tracking.max_outage)
    return uri, experiment_id


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each run's overrides, as Hydra's basic sweeper will expand them; None for other sweepers
    (Optuna picks its trials as it goes)."""
    sweeper_target = config.hydra.sweeper.get("_target_", "")
    if not sweeper_target.endswith(BasicSweeper.__name__):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def error_summary(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line errors on one line: what, the value, the choices."""
    text = str(err)
    if isinstance(err.__cause__, OmegaConfBaseException):
        # Hydra says which override failed; OmegaConf, in the cause, says why.
        text += "\n" + str(err.__cause__)
    summary = ""
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith(_NOISE[-1]):
            break
        if not line or line.startswith(_NOISE):
            continue
        separator = " " if not summary or summary.endswith(":") else "; "
        summary = f"{summary}{separator}{line}" if summary else line
    return summary


def validate_jobs(config_name: str, jobs: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """Compose and validate every run and return each one's ``flat_params``; raise one
    ConfigError listing every invalid run."""
    problems: dict[str, list[str]] = {}
    params = []
    hydra = GlobalHydra.instance().hydra
    assert hydra is not None  # Hydra is composing this sweep
    shapes = ShapeCache(hydra.config_loader)  # type: ignore[arg-type]
    for job in jobs:
        try:
            cfg = shapes.compose(config_name, job)
            to_experiment_config(cfg)
            params.append(flat_params(cfg))
        except (ConfigError, HydraException, OmegaConfBaseException) as err:
            problems.setdefault(error_summary(err), []).append(" ".join(job) or "(defaults)")
    if problems:
        lines = [
            f"{sum(map(len, problems.values()))} of {len(jobs)} runs are invalid; nothing was run:"
        ]
        for message, bad_jobs in problems.items():
            lines.append(
                f"  {message}  (in: {'; '.join(bad_jobs[:3])}{' ...' if len(bad_jobs) > 3 else ''})"
            )
        raise ConfigError("\n".join(lines))
    return params


@contextmanager
def _exit_on_error(what: str) -> Iterator[None]:
    """Turn an error in the block into one line and exit status 1. Hydra turns an exception
    in a callback into a warning, then launches the jobs anyway or exits 0."""
    try:
        yield
    except ConfigError as err:
        print(err, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except Exception as err:
        if verbose_errors():
            traceback.print_exc()
        print(f"Error: {what}: {failure_reason(err)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


class SweepCallback(Callback):
    def __init__(self) -> None:
        self._monitor: ProgressMonitor | None = None
        self._info: SweepInfo | None = None
        self._keys: set[str] | None = None
        self._jobs: list[list[str]] | None = None
        self._skipped = 0
        self._resume_command = ""
        self._command = ""

    def __getstate__(self) -> dict[str, Any]:
        # Hydra ships its callbacks to the workers; the monitor thread stays in this process.
        return {
            "_monitor": None,
            "_info": None,
            "_keys": None,
            "_jobs": None,
            "_skipped": 0,
            "_resume_command": "",
            "_command": "",
        }

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with _exit_on_error("the sweep could not start"):
            self._start(config, kwargs["config_name"])

    def _start(self, config: DictConfig, config_name: str) -> None:
        global _running
        if config.hydra.launcher.get("n_jobs") == 0:
            # joblib's meaning: -1 one per core, -2 all but one; 0 means nothing.
            raise ConfigError(
                "hydra.launcher.n_jobs=0 is invalid: how many runs at a time, -1 for one per core"
            )
        jobs = planned_jobs(config)
        hashes: list[str] = []
        if jobs is not None:
            params = validate_jobs(config_name, jobs)
            hashes = [config_hash(p) for p in params]
            self._keys = varying_overrides(jobs)
            param_keys = varied_params(params)
        elif config.resume:
            raise ConfigError("resume=true needs Hydra's basic sweeper, which plans every run")
        else:
            # Optuna draws its trials as it goes: what varies is its search space, the
            # sweeper's params and the command line's sweep overrides.
            lines = list(config.hydra.overrides.task)
            task = OverridesParser.create().parse_overrides(lines)
            searched = {o.get_key_element() for o in task if o.is_sweep_override()}
            self._keys = set(config.hydra.sweeper.get("params") or {}) | searched
            fixed = [line for line, o in zip(lines, task, strict=True) if not o.is_sweep_override()]
            base = compose(config_name=config_name, overrides=fixed)
            param_keys = params_of_keys(flat_params(base), self._keys)
        self._jobs = jobs
        uri, experiment_id = open_store(config.tracking)
        sweep_dir = Path(config.hydra.sweep.dir)
        kept = [o for o in config.hydra.overrides.task if not o.startswith("resume=")]
        self._resume_command = shlex.join(["python", "-m", "sweeper", "-m", *kept, "resume=true"])
        overrides = " ".join(config.hydra.overrides.task)
        resumed = find_resumable_sweep(uri, experiment_id, hashes) if config.resume else None
        if resumed is None:
            if config.resume:
                print(
                    "resume=true: no sweep in the store ran any of these configurations; "
                    "starting a new sweep",
                    flush=True,
                )
            name = sweep_run_name(self._keys, sweep_dir.name)
            parent = start_sweep_run(uri, experiment_id, sweep_dir.name, overrides, name)
            self._info = SweepInfo(sweep_dir.name, uri, experiment_id, parent)
        else:
            self._info = self._resume(resumed, hashes, uri, experiment_id, overrides)
        self._info.varied_keys = sorted(self._keys) if self._keys is not None else None
        self._command = shlex.join(["python", "-m", "sweeper", "-m", *kept])
        share_sweep_view(
            uri,
            experiment_id,
            self._info.parent_run_id,
            sweep_view(self._info.parent_run_id, param_keys),
        )
        describe_run(uri, self._info.parent_run_id, sweep_note(self._command, self._keys))
        self._info.save(sweep_dir)
        total = (
            len(jobs) - self._skipped if jobs is not None else config.hydra.sweeper.get("n_trials")
        )
        print(
            f"Sweep {self._info.sweep_id}: {total if total is not None else '?'} runs, "
            f"tracking to {uri}",
            flush=True,
        )
        self._monitor = ProgressMonitor(sweep_dir, total, self._keys).start()
        _running = self

    def _resume(
        self, resumed: ResumePoint, hashes: list[str], uri: str, experiment_id: str, overrides: str
    ) -> SweepInfo:
        """Continue ``resumed``: its FINISHED configurations are skipped, the others run as
        children of its parent run, under its sweep_id."""
        self._skipped = sum(h in resumed.finished_hashes for h in hashes)
        print(
            f"Resuming sweep {resumed.sweep_id}: skipping {self._skipped} of {len(hashes)} "
            "runs, FINISHED there already",
            flush=True,
        )
        if self._skipped == len(hashes):
            print("Nothing left to run.", flush=True)
            raise SystemExit(0)
        reopen_sweep_run(uri, resumed.parent_run_id, overrides)
        done = sorted(resumed.finished_hashes.intersection(hashes))
        return SweepInfo(resumed.sweep_id, uri, experiment_id, resumed.parent_run_id, done)

    def _wind_down(self) -> list[RunOutcome]:
        """However the sweep ends: stop following it, return every outcome, and remove the
        workers' dataset cache, which nothing reads any more."""
        assert self._monitor is not None
        outcomes = self._monitor.stop()
        shutil.rmtree(self._monitor.sweep_dir / DATASET_CACHE, ignore_errors=True)
        return outcomes

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        with _exit_on_error("the sweep could not be completed"):
            self._end(config)

    def _end(self, config: DictConfig) -> None:
        global _running
        _running = None
        assert self._monitor is not None and self._info is not None
        outcomes = self._wind_down()
        failed = [o for o in outcomes if o.failed]
        skipped = f", {self._skipped} skipped (finished before)" if self._skipped else ""
        print(
            f"\nSweep {self._info.sweep_id}: {len(outcomes) - len(failed)} finished, "
            f"{len(failed)} failed{skipped}\n"
        )
        print(summary_table(outcomes, self._keys))
        print(f"\nBrowse:  {ui_command(self._info.tracking_uri)}   (or: make ui)")
        address = ui_address(self._info.tracking_uri)
        if address is not None:
            link = runs_link(address, self._info.experiment_id, self._info.parent_run_id)
            print(f"   then open {link}")
        experiment = shlex.quote(config.tracking.experiment)
        print(
            f"Report:  make report SWEEP={self._info.sweep_id} EXPERIMENT={experiment}", flush=True
        )
        # After the summary, which comes from the outcome files: a store that does not answer
        # is retried for up to tracking.max_outage first.
        unrecorded = None
        try:
            best = self._describe_best()
            if best is not None:
                made = make_best_run_artifacts(
                    self._info.tracking_uri,
                    best.info.run_id,
                    config.tracking.model,
                    config.tracking.curves,
                )
                if made:
                    print(f"Made for the best run: {', '.join(made)}", flush=True)
            end_sweep_run(
                self._info.tracking_uri,
                self._info.parent_run_id,
                self._skipped + len(outcomes),
                len(failed),
            )
        except Exception as err:
            if verbose_errors():
                traceback.print_exc()
            unrecorded = failure_reason(err)
        if failed:
            # Hydra counts a multirun as successful once every job has returned; failed runs
            # were recorded, not raised, so the exit status is decided here.
            reasons = "\n".join(f"  #{o.job} {' '.join(o.overrides)}: {o.reason}" for o in failed)
            print(
                f"\n{len(failed)} run(s) failed:\n{reasons}\n"
                f"Run them again with:  {self._resume_command}",
                file=sys.stderr,
                flush=True,
            )
        if unrecorded is not None:
            print(
                f"Error: the sweep's end could not be recorded in {self._info.tracking_uri}: "
                f"{unrecorded}",
                file=sys.stderr,
                flush=True,
            )
        if failed or unrecorded is not None:
            raise SystemExit(1)

    def _describe_best(self) -> Run | None:
        """Name the sweep's best run in its parent's description; return it."""
        info = self._info
        assert info is not None
        best = best_child_run(info.tracking_uri, info.experiment_id, info.parent_run_id, RANKED_BY)
        if best is not None:
            name = best.info.run_name or best.info.run_id
            note = sweep_note(
                self._command,
                self._keys,
                (name, best.info.run_id, best.data.metrics),
                info.experiment_id,
            )
            describe_run(info.tracking_uri, info.parent_run_id, note)
        return best

    def stop(self, interrupted: bool, cause: BaseException | None) -> None:
        """The launcher gave up: keep what finished, close the runs it cut short, and say
        what did not run and how to complete it."""
        assert self._monitor is not None and self._info is not None
        info = self._info
        if interrupted:
            wait_for_job_processes(JOB_EXIT_WAIT)
            status, reason = "KILLED", INTERRUPTED
        else:
            status, reason = "FAILED", f"the sweep stopped: {type(cause).__name__}: {cause}"
        outcomes = self._wind_down()
        cut_short = [
            run.info.run_name or run.info.run_id
            for run in close_unfinished_runs(
                info.tracking_uri, info.experiment_id, info.parent_run_id, status, reason
            )
        ]
        n_planned = len(self._jobs) - self._skipped if self._jobs is not None else None
        end_sweep_run(
            info.tracking_uri,
            info.parent_run_id,
            self._skipped + len(outcomes),
            sum(o.failed for o in outcomes) + len(cut_short),
            status,
        )
        finished = sum(not o.failed for o in outcomes)
        unfinished = f"{n_planned - len(outcomes)}" if n_planned is not None else "the other"
        lines = [
            f"\nSweep {info.sweep_id} stopped ({reason}): {finished} run(s) finished and kept, "
            f"{len(outcomes) - finished} failed, {unfinished} not run or cut short "
            f"(the runs in progress are marked {status}).",
        ]
        lines += [f"  {status}: {name}" for name in cut_short]
        lines.append(f"Complete it with:  {self._resume_command}")
        print("\n".join(lines), file=sys.stderr, flush=True)


def wait_for_job_processes(timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, for the processes this one started for jobs (the
    local launcher's) to end. On Ctrl-C each closes its own run; the sweep then closes only
    what they left open, never a run its worker is closing at the same moment."""
    deadline = time.monotonic() + timeout
    for process in multiprocessing.active_children():
        process.join(max(0.0, deadline - time.monotonic()))


def record_dead_job(
    sweep_dir: Path,
    job_dir: Path,
    job: int,
    overrides: list[str],
    pid: int,
    status: str,
    reason: str,
    seconds: float,
) -> RunOutcome:
    """A job whose process ``pid`` died before it could record its own end: close its MLflow
    run (its metrics so far stay) and leave its outcome where the sweep's monitor reads it."""
    info = SweepInfo.load(sweep_dir)
    closed = close_unfinished_runs(
        info.tracking_uri, info.experiment_id, info.parent_run_id, status, reason, pid=pid
    )
    run_id = closed[0].info.run_id if closed else None
    outcome = RunOutcome(job, overrides, status, reason, seconds, run_id)
    job_dir.mkdir(parents=True, exist_ok=True)
    outcome.save(job_dir)
    return outcome


# The sweep whose jobs are running in this process, for stop_running_sweep.
_running: SweepCallback | None = None


def stop_running_sweep(interrupted: bool, cause: BaseException | None = None) -> bool:
    """Close the records of the sweep whose launcher stopped early (Ctrl-C: ``interrupted``;
    else ``cause``, what stopped it). False if no sweep was running."""
    global _running
    sweep, _running = _running, None
    if sweep is None:
        return False
    # A second Ctrl-C must not cut the bookkeeping short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sweep.stop(interrupted, cause)
    return True
