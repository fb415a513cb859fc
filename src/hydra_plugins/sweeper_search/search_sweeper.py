"""The search sweeper (``hydra/sweeper=search``): Optuna's ask-and-tell over Hydra jobs.

Each trial is one Hydra job whose overrides are the trial's drawn values; the job learns its
study and trial number from ``hydra.sweeper.study`` / ``hydra.sweeper.trial`` and reports to
it through the storage (``sweeper_search.trial``). With a launcher that can ``submit`` one job
at a time (sweeper's local and Ray launchers), a slot that frees takes the next trial at once;
with any other launcher, trials run in batches of ``n_jobs``. With ``repeats: k``, a trial is
k jobs, one per value of ``repeat_key``, and its value is their mean
(``sweeper_search.repeats``); a queued repeat takes a freed slot before a new trial is asked.
The sweeper imports nothing of the app, and assumes of it only this: a job's return value is
its run's value (a trial whose job returns none is asked again), a job reports its epochs to
its trial as steps from 1 (``study.PRUNERS``), ``repeat_key`` defaults to the app's
``seed``, and the app may name its sweep in the sweep directory's ``sweep.json``
(``study.sweep_id_of``). ``resume: true`` continues the newest study of the
same space, its trials and its job numbers, where its trials shared the settings this
search's share (``fixed_settings``).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred, terminated
from hydra_plugins.sweeper_search.repeats import TrialRuns
from hydra_plugins.sweeper_search.space import SearchSpace, format_value, parse_space
from hydra_plugins.sweeper_search.study import (
    ATTEMPT,
    BY_SIGTERM,
    CREATED_ATTR,
    FIXED_ATTR,
    INTERRUPTED,
    JOBS_ATTR,
    PRUNED_AT,
    REPEATS_ATTR,
    RETRY_OF,
    SPACE_ATTR,
    SWEEP_ATTR,
    StudyConfigError,
    check_storage_url,
    counted,
    done_trials,
    load_settled,
    make_pruner,
    make_sampler,
    make_storage,
    owed,
    quiet_optuna,
    recorded_values,
    settle,
    studies_of,
    sweep_id_of,
    value_attr,
)
from hydra_plugins.sweeper_search.trial import position_overrides


def check_budget(settings: DictConfig) -> None:
    """The direction and the budgets: trials, seconds, a target value."""
    if settings.direction != "minimize":
        raise StudyConfigError(
            f"hydra.sweeper.direction={settings.direction!r} is invalid: the value each job "
            "returns is one to minimize"
        )
    for key in ("n_trials", "n_jobs", "repeats"):
        if settings[key] < 1:
            raise StudyConfigError(f"hydra.sweeper.{key}={settings[key]} is invalid: must be >= 1")
    if settings.retries < 0:
        raise StudyConfigError(f"hydra.sweeper.retries={settings.retries} is invalid: must be >= 0")
    if settings.timeout is not None and not settings.timeout > 0:
        raise StudyConfigError(
            f"hydra.sweeper.timeout={settings.timeout} is invalid: seconds > 0, or null for none"
        )
    if settings.target is not None and not math.isfinite(settings.target):
        raise StudyConfigError(
            f"hydra.sweeper.target={settings.target} is invalid: a finite value, or null for none"
        )


def check_settings(settings: DictConfig, arguments: Sequence[str]) -> SearchSpace:
    """Every setting a search needs, checked before anything starts; return its space. Raises
    ``SearchSpaceError`` or ``StudyConfigError``, one line naming the key."""
    space = parse_space(settings.get("params"), arguments)
    check_budget(settings)
    key = settings.repeat_key
    # Searched, the sampler would pick it as a setting: the best trial, partly by luck.
    if key in {searched.lstrip("+~") for searched in space.distributions}:
        raise StudyConfigError(
            f"{key} is searched, but a search repeats each trial over it "
            f"(hydra.sweeper.repeat_key): leave it out of the space and score each trial over "
            f"several with hydra.sweeper.repeats=3"
        )
    # Each checks its settings, those Optuna checks only once a trial asks included.
    make_sampler(settings.sampler)
    make_pruner(settings.pruner)
    check_storage_url(settings.storage)
    if settings.storage is None and (settings.pruner.name != "none" or settings.resume):
        raise StudyConfigError(
            "hydra.sweeper.storage=null keeps the study in this process: a pruner (each run "
            "reports from its own process) and resume=true need a storage URL"
        )
    return space


def repeat_values(settings: DictConfig, config: DictConfig) -> list[int]:
    """The values of ``repeat_key`` that a trial's runs take: its composed value and the
    ``repeats - 1`` integers after it; none with one run per trial, which leaves the key as
    composed. Raises ``StudyConfigError`` if repeats need the key and it holds no integer."""
    if settings.repeats == 1:
        return []
    key = settings.repeat_key
    base = OmegaConf.select(config, key, default=None)
    if not isinstance(base, int) or isinstance(base, bool):
        raise StudyConfigError(
            f"hydra.sweeper.repeat_key={key} is invalid: repeats need an integer key of the "
            f"config (it holds {base!r})"
        )
    return [base + r for r in range(settings.repeats)]


def study_key(space: SearchSpace, settings: DictConfig) -> str:
    """What a resumed search must share with its study: the space, the direction, and the
    repeats (a mean over another number of seeds is another objective). One run per trial:
    the space's key alone."""
    key = space.key(settings.direction)
    return key if settings.repeats == 1 else f"{key}/{settings.repeats}x{settings.repeat_key}"


