"""The sweep as a whole, around Hydra's multirun: :class:`SweepCallback` starts it and ends it.

At the start it plans and validates every run (``sweeper.plan``), opens the store, starts the
sweep's parent run (its id the sweep directory's name, ``-2``, ``-3``... after it where an
earlier sweep has that) or continues the sweep a ``resume=true`` command names
(``sweeper.resume``), leaves what the runs need in the sweep directory (``sweeper.sweep_info``)
and follows them (``sweeper.progress``). At the end it prints the summary, records the sweep's
end, and exits non-zero if any run failed or was cut short. From the moment its parent run is
known until the command ends, the command holds the sweep (``sweep_info.hold_sweep``): a
second command that would run it too stops in one line. A sweep stopped early is closed by
``sweeper.stopping``. Before any of that, :class:`ShareStore` names the sweep's store for the
local launcher's fork server.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Run
from omegaconf import DictConfig

from hydra_plugins.sweeper_launcher.composing import typed
from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred
from sweeper import CHECKOUT
from sweeper.artifacts import has_model, make_best_run_artifacts, model_reference
from sweeper.config import CONFIG_NAME, names_configuration
from sweeper.data.cache import DataCache, keep_prepared, user_data_cache
from sweeper.failures import exit_on_error, failure_reason, verbose_errors
from sweeper.names import FAILED, KILLED
from sweeper.outcome import (
    RunOutcome,
    count_failed,
    count_finished,
    count_killed,
    count_pruned,
    count_runs,
    ended_counts,
    retried,
)
from sweeper.plan import Plan, plan_sweep
from sweeper.progress import ProgressMonitor, failed_checks, format_duration, summary_table
from sweeper.resume import (
    continue_sweep,
    find_resumable_sweep,
    finished_before,
    finished_hashes,
    unfinished_outside,
)
from sweeper.search import is_search, search_resume_point
from sweeper.shell import python_command, this_python
from sweeper.stopping import SweepStop
from sweeper.store_setup import open_store
from sweeper.store_uri import (
    SWEEP_STORE_VARIABLE,
    TRACKING_URI_OPTION,
    local_store_uri,
    resolve_tracking_uri,
    ui_command,
)
from sweeper.sweep_info import DATASET_CACHE, SweepHold, SweepInfo, claim, hold_sweep
from sweeper.sweep_runs import (
    best_child_run,
    describe_run,
    end_sweep_run,
    free_sweep_id,
    share_sweep_view,
    start_sweep_run,
)
from sweeper.ui_links import (
    runs_link,
    sweep_command,
    sweep_note,
    sweep_run_name,
    sweep_view,
    ui_address,
)
from sweeper.words import plural

# Hydra settings that a command run again makes anew: its mode and its own directories.
_PER_COMMAND = ("hydra.mode=", "hydra.sweep.dir=", "hydra.run.dir=")


def command_words(config: DictConfig, config_name: str) -> list[str]:
    """The command line's words after ``-m`` as a command that runs the sweep again gives
    them: the config directories it added and its config's name, where not the app's, and
    its overrides, Hydra's (launcher, sweeper) included, less ``resume=``."""
    flags = [
        word
        for source in config.hydra.runtime.config_sources
        if source.provider == "command-line"
        for word in ("--config-dir", str(source.path))
    ]
    if config_name != CONFIG_NAME:
        flags += ["--config-name", config_name]
    hydra = [o for o in typed(config.hydra.overrides.hydra) if not o.startswith(_PER_COMMAND)]
    task = [o for o in typed(config.hydra.overrides.task) if not o.startswith("resume=")]
    return [*flags, *hydra, *task]


