"""The command line, ``python -m sweeper [-m] [key=value ...]``: Hydra's entry point and task.

Hydra composes the config and, with ``-m``, hands each run of the sweep to the launcher
(``hydra/launcher=local``); :func:`main` validates one run's config and runs it
(``sweeper.run``), a run of its own shown as it trains (``sweeper.run_view``). The sweep
around the runs is ``sweeper.sweep``'s callback. :func:`cli` turns Ctrl-C (SIGTERM alike) and a
broken sweep into closed records, a short message and an exit status.
"""

from __future__ import annotations

import gc
import math
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import cast

import hydra
from hydra.conf import HydraConf
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.sweeper_launcher.interrupts import terminate_as_interrupt
from hydra_plugins.sweeper_search.trial import trial_position
from sweeper import CHECKOUT, provenance
from sweeper.artifacts import model_reference
from sweeper.config import (
    CONFIG_NAME,
    NOT_HASHED,
    SCHEMA_NAME,
    ConfigError,
    ExperimentConfig,
    config_hash,
    flat_params,
)
from sweeper.config import to_experiment_config as validate
from sweeper.data.cache import DataCache, user_data_cache
from sweeper.failures import exit_on_error, interruption
from sweeper.names import FAILED
from sweeper.outcome import LIVE_FILE, RunOutcome, send_output_to, trial_label
from sweeper.plan import command_line_problem
from sweeper.progress import describe
from sweeper.pruning import Pruning
from sweeper.run import blas_threads, run_config
from sweeper.run_view import RunView
from sweeper.stopping import stop_running_sweep
from sweeper.store import configure
from sweeper.store_setup import open_store, store_not_here
from sweeper.store_uri import resolve_tracking_uri, store_paths, study_storage, ui_command
from sweeper.sweep_info import DATASET_CACHE, SweepInfo

CONF_DIR = CHECKOUT / "conf"
# What a sweep's job that finds no store where the sweep opened it says to change.
TRACK_TO_SERVER = "track to a tracking server, MLFLOW_TRACKING_URI=http://HOST:PORT"

# The schema that conf/config.yaml's defaults list names first.
ConfigStore.instance().store(name=SCHEMA_NAME, node=ExperimentConfig)
# conf/hydra/sweeper/search.yaml's default storage: the study beside the tracking store.
OmegaConf.register_new_resolver("study_storage", study_storage, replace=True)
# Its resume_ignores: what a configuration's hash leaves out (the plugin knows nothing of it).
OmegaConf.register_new_resolver(
    "not_hashed", lambda: [key.rstrip(".") for key in NOT_HASHED], replace=True
)


def run_threads(launcher: DictConfig) -> int:
    """BLAS threads for one run of a sweep, from what its launcher gives each run."""
    if "n_jobs" in launcher:
        return blas_threads(launcher.n_jobs)
    if "ray" in launcher:
        # Ray schedules a run on ray.remote.num_cpus of a node's CPUs (1 unless set).
        return max(1, int(launcher.ray.remote.get("num_cpus") or 1))
    if launcher.get("cpus_per_task"):
        # hydra-submitit-launcher: the CPUs SLURM allocates to each run.
        return int(launcher.cpus_per_task)
    return blas_threads(None)


def output_roots(hc: HydraConf, multirun: bool) -> list[Path]:
    """The directories Hydra writes this job's files in (its run's, or its sweep's), and
    those it makes every run's and sweep's directories in: ``hydra.run.dir`` and
    ``hydra.sweep.dir`` up to their first interpolated part (a time, a job's name), the
    launch directory (``${hydra.runtime.cwd}``) aside, where that leaves one below it."""
    launch = Path(hc.runtime.cwd).resolve()
    roots = [launch / hc.sweep.dir if multirun else Path(hc.runtime.output_dir)]
    for node in (hc.run, hc.sweep):
        written = cast(dict[str, object], OmegaConf.to_container(node, resolve=False))["dir"]
        static: list[str] = []
        for part in str(written).split("/"):
            if part == "${hydra.runtime.cwd}":
                part = str(launch)
            elif "${" in part:
                break
            static.append(part)
        root = (launch / "/".join(static)).resolve()
        if not launch.is_relative_to(root):
            roots.append(root)
    return roots