def _under(key: str, roots: Sequence[str] | set[str]) -> bool:
    return any(key == root or key.startswith(f"{root}.") for root in roots)


def fixed_settings(settings: DictConfig, config: DictConfig, space: SearchSpace) -> dict[str, Any]:
    """What every trial of the search shares: the composed task config (``config`` less its
    ``hydra`` node), flat, less the keys the space searches and those under them (a searched
    group's), the repeated key (with repeats), and ``resume_ignores``; a command-line override
    under a searched group (``regularizer.lam=1e-4`` while ``regularizer`` is searched) is
    shared too, as its value."""
    varied = set(space.distributions) | ({settings.repeat_key} if settings.repeats > 1 else set())
    ignored = list(settings.get("resume_ignores") or [])
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node.name if isinstance(node, Enum) else node

    # Resolved key by key: the hydra node (times, the job's own) is not the trials' to share.
    for top in map(str, config):
        if top != "hydra":
            node = config[top]
            if isinstance(node, DictConfig | ListConfig):
                node = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
            walk(f"{top}.", node)
    fixed = {k: v for k, v in flat.items() if not _under(k, varied) and not _under(k, ignored)}
    parser = OverridesParser.create()
    for override in parser.parse_overrides(list(space.fixed)):
        key = override.get_key_element().lstrip("+~")
        if _under(key, varied) and key not in varied and not _under(key, ignored):
            fixed[key] = override.value()
    # As the study keeps it (JSON): a tuple is a list there.
    shared = json.loads(json.dumps(fixed, default=str))
    assert isinstance(shared, dict)
    return shared


def _stored(settings: dict[str, Any], key: str) -> str | None:
    """A setting as JSON text (NaN equal to NaN), None where it is not set."""
    return json.dumps(settings[key], sort_keys=True) if key in settings else None


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _described(settings: dict[str, Any], keys: list[str]) -> str:
    return " and ".join(
        f"{k}={_value_text(settings[k])}" if k in settings else f"no {k}" for k in keys
    )


def study_to_resume(
    storage: optuna.storages.BaseStorage,
    settings: DictConfig,
    space: SearchSpace,
    fixed: dict[str, Any],
) -> optuna.study.StudySummary | None:
    """The study ``resume=true`` continues: the newest of the same space and repeats in
    ``storage`` whose trials shared the settings ``fixed``, or None where the space has no
    study. Raises ``StudyConfigError``, one line naming each key with both values, where
    none shared them (one study would hold two searches). A study made before its settings
    were recorded is matched by its space alone, if it is the newest."""
    studies = studies_of(storage, study_key(space, settings))
    for found in studies:
        if FIXED_ATTR not in found.user_attrs:
            if found is studies[0]:
                return found
            continue
        if not _differing(found.user_attrs[FIXED_ATTR], fixed):
            return found
    if not studies:
        return None
    newest = studies[0].user_attrs.get(FIXED_ATTR, {})
    differ = _differing(newest, fixed)
    raise StudyConfigError(
        f"resume=true: the newest search of this space ran with {_described(newest, differ)}, "
        f"not {_described(fixed, differ)}; give the same settings or drop resume=true"
    )


