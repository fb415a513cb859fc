"""``python -m sweeper.reproduce RUN_ID``: run a stored run again and compare its numbers.

The run's composed config comes back from its ``config.yaml`` artifact (so any store works, a
tracking server included) and is validated as the app validates it. Before training, the
command says how today's environment differs from the one the run recorded, and refuses a
data file whose SHA-256 changed (``--allow-data-change`` runs anyway); a dataset the package
embeds is checked in this installation's copy. Every refusal comes before anything is made.
The reproduction is a new run in the same experiment, made by the app's own ``run_config``
under the run's BLAS thread count and tagged ``reproduces=<RUN_ID>``; then every per-epoch
metric and every final metric of the two runs is compared exactly, and how each ended. A
pruned run's reproduction stops at the epoch its pruner stopped it at, a killed run's after
the last epoch it logged, as does that of a run that never ended (RUNNING: killed outright,
or still training); a failed one runs until it fails. Exit status: 0 identical, 1 different,
2 refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from threadpoolctl import threadpool_limits

from sweeper.artifacts import artifacts_gone
from sweeper.config import ConfigError, ExperimentConfig, config_hash, flat_params
from sweeper.config import to_experiment_config as validate
from sweeper.core.training import EpochMetrics
from sweeper.data.datasets import DATASETS, resolve_data_dir, sha256_file
from sweeper.names import (
    CONFIG_HASH_TAG,
    FINISHED,
    KILLED,
    OVERRIDES_TAG,
    PRUNED,
    PRUNED_EPOCH_TAG,
    REASON_TAG,
    RUNNING,
    STATUS_TAG,
)
from sweeper.provenance import (
    ARTIFACT_PATH,
    BLAS_TAG,
    BLAS_THREADS_TAG,
    COMMIT_TAGS,
    DATA_DIR_TAG,
    DATA_TAG,
    ENVIRONMENT_TAGS,
    GIT_COMMIT_TAG,
    PACKAGES_FILE,
    capture_environment,
    leave_out,
)
from sweeper.pruning import Pruning, pruned_reason
from sweeper.report.runs import ReportError, open_client
from sweeper.run import CONFIG_ARTIFACT, HYDRA_DIR, EpochCallback, blas_threads, run_config
from sweeper.store_calls import store_call
from sweeper.store_reads import metric_curves, quiet_downloads
from sweeper.store_uri import (
    TRACKING_URI_HELP,
    TRACKING_URI_OPTION,
    resolve_tracking_uri,
    sqlite_path,
    store_paths,
)
from sweeper.sweep_info import SweepInfo
from sweeper.sweep_runs import sweep_parent_problem
from sweeper.words import plural

EXIT_IDENTICAL, EXIT_DIFFERENT, EXIT_REFUSED = 0, 1, 2
REPRODUCES_TAG = "reproduces"
OUTPUT_DIR = Path("outputs")
# Final metrics are logged without a step (0); per-epoch ones at steps 1, 2, ...
FINAL_STEP = 0


class ReproduceError(Exception):
    """Why a run cannot be reproduced, in words a person can act on."""


def is_timing(key: str) -> bool:
    """Wall-clock metrics measure the machine, not the computation: never compared."""
    return "seconds" in key


def _short(value: str) -> str:
    return value[:12] if len(value) == 40 else value  # a commit


def environment_differences(original: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """One line per recorded tag of the code or environment whose value is different now."""
    lines = []
    for key in (*COMMIT_TAGS, *ENVIRONMENT_TAGS):
        if key not in original and key not in current:
            continue  # GIT_DIFF_TAG of two clean trees
        was, now = original.get(key, "(not recorded)"), current.get(key, "(none)")
        if was != now:
            lines.append(f"{key}: {_short(was)} -> {_short(now)}")
    return lines


def _requirements(text: str) -> dict[str, str]:
    return dict(line.split("==", 1) for line in text.splitlines() if "==" in line)


def package_differences(original: str, current: str) -> list[str]:
    """Each installed distribution added, removed or at another version, as ``name a -> b``."""
    was, now = _requirements(original), _requirements(current)
    return [
        f"{name} {was.get(name, '(absent)')} -> {now.get(name, '(absent)')}"
        for name in sorted(was.keys() | now.keys())
        if was.get(name) != now.get(name)
    ]


def data_differences(recorded: Mapping[str, str]) -> list[str]:
    """One line per data file of the run that is gone or whose SHA-256 is different now."""
    lines = []
    for path, digest in recorded.items():
        try:
            now = sha256_file(Path(path))
        except OSError as err:
            lines.append(f"{path}: cannot be read ({err.strerror or err})")
            continue
        if now != digest:
            lines.append(f"{path}: sha256 {digest[:16]}... when recorded, {now[:16]}... now")
    return lines


def data_read_here(
    tags: Mapping[str, str], here: Path | None, embedded: Sequence[Path] | None = None
) -> tuple[dict[str, str], str | None]:
    """The SHA-256 the run recorded for each data file, by the path a reproduction reads it
    from in ``here`` (its data directory from this directory), or for a dataset the package
    embeds, among this installation's ``embedded`` files (by name: the run's may be another
    installation's, a moved checkout or a teammate's); and the directory the run read where
    that is another one (a relative ``dataset.data_dir``, another default place or package)."""
    recorded: dict[str, str] = json.loads(tags.get(DATA_TAG, "{}"))
    if embedded is not None:
        ours = {file.name: str(file) for file in embedded}
        moved = {ours.get(Path(path).name, path): digest for path, digest in recorded.items()}
        elsewhere = [str(Path(path).parent) for path in recorded if path not in moved]
        return moved, (elsewhere[0] if elsewhere else None)
    read_from = tags.get(DATA_DIR_TAG)
    if here is None or read_from is None:
        return recorded, None
    reading = Path(os.path.abspath(here))
    moved = {}
    for path, digest in recorded.items():
        try:
            moved[str(reading / Path(path).relative_to(read_from))] = digest
        except ValueError:  # a file outside it (a prepared dataset another spelling made)
            moved[path] = digest
    return moved, (read_from if str(reading) != read_from else None)


def outside_of(files: Mapping[str, str], directory: Path) -> list[str]:
    """The files (resolved paths, as a run records them) that are none of ``directory``'s: not
    in it, nor the target of a link in it."""
    here = directory.resolve()
    linked = {str(f.resolve()) for f in here.rglob("*") if f.is_symlink()}
    return [path for path in files if not Path(path).is_relative_to(here) and path not in linked]


@dataclass(frozen=True)
class Difference:
    step: int  # FINAL_STEP for a final metric
    key: str
    original: float | None  # None: not logged by that run
    reproduced: float | None

    def describe(self) -> str:
        where = "final" if self.step == FINAL_STEP else f"epoch {self.step}"
        if self.original is None or self.reproduced is None:
            missing = "the original" if self.original is None else "the reproduction"
            return f"{where} {self.key}: not logged by {missing}"
        diff = self.reproduced - self.original
        relative = abs(diff) / abs(self.original) if self.original else math.inf
        return (
            f"{where} {self.key}: {self.original!r} (original) vs {self.reproduced!r} "
            f"(reproduction), differs by {diff:+.3g} (relative {relative:.3g})"
        )


# metric key -> {step: value}
Histories = Mapping[str, Mapping[int, float]]


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _compared(original: Histories, reproduced: Histories) -> dict[str, set[int]]:
    """The steps compared of each metric: those either run logged, timings aside."""
    return {
        key: original.get(key, {}).keys() | reproduced.get(key, {}).keys()
        for key in original.keys() | reproduced.keys()
        if not is_timing(key)
    }


def compare_histories(original: Histories, reproduced: Histories) -> list[Difference]:
    """Every (step, metric) whose values are not identical, epochs in order, final ones last."""
    differences = []
    for key, steps in _compared(original, reproduced).items():
        was, now = original.get(key, {}), reproduced.get(key, {})
        for step in steps:
            a, b = was.get(step), now.get(step)
            if a is None or b is None or not _same(a, b):
                differences.append(Difference(step, key, a, b))
    return sorted(differences, key=lambda d: (d.step == FINAL_STEP, d.step, d.key))


@dataclass(frozen=True)
class Ending:
    """How a run ended, as its ``status`` and ``reason`` tags say."""

    status: str  # FINISHED, PRUNED, FAILED or KILLED
    reason: str

    @classmethod
    def of(cls, run: Run) -> Ending | None:
        """None for a run that recorded no status (one that predates the tag, or still runs)."""
        tags = run.data.tags
        if STATUS_TAG not in tags:
            return None
        return cls(tags[STATUS_TAG], tags.get(REASON_TAG, ""))

    def describe(self) -> str:
        return f"{self.status}, {self.reason}"


def comparison_report(
    original: Histories,
    reproduced: Histories,
    differences: Sequence[Difference],
    endings: tuple[Ending | None, Ending | None] = (None, None),
) -> str:
    """The verdict: "Identical" when every value compared and the way both runs ended (where
    the original recorded it) are the same, else "Different" and where they first differ."""
    compared = _compared(original, reproduced)
    values = sum(len(steps) for steps in compared.values())
    was, now = endings
    if not differences and (was is None or was == now):
        both = f"; both ended {was.describe()}" if was and was.status != FINISHED else ""
        if not values:  # a run that failed in its first epoch
            return f"Identical: neither run logged a metric{both}."
        return (
            f"Identical: all {values} values of {len(compared)} metrics, bit for bit "
            f"(timings not compared){both}."
        )
    lines = []
    if was is not None and was != now:
        then = now.describe() if now else "recorded no end"
        lines.append(f"Different: the original ended {was.describe()}; the reproduction {then}.")
    if not differences:
        return lines[0]
    count = f"{len(differences)} of {values} values differ; the first:"
    lines.append(f"Different: {count}" if not lines else count)
    first = differences[0]
    lines.append(f"  {first.describe()}")
    same_step = [d for d in differences[1:] if d.step == first.step]
    lines += [f"  {d.describe()}" for d in same_step]
    finals = [d for d in differences if d.step == FINAL_STEP and d is not first]
    finals = [d for d in finals if d not in same_step]
    if finals:
        lines.append("Final metrics that differ:")
        lines += [f"  {d.describe()}" for d in finals]
    return "\n".join(lines)


@store_call
def _histories(client: MlflowClient, run: Run) -> Histories:
    """Every metric the run logged, by step."""
    run_id = run.info.run_id
    curves = metric_curves(client, [run_id], list(run.data.metrics))[run_id]
    return {key: dict(curve) for key, curve in curves.items()}


class ReplayedPruning(Pruning):
    """A pruned run's pruning, replayed: training stops after the epoch its pruner stopped it
    at, and the reproduction ends PRUNED there as the run did."""

    def __init__(self, epoch: int) -> None:
        super().__init__(None)
        self.epoch = epoch
        self.reached: int | None = None

    @property
    def pruned_at(self) -> int | None:
        return self.reached

    def on_epoch(self, metrics: EpochMetrics) -> str | None:
        if metrics.epoch != self.epoch:
            return None
        self.reached = metrics.epoch
        return pruned_reason(metrics.epoch)


def stop_after(epoch: int, reason: str) -> EpochCallback:
    """The epoch callback that stops training after ``epoch``."""
    return lambda metrics: reason if metrics.epoch == epoch else None


def last_epoch(histories: Histories) -> int:
    """The last epoch a run logged (0: none)."""
    return max((s for steps in histories.values() for s in steps if s != FINAL_STEP), default=0)


def logged_alike(original: Histories, reproduced: Histories) -> dict[str, dict[int, float]]:
    """The values of ``reproduced`` at the metrics and steps ``original`` logged."""
    return {
        key: {s: value for s, value in reproduced.get(key, {}).items() if s in steps}
        for key, steps in original.items()
    }


def _find_run(client: MlflowClient, run_id: str) -> Run:
    try:
        return client.get_run(run_id)
    except MlflowException:
        raise ReproduceError(f"no run {run_id!r} in the store {client.tracking_uri}") from None


def stored_config(client: MlflowClient, run: Run, directory: Path) -> DictConfig:
    """The run's composed config, typed by the app's schema (Hydra composes it against the same
    schema), downloaded from its ``config.yaml`` artifact into ``directory``."""
    try:
        path = client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT, str(directory))
    except (MlflowException, OSError):
        raise ReproduceError(
            f"run {run.info.run_id} has no {CONFIG_ARTIFACT} artifact: it cannot be rebuilt"
        ) from None
    try:
        stored = OmegaConf.load(path)
        return OmegaConf.merge(OmegaConf.structured(ExperimentConfig), stored)  # type: ignore[return-value]
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        reason = str(err).strip().splitlines()[0]
        raise ReproduceError(
            f"the stored config of run {run.info.run_id} does not fit today's schema: {reason}"
        ) from None


def _original_packages(client: MlflowClient, run: Run, directory: Path) -> str | None:
    try:
        path = client.download_artifacts(
            run.info.run_id, f"{ARTIFACT_PATH}/{PACKAGES_FILE}", str(directory)
        )
    except (MlflowException, OSError):
        return None
    return Path(path).read_text()


def checked_data(
    config: ExperimentConfig, tags: Mapping[str, str], run_id: str, allow_data_change: bool
) -> str:
    """What the check of the data files a reproduction reads finds, in words; refused where one
    is gone or changed since the run, unless ``allow_data_change``."""
    name = config.dataset.name.value
    here = resolve_data_dir(name, config.dataset.data_dir)
    spec = DATASETS[name]
    embedded = spec.embedded() if spec.embedded is not None else None
    recorded_data, read_from = data_read_here(tags, here, embedded)
    reading = embedded[0].parent if embedded else here
    changed = data_differences(recorded_data)
    named = config.dataset.data_dir
    relative = named is not None and not Path(named).expanduser().is_absolute()
    if here is not None and relative and DATA_DIR_TAG not in tags:
        # A run that did not record the directory it read: its files are checked where they
        # are, which must be where the reproduction reads.
        changed += [
            f"{path}: read by the run, not in {here.resolve()}, which dataset.data_dir={named} "
            "names from here"
            for path in outside_of(recorded_data, here)
        ]
    if DATA_TAG not in tags:
        return "Data: the run recorded no data hashes; not checked."
    listing = "\n".join(f"  {line}" for line in changed)
    if changed and not allow_data_change:
        where = ""
        if read_from is not None:
            started = f", which dataset.data_dir={named} names from where it was started: run there"
            where = f"The run read them in {read_from}{started if relative else ''}.\n"
        raise ReproduceError(
            f"data changed since run {run_id}:\n{listing}\n{where}"
            "Refusing to reproduce it on other data; --allow-data-change runs it anyway."
        )
    if changed:
        return f"Data: changed (--allow-data-change):\n{listing}"
    if read_from is not None and reading is not None:
        return (
            f"Data: {plural(len(recorded_data), 'file')} in {os.path.abspath(reading)}, SHA-256 "
            f"the same as the run's in {read_from}."
        )
    return f"Data: {len(recorded_data)} file(s), SHA-256 unchanged."


def replayed_end(
    original: Run, before: Histories
) -> tuple[ReplayedPruning | None, list[EpochCallback], str | None]:
    """What makes the reproduction end where the original did (a pruned run's pruning; for a
    run killed, or that never ended, a stop after the last epoch it logged) and the line that
    says so; none for a run that ended of itself."""
    run_id = original.info.run_id
    ending = Ending.of(original)
    if ending is not None and ending.status == PRUNED:
        pruning = ReplayedPruning(int(original.data.tags[PRUNED_EPOCH_TAG]))
        return pruning, [], (
            f"The original was pruned at epoch {pruning.epoch}: the reproduction stops there."
        )  # fmt: skip
    # However it was marked, with its tags or without; one never marked ended was killed
    # outright (kill -9, the OOM killer) or still trains, and is compared as far as it got.
    status = original.info.status
    if status not in (KILLED, RUNNING):
        return None, [], None
    epoch = last_epoch(before)
    if status == KILLED:
        said, stopped = f"was killed after epoch {epoch}", f"where run {run_id} was killed"
        nothing = "was killed before its first epoch ended"
    else:
        never = (
            f"never ended ({RUNNING}): it may still be training, or its process was killed (kill"
            " -9, out of memory)"
        )
        said, stopped = f"{never}; it logged up to epoch {epoch}", f"the last run {run_id} logged"
        nothing = f"{never}, and it logged no epoch"
    if epoch == 0:
        raise ReproduceError(f"run {run_id} {nothing}: nothing to compare")
    stops = [stop_after(epoch, f"stopped after epoch {epoch}, {stopped}")]
    return None, stops, (
        f"The original {said}: the reproduction stops there, and what the original logged is "
        "compared."
    )  # fmt: skip


def reproduce(
    run_id: str,
    tracking_uri: str | None = None,
    allow_data_change: bool = False,
    threads: int | None = None,
    out_root: Path = OUTPUT_DIR,
    say: Callable[[str], None] = print,
) -> int:
    """Run ``run_id`` again and compare; return the exit status."""
    uri = resolve_tracking_uri(tracking_uri)
    if (db := sqlite_path(uri)) is not None and not db.is_file():
        raise ReproduceError(f"no MLflow store at {uri}: name one with {TRACKING_URI_OPTION}")
    try:
        client = open_client(uri, writable=True)
    except ReportError as err:
        raise ReproduceError(str(err)) from None
    original = _find_run(client, run_id)
    problem = sweep_parent_problem(uri, original) or artifacts_gone(original, uri)
    if problem is not None:
        raise ReproduceError(problem)
    tags = original.data.tags
    with tempfile.TemporaryDirectory() as tmp:
        cfg = stored_config(client, original, Path(tmp))
        recorded_packages = _original_packages(client, original, Path(tmp))
    try:
        config = validate(cfg)
    except ConfigError as err:
        raise ReproduceError(f"the stored config of run {run_id} is invalid today: {err}") from None
    params = flat_params(cfg)
    if tags.get(CONFIG_HASH_TAG) not in (None, config_hash(params)):
        raise ReproduceError(
            f"the stored config of run {run_id} hashes to {config_hash(params)}, but the run "
            f"recorded {CONFIG_HASH_TAG}={tags[CONFIG_HASH_TAG]}: the config schema changed since"
        )
    if threads is None:
        threads = int(tags.get(BLAS_THREADS_TAG) or blas_threads(None))
    data = checked_data(config, tags, run_id, allow_data_change)
    before = _histories(client, original)
    pruning, stops, replay = replayed_end(original, before)

    # Made once every check has passed: a refused reproduction leaves nothing behind.
    out_dir = out_root / f"reproduce-{run_id[:8]}-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReproduceError(
            f"the reproduction's directory {out_dir.absolute()} cannot be written "
            f"({err.strerror or err}): run from a writable directory (its files go to "
            f"{out_root}/ there)"
        ) from None
    # The store and the reproduction's files are no change to the code, as for the original.
    leave_out([*store_paths(uri), out_root])
    name = original.info.run_name or run_id
    say(f"Reproducing run {run_id} ({name}) of experiment {original.info.experiment_id}")
    with threadpool_limits(limits=threads):
        environment, _ = capture_environment(out_dir)
        current = environment.tags()
    if not any(key in tags for key in ENVIRONMENT_TAGS):
        say("The run recorded no environment (it predates provenance capture).")
    differences = environment_differences(tags, current)
    if recorded_packages is not None:
        differences += [f"package {line}" for line in package_differences(
            recorded_packages, environment.packages
        )]  # fmt: skip
    if differences:
        say("Environment: differs from the run's:")
        say("\n".join(f"  {line}" for line in differences))
    else:
        say(
            f"Environment: the same as the run's (commit {_short(current[GIT_COMMIT_TAG])}, "
            f"{'dirty' if environment.git.dirty else 'clean'}; {current[BLAS_TAG]}, "
            f"{plural(threads, 'BLAS thread')}; same packages)."
        )
    say(data)
    if replay is not None:
        say(replay)

    (out_dir / HYDRA_DIR).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out_dir / HYDRA_DIR / CONFIG_ARTIFACT)
    sweep = SweepInfo(out_dir.name, uri, original.info.experiment_id, parent_run_id="")
    overrides = tags.get(OVERRIDES_TAG, "").split()
    outcome = run_config(
        config, params, out_dir, 0, overrides, sweep,
        threads=threads, epoch_callbacks=stops, pruning=pruning,
    )  # fmt: skip
    if outcome.run_id is None:
        raise ReproduceError(f"the reproduction could not start: {outcome.reason}")
    store_call(client.set_tag)(outcome.run_id, REPRODUCES_TAG, run_id)
    say(
        f"Reproduction: run {outcome.run_id} ({outcome.status.lower()}, {outcome.reason}), "
        f"{plural(threads, 'BLAS thread')}, tagged {REPRODUCES_TAG}={run_id}"
    )
    reproduced = client.get_run(outcome.run_id)
    after = _histories(client, reproduced)
    endings = (Ending.of(original), Ending.of(reproduced))
    if stops:  # killed: it has nothing past its last epoch, and no end of its own to compare
        after = logged_alike(before, after)
        endings = (None, None)
    found = compare_histories(before, after)
    say(comparison_report(before, after, found, endings))
    same_end = endings[0] is None or endings[0] == endings[1]
    return EXIT_IDENTICAL if not found and same_end else EXIT_DIFFERENT


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sweeper.reproduce",
        description="Run a stored run again from its stored config and compare every metric.",
    )
    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run to reproduce")
    parser.add_argument(TRACKING_URI_OPTION, help=TRACKING_URI_HELP)
    parser.add_argument(
        "--allow-data-change",
        action="store_true",
        help="run even if a data file's SHA-256 differs from the one the run recorded",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS threads (default: the number the run recorded)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads={args.threads} is invalid: must be >= 1")
    quiet_downloads()
    try:
        return reproduce(args.run_id, args.tracking_uri, args.allow_data_change, args.threads)
    except ReproduceError as err:
        print(f"Error: {err}", file=sys.stderr, flush=True)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
