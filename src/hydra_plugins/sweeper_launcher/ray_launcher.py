"""sweeper's Ray launcher (``hydra/launcher=ray_cluster``): Hydra's Ray launcher, and one job at
a time for a sweeper that decides each job from the ones before.

``submit`` starts one job as a Ray task the way hydra-ray-launcher does and returns at once,
with the interface of the local launcher's ``submit``: a future that holds the job's return,
FAILED when Ray lost the task (its worker died), once ``on_job_death`` has recorded the death
as the local launcher's does. So the search sweeper keeps every slot busy on a cluster as on
this machine. ``launch`` (a batch, waited for together) submits each of its jobs so: Ray runs
each once, and a job whose worker died is recorded by ``on_job_death`` and returns what that
makes of it, as on the local launcher: not run again behind the sweep's back (Ray's default)
nor the end of the whole sweep.

On Ctrl-C (or SIGTERM) the sweep stops the jobs through Ray (:class:`RayJobs`, registered with
``interrupts``): a queued task never starts, a running one gets a KeyboardInterrupt in its
worker (``ray.cancel``), recorded as the stop the sweep got, so its run writes what it held back
and ends as a run stopped on this machine does.
Nothing of Ray is imported until a job is launched: Hydra's plugin scan imports this module
whether or not the ``[ray]`` extra is installed.
"""

from __future__ import annotations

import concurrent.futures
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.sweeper_launcher.interrupts import (
    forget_stop,
    register_job_stops,
    stopped_by_sigterm,
    terminated,
)
from hydra_plugins.sweeper_launcher.local_launcher import (
    JobDeath,
    JobDeathHandler,
    job_dir,
    not_started,
)

# Hydra's Ray launcher, whose job running this one reuses (the ``[ray]`` extra).
RAY_LAUNCHER_PACKAGE = "hydra_plugins.hydra_ray_launcher"
# Where in Ray's key-value store a stopped sweep leaves the signal that stopped it, which its
# cancelled tasks read (the key: the sweep's Ray job).
STOP_NAMESPACE = "sweeper-stop"
# Seconds a sweep waits for the tasks it cancelled with force (their workers killed) to end.
FORCE_WAIT_S = 10.0


def first_line(error: BaseException) -> str:
    """Ray's error as one line: its message's first, or its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _cancelled(signum: int, frame: FrameType | None) -> None:
    """A job's Ctrl-C handler in its Ray worker, where ``ray.cancel`` arrives as Ctrl-C: the
    job's run records the stop its sweep got (SIGTERM there is SIGTERM here)."""
    from ray.experimental import internal_kv

    job_id = _ray_job_id()
    if internal_kv._internal_kv_get(job_id, namespace=STOP_NAMESPACE) == b"SIGTERM":
        stopped_by_sigterm()
    raise KeyboardInterrupt


def _ray_job_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_job_id())