def _differing(earlier: dict[str, Any], fixed: dict[str, Any]) -> list[str]:
    return sorted(
        k for k in earlier.keys() | fixed.keys() if _stored(earlier, k) != _stored(fixed, k)
    )


class StudyProgress(NamedTuple):
    """Where the study that ``resume=true`` continues stands: the name of the sweep directory
    that made it and when (seconds since the epoch; None for a study that did not record it),
    the numbers of its trials that count toward ``n_trials`` (``done_trials``), and how many
    finished runs the trials it asks again carry over (``carried``)."""

    sweep: str
    done: frozenset[int]
    created: float | None = None
    carried: int = 0


def sweep_to_resume(config: DictConfig, arguments: Sequence[str]) -> StudyProgress | None:
    """The study that ``resume=true`` continues (``study_to_resume``), as far as it got, or
    None; ``config`` is the composed multirun config."""
    settings = config.hydra.sweeper
    if settings.storage is None:
        return None
    space = parse_space(settings.get("params"), arguments)
    storage = make_storage(settings.storage)
    found = study_to_resume(storage, settings, space, fixed_settings(settings, config, space))
    if found is None:
        return None
    # Counted as the sweeper will count them once it resumes the study.
    trials = load_settled(storage, found.study_name, settings.repeats).get_trials(deepcopy=False)
    done = frozenset(t.number for t in done_trials(trials))
    kept = sum(len(carried(t.user_attrs, settings.repeats)) for t in owed(trials))
    created = found.user_attrs.get(CREATED_ATTR)
    return StudyProgress(str(found.user_attrs.get(SWEEP_ATTR)), done, created, kept)


