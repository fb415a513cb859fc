"""The search sweeper's typed settings (``hydra/sweeper=search``), checked while Hydra composes.

Hydra imports this module while it scans ``hydra_plugins`` at start-up (no ``from __future__
import annotations``: dataclasses must resolve their annotations then).
"""

# OmegaConf 2.3 reads typing.Optional, Dict and List in a structured config, not ``X | None``.
# ruff: noqa: UP006, UP035, UP045

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    # A name in sweeper_search.study.SAMPLERS.
    name: str = "tpe"
    seed: Optional[int] = None
    # tpe, cmaes: trials drawn at random before the model takes over.
    n_startup_trials: int = 10
    # qmc: sobol or halton.
    qmc_type: str = "sobol"


@dataclass
class PrunerConf:
    # A name in sweeper_search.study.PRUNERS.
    name: str = "none"
    # median: trials that finish before any is pruned, and epochs a trial trains before it can
    # be (n_warmup_steps: 5 judges a trial from epoch 6 on).
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    # successive_halving, hyperband: the epochs of the first rung, and how few go on per rung.
    min_resource: Any = 1
    reduction_factor: int = 3
    # hyperband: the epochs of a full trial ("auto": the longest one seen).
    max_resource: Any = "auto"


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.sweeper_search.search_sweeper.SearchSweeper"
    # minimize alone: a job returns a value to minimize (kept for configs that name it).
    direction: str = "minimize"
    # The study is named after this and the sweep directory's name.
    study_name: str = "search"
    # An Optuna RDB URL, or grpc://HOST:PORT of a storage proxy (sweeper_search.proxy), that
    # every job's process reaches; null keeps the study in memory (no pruning across
    # processes, no resume).
    storage: Optional[str] = None
    # Budget: trials in all; seconds after which no trial starts; a value that ends the search.
    n_trials: int = 20
    timeout: Optional[float] = None
    target: Optional[float] = None
    # Trials at a time; asynchronous: a freed slot takes the next trial at once (needs a
    # launcher with ``submit``, as sweeper's local and ray_cluster ones), else batches of n_jobs.
    n_jobs: int = 2
    asynchronous: bool = True
    # Runs per trial, each with the next value of repeat_key (its composed value, +1, ...);
    # the trial's value is their mean. The first run alone reports to the pruner; the others
    # start once it has finished unpruned, ahead of new trials.
    repeats: int = 1
    repeat_key: str = "seed"
    # How often a trial whose job returned nothing (its process killed) is asked again.
    retries: int = 1
    # Continue the newest study of the same search space in the storage; its trials must have
    # shared every setting this search's trials share (the composed config less the searched
    # keys and the repeated one), but for the keys here and the keys under them: where a run
    # is recorded, say, not what it computes.
    resume: bool = False
    resume_ignores: List[str] = field(default_factory=list)
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)
    # key: a sweep in Hydra's override grammar (interval, tag(log, interval), choice, range).
    params: Optional[Dict[str, str]] = None
    # Set by the sweeper on each job's config: the study and trial the job reports to, and
    # which of the trial's repeats it is.
    study: Optional[str] = None
    trial: Optional[int] = None
    repeat: Optional[int] = None


ConfigStore.instance().store(group="hydra/sweeper", name="sweeper_search", node=SearchSweeperConf)
