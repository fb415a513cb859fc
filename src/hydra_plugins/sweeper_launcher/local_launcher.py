"""sweeper's default launcher (``hydra/launcher=local``): joblib runs a sweep's jobs
``n_jobs`` at a time on this machine, each job in a process of its own.

Hydra's own joblib launcher runs jobs in loky's pool of reused workers, and loky treats a
worker that dies (the OOM killer, ``kill -9``) as a broken pool: it kills every other worker
and the whole sweep stops. Here joblib's threads only wait, and each job trains in a fresh
process forked from a server that has already imported the modules of ``preload`` (starting
one costs milliseconds, not an import of numpy and MLflow). A process that dies takes only its
own job with it: the callable named by ``on_job_death`` is told how it ended (sweeper's
``conf/hydra/launcher/local.yaml`` names one that marks the run FAILED with the signal), and
the sweep goes on. On Ctrl-C, :func:`stop_jobs` (registered with ``interrupts`` as the
launcher is used) starts no more jobs and sees every job's process interrupted and ended; a
job's process takes SIGTERM as Ctrl-C (a batch system or a container stops every process of
the sweep with it), and gets it from :func:`stop_jobs` where SIGTERM stopped the sweep. The
launcher imports nothing of the application it launches: what to preload and what a death
means are its settings.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import gc
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, NamedTuple

import cloudpickle
from hydra.core.plugins import Plugins
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from hydra.experimental.callback import Callback
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from joblib import Parallel, delayed, effective_n_jobs
from omegaconf import DictConfig, open_dict

from hydra_plugins.sweeper_launcher.composing import ShapeCache
from hydra_plugins.sweeper_launcher.config import LocalLauncherConf
from hydra_plugins.sweeper_launcher.interrupts import (
    interrupt_as_orphan,
    register_job_stops,
    terminate_as_interrupt,
    terminated,
)

# A job's process stopped by Ctrl-C exits as a shell reports it: 128 + SIGINT.
EXIT_INTERRUPTED = 128 + signal.SIGINT
# Seconds between the signals that stop_jobs sends to a job's process still running.
RESIGNAL_SECONDS = 2.0
# Called with keyword arguments when a job's process dies before it answers (JobDeath's).
JobDeathHandler = Callable[..., Any]


def fork_server_context(preload: Sequence[str]) -> multiprocessing.context.BaseContext:
    """The context every job's process is started from, its fork server running.

    forkserver: a job's process starts from a clean, single-threaded server, never from the
    sweep's process with its threads and open database connections. Starting the server
    returns at once; it imports ``preload`` (the launcher's setting) while the caller goes on.
    The server starts with Ctrl-C blocked: multiprocessing ignores it only once the preload
    is imported, and one that came before would kill the server with a traceback (the sweep
    would then start another for its next job). A Ctrl-C that arrives meanwhile reaches the
    sweep's process all the same (another of its threads takes it).
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    # First, apart: starting the resource tracker unblocks Ctrl-C, whatever blocked it before.
    multiprocessing.resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    atexit.unregister(_stop_fork_server)
    atexit.register(_stop_fork_server)
    return context


def _stop_fork_server() -> None:
    """As the sweep's process exits, its fork server ends too. Left alone, it would end only
    once its preload is imported, which a sweep that stops at once (a bad value) does not
    wait for; until then it holds the command's output open, and a caller reading that output
    waits for it. (Jobs it forked are not its to stop: they end on their own.)"""
    pid = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class StartForkServer(Callback):
    """Starts the local launcher's fork server as the sweep starts, so that its imports run
    while the sweep callback checks the runs and sets up the store, not after."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = config.hydra.launcher
        if launcher.get("_target_") == LocalLauncherConf._target_:
            fork_server_context(launcher.get("preload") or [])


def job_dir(sweep_config: DictConfig) -> Path:
    """Where Hydra puts a job's files, as ``run_job`` computes it."""
    return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)


