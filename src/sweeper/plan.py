"""The runs a sweep will make, known before any starts: expanded as Hydra's basic sweeper
will expand them, each composed and validated, and what varies between them.

A bad value in any run stops the sweep here, with one line per problem, before the store is
touched (and a config group given no option's name, before Hydra composes the command line).
Other sweepers (a search) draw their runs as they go: their plan is the search space, whose
ends are composed and validated instead.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from hydra_plugins.sweeper_launcher.composing import ShapeCache, typed
from hydra_plugins.sweeper_launcher.config import RayClusterLauncherConf
from hydra_plugins.sweeper_launcher.ray_address import check_ray_cluster
from hydra_plugins.sweeper_launcher.ray_launcher import RAY_LAUNCHER_PACKAGE
from sweeper.config import (
    ACTIVATION,
    AUTO_INIT,
    INIT,
    TRACKING_EXPERIMENT,
    TRACKING_URI,
    ConfigError,
    config_hash,
    flat_params,
    names_configuration,
    params_of_keys,
    read_params,
    to_experiment_config,
    unread_keys,
    varied_params,
)
from sweeper.core import ACTIVATIONS
from sweeper.search import check_search, is_search, searched_keys

# What every run of a sweep shares, and why.
SWEEP_WIDE = {
    TRACKING_URI: "whose runs record under one parent run in one store and experiment",
    TRACKING_EXPERIMENT: "whose runs record under one parent run in one store and experiment",
}
# Hydra's own error lines that name its internals rather than the user's mistake.
_NOISE = ("full_key:", "reference_type=", "object_type=", "Config search path:")


@dataclass
class Plan:
    # Each run's overrides; None when the sweeper draws its runs as it goes (Optuna).
    jobs: list[list[str]] | None
    # Each planned run's config_hash, in job order (empty without jobs).
    hashes: list[str]
    # The override keys whose values differ between runs, which name them.
    keys: set[str]
    # The flat config keys that differ, the columns of the sweep's view in the UI.
    param_keys: list[str]
    # How many runs, if known: the planned jobs, or the sweeper's n_trials.
    total: int | None
    # Seconds after which the sweeper starts no new trial (a search's time budget), if any.
    timeout: float | None = None
    # The value at which a search starts no new trial, if any.
    target: float | None = None
    # A search's runs of each trial; with more than one, ``total`` is at most: a trial pruned,
    # or failed on a run, starts no more of them.
    repeats: int = 1


def check_launcher(launcher: DictConfig) -> None:
    """A launcher setting, a launcher whose package is missing, or a Ray cluster that is not
    there or refuses this process's auth token, that would fail only once the sweep has started
    (ray.init, for minutes where nothing listens at its address): ConfigError, or
    ``NoRayClusterError`` or ``RayAuthTokenError``, in one line."""
    if launcher.get("n_jobs") == 0:
        # joblib's meaning: -1 one per core, -2 all but one; 0 means nothing.
        raise ConfigError(
            "hydra.launcher.n_jobs=0 is invalid: how many runs at a time, -1 for one per core"
        )
    if launcher.get("_target_") != RayClusterLauncherConf._target_:
        return
    if not find_spec(RAY_LAUNCHER_PACKAGE):
        raise ConfigError(
            "hydra/launcher=ray_cluster needs Hydra's Ray launcher, the [ray] extra: "
            "make install-ray (or pip install -e '.[ray]')"
        )
    try:
        check_ray_cluster(launcher.ray.init)
    except HydraException as err:  # an address Ray cannot read
        raise ConfigError(str(err)) from None


def plan_sweep(config: DictConfig, config_name: str) -> Plan:
    """The sweep that ``config`` (the composed multirun config) asks for; a ConfigError
    lists every run that cannot run."""
    check_launcher(config.hydra.launcher)
    jobs = planned_jobs(config)
    if jobs is not None:
        params = validate_jobs(config_name, jobs, typed(config.hydra.overrides.hydra))
        param_keys = varied_params(params)
        check_sweep_wide(param_keys)
        check_distinct(jobs, params)
        return Plan(
            jobs,
            [config_hash(p) for p in params],
            varying_overrides(jobs),
            param_keys,
            len(jobs),
        )
    if config.resume and not is_search(config):
        raise ConfigError(
            "resume=true needs Hydra's basic sweeper, which plans every run, or "
            "hydra/sweeper=search, which keeps its study"
        )
    # Optuna draws its trials as it goes: what varies is its search space, the sweeper's
    # params and the command line's sweep overrides, less the keys the command line fixes.
    lines = typed(config.hydra.overrides.task)
    task = OverridesParser.create().parse_overrides(lines)
    sweeper = config.hydra.sweeper
    # The flat keys that a group's options set alike (regularizer.max_norm for l2 and dropout)
    # do not vary, though the group does: the space's ends say which do.
    ends: list[dict[str, Any]] | None = None
    if is_search(config):
        ends = check_search_space(config_name, config)
        searched = searched_keys(config)
    else:
        searched = set(sweeper.get("params") or {}) | {
            o.get_key_element() for o in task if o.is_sweep_override()
        }
    # A search that repeats each trial varies the repeated key too.
    repeats = sweeper.get("repeats", 1)
    repeated = {sweeper.repeat_key} if repeats > 1 else set()
    keys = searched | repeated
    check_sweep_wide(keys)
    fixed = [line for line, o in zip(lines, task, strict=True) if not o.is_sweep_override()]
    base = _shapes().compose(config_name, [*typed(config.hydra.overrides.hydra), *fixed])
    param_keys = params_of_keys(flat_params(base), keys)
    if ends is not None:
        varied = set(varied_params(ends))
        param_keys = [k for k in param_keys if k in keys or k in varied]
    return Plan(
        None,
        [],
        keys,
        param_keys,
        sweeper.n_trials * repeats if sweeper.get("n_trials") is not None else None,
        sweeper.get("timeout"),
        sweeper.get("target"),
        repeats,
    )


def check_sweep_wide(varied: Collection[str]) -> None:
    """Raise a ConfigError if a key that every run of a sweep shares (``SWEEP_WIDE``) varies."""
    for key, why in SWEEP_WIDE.items():
        if key in varied:
            raise ConfigError(f"{key} cannot vary within a sweep, {why}: run one sweep per value")


def check_distinct(jobs: Sequence[Sequence[str]], params: Sequence[dict[str, Any]]) -> None:
    """Raise a ConfigError if two runs would train the same network: the same configuration,
    or two that differ only in settings their options do not read (``regularizer.lam`` with
    ``regularizer=dropout``), which the report would show as different configurations."""
    first: dict[str, int] = {}
    for job, run in enumerate(params):
        unread = unread_keys(run)
        same = first.setdefault(config_hash(read_params(run)), job)
        if same == job:
            continue
        other = params[same]
        differ = sorted(k for k in run if run[k] != other.get(k) and names_configuration(k))
        a, b = (
            " ".join(o for o in x if o not in y)
            for x, y in ((jobs[same], jobs[job]), (jobs[job], jobs[same]))
        )
        named = (
            f"#{same} ({a}) and #{job} ({b})"
            if a
            else f"#{same} and #{job} ({' '.join(jobs[job])})"
        )
        if not differ:
            raise ConfigError(f"runs {named} are the same configuration: run it once")
        spelled = [k for k in differ if k not in unread]
        if spelled:
            # Read, but the same to config_hash: two names of one directory or init scheme.
            said = "; ".join(_same_meaning(k, other, run) for k in spelled)
            raise ConfigError(f"runs {named} would train the same network: {said}; run it once")
        readers = sorted({unread[k] for k in differ})
        raise ConfigError(
            f"runs {named} would train the same network: they differ only in "
            f"{', '.join(differ)}, which {' and '.join(readers)} does not read; "
            "vary it only with the options that read it"
        )


def _same_meaning(key: str, a: dict[str, Any], b: dict[str, Any]) -> str:
    """Why ``config_hash`` takes ``a`` and ``b``'s different values of ``key`` as one."""
    if key == INIT:
        name = b[ACTIVATION]
        return f"{INIT}={AUTO_INIT} is {ACTIVATIONS[name].init} for activation={name}"
    return f"{key}={a[key]} and {key}={b[key]} name one directory"


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each run's overrides, as Hydra's basic sweeper will expand them; None for other sweepers
    (Optuna picks its trials as it goes)."""
    sweeper_target = config.hydra.sweeper.get("_target_", "")
    if not sweeper_target.endswith(BasicSweeper.__name__):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + typed(config.hydra.overrides.task)
    parser = OverridesParser.create(config_loader=_shapes().loader)  # glob() lists a group
    overrides = parser.parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def varying_overrides(jobs: Sequence[Sequence[str]]) -> set[str]:
    """The keys whose values differ between the jobs of a sweep."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return {key for key, seen in values.items() if len(seen) > 1}


