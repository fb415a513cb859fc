"""The study behind a search: its storage, sampler and pruner, and what a resumed one owes.

Samplers and pruners are registries, a name with its construction and the check of its
settings (``Option``); a name not in them, or a setting its entry rejects, fails before any
trial, in one line. A study records the key of its search space
(``SearchSpace.key``) so that ``resume=true`` finds the newest study of the same space, and
the settings its trials share, which a resumed search must share too.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import optuna
import sqlalchemy
from hydra.errors import CompactHydraException
from omegaconf import DictConfig
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

SPACE_ATTR = "search_space"
CREATED_ATTR = "created"
# What every trial of the study shares (``search_sweeper.fixed_settings``): a resumed search
# must share it too.
FIXED_ATTR = "fixed"
# The job number the study's next run takes: a resumed search's runs number on from there.
JOBS_ATTR = "jobs"
# The id of the sweep that created the study (``sweep_id_of``), by which the app finds its runs.
SWEEP_ATTR = "sweep"
# Where the app records its sweep in the sweep directory (sweeper.sweep_info.SWEEP_FILE).
APP_SWEEP_FILE = "sweep.json"
# A trial's user attrs: the trial it repeats, which attempt it is, that Ctrl-C cut it, and
# whether that was a SIGTERM taken as Ctrl-C (its runs, which see the trial end before the
# signal reaches them, say so).
RETRY_OF = "retry_of"
ATTEMPT = "attempt"
INTERRUPTED = "interrupted"
BY_SIGTERM = "by_sigterm"
# Set by the job (sweeper_search.trial) when the pruner stopped it: the epoch it stopped at.
PRUNED_AT = "pruned_at"
# Set by the job once its run has ended: the value it returns (``value_attr``: one per
# repeat). The run ended then, even if its process was stopped before it could answer.
VALUE = "value"
# The study's repeats (runs per trial), for whoever looks at the study (its space key holds
# them too, so that a resumed search keeps them).
REPEATS_ATTR = "repeats"
# SQLite waits this long for another process's write (the jobs report every epoch).
SQLITE_TIMEOUT_S = 60
# A storage URL with this scheme names Optuna's gRPC storage proxy; the sweeper and each job
# wait this long for it to answer.
GRPC_SCHEME = "grpc://"
GRPC_READY_TIMEOUT_S = 10


class StudyConfigError(CompactHydraException):
    """A sampler, pruner or storage setting that cannot be used; one line naming the key."""


T = TypeVar("T")


def _whole(value: object) -> bool:
    """An integer, not a boolean (a setting typed Any keeps ``true`` as it is)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _unchecked(conf: DictConfig) -> str | None:
    # An entry whose settings Optuna checks as it builds it, or that reads none.
    return None


@dataclass(frozen=True)
class Option(Generic[T]):
    """A registry's entry: how to build it from its settings, and the check of those settings
    that Optuna makes only once a trial asks (a job's first epoch, where every run would
    fail) or never: the first bad one as ``key=value is invalid: why``, or None."""

    build: Callable[[DictConfig], T]
    check: Callable[[DictConfig], str | None] = _unchecked


def _startup_trials(conf: DictConfig) -> str | None:
    if conf.n_startup_trials >= 0:
        return None
    return f"n_startup_trials={conf.n_startup_trials} is invalid: must be >= 0"


def _qmc_sampler(conf: DictConfig) -> BaseSampler:
    with warnings.catch_warnings():
        # Experimental, as a search's user is told once: a warning at each construction repeats it.
        warnings.filterwarnings(
            "ignore", "QMCSampler is experimental", optuna.exceptions.ExperimentalWarning
        )
        return optuna.samplers.QMCSampler(
            qmc_type=conf.qmc_type, seed=conf.seed, warn_asynchronous_seeding=False
        )


SAMPLERS: dict[str, Option[BaseSampler]] = {
    # constant_liar: trials in flight count as bad guesses, so parallel slots spread out.
    "tpe": Option(
        lambda c: optuna.samplers.TPESampler(
            seed=c.seed, n_startup_trials=c.n_startup_trials, constant_liar=True
        ),
        _startup_trials,
    ),
    "random": Option(lambda c: optuna.samplers.RandomSampler(seed=c.seed)),
    "cmaes": Option(
        lambda c: optuna.samplers.CmaEsSampler(
            seed=c.seed, n_startup_trials=c.n_startup_trials, warn_independent_sampling=False
        ),
        _startup_trials,
    ),
    "qmc": Option(_qmc_sampler),
}


def _warmup_steps(conf: DictConfig) -> str | None:
    # The pruner gets one more, which Optuna's own check would let through at -1.
    if conf.n_warmup_steps >= 0:
        return None
    return f"n_warmup_steps={conf.n_warmup_steps} is invalid: must be >= 0"