def unused_name(storage: optuna.storages.BaseStorage, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``... where a study has it: a sweep of the same id in
    another experiment of the store, or a sweep directory used again that the app did not
    name anew (``sweep_id_of``)."""
    taken = set(optuna.get_all_study_names(storage))
    candidates = (name if n == 1 else f"{name}_{n}" for n in itertools.count(1))
    return next(c for c in candidates if c not in taken)


def reseeded(sampler: DictConfig, asked: int) -> DictConfig:
    """The sampler settings of a study resumed after ``asked`` trials: a seed drawn from its
    seed and ``asked``, so that a seeded sampler does not draw its first trials again (its
    random start would repeat them), nor those of a search seeded ``seed + asked`` (as
    ``seed + asked`` would), and a resumed search is as reproducible as one run through."""
    if sampler.get("seed") is None:
        return sampler
    seed = int(np.random.SeedSequence([int(sampler.seed), asked]).generate_state(1)[0])
    moved = OmegaConf.merge(sampler, {"seed": seed})
    assert isinstance(moved, DictConfig)
    return moved


def _quoted(text: str) -> str:
    """``text`` as an override's value that reads back as that string."""
    return str(QuotedString(text=text, quote=Quote.single).with_quotes())


def shown(value: object) -> str:
    """A drawn value as the output shows it: a float to 4 significant figures."""
    return f"{value:.4g}" if isinstance(value, float) else format_value(value)


def trial_ended(ret: JobReturn) -> bool:
    """Whether the job returned a value; one that raised, or whose process died, did not."""
    return ret.status == JobStatus.COMPLETED


def carried(attrs: dict[str, Any], repeats: int) -> dict[str, Any]:
    """The user attrs that carry a trial's finished runs over to the trial asking it again."""
    values = recorded_values(attrs, repeats)
    if not all(math.isfinite(v) for v in values.values()):
        return {}
    return {value_attr(r): v for r, v in values.items()}


class Job(NamedTuple):
    """One run of a trial: which of its repeats."""

    runs: TrialRuns
    repeat: int


class SearchSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings: DictConfig = OmegaConf.create(settings)
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.hydra_context: HydraContext | None = None
        # The first trial whose value reached ``target``, and that value: no trial starts after.
        self.reached: tuple[int, float] | None = None
        # The trials asked and not yet told, and their runs queued for a slot.
        self.open: dict[int, TrialRuns] = {}
        self.queued: deque[Job] = deque()
        self.repeat_values: list[int] = []
        # The next job's number: a resumed study's runs number on after its earlier ones.
        self.next_job = 0
        # How many runs go at once: n_jobs, or fewer where the launcher runs fewer (``_width``).
        self.width: int = self.settings.n_jobs

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        # Ctrl-C inside OmegaConf's building of the launcher's config leaves a node half-made,
        # which then fails as an AttributeError with a traceback: it waits until that is done.
        with interrupts_deferred():
            self.launcher = Plugins.instance().instantiate_launcher(
                hydra_context=hydra_context, task_function=task_function, config=config
            )

    # --- the study ---

    def _open_study(self, space: SearchSpace) -> optuna.Study:
        s, config = self.settings, self.config
        assert config is not None
        storage = make_storage(s.storage)
        pruner = make_pruner(s.pruner)
        key = study_key(space, s)
        fixed = fixed_settings(s, config, space)
        found = study_to_resume(storage, s, space, fixed) if s.resume else None
        if found is None:
            sampler = make_sampler(s.sampler)
            sweep = sweep_id_of(Path(str(config.hydra.sweep.dir)))
            study = optuna.create_study(
                study_name=unused_name(storage, f"{s.study_name}_{sweep}"),
                storage=storage,
                sampler=sampler,
                pruner=pruner,
                direction=s.direction,
            )
            study.set_user_attr(SPACE_ATTR, key)
            study.set_user_attr(CREATED_ATTR, time.time())
            study.set_user_attr(SWEEP_ATTR, sweep)
            study.set_user_attr(REPEATS_ATTR, s.repeats)
            study.set_user_attr(FIXED_ATTR, fixed)
            return study
        name = found.study_name
        sampler = make_sampler(reseeded(s.sampler, found.n_trials))
        study = load_settled(storage, name, s.repeats, sampler=sampler, pruner=pruner)
        trials = study.get_trials(deepcopy=False)
        # A study made before it kept its job numbers ran at most ``repeats`` jobs a trial.
        self.next_job = int(found.user_attrs.get(JOBS_ATTR, len(trials) * s.repeats))
        again = owed(trials)
        for trial in again:
            if trial.state == TrialState.RUNNING:
                storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
                study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(
                trial.params,
                user_attrs={
                    RETRY_OF: trial.number,
                    ATTEMPT: trial.user_attrs.get(ATTEMPT, 0),
                    **carried(trial.user_attrs, s.repeats),
                },
            )
        print(
            f"Resuming study {name}: {counted(trials)} of {s.n_trials} trials done, "
            f"{len(again)} cut short asked again",
            flush=True,
        )
        return study

    def _can_ask(self, study: optuna.Study, start: float) -> bool:
        s = self.settings
        if s.timeout is not None and time.monotonic() - start >= s.timeout:
            return False
        if self.reached is not None:
            return False
        return counted(study.get_trials(deepcopy=False)) + len(self.open) < s.n_trials

    def _job_overrides(self, study: optuna.Study, space: SearchSpace, job: Job) -> list[str]:
        trial = job.runs.trial
        overrides = space.overrides(trial.params)
        repeat: list[str] = []
        if self.settings.repeats > 1:
            key = self.settings.repeat_key
            # The repeat's value replaces the one the command line fixes.
            overrides = [o for o in overrides if o.partition("=")[0].lstrip("+~") != key]
            repeat = [f"{key}={self.repeat_values[job.repeat]}"]
        # The storage as this process resolved it: the job's own config might resolve its
        # default elsewhere (another machine, another working directory).
        storage = self.settings.storage
        where = [] if storage is None else [f"hydra.sweeper.storage={_quoted(storage)}"]
        return [
            *overrides,
            *repeat,
            f"hydra.sweeper.study='{study.study_name}'",
            *position_overrides(trial.number, job.repeat if self.settings.repeats > 1 else None),
            *where,
        ]

    def _queue(self, runs: TrialRuns, repeats: Sequence[int]) -> None:
        runs.open += len(repeats)
        self.queued.extend(Job(runs, r) for r in repeats)

    def _ask(self, study: optuna.Study, space: SearchSpace) -> None:
        """Ask a new trial and queue its first run (every missing one if its first run's value
        is carried over from the attempt it asks again)."""
        storage = study._storage
        trial = study.ask(space.distributions)
        attrs = storage.get_trial(trial._trial_id).user_attrs
        runs = TrialRuns(
            trial, self.settings.repeats, recorded_values(attrs, self.settings.repeats)
        )
        if 0 in runs.values and RETRY_OF in attrs:
            # The first run's curve: the pruner judges other trials against it.
            earlier = storage.get_trial_id_from_study_id_trial_number(
                study._study_id, attrs[RETRY_OF]
            )
            for step, value in sorted(storage.get_trial(earlier).intermediate_values.items()):
                trial.report(value, step)
        self.open[trial.number] = runs
        self._queue(runs, runs.first())
        if runs.done:
            self._tell(study, runs)

    def _next_jobs(
        self, study: optuna.Study, space: SearchSpace, start: float, slots: int
    ) -> list[Job]:
        """Up to ``slots`` jobs to start: queued repeats first, then the first runs of new
        trials, while the budget allows."""
        jobs: list[Job] = []
        while len(jobs) < slots:
            if not self.queued and self._can_ask(study, start):
                self._ask(study, space)
                continue
            if not self.queued:
                break
            jobs.append(self.queued.popleft())
        return jobs

    def _job_ended(self, study: optuna.Study, job: Job, ret: JobReturn) -> None:
        """Record how one run of a trial ended, queue the trial's next runs, and tell the
        study once none of its runs is queued or running."""
        runs = job.runs
        attrs = study._storage.get_trial(runs.trial._trial_id).user_attrs
        # A run that recorded its value ended, even if its process died before answering.
        value = recorded_values(attrs, runs.repeats).get(job.repeat)
        death = None
        if value is None and trial_ended(ret):
            returned = ret.return_value
            value = float(returned) if isinstance(returned, int | float) else math.nan
        elif value is None:
            death = str(ret._return_value)
        after = runs.ended(job.repeat, value, PRUNED_AT in attrs, death)
        if runs.failed:
            # Its queued runs could no longer make a value.
            dropped = [j for j in self.queued if j.runs is runs]
            self.queued = deque(j for j in self.queued if j.runs is not runs)
            runs.open -= len(dropped)
        self._queue(runs, after)
        if runs.done:
            self._tell(study, runs)

    def _tell(self, study: optuna.Study, runs: TrialRuns) -> None:
        """Tell the study how the trial ended: pruned, failed, or the mean of its runs' values;
        ask a trial whose run returned nothing again, ``retries`` times at most, its finished
        runs carried over."""
        trial = runs.trial
        del self.open[trial.number]
        if runs.pruned:
            study.tell(trial, state=TrialState.PRUNED)
            return
        if not all(math.isfinite(v) for v in runs.values.values()):
            # A failed or diverged run: the sampler learns nothing from it but goes on.
            study.tell(trial, state=TrialState.FAIL)
            return
        if runs.death is not None:
            attempt = int(study._storage.get_trial(trial._trial_id).user_attrs.get(ATTEMPT, 0))
            study.tell(trial, state=TrialState.FAIL)
            if attempt < self.settings.retries:
                study.enqueue_trial(
                    trial.params,
                    user_attrs={
                        RETRY_OF: trial.number,
                        ATTEMPT: attempt + 1,
                        **{value_attr(r): v for r, v in runs.values.items()},
                    },
                )
                kept = (
                    f", {len(runs.values)} of its {runs.repeats} runs kept" if runs.values else ""
                )
                print(
                    f"Trial {trial.number} returned nothing ({runs.death}); it is asked "
                    f"again{kept}",
                    flush=True,
                )
            return
        value = runs.mean
        study.tell(trial, value)
        target = self.settings.target
        if self.reached is None and target is not None and value <= target:
            self.reached = (trial.number, value)

    # --- the two schedulers ---

    def _run_asynchronously(self, study: optuna.Study, space: SearchSpace, start: float) -> None:
        """Keep ``width`` runs going: a slot that frees takes a queued repeat, else the next
        trial, at once."""
        launcher: Any = self.launcher
        running: dict[concurrent.futures.Future[JobReturn], Job] = {}
        try:
            while True:
                # A trial is asked whole and its job tracked, or neither: else a resume would
                # ask a trial again with half its params.
                with interrupts_deferred():
                    jobs = self._next_jobs(study, space, start, self.width - len(running))
                    for job in jobs:
                        overrides = self._job_overrides(study, space, job)
                        running[launcher.submit(overrides, self.next_job)] = job
                        self.next_job += 1
                    if jobs:
                        study.set_user_attr(JOBS_ATTR, self.next_job)
                if not running:
                    return
                done, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    self._job_ended(study, running.pop(future), future.result())
        except KeyboardInterrupt:
            # Jobs that ended before Ctrl-C was handled still count. None is waited for here:
            # the launcher's processes are stopped, and their deaths recorded, as the sweep
            # stops (each launcher's stop_jobs, through interrupts.stop_jobs).
            for future, job in running.items():
                if future.done() and future.exception() is None and trial_ended(future.result()):
                    self._job_ended(study, job, future.result())
            self._interrupted(study)
            raise

    def _run_in_batches(self, study: optuna.Study, space: SearchSpace, start: float) -> None:
        """Any launcher: ``width`` runs at a time, each batch waiting for its slowest."""
        assert self.launcher is not None
        try:
            while True:
                with interrupts_deferred():
                    jobs = self._next_jobs(study, space, start, self.width)
                    if jobs:
                        study.set_user_attr(JOBS_ATTR, self.next_job + len(jobs))
                if not jobs:
                    return
                overrides = [self._job_overrides(study, space, job) for job in jobs]
                returns = self.launcher.launch(overrides, self.next_job)
                self.next_job += len(jobs)
                for job, ret in zip(jobs, returns, strict=True):
                    self._job_ended(study, job, ret)
        except KeyboardInterrupt:
            self._interrupted(study)
            raise

    def _interrupted(self, study: optuna.Study) -> None:
        """Ctrl-C: the trials in progress fail, marked so that ``resume=true`` asks them again
        (the values of their finished runs carried over), but for those whose runs recorded
        how the trial ended."""
        for runs in self.open.values():
            trial = runs.trial
            try:
                frozen = study._storage.get_trial(trial._trial_id)
                if settle(study, frozen, runs.repeats):
                    continue
                trial.set_user_attr(INTERRUPTED, True)
                if terminated():
                    trial.set_user_attr(BY_SIGTERM, True)
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            except Exception:  # the storage itself may be what is failing
                pass

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        quiet_optuna()
        space = check_settings(self.settings, arguments)
        self.repeat_values = repeat_values(self.settings, self.config)
        study = self._open_study(space)
        self.width = self._width()
        start = time.monotonic()
        if self.settings.asynchronous and hasattr(self.launcher, "submit"):
            self._run_asynchronously(study, space, start)
        else:
            self._run_in_batches(study, space, start)
        self._print_at_end(self._result(study, space))

    def _width(self) -> int:
        """How many runs go at once: ``n_jobs``, or as many as the launcher runs at a time
        (its ``slots``) where that is fewer: runs asked beyond them would wait, drawn before
        what the running ones tell, and start after ``timeout``."""
        n_jobs = self.settings.n_jobs
        slots = getattr(self.launcher, "slots", None)
        if slots is None or slots >= n_jobs:
            return n_jobs
        print(
            f"Runs {slots} at a time, not hydra.sweeper.n_jobs={n_jobs}: the launcher runs "
            f"no more (hydra.launcher.n_jobs)",
            flush=True,
        )
        return int(slots)

    def _result(self, study: optuna.Study, space: SearchSpace) -> list[str]:
        """How the search ended: the trial that reached the target, and the best trial."""
        lines = []
        if self.reached is not None:
            number, value = self.reached
            lines.append(
                f"Target reached: trial {number}, value {value:.4g} <= {self.settings.target:g}"
            )
        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if done:
            best = study.best_trial
            runs = f" (mean of {self.settings.repeats} runs)" if self.settings.repeats > 1 else ""
            drawn = " ".join(f"{key}={shown(best.params[key])}" for key in space.distributions)
            lines.append(
                f"Study {study.study_name}: best trial {best.number}, value {best.value:.4g}"
                f"{runs}, {drawn}"
            )
        return lines

    def _print_at_end(self, lines: list[str]) -> None:
        """Print ``lines`` once the multirun's callbacks have ended it. The jobs have all
        returned here, but a callback may not have printed their last lines yet (one that
        polls the sweep directory for the runs' outcomes prints each when it next looks, as
        the multirun ends); so the lines follow whatever those callbacks print, and are
        printed even if one of them exits (a sweep with failed runs exits 1)."""
        if not lines:
            return
        text = "\n".join(lines)
        callbacks = self.hydra_context.callbacks if self.hydra_context is not None else None
        if callbacks is None:
            print(text, flush=True)
            return
        notify = callbacks.on_multirun_end

        def on_multirun_end(config: DictConfig, **kwargs: Any) -> None:
            try:
                notify(config, **kwargs)
            finally:
                print(text, flush=True)

        # Hydra calls this object's on_multirun_end right after sweep() returns.
        callbacks.on_multirun_end = on_multirun_end  # type: ignore[method-assign]