def _run_job(
    hydra_context: HydraContext,
    sweep_config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """The Ray task: hydra-ray-launcher's, with :func:`_cancelled` as its Ctrl-C handler."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job as run_job_on_ray

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _cancelled) if main else None
    try:
        ret: JobReturn = run_job_on_ray(hydra_context, sweep_config, task_function, singleton_state)
        return ret
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        # Ray runs the worker's next task in the same process.
        forget_stop()


class RayJobs:
    """The jobs a launcher started on Ray until each is done with, and how Ctrl-C stops them:
    :meth:`refuse` and :meth:`stop` are its hooks in ``interrupts``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Each running task's ref, and the future that holds its job's return.
        self._running: dict[Any, concurrent.futures.Future[JobReturn]] = {}
        self.stopping = False

    def add(self, ref: Any, future: concurrent.futures.Future[JobReturn]) -> None:
        with self._lock:
            self._running[ref] = future
        future.add_done_callback(lambda _: self._ended(ref))

    def _ended(self, ref: Any) -> None:
        with self._lock:
            self._running.pop(ref, None)

    def refuse(self) -> None:
        """Start no job from now on: a bare assignment, safe in a signal handler."""
        self.stopping = True

    def stop(self, timeout: float) -> None:
        """Ctrl-C: cancel every task. A queued one never starts; a running one gets a
        KeyboardInterrupt in its worker, taken as the signal that stopped this process (Ray's
        key-value store tells it which). Wait until each job is done with, its end recorded;
        after ``timeout`` seconds, kill the workers of those still running."""
        self.stopping = True
        with self._lock:
            running = dict(self._running)
        if not running:
            return
        import ray
        from ray.experimental import internal_kv

        stop = "SIGTERM" if terminated() else "SIGINT"
        internal_kv._internal_kv_put(_ray_job_id(), stop, namespace=STOP_NAMESPACE)
        for ref in running:
            ray.cancel(ref)
        _, left = concurrent.futures.wait(running.values(), timeout)
        if left:
            for ref, future in running.items():
                if future in left:
                    ray.cancel(ref, force=True)
            concurrent.futures.wait(left, FORCE_WAIT_S)


def job_future(
    ref: Any,
    sweep_config: DictConfig,
    on_death: JobDeathHandler | None = None,
    *,
    death_fails_job: bool = True,
    jobs: RayJobs | None = None,
) -> concurrent.futures.Future[JobReturn]:
    """The job's return once its Ray task ends. A task Ray could not finish (its worker died,
    the node left, ``jobs`` stopped it) is handed to ``on_death``, as the local launcher hands
    a job whose process died; its job is then COMPLETED with what ``on_death`` returns, or,
    with ``death_fails_job`` (a search asks such a trial again) or without ``on_death``,
    FAILED with Ray's error as its value. Ray does not say which process the task ran in: the
    death's ``pid`` is None. A task cancelled before it started is FAILED, no death."""
    result: concurrent.futures.Future[JobReturn] = concurrent.futures.Future()
    start = time.perf_counter()
    overrides = list(sweep_config.hydra.overrides.task)
    job = int(sweep_config.hydra.job.num)

    def settle(done: concurrent.futures.Future[JobReturn]) -> None:
        try:
            result.set_result(done.result())
            return
        except Exception as err:  # Ray's own errors: the task never returned
            error: BaseException = err
        stopping = jobs is not None and jobs.stopping
        if stopping and _never_started(error):
            result.set_result(not_started(sweep_config))
            return
        status = JobStatus.FAILED
        value: Any = error
        try:
            if on_death is not None:
                death = JobDeath(
                    sweep_dir=Path(str(sweep_config.hydra.sweep.dir)),
                    job_dir=job_dir(sweep_config),
                    job=job,
                    overrides=overrides,
                    hydra_overrides=list(sweep_config.hydra.overrides.hydra),
                    pid=None,
                    interrupted=stopping,
                    ended=f"Ray: {first_line(error)}",
                    seconds=time.perf_counter() - start,
                )
                returned = on_death(**death._asdict())
                if not death_fails_job:
                    status, value = JobStatus.COMPLETED, returned
        finally:
            # Whatever on_death does, the sweeper learns how the job ended.
            result.set_result(
                JobReturn(overrides=overrides, cfg=sweep_config, status=status, _return_value=value)
            )

    ref.future().add_done_callback(settle)
    if jobs is not None:
        jobs.add(ref, result)
    return result


def _never_started(error: BaseException) -> bool:
    """Whether ``error`` is Ray's for a task cancelled before it ran: one cancelled while it
    ran raised in its worker, which Ray reports as a RayTaskError."""
    from ray.exceptions import RayTaskError, TaskCancelledError

    return isinstance(error, TaskCancelledError) and not isinstance(error, RayTaskError)


class RayClusterLauncher(Launcher):
    """Hydra's Ray launcher (same ``ray.init`` / ``ray.remote`` settings) with ``submit``."""

    def __init__(self, ray: DictConfig, on_job_death: str | None = None) -> None:
        self.ray_cfg = ray
        self.on_job_death: JobDeathHandler | None = (
            get_method(on_job_death) if on_job_death else None
        )
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self._started = False
        self._jobs = RayJobs()

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.task_function = task_function
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        futures = [
            self._submit(overrides, initial_job_idx + i, death_fails_job=False)
            for i, overrides in enumerate(job_overrides)
        ]
        return [future.result() for future in futures]

    def submit(self, overrides: Sequence[str], job: int) -> concurrent.futures.Future[JobReturn]:
        """Start one job as a Ray task and return at once; the future holds its return.
        Ray runs it once (``max_retries=0`` unless ``ray.remote`` sets it): the sweeper that
        submits decides what a job that died means (a search asks its trial again), so such
        a job is FAILED."""
        return self._submit(overrides, job, death_fails_job=True)

    def _submit(
        self, overrides: Sequence[str], job: int, death_fails_job: bool
    ) -> concurrent.futures.Future[JobReturn]:
        from hydra_plugins.hydra_ray_launcher._launcher_util import start_ray

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        if not self._started:
            register_job_stops(__name__, self._jobs.refuse, self._jobs.stop)
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            _keeping_signal_handlers(lambda: start_ray(self.ray_cfg.init))
            self._started = True
        sweep_config = self.hydra_context.config_loader.load_sweep_config(
            self.config, list(overrides)
        )
        with open_dict(sweep_config):
            # As hydra-ray-launcher numbers the jobs of launch().
            sweep_config.hydra.job.id = f"job_id_for_{job}"
            sweep_config.hydra.job.num = job
        if self._jobs.stopping:
            future: concurrent.futures.Future[JobReturn] = concurrent.futures.Future()
            future.set_result(not_started(sweep_config))
            return future
        import ray

        remote = OmegaConf.to_container(
            OmegaConf.merge({"max_retries": 0}, self.ray_cfg.remote), resolve=True
        )
        assert isinstance(remote, dict)
        # As hydra-ray-launcher's launch_job_on_ray, with the task its own of :func:`_run_job`.
        ref = ray.remote(**{str(key): value for key, value in remote.items()})(_run_job).remote(
            self.hydra_context, sweep_config, self.task_function, Singleton.get_state()
        )
        return job_future(
            ref, sweep_config, self.on_job_death, death_fails_job=death_fails_job, jobs=self._jobs
        )


def _keeping_signal_handlers(start: Callable[[], None]) -> None:
    """Call ``start`` (``ray.init``), keeping this process's Ctrl-C and SIGTERM handlers:
    Ray's init replaces SIGTERM's with one that exits at once, and the sweep's takes SIGTERM
    as Ctrl-C, closing its records (``interrupts.terminate_as_interrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        start()
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        start()
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