def _min_resource(conf: DictConfig, auto: bool) -> str | None:
    low = conf.min_resource
    if (auto and low == "auto") or (_whole(low) and low >= 1):
        return None
    return f"min_resource={low} is invalid: an integer >= 1" + (" or 'auto'" if auto else "")


def _hyperband_resources(conf: DictConfig) -> str | None:
    # Hyperband divides by min_resource to size its brackets (no 'auto' there), and takes the
    # reduction factor's logarithm at a trial's first report (successive halving's
    # constructor checks it).
    high, factor = conf.max_resource, conf.reduction_factor
    if problem := _min_resource(conf, auto=False):
        return problem
    if high != "auto" and not (_whole(high) and high >= conf.min_resource):
        return (
            f"max_resource={high} is invalid: 'auto' or an integer >= min_resource "
            f"({conf.min_resource})"
        )
    if factor < 2:
        return f"reduction_factor={factor} is invalid: an integer >= 2"
    return None


PRUNERS: dict[str, Option[BasePruner]] = {
    "none": Option(lambda c: optuna.pruners.NopPruner()),
    # A run reports its epochs as steps from 1, and Optuna judges from step n_warmup_steps on:
    # one more, so that n_warmup_steps counts the epochs a trial trains unjudged.
    "median": Option(
        lambda c: optuna.pruners.MedianPruner(
            n_startup_trials=c.n_startup_trials, n_warmup_steps=c.n_warmup_steps + 1
        ),
        _warmup_steps,
    ),
    "successive_halving": Option(
        lambda c: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=c.min_resource, reduction_factor=c.reduction_factor
        ),
        lambda c: _min_resource(c, auto=True),
    ),
    "hyperband": Option(
        lambda c: optuna.pruners.HyperbandPruner(
            min_resource=c.min_resource,
            max_resource=c.max_resource,
            reduction_factor=c.reduction_factor,
        ),
        _hyperband_resources,
    ),
}


def _from_registry(registry: Mapping[str, Option[T]], key: str, conf: DictConfig) -> T:
    if conf.name not in registry:
        raise StudyConfigError(
            f"{key}.name={conf.name!r} is invalid: choose one of {', '.join(registry)}"
        )
    option = registry[conf.name]
    problem = option.check(conf)
    if problem is not None:
        raise StudyConfigError(f"{key}.{problem}")
    try:
        return option.build(conf)
    except (ValueError, TypeError) as err:
        raise StudyConfigError(f"{key}: {str(err).splitlines()[0]}") from None


def make_sampler(conf: DictConfig) -> BaseSampler:
    """The sampler ``conf`` names, its settings checked; ``StudyConfigError``, one line."""
    return _from_registry(SAMPLERS, "hydra.sweeper.sampler", conf)


def make_pruner(conf: DictConfig) -> BasePruner:
    """The pruner ``conf`` names, its settings checked; ``StudyConfigError``, one line."""
    return _from_registry(PRUNERS, "hydra.sweeper.pruner", conf)


def _grpc_address(url: str) -> tuple[str, int]:
    address = urllib.parse.urlsplit(url)
    try:
        host, port = address.hostname, address.port
    except ValueError:  # a port that is not a number
        host, port = None, None
    if not host or not port:
        raise StudyConfigError(f"hydra.sweeper.storage={url!r} is invalid: grpc://HOST:PORT")
    return host, port


def check_storage_url(url: str | None) -> None:
    """What can be known of a storage URL without opening it: its form, and for a database,
    that SQLAlchemy has its dialect and driver. Raises ``StudyConfigError``, one line."""
    if url is None:
        return
    if url.startswith(GRPC_SCHEME):
        _grpc_address(url)
        return
    try:
        sqlalchemy.engine.make_url(url).get_dialect().import_dbapi()
    except Exception as err:
        raise StudyConfigError(
            f"hydra.sweeper.storage={url!r} cannot be used: {str(err).splitlines()[0]}"
        ) from None


def grpc_storage(url: str) -> optuna.storages.GrpcStorageProxy:
    """``grpc://HOST:PORT``: Optuna's gRPC storage proxy (``sweeper_search.proxy``) in front of
    the study's RDB, for workers that reach the proxy's address and no database."""
    host, port = _grpc_address(url)
    with warnings.catch_warnings():
        # Experimental, as a search's user is told once: a warning per job's process repeats it.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
        except ModuleNotFoundError:
            raise StudyConfigError(
                f"hydra.sweeper.storage={url!r} needs grpcio: pip install grpcio"
            ) from None
    try:
        proxy.wait_server_ready(timeout=GRPC_READY_TIMEOUT_S)
    except ConnectionError:
        raise StudyConfigError(
            f"hydra.sweeper.storage={url!r} cannot be used: no storage proxy answers there "
            f"within {GRPC_READY_TIMEOUT_S} s"
        ) from None
    return proxy


