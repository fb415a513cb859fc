"""The search sweeper (``hydra/sweeper=search``): Optuna's ask-and-tell over Hydra jobs.

Each trial is one Hydra job whose overrides are the trial's drawn values; the job learns its
study and trial number from ``hydra.sweeper.study`` / ``hydra.sweeper.trial`` and reports to
it through the storage (``sweeper_search.trial``). With a launcher that can ``submit`` one job
at a time (sweeper's local and Ray launchers), a slot that frees takes the next trial at once;
with any other launcher, trials run in batches of ``n_jobs``. The sweeper knows nothing of the
app: a job's return value is the trial's value, and a job that returns none is asked again.
"""

from __future__ import annotations

import concurrent.futures
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.sweeper_search.space import SearchSpace, parse_space
from hydra_plugins.sweeper_search.study import (
    ATTEMPT,
    CREATED_ATTR,
    INTERRUPTED,
    PRUNED_AT,
    RETRY_OF,
    SPACE_ATTR,
    SWEEP_ATTR,
    StudyConfigError,
    counted,
    make_pruner,
    make_sampler,
    make_storage,
    newest_study,
    owed,
    quiet_optuna,
    settle,
)

DIRECTIONS = ("minimize", "maximize")


def check_settings(settings: DictConfig, arguments: Sequence[str]) -> SearchSpace:
    """Every setting a search needs, checked before anything starts; return its space. Raises
    ``SearchSpaceError`` or ``StudyConfigError``, one line naming the key."""
    space = parse_space(settings.get("params"), arguments)
    if settings.direction not in DIRECTIONS:
        raise StudyConfigError(
            f"hydra.sweeper.direction={settings.direction!r} is invalid: minimize or maximize"
        )
    for key in ("n_trials", "n_jobs"):
        if settings[key] < 1:
            raise StudyConfigError(f"hydra.sweeper.{key}={settings[key]} is invalid: must be >= 1")
    if settings.retries < 0:
        raise StudyConfigError(f"hydra.sweeper.retries={settings.retries} is invalid: must be >= 0")
    make_sampler(settings.sampler)
    make_pruner(settings.pruner)
    if settings.storage is None and (settings.pruner.name != "none" or settings.resume):
        raise StudyConfigError(
            "hydra.sweeper.storage=null keeps the study in this process: a pruner (each run "
            "reports from its own process) and resume=true need a storage URL"
        )
    return space


def sweep_to_resume(settings: DictConfig, arguments: Sequence[str]) -> str | None:
    """The name of the sweep directory whose study ``resume=true`` continues (the newest
    study of the same space in the storage), or None."""
    if settings.storage is None:
        return None
    space = parse_space(settings.get("params"), arguments)
    found = newest_study(make_storage(settings.storage), space.key(settings.direction))
    return None if found is None else str(found.user_attrs.get(SWEEP_ATTR))


def trial_ended(ret: JobReturn) -> bool:
    """Whether the job returned a value; one that raised, or whose process died, did not."""
    return ret.status == JobStatus.COMPLETED


class SearchSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings: DictConfig = OmegaConf.create(settings)
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.best: float | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --- the study ---

    def _open_study(self, space: SearchSpace) -> optuna.Study:
        s, config = self.settings, self.config
        assert config is not None
        storage = make_storage(s.storage)
        sampler, pruner = make_sampler(s.sampler), make_pruner(s.pruner)
        key = space.key(s.direction)
        found = newest_study(storage, key) if s.resume else None
        if found is None:
            sweep = Path(str(config.hydra.sweep.dir)).name
            name = f"{s.study_name}_{sweep}"
            study = optuna.create_study(
                study_name=name,
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=s.direction,
            )
            study.set_user_attr(SPACE_ATTR, key)
            study.set_user_attr(CREATED_ATTR, time.time())
            study.set_user_attr(SWEEP_ATTR, sweep)
            return study
        name = found.study_name
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
        # A job that recorded its end before its process was stopped ended as it recorded.
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if any([settle(study, trial) for trial in running]):
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner
            )
        trials = study.get_trials(deepcopy=False)
        again = owed(trials)
        for trial in again:
            if trial.state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
                study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(
                trial.params,
                user_attrs={RETRY_OF: trial.number, ATTEMPT: trial.user_attrs.get(ATTEMPT, 0)},
            )
        print(
            f"Resuming study {name}: {counted(trials)} of {s.n_trials} trials done, "
            f"{len(again)} cut short asked again",
            flush=True,
        )
        return study

    def _can_ask(self, study: optuna.Study, in_flight: int, start: float) -> bool:
        s = self.settings
        if s.timeout is not None and time.monotonic() - start >= s.timeout:
            return False
        if s.target is not None and self.best is not None:
            reached = self.best <= s.target if s.direction == "minimize" else self.best >= s.target
            if reached:
                return False
        return counted(study.get_trials(deepcopy=False)) + in_flight < s.n_trials

    def _job_overrides(
        self, study: optuna.Study, space: SearchSpace, trial: optuna.Trial
    ) -> list[str]:
        return [
            *space.overrides(trial.params),
            f"hydra.sweeper.study='{study.study_name}'",
            f"hydra.sweeper.trial={trial.number}",
        ]

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> None:
        """Tell the study how the trial's job ended; ask a trial whose job returned nothing
        again, ``retries`` times at most."""
        frozen = study._storage.get_trial(trial._trial_id)
        if not trial_ended(ret) and settle(study, frozen):
            return
        if not trial_ended(ret):
            attempt = int(frozen.user_attrs.get(ATTEMPT, 0))
            study.tell(trial, state=TrialState.FAIL)
            if attempt < self.settings.retries:
                study.enqueue_trial(
                    frozen.params, user_attrs={RETRY_OF: trial.number, ATTEMPT: attempt + 1}
                )
                print(
                    f"Trial {trial.number} returned nothing ({ret._return_value}); "
                    "it is asked again",
                    flush=True,
                )
            return
        if PRUNED_AT in frozen.user_attrs:
            study.tell(trial, state=TrialState.PRUNED)
            return
        value = ret.return_value
        if not isinstance(value, int | float) or not math.isfinite(value):
            # A failed or diverged run: the sampler learns nothing from it but goes on.
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, float(value))
        if self.best is None or (
            value < self.best if self.settings.direction == "minimize" else value > self.best
        ):
            self.best = float(value)

    # --- the two schedulers ---

    def _run_asynchronously(self, study: optuna.Study, space: SearchSpace, start: float) -> None:
        """Keep ``n_jobs`` trials running: a slot that frees takes the next trial at once."""
        launcher: Any = self.launcher
        running: dict[concurrent.futures.Future[JobReturn], optuna.Trial] = {}
        try:
            while True:
                while len(running) < self.settings.n_jobs and self._can_ask(
                    study, len(running), start
                ):
                    trial = study.ask(space.distributions)
                    job = launcher.submit(self._job_overrides(study, space, trial), trial.number)
                    running[job] = trial
                if not running:
                    return
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for job in done:
                    self._tell(study, running.pop(job), job.result())
        except KeyboardInterrupt:
            self._interrupted(study, running.values())
            raise

    def _run_in_batches(self, study: optuna.Study, space: SearchSpace, start: float) -> None:
        """Any launcher: ``n_jobs`` trials at a time, each batch waiting for its slowest."""
        assert self.launcher is not None
        while self._can_ask(study, 0, start):
            batch: list[optuna.Trial] = []
            while len(batch) < self.settings.n_jobs and self._can_ask(study, len(batch), start):
                batch.append(study.ask(space.distributions))
            try:
                returns = self.launcher.launch(
                    [self._job_overrides(study, space, t) for t in batch], batch[0].number
                )
            except KeyboardInterrupt:
                self._interrupted(study, batch)
                raise
            for trial, ret in zip(batch, returns, strict=True):
                self._tell(study, trial, ret)

    @staticmethod
    def _interrupted(study: optuna.Study, trials: Any) -> None:
        """Ctrl-C: the trials in progress fail, marked so that ``resume=true`` asks them again,
        but for those whose job recorded its end."""
        for trial in trials:
            try:
                if settle(study, study._storage.get_trial(trial._trial_id)):
                    continue
                trial.set_user_attr(INTERRUPTED, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # the storage itself may be what is failing
                pass

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        quiet_optuna()
        space = check_settings(self.settings, arguments)
        study = self._open_study(space)
        start = time.monotonic()
        if self.settings.asynchronous and hasattr(self.launcher, "submit"):
            self._run_asynchronously(study, space, start)
        else:
            self._run_in_batches(study, space, start)
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if done:
            best = study.best_trial
            print(
                f"Study {study.study_name}: best trial {best.number}, value {best.value:.6g}, "
                f"{' '.join(space.overrides(best.params)[len(space.fixed) :])}",
                file=sys.stdout,
                flush=True,
            )