def search_trial(hc: HydraConf) -> str | None:
    """The job's trial as the sweep's lines name it, read from its config (``Pruning.trial``
    without opening the study); None for a job no search started."""
    position = trial_position(hc.sweeper)
    if position is None:
        return None
    number, repeat, repeats = position
    return trial_label(number, repeat if repeats > 1 else None)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> float:
    """Run one configuration; the returned objective is what the Optuna sweeper minimises."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    # From the launch directory: with hydra.job.chdir=true the job runs in its own.
    sweep_dir = Path(hc.runtime.cwd) / hc.sweep.dir
    if multirun and (sweep_dir / LIVE_FILE).exists():
        send_output_to(Path(hc.runtime.output_dir))
    # A sweep validated every run before launching; this is a single run's bad value.
    with exit_on_error():
        config = validate(cfg)
        if config.resume and not multirun:
            raise ConfigError("resume=true continues a sweep: add -m, with the sweep's overrides")
    if hc.job.chdir and config.dataset.data_dir is not None:
        # Read from the launch directory, as the store is, not the run's own directory that
        # Hydra has moved this process to; the params keep the path as it was given.
        launched = Path(hc.runtime.cwd) / Path(config.dataset.data_dir).expanduser()
        config = replace(config, dataset=replace(config.dataset, data_dir=str(launched)))
    out_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    params = flat_params(cfg)
    if multirun:
        sweep = SweepInfo.load(sweep_dir)
        if config_hash(params) in sweep.done_hashes:
            # resume=true: the resumed sweep FINISHED this configuration. Hydra's basic
            # sweeper launches the whole product of the overrides and a callback cannot take
            # jobs out of it, so the job ends here, before any MLflow run or training.
            # Only a basic sweeper's resume plans done_hashes, and it ignores the returned
            # objective.
            return math.inf
        job = int(hc.job.num)
        absent = store_not_here(sweep.tracking_uri)
        if absent is not None:
            # Before anything opens it (the run, a search's trial beside it): MLflow would
            # make a new store here.
            RunOutcome(
                job, overrides, FAILED, absent, 0.0, trial=search_trial(hc), fix=TRACK_TO_SERVER
            ).save(out_dir)
            return math.inf
        configure(sweep.tracking_uri, config.tracking.max_outage)
        threads = run_threads(hc.launcher)
        shared = sweep_dir / DATASET_CACHE
        environment_cache: Path | None = shared
        # What earlier sweeps and runs prepared is read from the user's cache (the sweep
        # checked its size setting as it started).
        user = user_data_cache()
        dataset_cache: DataCache | None = DataCache(
            shared, read_also=user.directory if user is not None else None
        )
    else:
        with exit_on_error():
            # Where the command started, as a sweep's store is, not the run's own directory
            # that hydra.job.chdir=true has moved this process to.
            uri = resolve_tracking_uri(config.tracking.uri, Path(hc.runtime.cwd))
            uri, experiment_id = open_store(replace(config.tracking, uri=uri))
            dataset_cache = user_data_cache()
        sweep = SweepInfo(out_dir.name, uri, experiment_id, parent_run_id="")
        job = 0
        threads = blas_threads(None)
        environment_cache = None
    provenance.leave_out([*store_paths(sweep.tracking_uri), *output_roots(hc, multirun)])

    # A search's job reports to its trial, and may be pruned; any other run has no trial.
    pruning = Pruning.of_job(config.train.epochs) if multirun else Pruning(None)
    # A sweep's runs are shown by the sweep's monitor; a run of its own, on a terminal, here.
    view: AbstractContextManager[object] = nullcontext() if multirun else RunView(out_dir)
    with view:
        outcome = run_config(
            config,
            params,
            out_dir,
            job,
            overrides,
            sweep,
            dataset_cache,
            threads,
            pruning=pruning,
            environment_cache=environment_cache,
        )

    if not multirun:
        if outcome.failed:
            # As a sweep lists its failures: on standard error, with what to change.
            fix = f"; to fix: {outcome.fix}" if outcome.fix else ""
            print(f"{describe(outcome)}{fix}", file=sys.stderr, flush=True)
        else:
            print(describe(outcome), flush=True)
        if outcome.run_id is not None:
            # What reproduce and artifacts take.
            model = model_reference(outcome.run_id, sweep.tracking_uri) if outcome.model else ""
            model = f", its model {model}" if model else ""
            print(f"Run: {outcome.run_id}{model}", flush=True)
        print(f"Browse: {ui_command(sweep.tracking_uri)}", flush=True)
        # Not a failed gradient check, as in a sweep: at eps 1e-2 a correct backprop can miss
        # the tolerance at a kink (ReLU, L1); its line says so.
        if outcome.failed:
            sys.exit(1)
    return outcome.objective


# Hydra's words for -m given with --cfg, --info or --shell-completion.
_HYDRA_ONE_MODE = "Only one of --run, --multirun"


def cli() -> None:
    """``python -m sweeper``: :func:`main`, with Ctrl-C, SIGTERM and a broken sweep closed
    cleanly."""
    # kill, timeout, a container's or a batch system's stop: their runs are closed as at Ctrl-C.
    terminate_as_interrupt()
    problem = command_line_problem(CONF_DIR, sys.argv[1:])
    if problem is not None:
        print(f"Error: {problem}", file=sys.stderr, flush=True)
        sys.exit(1)
    try:
        main()
    except KeyboardInterrupt:
        # Each run in progress was marked KILLED by its own worker, or is marked here.
        stop_running_sweep(interrupted=True)
        reason, status = interruption()
        print(f"{reason[0].upper()}{reason[1:]}.", file=sys.stderr, flush=True)
        sys.exit(status)
    except SystemExit as exit_:
        # Hydra reports an exception from the launcher (a lost Ray worker, say) and exits;
        # the exception it reported is the context of its SystemExit.
        stop_running_sweep(interrupted=False, cause=exit_.__context__)
        raise
    except ValueError as err:
        if str(err).startswith(_HYDRA_ONE_MODE):  # raised before Hydra's own error handling
            print(f"Error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        stop_running_sweep(interrupted=False, cause=err)
        raise
    except Exception as err:  # only with HYDRA_FULL_ERROR=1 does Hydra let it through
        stop_running_sweep(interrupted=False, cause=err)
        raise
    finally:
        # Python's exit would first garbage-collect every object that MLflow, SQLAlchemy and
        # Hydra made, a wait after each command; frozen, they are left for the OS to free.
        gc.freeze()
