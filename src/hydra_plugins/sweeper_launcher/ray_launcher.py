"""sweeper's Ray launcher (``hydra/launcher=ray_cluster``): Hydra's Ray launcher, and one job at
a time for a sweeper that decides each job from the ones before.

``submit`` starts one job as a Ray task the way hydra-ray-launcher does and returns at once,
with the interface of the local launcher's ``submit``: a future that holds the job's return,
FAILED when Ray lost the task (its worker died), once ``on_job_death`` has recorded the death
as the local launcher's does. So the search sweeper keeps every slot busy on a cluster as on
this machine. ``launch`` (a batch, waited for together) submits each of its jobs so: Ray runs
each once, and a job whose worker died is FAILED and recorded, not run again behind the
sweep's back (Ray's default) nor the end of the whole sweep.
Nothing of Ray is imported until a job is launched: Hydra's plugin scan imports this module
whether or not the ``[ray]`` extra is installed.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.sweeper_launcher.local_launcher import (
    JobDeath,
    JobDeathHandler,
    job_dir,
)

# Hydra's Ray launcher, whose job running this one reuses (the ``[ray]`` extra).
RAY_LAUNCHER_PACKAGE = "hydra_plugins.hydra_ray_launcher"


def first_line(error: BaseException) -> str:
    """Ray's error as one line: its message's first, or its type's name."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def job_future(
    ref: Any, sweep_config: DictConfig, on_death: JobDeathHandler | None = None
) -> concurrent.futures.Future[JobReturn]:
    """The job's return once its Ray task ends; a task Ray could not finish (its worker died,
    the node left) is the job FAILED with Ray's error as its value, as the local launcher
    returns a job whose process died, once ``on_death`` has recorded the death. Ray does not
    say which process the task ran in: the death's ``pid`` is None."""
    result: concurrent.futures.Future[JobReturn] = concurrent.futures.Future()
    start = time.perf_counter()
    overrides = list(sweep_config.hydra.overrides.task)

    def settle(done: concurrent.futures.Future[JobReturn]) -> None:
        try:
            result.set_result(done.result())
            return
        except Exception as err:  # Ray's own errors: the task never returned
            error = err
        try:
            if on_death is not None:
                death = JobDeath(
                    sweep_dir=Path(str(sweep_config.hydra.sweep.dir)),
                    job_dir=job_dir(sweep_config),
                    job=int(sweep_config.hydra.job.num),
                    overrides=overrides,
                    hydra_overrides=list(sweep_config.hydra.overrides.hydra),
                    pid=None,
                    interrupted=False,
                    ended=f"Ray: {first_line(error)}",
                    seconds=time.perf_counter() - start,
                )
                on_death(**death._asdict())
        finally:
            # Whatever on_death does, the sweeper learns how the job ended.
            result.set_result(
                JobReturn(
                    overrides=overrides,
                    cfg=sweep_config,
                    status=JobStatus.FAILED,
                    _return_value=error,
                )
            )

    ref.future().add_done_callback(settle)
    return result


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
            self.submit(overrides, initial_job_idx + i) for i, overrides in enumerate(job_overrides)
        ]
        return [future.result() for future in futures]

    def submit(self, overrides: Sequence[str], job: int) -> concurrent.futures.Future[JobReturn]:
        """Start one job as a Ray task and return at once; the future holds its return.
        Ray runs it once (``max_retries=0`` unless ``ray.remote`` sets it): the sweeper that
        submits decides what a job that died means (a search asks its trial again)."""
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray

        assert self.config is not None and self.hydra_context is not None
        assert self.task_function is not None
        if not self._started:
            setup_globals()
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
            start_ray(self.ray_cfg.init)
            self._started = True
        sweep_config = self.hydra_context.config_loader.load_sweep_config(
            self.config, list(overrides)
        )
        with open_dict(sweep_config):
            # As hydra-ray-launcher numbers the jobs of launch().
            sweep_config.hydra.job.id = f"job_id_for_{job}"
            sweep_config.hydra.job.num = job
        remote = OmegaConf.merge({"max_retries": 0}, self.ray_cfg.remote)
        assert isinstance(remote, DictConfig)
        ref = launch_job_on_ray(
            self.hydra_context,
            remote,
            sweep_config,
            self.task_function,
            Singleton.get_state(),
        )
        return job_future(ref, sweep_config, self.on_job_death)
