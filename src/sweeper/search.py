"""The app's side of a search (``hydra/sweeper=search``): its space checked before any run,
and the MLflow sweep that ``resume=true`` continues with the search's study."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hydra.errors import HydraException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from hydra_plugins.sweeper_launcher.composing import typed
from hydra_plugins.sweeper_search.config import SearchSweeperConf
from hydra_plugins.sweeper_search.search_sweeper import (
    check_settings,
    repeat_values,
    sweep_to_resume,
)
from hydra_plugins.sweeper_search.space import parse_space
from hydra_plugins.sweeper_search.study import check_storage_answers
from sweeper.config import ConfigError
from sweeper.names import FAILED, PARENT_RUN_TAG, SWEEP_FILTER, SWEEP_ID_TAG, TRIAL_TAG
from sweeper.resume import ResumePoint
from sweeper.store_calls import store_call
from sweeper.store_reads import search_all


def is_search(config: DictConfig) -> bool:
    return bool(config.hydra.sweeper.get("_target_") == SearchSweeperConf._target_)


def searched_keys(config: DictConfig) -> set[str]:
    """The keys the search draws: its params and the command line's sweeps, less the keys the
    command line fixes."""
    space = parse_space(config.hydra.sweeper.get("params"), typed(config.hydra.overrides.task))
    return set(space.distributions)


def corner_jobs(config: DictConfig, arguments: Sequence[str]) -> list[list[str]]:
    """Runs at the ends of the search space: each searched key at its lowest and highest value
    (every option of a choice), the others at their lowest, and the repeated key at its last
    value; a bad value fails there."""
    space = check_settings(config.hydra.sweeper, arguments)
    settings = config.hydra.sweeper
    values = repeat_values(settings, config)
    last = [f"{settings.repeat_key}={values[-1]}"] if settings.repeats > 1 else []
    ends = {}
    for key, dist in space.distributions.items():
        choices = getattr(dist, "choices", None)
        ends[key] = list(choices) if choices is not None else [dist.low, dist.high]  # type: ignore[attr-defined]
    lows = {key: values[0] for key, values in ends.items()}
    jobs = []
    for key, values in ends.items():
        for value in values:
            jobs.append(space.overrides({**lows, key: value}) + last)
    return [list(job) for job, _ in itertools.groupby(sorted(jobs))]


def check_search(config: DictConfig, arguments: Sequence[str]) -> list[list[str]]:
    """The search's settings and space, and its storage proxy answering, before the sweep's
    parent run exists; a bad one raises ConfigError in one line. Return ``corner_jobs``."""
    try:
        jobs = corner_jobs(config, arguments)
        check_storage_answers(config.hydra.sweeper.storage)
    except HydraException as err:
        raise ConfigError(str(err)) from None
    return jobs


@store_call
def search_resume_point(
    config: DictConfig, arguments: Sequence[str], uri: str, experiment_id: str
) -> ResumePoint | None:
    """The MLflow sweep of the search that ``resume=true`` continues, or None where there is no
    search of this space to continue. Raises ``ConfigError`` where the search's study is found
    and its sweep is not, in this experiment (the study would go on, its runs elsewhere), or
    where its trials shared other settings than this search's (``sweep_to_resume``)."""
    try:
        found = sweep_to_resume(config, arguments)
    except HydraException as err:
        raise ConfigError(str(err)) from None
    if found is None:
        return None
    sweep_id = found.sweep
    query = f"tags.{SWEEP_ID_TAG} = '{sweep_id}' and {SWEEP_FILTER}"
    if found.created is not None:
        # A sweep directory used again names several sweeps: the study's is the newest that
        # began before it was made.
        query += f" and attributes.start_time <= {int(found.created * 1000)}"
    sweep = MlflowClient(uri).search_runs(
        [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not sweep:
        raise ConfigError(
            f"resume=true: the newest search of this space is sweep {sweep_id}, which "
            f"experiment {config.tracking.experiment!r} of {uri} does not hold; resume it with "
            "the tracking settings it ran with, or start a new search without resume=true"
        )
    settings = config.hydra.sweeper
    parent_run_id = sweep[0].info.run_id
    failed = f"tags.{PARENT_RUN_TAG} = '{parent_run_id}' and attributes.status = '{FAILED}'"
    return ResumePoint(
        sweep_id,
        parent_run_id,
        frozenset(),
        # A trial done spent its runs of the budget, run or not (a pruned or failed one stops
        # at its first); one asked again spends those it carries over.
        spent_runs=len(found.done) * settings.repeats + found.carried,
        failed_runs=sum(
            int(run.data.tags.get(TRIAL_TAG, -1)) in found.done
            for run in search_all(MlflowClient(uri), experiment_id, failed)
        ),
        budget_spent=len(found.done) >= settings.n_trials,
    )