class ShareStore(Callback):
    """Names the sweep's store in this process's environment as the sweep starts, before the
    local launcher's fork server starts with it, so that the server opens the store once for
    all the runs (``sweeper.preload``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEEP_STORE_VARIABLE] = resolve_tracking_uri(config.tracking.uri)


def _skipped_text(skipped: int, failed: int, pruned: int) -> str:
    """``, 4 skipped (finished before)``, or how the earlier command's runs that a resumed
    search skips ended; nothing where none is skipped."""
    if not skipped:
        return ""
    ended = ((skipped - failed - pruned, "finished"), (pruned, "pruned"), (failed, "failed"))
    before = "finished" if not failed + pruned else ", ".join(f"{n} {e}" for n, e in ended if n)
    return f", {skipped} skipped ({before} before)"


def commands_to_look(
    uri: str, sweep_id: str, experiment: str, in_checkout: bool
) -> tuple[str, str]:
    """The commands that browse the sweep's store and report on the sweep; make's targets
    where they work, in the checkout (make ui browses ./mlruns, make report the default
    store: ./mlruns, or $MLFLOW_TRACKING_URI)."""
    browse = ui_command(uri) + (
        "   (or: make ui)" if in_checkout and uri == local_store_uri() else ""
    )
    named = f" {TRACKING_URI_OPTION} {shlex.quote(uri)}"
    store = "" if uri == resolve_tracking_uri(None) else named
    quoted = shlex.quote(sweep_id)
    # The Makefile quotes SWEEP itself: an id the shell would split or unquote goes to Python.
    if in_checkout and quoted == sweep_id:
        # Quoted twice: make hands ARGS to the shell unquoted, which splits it again.
        args = f" ARGS={shlex.quote(store.strip())}" if store else ""
        return browse, f"make report SWEEP={sweep_id} EXPERIMENT={shlex.quote(experiment)}{args}"
    command = python_command(
        "-m", "sweeper.report", "--sweep", sweep_id, "--experiment", experiment
    )
    return browse, command + store


class SweepCallback(Callback):
    def __init__(self) -> None:
        self._monitor: ProgressMonitor | None = None
        self._info: SweepInfo | None = None
        self._keys: set[str] | None = None
        self._stop: SweepStop | None = None
        self._data_cache: DataCache | None = None
        # The planned runs that a resumed sweep does not run (a search: its budget spent).
        self._skipped = 0
        # The runs that ended before this command and are not run again, and of them those a
        # resumed search's trials failed in (they count as done).
        self._ended_before = 0
        self._failed_before = 0
        self._resume_command = ""
        # The runs a resumed sweep finished before this command, for its summary; and the
        # newest runs of its configurations this command left out that did not finish.
        self._before: list[RunOutcome] = []
        self._left_out: list[Run] = []
        # Whether this sweep continues one in the store (resume=true found it).
        self._resumed = False
        self._command = ""
        self._rerun_command = ""
        # The sweep directory's name where an earlier sweep of the experiment has it as its id.
        self._id_taken: str | None = None
        # The lock on the sweep directory (sweep_info.claim), held until the sweep ends.
        self._claim: int | None = None
        # The lock on the sweep itself (sweep_info.hold_sweep), held until the command ends.
        self._hold: SweepHold | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Hydra ships its callbacks to the workers; the sweep's state stays in this process.
        return vars(SweepCallback())

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_error("the sweep could not start"):
            self._start(config, kwargs["config_name"])

    def _start(self, config: DictConfig, config_name: str) -> None:
        plan = plan_sweep(config, config_name)
        sweep_dir = Path(config.hydra.sweep.dir)
        self._claim = claim(sweep_dir)
        self._keys = plan.keys
        # Checked here, so a bad size stops the sweep before its runs read it.
        self._data_cache = user_data_cache()
        uri, experiment_id = open_store(config.tracking)
        kept = command_words(config, config_name)
        self._command = sweep_command(kept)
        self._rerun_command = sweep_command(kept, this_python())
        self._resume_command = sweep_command([*kept, "resume=true"], this_python())
        try:
            self._open_sweep(config, plan, sweep_dir, uri, experiment_id)
            self._follow(plan, sweep_dir, uri, experiment_id)
        except BaseException as stopped:
            if self._info is not None:
                self._close_unstarted(stopped)
            raise

    def _close_unstarted(self, stopped: BaseException) -> None:
        """End the parent run of a sweep stopped before its Ctrl-C handler was in place."""
        assert self._info is not None
        interrupted = isinstance(stopped, KeyboardInterrupt)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bookkeeping finishes
        try:
            if self._monitor is not None:
                self._monitor.stop()
            end_sweep_run(
                self._info.tracking_uri,
                self._info.parent_run_id,
                self._ended_before,
                self._failed_before,
                0,
                KILLED if interrupted else FAILED,
            )
        except Exception:  # the error that stopped the sweep is the one to report
            pass
        finally:
            signal.signal(signal.SIGINT, previous)
        if interrupted:
            # A sweep resumed goes on with resume=true; a new one has nothing to resume.
            if self._resumed:
                label, command = "Complete it with", self._resume_command
            else:
                label, command = "Run it again with", self._rerun_command
            print(
                f"\nSweep {self._info.sweep_id} stopped before any run started (its parent run"
                f" is marked KILLED).\n{label}:  {command}",
                file=sys.stderr,
                flush=True,
            )

    def _follow(self, plan: Plan, sweep_dir: Path, uri: str, experiment_id: str) -> None:
        """Describe the sweep's parent run, start following its runs, and install its
        Ctrl-C handler."""
        assert self._info is not None
        self._info.varied_keys = sorted(plan.keys)
        share_sweep_view(
            uri,
            experiment_id,
            self._info.parent_run_id,
            sweep_view(self._info.parent_run_id, plan.param_keys),
        )
        describe_run(uri, self._info.parent_run_id, sweep_note(self._command, plan.keys))
        self._info.save(sweep_dir)
        total = plan.total - self._skipped if plan.total is not None else None
        runs = plural(total if total is not None else "?", "run") if total != 0 else "no run left"
        # A time budget, or a trial that reaches the target value, can end a search early, and
        # a trial pruned, or failed on a run, starts no more of its repeats.
        if plan.timeout is not None or plan.target is not None or plan.repeats > 1:
            runs = f"up to {runs}"
        if plan.timeout is not None:
            runs += f", no trial started after {format_duration(plan.timeout)}"
        taken = f" ({self._id_taken} is an earlier sweep's id)" if self._id_taken else ""
        print(f"Sweep {self._info.sweep_id}{taken}: {runs}, tracking to {uri}", flush=True)
        self._monitor = ProgressMonitor(
            sweep_dir, total, plan.keys, timeout=plan.timeout, repeats=plan.repeats
        ).start()
        planned = len(plan.jobs) - self._skipped if plan.jobs is not None else None
        self._stop = SweepStop(
            self._info,
            self._wind_down,
            planned,
            self._ended_before,
            self._failed_before,
            self._resume_command,
        )
        self._stop.install()

    def _open_sweep(
        self, config: DictConfig, plan: Plan, sweep_dir: Path, uri: str, experiment_id: str
    ) -> None:
        """Open the sweep's records (``_info``): a new parent run, or the one of the sweep
        ``resume=true`` continues. A Ctrl-C as the parent run is made or reopened is raised
        once it is kept, so that it is ended."""
        task = typed(config.hydra.overrides.task)
        overrides = " ".join(task)
        if config.resume:
            resumed = (
                find_resumable_sweep(uri, experiment_id, plan.hashes)
                if plan.jobs is not None
                else search_resume_point(config, task, uri, experiment_id)
            )
            if resumed is not None:
                self._take(uri, resumed.parent_run_id, resumed.sweep_id)
                if plan.jobs is not None:
                    # Read again now that no other command runs the sweep: one that ended
                    # since may have finished more of it.
                    resumed = replace(
                        resumed,
                        finished_hashes=finished_hashes(
                            uri, experiment_id, resumed.parent_run_id, plan.hashes
                        ),
                    )
                with interrupts_deferred():
                    self._info, self._skipped = continue_sweep(
                        resumed, plan.hashes, uri, experiment_id, overrides
                    )
                self._before = finished_before(
                    uri,
                    experiment_id,
                    resumed.parent_run_id,
                    plan.hashes,
                    repeats=config.hydra.sweeper.get("repeats", 1),
                )
                self._failed_before = resumed.failed_runs
                self._ended_before = len(self._before) + self._failed_before
                self._left_out = unfinished_outside(
                    uri, experiment_id, resumed.parent_run_id, plan.hashes
                )
                self._resumed = True
                return
            print(
                "resume=true: no sweep in the store ran any of these configurations; "
                "starting a new sweep",
                flush=True,
            )
        sweep_id = free_sweep_id(uri, experiment_id, sweep_dir.name)
        if sweep_id != sweep_dir.name:
            self._id_taken = sweep_dir.name
        name = sweep_run_name(plan.keys, sweep_id)
        with interrupts_deferred():
            parent = start_sweep_run(uri, experiment_id, sweep_id, overrides, name)
            self._info = SweepInfo(sweep_id, uri, experiment_id, parent)
        # Held from the start too, so that resume=true of the sweep while it runs stops.
        self._take(uri, parent, sweep_id)

    def _take(self, uri: str, parent_run_id: str, sweep_id: str) -> None:
        """Hold the sweep of ``parent_run_id`` for this command (``sweep_info.hold_sweep``);
        a Ctrl-C as it is taken is raised once it is kept, so that it is released."""
        command = shlex.join(["python", "-m", "sweeper", *sys.argv[1:]])
        with interrupts_deferred():
            self._hold = hold_sweep(uri, parent_run_id, sweep_id, command)

    def _wind_down(self) -> list[RunOutcome]:
        """However the sweep ends: stop following it, return every outcome, and hand the
        data its runs prepared to the user's cache (the rest of theirs is removed)."""
        assert self._monitor is not None
        outcomes = self._monitor.stop()
        shared = self._monitor.sweep_dir / DATASET_CACHE
        if self._data_cache is not None:
            keep_prepared(shared, self._data_cache)
        shutil.rmtree(shared, ignore_errors=True)
        return outcomes

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            with exit_on_error("the sweep could not be completed"):
                self._end(config)
        finally:
            if self._claim is not None:
                os.close(self._claim)
                self._claim = None
            if self._hold is not None:
                self._hold.release()
                self._hold = None

    def _end(self, config: DictConfig) -> None:
        assert self._monitor is not None and self._info is not None
        outcomes = self._wind_down()
        # Those not run again, which decide the exit status.
        failed = [o for o in outcomes if o.failed and not retried(o, outcomes)]
        # Counted as the progress line, the parent run and a stopped sweep count them.
        n_failed, n_killed = count_failed(failed), count_killed(failed)
        again = sum(o.failed for o in outcomes) - len(failed)
        cut_short = f", {n_killed} cut short" if n_killed else ""
        skipped = _skipped_text(self._ended_before, self._failed_before, count_pruned(self._before))
        counts = ended_counts(count_finished(outcomes), count_pruned(outcomes), n_failed)
        print(
            f"\nSweep {self._info.sweep_id}: {counts}{cut_short}"
            f"{f', {again} failed and run again' if again else ''}{skipped}\n"
        )
        print(summary_table(outcomes, self._keys, self._before))
        if self._left_out:
            labels = ", ".join(f"{r.info.run_name} ({r.info.status})" for r in self._left_out)
            print(
                f"\nNot in this command's overrides, and not finished: {labels}; the sweep "
                "is not complete without them (resume=true with their values runs them)."
            )
        checks = failed_checks([*self._before, *outcomes], self._keys)
        if checks:
            print(f"\n{checks}")
        uri = self._info.tracking_uri
        browse, report = commands_to_look(
            uri, self._info.sweep_id, config.tracking.experiment, Path.cwd().resolve() == CHECKOUT
        )
        print(f"\nBrowse:  {browse}")
        address = ui_address(uri)
        if address is not None:
            link = runs_link(address, self._info.experiment_id, self._info.parent_run_id)
            print(f"   then open {link}")
        print(f"Report:  {report}", flush=True)
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
                if has_model(best):  # made with every run (tracking.model=every)
                    model = model_reference(best.info.run_id, self._info.tracking_uri)
                    print(f"The best run's model: {model}", flush=True)
            left_out = [r.info.status for r in self._left_out]
            end_sweep_run(
                self._info.tracking_uri,
                self._info.parent_run_id,
                self._ended_before + count_runs(outcomes) + len(left_out),
                self._failed_before + n_failed + left_out.count(FAILED),
                n_killed + left_out.count(KILLED),
            )
        except Exception as err:
            if verbose_errors():
                traceback.print_exc()
            unrecorded = failure_reason(err)
        # Until here a Ctrl-C (in the summary, or as the best run's model is made) still ends
        # the sweep's run, through its SweepStop.
        if self._stop is not None:
            self._stop.uninstall()
        if failed:
            # Hydra counts a multirun as successful once every job has returned; failed runs
            # were recorded, not raised, so the exit status is decided here.
            reasons = "\n".join(
                f"  #{o.number} {as_typed(o.overrides)}: {o.reason}"
                + (f"; to fix: {o.fix}" if o.fix else "")
                for o in failed
            )
            if is_search(config) and not n_killed:
                # A failed trial was run and told, and counts as done:
                # resume=true asks again only the trials cut short.
                hint = (
                    "Failed trials count toward hydra.sweeper.n_trials="
                    f"{config.hydra.sweeper.n_trials}: raise it, with resume=true, to search on."
                )
            else:
                hint = rerun_hint(failed, self._resume_command)
            how = "failed or cut short" if n_killed else "failed"
            print(
                f"\n{plural(len(failed), 'run')} {how}:\n{reasons}\n{hint}",
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
        best = best_child_run(info.tracking_uri, info.experiment_id, info.parent_run_id)
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


def as_typed(overrides: Sequence[str]) -> str:
    """A run's overrides as a command line gives them (Hydra hands a job ``x=True``), less
    those that name no configuration (the ``resume=true`` of the command that ran it)."""
    shown = []
    for override in overrides:
        key, equals, value = override.partition("=")
        if not names_configuration(key.lstrip("+~")):
            continue
        shown.append(
            f"{key}={value.lower()}" if equals and value in ("True", "False") else override
        )
    return " ".join(shown)


# Why a failed run's fix is no resume: resume=true continues the same configurations.
NEW_CONFIGURATION = (
    "changed, they are other configurations than this sweep's, which keeps what finished"
)


def rerun_hint(failed: Sequence[RunOutcome], resume_command: str) -> str:
    """What to do about the failed runs: the command that runs again those that may then
    succeed (cut short, their process, store or data gone); for those that would fail the
    same way (diverged, a wrong config value: ``RunOutcome.fix``), to change them and run
    them anew, as resume=true runs only the same configurations again."""
    again = [o for o in failed if o.fix is None]
    if not again:
        return (
            "As they are, they would fail the same way again: make the change each line gives "
            f"and run them as a new sweep ({NEW_CONFIGURATION})."
        )
    if len(again) == len(failed):
        return f"Run them again with:  {resume_command}"
    numbers = ", ".join(f"#{o.number}" for o in again)
    return (
        f"Run {numbers} again with:  {resume_command}\n"
        "(the others would fail the same way again: make the change their line gives and run "
        f"them as a new sweep; {NEW_CONFIGURATION})"
    )
