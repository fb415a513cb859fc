"""A job's side of a search: report each step's value to its trial and learn when to stop.

The search sweeper sets ``hydra.sweeper.study``, ``hydra.sweeper.trial`` and
``hydra.sweeper.repeat`` on each job's config; a job started by any other sweeper (or none)
has no trial. Of a trial's repeats, the first alone reports its steps (the one the pruner
judges); each records its value. The job reaches the study
through its storage, so this works in a process of its own or on another machine that
reaches the same storage. A study kept in the sweeper's memory (``storage: null``) is out of
the job's reach: its job knows its trial's number alone and the sweeper tells the study the
value the job returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from optuna.exceptions import UpdateFinishedTrialError

from hydra_plugins.sweeper_launcher.interrupts import stopped_by_sigterm
from hydra_plugins.sweeper_search.study import (
    BY_SIGTERM,
    PRUNED_AT,
    make_pruner,
    make_storage,
    value_attr,
)

# The job's overrides that name its trial and, where the search repeats trials, which of the
# trial's runs it is.
TRIAL_OVERRIDE = "hydra.sweeper.trial"
REPEAT_OVERRIDE = "hydra.sweeper.repeat"


def position_overrides(number: int, repeat: int | None) -> list[str]:
    """The overrides that tell a job its trial's ``number`` and its ``repeat`` (None where the
    search repeats no trial)."""
    return [
        f"{TRIAL_OVERRIDE}={number}",
        *([] if repeat is None else [f"{REPEAT_OVERRIDE}={repeat}"]),
    ]


def position_in(overrides: Sequence[str]) -> tuple[int, int | None] | None:
    """A job's trial number and repeat (None where trials do not repeat), as its Hydra
    ``overrides`` (:func:`position_overrides`) say; None for a job no search started."""
    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    if TRIAL_OVERRIDE not in given:
        return None
    repeat = given.get(REPEAT_OVERRIDE)
    return int(given[TRIAL_OVERRIDE]), None if repeat is None else int(repeat)


class TrialReporter:
    """The job's trial: :meth:`report` sends the best value so far after each step and says
    whether the pruner stops the trial there; ``repeat`` is which of the trial's ``repeats``
    runs the job is."""

    def __init__(
        self,
        number: int,
        trial: optuna.trial.Trial | None,
        repeat: int = 0,
        repeats: int = 1,
    ) -> None:
        self.number = number
        # None: the study lives in the sweeper's memory, which the job cannot reach.
        self.trial = trial
        self.repeat = repeat
        self.repeats = repeats
        # A search minimizes (search_sweeper.check_budget).
        self.best = math.inf
        self.pruned_at: int | None = None

    def report(self, step: int, value: float, last: bool = False) -> bool:
        """Report ``value`` at ``step``; True once the pruner says stop (recorded on the
        trial, for the sweeper to tell it PRUNED). The best value so far is what is reported,
        so a pruned trial's value is the objective it reached, the one the job records. The
        ``last`` step is not judged: stopping there would save nothing. A later repeat reports
        nothing: it starts only once the first ended unpruned. A trial the sweeper ended
        meanwhile (Ctrl-C, whose signal reaches the job a moment later) stops the job as
        Ctrl-C does."""
        if self.repeat > 0 or self.trial is None:
            return False
        self.best = min(self.best, value)
        try:
            self.trial.report(self.best, step)
            if not last and self.trial.should_prune():
                self.pruned_at = step
                self.trial.set_user_attr(PRUNED_AT, step)
                return True
        except UpdateFinishedTrialError:
            self._stop()
        return False

    def _stop(self) -> None:
        """Stop the job as the stop that ended its trial (Ctrl-C, or a SIGTERM) does."""
        if self._ended_by_sigterm():
            stopped_by_sigterm()
        raise KeyboardInterrupt from None

    def _ended_by_sigterm(self) -> bool:
        """Whether the sweeper ended the trial because a SIGTERM stopped the sweep."""
        assert self.trial is not None
        try:
            attrs = self.trial.study._storage.get_trial(self.trial._trial_id).user_attrs
        except Exception:  # the storage itself may be what is failing: Ctrl-C, then
            return False
        return bool(attrs.get(BY_SIGTERM))

    def ended(self, value: float, stop: bool = True) -> None:
        """Record the value the job is about to return: the trial ended, whatever happens to
        the job's process before it answers. On a trial the sweeper ended meanwhile (its stop
        fails the open trials at once), ``stop`` stops the job as that stop does, so that its
        run does not end FINISHED with no value kept: a resumed search asks the trial again."""
        if self.trial is None:
            return
        try:
            self.trial.set_user_attr(value_attr(self.repeat), value)
        except UpdateFinishedTrialError:
            if stop:
                self._stop()


def trial_position(sweeper: DictConfig) -> tuple[int, int, int] | None:
    """The job's trial number, which of the trial's runs it is and how many it has, as the
    search sweeper set them in the job's ``hydra.sweeper``; None for a job no search started."""
    if sweeper.get("trial") is None:
        return None
    return int(sweeper.trial), int(sweeper.get("repeat") or 0), int(sweeper.get("repeats") or 1)


def current_trial() -> TrialReporter | None:
    """This job's trial, or None when no search sweeper started it."""
    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    position = trial_position(sweeper)
    if position is None or sweeper.get("study") is None:
        return None
    number, repeat, repeats = position
    if sweeper.get("storage") is None:
        return TrialReporter(number, None, repeat=repeat, repeats=repeats)
    storage = make_storage(sweeper.storage, create_tables=False)
    study = optuna.load_study(
        study_name=sweeper.study, storage=storage, pruner=make_pruner(sweeper.pruner)
    )
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return TrialReporter(number, optuna.trial.Trial(study, trial_id), repeat, repeats)
