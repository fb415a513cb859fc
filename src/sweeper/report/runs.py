"""Everything the report asks MLflow: which sweep (how its parent run stands, what it varies,
the command that ran it), its runs and their artifacts.

The report works against any tracking URI, a tracking server included, through MLflow's
client. One ``search_runs`` query (a page at a time) returns every run of a sweep with its
params, tags and final metrics; per-epoch curves are ``sweeper.store_reads.metric_curves``.
Which of those runs the report shows, and which it may rank (``kept_runs``, ``complete``,
``seeds_not_run``, ``ranked_runs``), is decided here, without pandas, for the sweep's end to
name the same best run (``sweeper.sweep_runs.best_child_run``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sweeper.config import names_configuration
from sweeper.names import (
    CONFIG_HASH_TAG,
    FINISHED,
    OVERRIDES_TAG,
    PARENT_RUN_TAG,
    PRUNED,
    REASON_TAG,
    SEED,
    STATUS_TAG,
    SWEEP_FILTER,
    SWEEP_ID_TAG,
    TRIAL_TAG,
)
from sweeper.ranking import RANK_ASCENDING, RANKED_BY, complete_configurations, seeds_missing
from sweeper.store_reads import search_all
from sweeper.store_uri import (
    CONNECT_TIMEOUT_S,
    DEFAULT_DB_NAME,
    TRACKING_URI_OPTION,
    is_http,
    sqlite_path,
)
from sweeper.ui_links import NOTE_TAG, sweep_command

if TYPE_CHECKING:
    # Imported where used, so that the report's tables and statistics load without MLflow
    # (the analysis worker, ``sweeper.report.worker``, never talks to the store).
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient


class ReportError(Exception):
    """Why no report can be made, in words a person can act on."""


# What the sweep's description (``ui_links.sweep_note``) says: the command, what varies.
_NOTE_COMMAND = re.compile(r"^\*\*Command:\*\* `(.+)`$", re.MULTILINE)
_NOTE_VARIED = re.compile(r"^\*\*Varied:\*\* (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Sweep:
    sweep_id: str
    experiment_id: str
    parent_run_id: str
    overrides: str
    status: str  # its parent run's: RUNNING while it runs, KILLED or FAILED once stopped early
    command: str  # the command that ran it, as the sweep prints it (without resume=)
    swept: tuple[str, ...]  # the override keys it varies, whether their runs ran yet or not

    @property
    def resume_command(self) -> str:
        """The command that runs what it has not finished, as the sweep itself prints it."""
        return f"{self.command} resume=true"


@dataclass(frozen=True)
class RunRecord:
    """One child run of a sweep as the report needs it: MLflow's values, unconverted."""

    run_id: str
    name: str
    status: str  # MLflow's run status: FINISHED, FAILED, KILLED or RUNNING
    reason: str
    start_time: int
    config_hash: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    pruned: bool = False  # stopped early by a search's pruner: shown apart, never ranked
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Trained to its end and ranked: FINISHED, not pruned, and with the metric runs are
        ranked by (a FINISHED run that lacks it has nothing to rank, as the sweep's own
        choice of its best run finds too)."""
        return self.status == FINISHED and not self.pruned and RANKED_BY in self.metrics


# How the report's command names another store, said where the one it was given is missing.
REPORT_STORE_OPTIONS = (
    f"name another with {TRACKING_URI_OPTION} (make report STORE=...) or MLFLOW_TRACKING_URI"
)


def open_client(uri: str, writable: bool = False, elsewhere: str = "") -> MlflowClient:
    """A client on ``uri`` (as ``resolve_tracking_uri`` returns it), checked as a sweep checks
    its store (a database, a server that answers; ``writable`` too); a SQLite store must
    already exist (MLflow would create an empty one, and the report would then say nothing
    useful), or the error says to make one, or, where the command says how (``elsewhere``,
    ``REPORT_STORE_OPTIONS``), to name another. A store MLflow will not open is a
    ``ReportError``."""
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        instead = f", or {elsewhere}" if elsewhere else ""
        raise ReportError(f"no MLflow store at {uri}: run a sweep first (make sweep){instead}")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from sweeper.store_check import StoreError, check_store

    try:
        check_store(uri, CONNECT_TIMEOUT_S, writable=writable, option=TRACKING_URI_OPTION)
        client = MlflowClient(uri)
        if sqlite_path(uri) is None and not is_http(uri):
            # Stores check_store leaves to MLflow (a file store) fail on their first query.
            client.search_experiments(max_results=1)
    except StoreError as err:
        raise ReportError(str(err)) from None
    except MlflowException as err:
        reason = str(err).strip().splitlines()[0].split(". ")[0]
        raise ReportError(
            f"MLflow cannot open the store {uri} ({reason}): give a URI such as "
            f"sqlite:///path/{DEFAULT_DB_NAME}, or a directory holding {DEFAULT_DB_NAME}"
        ) from None
    return client


def _quoted(value: str) -> str:
    if "'" in value:
        raise ReportError(f"a sweep id cannot contain a quote: {value!r}")
    return f"'{value}'"


def find_sweep(client: MlflowClient, experiment: str, sweep_id: str | None) -> Sweep:
    """The sweep named ``sweep_id``, or the newest one in ``experiment``."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ReportError(
            f"no experiment {experiment!r} in the store {client.tracking_uri}: run a sweep "
            "first (make sweep), or name another with EXPERIMENT=... / --experiment"
        )
    query = SWEEP_FILTER
    if sweep_id is not None:
        query += f" AND tags.{SWEEP_ID_TAG} = {_quoted(sweep_id)}"
    found = client.search_runs(
        [exp.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1
    )
    if not found:
        if sweep_id is None:
            raise ReportError(f"experiment {experiment!r} holds no sweep: run make sweep first")
        recent = client.search_runs(
            [exp.experiment_id],
            SWEEP_FILTER,
            order_by=["attributes.start_time DESC"],
            max_results=5,
        )
        names = ", ".join(r.data.tags[SWEEP_ID_TAG] for r in recent) or "none"
        raise ReportError(
            f"no sweep {sweep_id!r} in experiment {experiment!r}; the latest are: {names}"
        )
    parent = found[0]
    overrides = parent.data.tags.get(OVERRIDES_TAG, "")
    note = parent.data.tags.get(NOTE_TAG, "")
    command = _NOTE_COMMAND.search(note)
    varied = _NOTE_VARIED.search(note)
    noted = re.findall(r"`([^`]+)`", varied.group(1)) if varied else []
    return Sweep(
        sweep_id=parent.data.tags[SWEEP_ID_TAG],
        experiment_id=exp.experiment_id,
        parent_run_id=parent.info.run_id,
        overrides=overrides,
        status=parent.info.status,
        # The description's command has Hydra's overrides too (the launcher's, the
        # sweeper's); the parent run's tag, all a sweep undescribed leaves, has the others.
        command=command.group(1) if command else _command_of(overrides),
        swept=tuple(sorted({*noted, *swept_keys(overrides)})),
    )


def _command_of(overrides: str) -> str:
    """The sweep's command from its overrides, as the sweep writes it (``sweep_command``)."""
    return sweep_command([o for o in overrides.split() if not o.startswith("resume=")])


def swept_keys(overrides: str) -> list[str]:
    """The keys that ``overrides`` sweep over two values or more (``activation=tanh,relu``,
    ``seed=range(3)``, not ``seed=range(1)``), or over a range Hydra cannot list (a search's
    ``interval``); a sweep's preset (``+experiment=...``) varies others, which its description
    names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    keys = []
    for token in overrides.split():
        # The tag joins the overrides with spaces: one holding a space comes apart.
        try:
            override = parser.parse_override(token)
        except HydraException:
            continue
        if not override.is_sweep_override():
            continue
        try:
            swept = len(set(override.sweep_string_iterator())) > 1
        except HydraException:
            swept = True
        if swept:
            keys.append(override.key_or_group)
    return keys


def run_record(run: Run) -> RunRecord:
    tags = run.data.tags
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=run.info.status,
        reason=tags.get(REASON_TAG, ""),
        start_time=run.info.start_time,
        config_hash=tags.get(CONFIG_HASH_TAG, run.info.run_id),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        pruned=tags.get(STATUS_TAG) == PRUNED,
        tags=dict(tags),
    )


def sweep_runs(client: MlflowClient, sweep: Sweep) -> list[RunRecord]:
    """Every child run of the sweep's parent run, resumed ones included. Not every run of its
    id: a ``hydra.sweep.dir`` used again gives another sweep the same one."""
    children = f"tags.{PARENT_RUN_TAG} = '{sweep.parent_run_id}'"
    return [run_record(r) for r in search_all(client, sweep.experiment_id, children)]


def kept_runs(records: Iterable[RunRecord]) -> list[RunRecord]:
    """The runs a report shows, in the order they started: every finished and every pruned
    one (a search may draw one configuration more than once), and a run that did not finish
    (failed, killed) only if no newer run of its configuration replaced it.

    A resumed sweep reruns the configurations that failed or were killed under the original
    sweep id, and a search asks a killed trial again, so one configuration can hold an old
    failed run and a newer finished one; of several failed attempts the newest stays.
    """
    ordered = sorted(records, key=lambda r: r.start_time)
    newest = {r.config_hash: r.start_time for r in ordered}
    return [r for r in ordered if r.finished or r.pruned or r.start_time == newest[r.config_hash]]


def varying_params(records: Iterable[RunRecord]) -> set[str]:
    """The params whose values differ between the runs that logged params (one that lacks a
    param differs from one that has it), never the keys that name no configuration
    (not ``names_configuration``: ``resume``, ``tracking.*``): a resumed sweep's runs may
    differ in them and still be one configuration. Not ``config.varied_params``, which keeps
    them: a sweep refuses one that varies ``tracking.*``."""
    logged = [r.params for r in records if r.params]
    keys = {k for params in logged for k in params if names_configuration(k)}
    return {k for k in keys if len({params.get(k) for params in logged}) > 1}


def configuration_of(record: RunRecord, keys: Iterable[str]) -> tuple[str, ...]:
    """The run's configuration among runs varying ``keys``: its values of them but the seed
    (a missing one is empty), which the report's tables label it by."""
    return tuple(record.params.get(k, "") for k in keys if k != SEED)


def ran_as_trials(records: Sequence[RunRecord]) -> bool:
    """Whether the runs are an Optuna search's trials (tagged ``TRIAL_TAG``), not a grid."""
    return any(TRIAL_TAG in r.tags for r in records)


def _grid_seeds(records: Sequence[RunRecord]) -> list[str] | None:
    """Each run's seed where the runs are a grid's, which crosses every configuration with
    every seed; None for a search's trials, which plan their own repeats."""
    return None if ran_as_trials(records) else [r.params.get(SEED, "") for r in records]


def seeds_not_run(records: Sequence[RunRecord], keys: Iterable[str]) -> list[int]:
    """For each run, how many of the sweep's seeds its configuration (runs varying ``keys``,
    :func:`configuration_of`) has no run of (``ranking.seeds_missing``); 0 for a search's."""
    keys = list(keys)
    seeds = _grid_seeds(records)
    if seeds is None:
        return [0] * len(records)
    return seeds_missing([configuration_of(r, keys) for r in records], seeds)


def complete(records: Sequence[RunRecord], keys: Iterable[str]) -> list[bool]:
    """For each of the report's runs (``kept_runs``: a run again supersedes a failed one),
    whether its configuration (runs varying ``keys``, :func:`configuration_of`) is complete
    (``ranking.complete_configurations``): every run of it trained, and none of the seeds
    the others ran missing."""
    keys = list(keys)
    return complete_configurations(
        [configuration_of(r, keys) for r in records],
        [r.finished or r.pruned for r in records],
        _grid_seeds(records),
    )


def ranked_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs that may be named best, best first: the finished runs of complete
    configurations (:func:`complete`) of ``records`` (``kept_runs``) by ``RANKED_BY``, of
    equal ones the first started. The report's best run and the sweep's (the model it makes)
    are the first."""
    flags = complete(records, varying_params(records))
    ranked = [r for r, ok in zip(records, flags, strict=True) if ok and r.finished]
    sign = 1 if RANK_ASCENDING else -1
    return sorted(ranked, key=lambda r: (sign * r.metrics[RANKED_BY], r.start_time))


def download_artifact(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path | None:
    """The run's artifact at ``path`` copied under ``dst``, or None if the run has none."""
    from mlflow.exceptions import MlflowException

    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except (MlflowException, OSError):
        return None