def exit_description(exitcode: int | None) -> str:
    """How a job's process ended, as a person reads it: ``killed by SIGKILL``, ``exit code 1``."""
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def with_scanned_plugins(singleton_state: dict[str, Any]) -> dict[str, Any]:
    """Hydra's singleton state as a job's process sets it, with this process's Hydra plugins
    where it has them (a preload that scanned them in the fork server). Without them,
    ``Singleton.set_state`` scans again, executing every plugin module anew: each job would
    pay for the scan, and the classes in its config would no longer be those of their modules,
    so that pickling its return copies them by value (a search of every loaded module each)."""
    plugins = Singleton._instances.get(Plugins)
    if plugins is not None:
        singleton_state["instances"][Plugins] = plugins
    return singleton_state


def _end_with_the_sweep(results: Connection) -> None:
    """Wait until the sweep's process, which reads ``results``, is gone (``kill -9``): then end
    this job as Ctrl-C would (its run closed KILLED), rather than train for nobody. (The fork
    server outlives the sweep's process while jobs run, so no parent-death signal reaches
    them.)"""
    poller = select.poll()
    poller.register(results.fileno(), select.POLLERR)  # a pipe's write end: no reader left
    poller.poll()
    interrupt_as_orphan()


def _job_process(payload: bytes, results: Connection) -> None:
    """The job's own process: run the task as Hydra's launchers do, and send back its return."""
    # Python's own Ctrl-C, which the fork server (started with it blocked) did not pass on.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    terminate_as_interrupt()
    threading.Thread(target=_end_with_the_sweep, args=(results,), daemon=True).start()
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        # Inside the try too: Ctrl-C can arrive while a job is still setting up.
        # The objects inherited from the fork server live as long as the process: frozen, the
        # collector never walks them (each walk writes to, so copies, every page they are on).
        gc.freeze()
        hydra_context, sweep_config, task_function, singleton_state = cloudpickle.loads(payload)
        setup_globals()
        Singleton.set_state(with_scanned_plugins(singleton_state))
        ret = run_job(
            hydra_context=hydra_context,
            config=sweep_config,
            task_function=task_function,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )
    except KeyboardInterrupt:
        # The sweep's own process reports the interruption; a traceback per job is noise.
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # Done or interrupted: another Ctrl-C would only print a traceback as the process exits.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.send_bytes(cloudpickle.dumps(ret))


class JobProcesses:
    """The processes this process started for jobs, started and reaped one at a time:
    multiprocessing polls every process it started whenever it starts another, and of two
    threads polling one process that ended, one reads its exit code and the other reads 255."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._running: set[BaseProcess] = set()
        self.stopping = False

    def start(self, process: BaseProcess) -> bool:
        """Start ``process``; False, starting nothing, once the jobs are being stopped."""
        with self._lock:
            if self.stopping:
                return False
            process.start()
            self._running.add(process)
            return True

    def join(self, process: BaseProcess) -> None:
        """Wait for ``process`` to end, and read how it ended."""
        wait([process.sentinel])
        with self._lock:
            process.join()

    def ended(self, process: BaseProcess) -> None:
        """``process``'s job is done with, its death recorded if it died."""
        with self._lock:
            self._running.discard(process)
            self._lock.notify_all()

    def stop(self, timeout: float) -> None:
        """Ctrl-C: start no more jobs, and wait until the running ones are done with, killing
        them after ``timeout`` seconds. One still running after RESIGNAL_SECONDS gets the
        signal that stopped this process (SIGTERM taken as Ctrl-C, else SIGINT), so that its
        run records the same stop, and again every RESIGNAL_SECONDS: one forked as the
        terminal's Ctrl-C arrived missed it (the fork server ignores Ctrl-C until its child
        sets Python's handler), and `kill` or `docker stop` signal this process alone; one
        that got it holds another back while it closes its run."""
        deadline = time.monotonic() + timeout
        next_signal = time.monotonic() + RESIGNAL_SECONDS
        signum = signal.SIGTERM if terminated() else signal.SIGINT
        with self._lock:
            self.stopping = True
            while self._running and (now := time.monotonic()) < deadline:
                if now >= next_signal:
                    self._signal(signum)
                    next_signal = now + RESIGNAL_SECONDS
                self._lock.wait(min(next_signal, deadline) - now)
            if self._running:
                self._signal(signal.SIGKILL)
                self._lock.wait_for(lambda: not self._running, RESIGNAL_SECONDS)

    def _signal(self, signum: int) -> None:
        for process in self._running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signum)  # type: ignore[arg-type]