def check_storage_answers(url: str | None) -> None:
    """A gRPC storage proxy that does not answer, asked before the search starts anything:
    ``StudyConfigError``, one line, at once where nothing listens at its address (a proxy
    not started), else once it has not answered for ``GRPC_READY_TIMEOUT_S``. Any other
    storage is opened as the search starts."""
    if url is None or not url.startswith(GRPC_SCHEME):
        return
    host, port = _grpc_address(url)
    try:
        socket.create_connection((host, port), timeout=GRPC_READY_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise StudyConfigError(
            f"hydra.sweeper.storage={url!r} cannot be used: no storage proxy answers there "
            f"({reason}): is it running?"
        ) from None
    grpc_storage(url).close()


def make_storage(url: str | None, create_tables: bool = True) -> optuna.storages.BaseStorage:
    """The study's storage: an RDB URL (SQLite waits for other processes' writes), a gRPC
    proxy's address (``grpc://HOST:PORT``), or memory. ``create_tables=False`` (a job's
    process): the sweeper has created and checked the schema already, so neither is done
    again (the check costs a second per job)."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    if url.startswith(GRPC_SCHEME):
        return grpc_storage(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT_S}
        database = sqlalchemy.engine.make_url(url).database
        if create_tables and database and database != ":memory:":
            # The store's directory, where the default storage lies, may not exist yet.
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=kwargs,
            skip_table_creation=not create_tables,
            skip_compatibility_check=not create_tables,
        )
    except Exception as err:
        raise StudyConfigError(
            f"hydra.sweeper.storage={url!r} cannot be used: {str(err).splitlines()[0]}"
        ) from None


def quiet_optuna() -> None:
    """Optuna's per-trial log lines repeat what the sweep's progress line says."""
    optuna.logging.set_verbosity(logging.WARNING)


def studies_of(
    storage: optuna.storages.BaseStorage, space_key: str
) -> list[optuna.study.StudySummary]:
    """The studies of this search space in ``storage``, newest first."""
    studies = [
        s
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if s.user_attrs.get(SPACE_ATTR) == space_key
    ]
    return sorted(studies, key=lambda s: s.user_attrs.get(CREATED_ATTR, 0.0), reverse=True)


def value_attr(repeat: int) -> str:
    """The user attr where a trial's run number ``repeat`` records its value."""
    return VALUE if repeat == 0 else f"{VALUE}.{repeat}"


def recorded_values(attrs: Mapping[str, Any], repeats: int) -> dict[int, float]:
    """The values that the trial's runs recorded, by repeat."""
    return {r: float(attrs[value_attr(r)]) for r in range(repeats) if value_attr(r) in attrs}


def settle(study: optuna.Study, trial: FrozenTrial, repeats: int = 1) -> bool:
    """Tell the study how ``trial`` ended if its runs recorded it (pruned, one failed, or all
    ``repeats`` values: their mean); whether they had."""
    if PRUNED_AT in trial.user_attrs:
        study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        return True
    values = recorded_values(trial.user_attrs, repeats)
    if not all(math.isfinite(v) for v in values.values()):
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        return True
    if len(values) < repeats:
        return False
    study.tell(trial.number, math.fsum(values.values()) / repeats, skip_if_finished=True)
    return True


def load_settled(
    storage: optuna.storages.BaseStorage, name: str, repeats: int, **kwargs: Any
) -> optuna.Study:
    """The study ``name`` (``kwargs`` to ``optuna.load_study``), each running trial whose runs
    recorded how it ended told so (``settle``): a job stopped after it recorded its end (the
    sweep's process gone first) ended as it recorded."""
    study = optuna.load_study(study_name=name, storage=storage, **kwargs)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if any([settle(study, trial, repeats) for trial in running]):
        study = optuna.load_study(study_name=name, storage=storage, **kwargs)
    return study


def retried(trials: Iterable[FrozenTrial]) -> set[int]:
    """The numbers of the trials that a later trial asks again."""
    return {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}


def done_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that count toward the budget: ended (a failed one too: it was run and told),
    and not asked again."""
    again = retried(trials)
    return [
        t
        for t in trials
        if t.state.is_finished() and t.number not in again and not t.user_attrs.get(INTERRUPTED)
    ]


def counted(trials: list[FrozenTrial]) -> int:
    """How many trials count toward the budget (``done_trials``)."""
    return len(done_trials(trials))


def owed(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials a resumed study asks again: the ones left running, and the ones Ctrl-C cut
    short, unless asked again already."""
    again = retried(trials)
    cut_short = [
        t
        for t in trials
        if t.state == TrialState.RUNNING
        or (t.state == TrialState.FAIL and t.user_attrs.get(INTERRUPTED))
    ]
    return [t for t in cut_short if t.number not in again]


def sweep_id_of(sweep_dir: Path) -> str:
    """The id the app records the sweep in ``sweep_dir`` under: its ``sweep.json``'s, written
    as the sweep starts (a sweep directory used again gives a new sweep ``NAME-2``), else the
    directory's name."""
    try:
        return str(json.loads((sweep_dir / APP_SWEEP_FILE).read_text())["sweep_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return sweep_dir.name
