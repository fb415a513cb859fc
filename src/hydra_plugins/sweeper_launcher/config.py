"""The typed settings of the local and Ray launchers and of the basic sweeper that checks its jobs
once per shape: a bad value fails while Hydra composes, naming the key.

Hydra imports this module while it scans ``hydra_plugins`` at start-up, before it composes any
config. (No ``from __future__ import annotations`` here: that scan imports modules without
registering them, and dataclasses then cannot resolve string annotations.)
"""

from dataclasses import dataclass, field
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore


@dataclass
class LocalLauncherConf:
    _target_: str = "hydra_plugins.sweeper_launcher.local_launcher.LocalLauncher"
    # Jobs at a time; -1 is one per core, -2 all cores but one, as in joblib.
    n_jobs: int = -1
    # Modules the fork server imports once, so that no job's process imports them again.
    preload: list[str] = field(default_factory=list)
    # Dotted path of what is called when a job's process dies before it answers (see
    # local_launcher.JobDeath); its return value is the job's. None: the job fails.
    on_job_death: str | None = None


ConfigStore.instance().store(group="hydra/launcher", name="sweeper_local", node=LocalLauncherConf)


@dataclass
class RayConf:
    # Keyword arguments of ray.init and of ray.remote for each job, as hydra-ray-launcher's.
    init: dict[str, Any] = field(default_factory=lambda: {"address": None})
    remote: dict[str, Any] = field(default_factory=dict)


@dataclass
class RayClusterLauncherConf:
    _target_: str = "hydra_plugins.sweeper_launcher.ray_launcher.RayClusterLauncher"
    ray: RayConf = field(default_factory=RayConf)
    # As the local launcher's, called when Ray reports that a job's task died (its worker
    # killed, its node lost); the job is FAILED whatever it returns.
    on_job_death: str | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="sweeper_ray_cluster", node=RayClusterLauncherConf
)


@dataclass
class ShapedBasicSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.sweeper_launcher.basic_sweeper.ShapedBasicSweeper"


# Under Hydra's own name, so that it is the default and a preset's `override
# /hydra/sweeper: search` still replaces it (a second override of the group in the primary
# config would merge the two sweepers' settings).
ConfigStore.instance().store(group="hydra/sweeper", name="basic", node=ShapedBasicSweeperConf)