# This process's job processes.
JOB_PROCESSES = JobProcesses()


def refuse_new_jobs() -> None:
    """Start no job from now on (Ctrl-C's handler calls it, before :func:`stop_jobs`): a bare
    assignment, safe in a signal handler, where the lock might be held."""
    JOB_PROCESSES.stopping = True


def stop_jobs(timeout: float) -> None:
    """Ctrl-C (or SIGTERM) stopped the sweep: see every job's process interrupted by it and its
    death recorded (:meth:`JobProcesses.stop`)."""
    JOB_PROCESSES.stop(timeout)


class JobDeath(NamedTuple):
    """A job whose process died before it answered, as the ``on_job_death`` callable gets it
    (as keyword arguments). A NamedTuple: Hydra's plugin scan imports this module without
    registering it, and dataclasses need the module registered."""

    sweep_dir: Path
    job_dir: Path
    job: int
    overrides: list[str]
    # The job's overrides of Hydra's own settings (``hydra.*``), as its sweeper gave them.
    hydra_overrides: list[str]
    # None where the launcher cannot know it (a Ray task's worker).
    pid: int | None
    # Ctrl-C (the process exited with EXIT_INTERRUPTED, or died as the sweep stopped its jobs),
    # not a crash or a kill.
    interrupted: bool
    # How the process ended, as a person reads it: "killed by SIGKILL", "exit code 1".
    ended: str
    seconds: float


class JobProcessDiedError(RuntimeError):
    """What a submitted job returns when its process died before answering."""


class JobNotStartedError(RuntimeError):
    """What a job returns when Ctrl-C stopped the sweep before its process started."""


def not_started(sweep_config: DictConfig) -> JobReturn:
    """The return of a job that the stopped sweep did not start."""
    job = int(sweep_config.hydra.job.num)
    return JobReturn(
        overrides=list(sweep_config.hydra.overrides.task),
        cfg=sweep_config,
        status=JobStatus.FAILED,
        _return_value=JobNotStartedError(f"job {job} not started: the sweep was stopped"),
    )


def _run_in_own_process(
    context: multiprocessing.context.BaseContext,
    payload: bytes,
    sweep_config: DictConfig,
    on_death: JobDeathHandler | None,
    death_fails_job: bool = False,
    processes: JobProcesses = JOB_PROCESSES,
) -> JobReturn:
    """Run one job in a new process and wait for it; if the process dies before it answers,
    its return is what ``on_death`` makes of that death. Without ``on_death``, or with
    ``death_fails_job`` (a search asks such a trial again), the job is FAILED, its value a
    :class:`JobProcessDiedError`, once ``on_death`` has recorded the death."""
    job_args = (context, payload, sweep_config, on_death, death_fails_job, processes)
    if threading.current_thread() is not threading.main_thread():
        return _run_and_wait(*job_args)
    # joblib runs one job at a time in the main thread, where Ctrl-C's KeyboardInterrupt is
    # raised: the job is waited for in a thread of its own, so that it goes on being waited
    # for, and its death recorded, while the sweep stops it (stop_jobs).
    returned: concurrent.futures.Future[JobReturn] = concurrent.futures.Future()

    def wait() -> None:
        try:
            returned.set_result(_run_and_wait(*job_args))
        except BaseException as err:
            returned.set_exception(err)

    threading.Thread(target=wait, name="sweeper-job-wait", daemon=True).start()
    return returned.result()


