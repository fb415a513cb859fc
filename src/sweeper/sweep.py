"""The sweep as a whole, around Hydra's multirun: check, announce, follow, summarise.

Before any worker starts, :class:`SweepCallback` composes and validates every planned run,
creates the MLflow store and the sweep's parent run, and leaves the parent's id in the sweep
directory for the workers. While they run it prints progress; at the end a summary, and the
process exits non-zero if any run failed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from sweeper.config import ConfigError, to_experiment_config
from sweeper.progress import ProgressMonitor, summary_table, varying_overrides
from sweeper.tracking import (
    end_sweep_run,
    prepare_store,
    resolve_tracking_uri,
    start_sweep_run,
    ui_command,
)

SWEEP_FILE = "sweep.json"
# The workers' shared, memory-mapped copy of the prepared data; removed when the sweep ends.
DATASET_CACHE = "dataset-cache"


@dataclass
class SweepInfo:
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepInfo:
        return cls(**json.loads((sweep_dir / SWEEP_FILE).read_text()))


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """Each run's overrides, as Hydra's basic sweeper will expand them; None for other sweepers
    (Optuna picks its trials as it goes)."""
    sweeper_target = config.hydra.sweeper.get("_target_", "")
    if not sweeper_target.endswith(BasicSweeper.__name__):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(arguments)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def validate_jobs(config_name: str, jobs: Sequence[Sequence[str]]) -> None:
    """Compose and validate every run; raise one ConfigError listing every invalid one."""
    problems: dict[str, list[str]] = {}
    for job in jobs:
        try:
            to_experiment_config(compose(config_name=config_name, overrides=list(job)))
        except (ConfigError, HydraException, OmegaConfBaseException) as err:
            message = str(err).strip().splitlines()[0]
            problems.setdefault(message, []).append(" ".join(job) or "(defaults)")
    if problems:
        lines = [f"{sum(map(len, problems.values()))} of {len(jobs)} runs are invalid; "
                 "nothing was run:"]
        for message, bad_jobs in problems.items():
            lines.append(f"  {message}  (in: {'; '.join(bad_jobs[:3])}"
                         f"{' ...' if len(bad_jobs) > 3 else ''})")
        raise ConfigError("\n".join(lines))


class SweepCallback(Callback):
    def __init__(self) -> None:
        self._monitor: ProgressMonitor | None = None
        self._info: SweepInfo | None = None
        self._keys: set[str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Hydra ships its callbacks to the workers; the monitor thread stays in this process.
        return {"_monitor": None, "_info": None, "_keys": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        jobs = planned_jobs(config)
        if jobs is not None:
            validate_jobs(kwargs["config_name"], jobs)
            self._keys = varying_overrides(jobs)
        uri = resolve_tracking_uri(config.tracking.uri)
        experiment_id = prepare_store(uri, config.tracking.experiment)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_id = sweep_dir.name
        overrides = " ".join(config.hydra.overrides.task)
        parent = start_sweep_run(uri, experiment_id, sweep_id, overrides)
        self._info = SweepInfo(sweep_id, uri, experiment_id, parent)
        self._info.save(sweep_dir)
        total = len(jobs) if jobs is not None else config.hydra.sweeper.get("n_trials")
        print(f"Sweep {sweep_id}: {total if total is not None else '?'} runs, "
              f"tracking to {uri}", flush=True)
        self._monitor = ProgressMonitor(sweep_dir, total, self._keys).start()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        assert self._monitor is not None and self._info is not None
        outcomes = self._monitor.stop()
        shutil.rmtree(Path(config.hydra.sweep.dir) / DATASET_CACHE, ignore_errors=True)
        failed = [o for o in outcomes if o.failed]
        end_sweep_run(self._info.tracking_uri, self._info.parent_run_id, len(outcomes),
                      len(failed))
        print(f"\nSweep {self._info.sweep_id}: {len(outcomes) - len(failed)} finished, "
              f"{len(failed)} failed\n")
        print(summary_table(outcomes, self._keys))
        print(f"\nBrowse:  {ui_command(self._info.tracking_uri)}   (or: make ui)")
        print(f"Report:  make report SWEEP={self._info.sweep_id}", flush=True)
        if failed:
            # Hydra counts a multirun as successful once every job has returned; failed runs
            # were recorded, not raised, so the exit status is decided here.
            reasons = "\n".join(f"  #{o.job} {' '.join(o.overrides)}: {o.reason}" for o in failed)
            print(f"\n{len(failed)} run(s) failed:\n{reasons}", file=sys.stderr, flush=True)
            raise SystemExit(1)