def error_summary(err: Exception) -> str:
    """Hydra's and OmegaConf's multi-line errors on one line: what, the value, the choices."""
    text = str(err)
    if isinstance(err.__cause__, OmegaConfBaseException):
        # Hydra says which override failed; OmegaConf, in the cause, says why.
        text += "\n" + str(err.__cause__)
    summary = ""
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith(_NOISE[-1]):
            break
        if not line or line.startswith(_NOISE):
            continue
        separator = " " if not summary or summary.endswith(":") else "; "
        summary = f"{summary}{separator}{line}" if summary else line
    return summary


def _shapes() -> ShapeCache:
    """The composer the launcher composes runs with."""
    hydra = GlobalHydra.instance().hydra
    assert hydra is not None  # Hydra is composing this sweep
    return ShapeCache.of(hydra.config_loader)  # type: ignore[arg-type]


def job_problems(
    config_name: str, jobs: Sequence[Sequence[str]], hydra_overrides: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Compose and validate every run: the valid runs' ``flat_params``, and each problem's
    one-line message with the runs it was found in. With the command line's ``hydra_overrides``
    each run is composed as the sweeper and the launcher compose it, so they find it composed."""
    problems: dict[str, list[str]] = {}
    params = []
    shapes = _shapes()
    for job in jobs:
        try:
            cfg = shapes.compose(config_name, [*hydra_overrides, *job])
            to_experiment_config(cfg)
            params.append(flat_params(cfg))
        except (ConfigError, HydraException, OmegaConfBaseException) as err:
            problems.setdefault(error_summary(err), []).append(" ".join(job) or "(defaults)")
        except (ValueError, TypeError):
            # Hydra's defaults list raises them, naming no override, for a group given a number.
            problem = group_given_no_name(shapes, job)
            if problem is None:
                raise
            problems.setdefault(problem, []).append(" ".join(job))
    return params, problems


def command_line_problem(conf_dir: Path, argv: Sequence[str]) -> str | None:
    """An override that gives a config group no option's name, which Hydra would report with
    its own traceback as it composes the command line's config; None if there is none, or if
    Hydra reports on the command line itself. A sweep's values are checked with its runs."""
    try:
        # Quietly: Hydra parses the command line again and reports what is wrong with it.
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(list(argv))
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except (SystemExit, HydraException):
        return None
    if args.help or args.hydra_help:
        return None
    # Hydra's loader is built only for a value given to what may be a group (this checkout's
    # conf/ or Hydra's own): most commands set keys such as seed=1 to numbers.
    if not any(
        _names_no_option(o)
        for o in overrides
        if (conf_dir / o.key_or_group).is_dir() or o.key_or_group.startswith("hydra/")
    ):
        return None
    # Hydra's own config loader, so its groups and their options are what the run would see.
    path = create_config_search_path(str(conf_dir))
    return group_given_no_name(
        ShapeCache(ConfigLoaderImpl(config_search_path=path)), args.overrides
    )


def _names_no_option(override: Override) -> bool:
    """Whether the value is none that Hydra's defaults list takes for a group's option(s)."""
    value = override.value()
    if override.is_sweep_override() or isinstance(value, dict):
        return False
    if isinstance(value, list):
        return override.is_delete() or not all(isinstance(item, str) for item in value)
    return not isinstance(value, str) and not (value is None and override.is_delete())


def group_given_no_name(shapes: ShapeCache, job: Sequence[str]) -> str | None:
    """What is wrong with the override of ``job`` that gives a config group something other
    than an option's name (a number, a boolean, null), as Hydra's defaults list rejects it;
    None if no override does."""
    for override in OverridesParser.create().parse_overrides(list(job)):
        key = override.key_or_group
        if not _names_no_option(override) or not shapes.is_group(key):
            continue
        options = shapes.loader.get_group_options(key)
        return (
            f"{override.input_line} is invalid: {key} is a config group; give the name of one "
            f"of its options: {', '.join(options)}"
        )
    return None


def validate_jobs(
    config_name: str, jobs: Sequence[Sequence[str]], hydra_overrides: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Compose and validate every run and return each one's ``flat_params``; raise one
    ConfigError listing every invalid run."""
    params, problems = job_problems(config_name, jobs, hydra_overrides)
    if problems:
        lines = [
            f"{sum(map(len, problems.values()))} of {len(jobs)} runs are invalid; nothing was run:"
        ]
        for message, bad_jobs in problems.items():
            lines.append(
                f"  {message}  (in: {'; '.join(bad_jobs[:3])}{' ...' if len(bad_jobs) > 3 else ''})"
            )
        raise ConfigError("\n".join(lines))
    return params


def check_search_space(config_name: str, config: DictConfig) -> list[dict[str, Any]]:
    """A search's settings, and runs at the ends of its space composed and validated: a bad
    entry stops the command in one line, before any run. Their ``flat_params``."""
    jobs = check_search(config, typed(config.hydra.overrides.task))
    ends, problems = job_problems(config_name, jobs, typed(config.hydra.overrides.hydra))
    if problems:
        # The first problem, without the runs it was found in (the space's ends, not the user's).
        raise ConfigError(f"search space: {next(iter(problems))}")
    return ends