def _run_and_wait(
    context: multiprocessing.context.BaseContext,
    payload: bytes,
    sweep_config: DictConfig,
    on_death: JobDeathHandler | None,
    death_fails_job: bool,
    processes: JobProcesses,
) -> JobReturn:
    start = time.perf_counter()
    overrides = list(sweep_config.hydra.overrides.task)
    job = int(sweep_config.hydra.job.num)
    receiver, sender = context.Pipe(duplex=False)
    # daemon: as the sweep's process exits, multiprocessing ends its jobs' processes; killed
    # (kill -9), it takes them with it through _end_with_the_sweep.
    process = context.Process(  # type: ignore[attr-defined]
        target=_job_process, args=(payload, sender), name=f"sweeper-job-{job}", daemon=True
    )
    if not processes.start(process):
        receiver.close()
        sender.close()
        return not_started(sweep_config)
    try:
        sender.close()
        try:
            ret: JobReturn = cloudpickle.loads(receiver.recv_bytes())
            return ret
        except EOFError:
            pass  # it died: the OOM killer, kill -9, a crash, Ctrl-C
        finally:
            receiver.close()
            processes.join(process)
        death = JobDeath(
            sweep_dir=Path(str(sweep_config.hydra.sweep.dir)),
            job_dir=job_dir(sweep_config),
            job=job,
            overrides=overrides,
            hydra_overrides=list(sweep_config.hydra.overrides.hydra),
            pid=process.pid,
            interrupted=processes.stopping or process.exitcode == EXIT_INTERRUPTED,
            ended=exit_description(process.exitcode),
            seconds=time.perf_counter() - start,
        )
        value = on_death(**death._asdict()) if on_death is not None else None
    finally:
        processes.ended(process)
    if on_death is None or death_fails_job:
        return JobReturn(
            overrides=overrides,
            cfg=sweep_config,
            status=JobStatus.FAILED,
            _return_value=JobProcessDiedError(f"job {job}'s process died ({death.ended})"),
        )
    return JobReturn(
        overrides=overrides,
        cfg=sweep_config,
        status=JobStatus.COMPLETED,
        _return_value=value,
    )


class LocalLauncher(Launcher):
    """Runs ``n_jobs`` jobs at a time on this machine (-1: one per core), each in its own
    process."""

    def __init__(
        self, n_jobs: int = -1, preload: Sequence[str] = (), on_job_death: str | None = None
    ) -> None:
        self.n_jobs = n_jobs
        self.preload = list(preload)
        self.on_job_death: JobDeathHandler | None = (
            get_method(on_job_death) if on_job_death else None
        )
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self._slots: concurrent.futures.ThreadPoolExecutor | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context
        self._shapes = ShapeCache.of(hydra_context.config_loader)  # type: ignore[arg-type]

    def _sweep_config(self, overrides: Sequence[str], job: int) -> DictConfig:
        """One job's composed config, numbered as Hydra's launchers number them."""
        assert self.hydra_context is not None and self.config is not None
        sweep_config = self._shapes.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{job}"
            sweep_config.hydra.job.num = job
        return sweep_config

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None
        register_job_stops(__name__, refuse_new_jobs, stop_jobs)
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        context = fork_server_context(self.preload)
        singleton_state = Singleton.get_state()

        def jobs() -> Iterator[Any]:
            # Composed as joblib asks for the next job, so a long sweep is not held in memory.
            for i, overrides in enumerate(job_overrides):
                cfg = self._sweep_config(overrides, initial_job_idx + i)
                payload = (self.hydra_context, cfg, self.task_function, singleton_state)
                yield delayed(_run_in_own_process)(
                    context, cloudpickle.dumps(payload), cfg, self.on_job_death
                )

        returns: list[JobReturn] = Parallel(n_jobs=self.n_jobs, backend="threading")(jobs())
        return returns

    @property
    def slots(self) -> int:
        """How many jobs run at once: a job submitted beyond them waits for a slot."""
        return int(effective_n_jobs(self.n_jobs))

    def submit(self, overrides: Sequence[str], job: int) -> concurrent.futures.Future[JobReturn]:
        """Start one job as soon as one of ``n_jobs`` slots is free, and return at once; the
        future holds its return. A job whose process dies returns FAILED (``JobProcessDiedError``).
        A sweeper that decides each job from the ones before (a search) keeps every slot busy
        with this, where ``launch`` waits for a whole batch."""
        assert self.config is not None
        if self._slots is None:
            register_job_stops(__name__, refuse_new_jobs, stop_jobs)
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            self._slots = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.slots, thread_name_prefix="sweeper-slot"
            )
        cfg = self._sweep_config(overrides, job)
        payload = (self.hydra_context, cfg, self.task_function, Singleton.get_state())
        return self._slots.submit(
            _run_in_own_process,
            fork_server_context(self.preload),
            cloudpickle.dumps(payload),
            cfg,
            self.on_job_death,
            True,
        )
