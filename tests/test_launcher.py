"""The local launcher: typed settings, its fork server, and how it names the end of a job's
process.

A job killed in the middle of a sweep is tested end to end in test_robustness.py."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import get_method
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from conftest import REPO, run_cli
from hydra_plugins.sweeper_launcher import interrupts
from hydra_plugins.sweeper_launcher.config import LocalLauncherConf, RayClusterLauncherConf
from hydra_plugins.sweeper_launcher.local_launcher import (
    JobProcesses,
    _run_in_own_process,
    exit_description,
    fork_server_context,
    job_dir,
)
from hydra_plugins.sweeper_launcher.ray_launcher import job_future
from sweeper import plan
from sweeper.config import ConfigError
from sweeper.outcome import OUTCOME_FILE, RunOutcome
from sweeper.plan import check_launcher
from sweeper.stopping import record_dead_job
from sweeper.store_setup import prepare_store
from sweeper.sweep_info import SweepInfo


def test_how_a_jobs_process_ended_reads_as_a_person_says_it() -> None:
    assert exit_description(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_description(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_description(1) == "exit code 1"


def test_a_jobs_directory_is_where_hydra_puts_its_files() -> None:
    cfg = OmegaConf.create(
        {"hydra": {"sweep": {"dir": "/sweeps/x", "subdir": "${hydra.job.num}"}, "job": {"num": 7}}}
    )
    assert job_dir(cfg) == Path("/sweeps/x/7")


def test_a_bad_n_jobs_fails_before_anything_runs_naming_the_key(tmp_path: Path) -> None:
    proc = run_cli(["-m", "seed=0,1", "hydra.launcher.n_jobs=two"], tmp_path)
    assert proc.returncode == 1
    assert "hydra.launcher.n_jobs" in proc.stderr
    assert "'two'" in proc.stderr and "could not be converted to Integer" in proc.stderr
    assert not (tmp_path / "mlruns").exists()


def test_zero_runs_at_a_time_fails_before_anything_runs(tmp_path: Path) -> None:
    proc = run_cli(["-m", "seed=0,1", "hydra.launcher.n_jobs=0"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "Error: hydra.launcher.n_jobs=0 is invalid: how many runs at a time, -1 for one per core"
    )
    assert not (tmp_path / "mlruns").exists()


# Calls the callback as Hydra does at the start of a sweep, then counts this process's
# children that are multiprocessing fork servers (read from /proc: what the OS sees). A child
# shows the server's command line only once it has exec'd, so the probe waits for it while
# any child exists.
FORK_SERVER_PROBE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from omegaconf import OmegaConf
    from hydra_plugins.sweeper_launcher.local_launcher import StartForkServer

    def children():
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                ppid = next(l for l in status.read_text().splitlines() if l.startswith("PPid:"))
                cmdline = (status.parent / "cmdline").read_bytes()
            except (OSError, StopIteration):
                continue
            if int(ppid.split()[1]) == os.getpid():
                yield cmdline

    config = OmegaConf.create({"hydra": {"launcher": {"_target_": sys.argv[1]}}})
    StartForkServer().on_multirun_start(config=config, config_name="config")
    deadline = time.monotonic() + 30
    while True:
        cmdlines = list(children())
        servers = sum(b"multiprocessing.forkserver" in c for c in cmdlines)
        if servers or not cmdlines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(servers)
    """
)


@pytest.mark.parametrize(
    ("launcher", "servers"),
    [
        (LocalLauncherConf._target_, "1"),
        ("hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "0"),
    ],
)
def test_the_sweep_starts_the_fork_server_only_for_the_local_launcher(
    launcher: str, servers: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORK_SERVER_PROBE, launcher],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == servers


def _sweep_config(tmp_path: Path) -> DictConfig:
    return OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(tmp_path), "subdir": "${hydra.job.num}"},
                "job": {"num": 3},
                "overrides": {"task": ["seed=3"], "hydra": ["hydra.sweeper.trial=1"]},
            }
        }
    )


def test_a_dead_jobs_process_is_handed_to_on_job_death_with_how_it_ended(tmp_path: Path) -> None:
    # A payload the job's process cannot read: it raises there and exits 1 without answering.
    context = fork_server_context([])
    deaths: list[dict[str, object]] = []

    def on_death(**death: object) -> float:
        deaths.append(death)
        return 7.0

    ret = _run_in_own_process(context, b"not a job", _sweep_config(tmp_path), on_death)
    assert ret.status is JobStatus.COMPLETED and ret.return_value == 7.0
    (death,) = deaths
    assert {
        k: death[k] for k in ("job", "overrides", "hydra_overrides", "interrupted", "ended")
    } == {
        "job": 3,
        "overrides": ["seed=3"],
        "hydra_overrides": ["hydra.sweeper.trial=1"],
        "interrupted": False,
        "ended": "exit code 1",
    }
    assert death["sweep_dir"] == tmp_path and death["job_dir"] == tmp_path / "3"


def test_without_on_job_death_a_dead_job_fails_saying_how_its_process_ended(
    tmp_path: Path,
) -> None:
    ret = _run_in_own_process(fork_server_context([]), b"not a job", _sweep_config(tmp_path), None)
    assert ret.status is JobStatus.FAILED
    with pytest.raises(RuntimeError, match=r"job 3's process died \(exit code 1\)"):
        ret.return_value  # noqa: B018 (reading it raises the job's error)


class Call:
    """Pickled, it is ``func(*args)`` called as it is unpickled: a job's payload that runs."""

    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.func, self.args


def started_job(
    tmp_path: Path, processes: JobProcesses, *calls: Call
) -> tuple[concurrent.futures.Future[JobReturn], list[dict[str, object]]]:
    """A job whose process makes ``calls``, says it is past them, then sleeps; once it has."""
    ready = tmp_path / "ready"
    payload = pickle.dumps((*calls, Call(os.mkdir, str(ready)), Call(time.sleep, 300)))
    deaths: list[dict[str, object]] = []

    def on_death(**death: object) -> float:
        deaths.append(death)
        return 7.0

    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(
        _run_in_own_process, fork_server_context([]), payload, _sweep_config(tmp_path),
        on_death, False, processes,
    )  # fmt: skip
    pool.shutdown(wait=False)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert not future.done() and time.monotonic() < deadline
        time.sleep(0.05)
    return future, deaths


@pytest.mark.parametrize(
    ("by_sigterm", "calls", "timeout", "ended"),
    [
        # Forked as Ctrl-C reached the terminal's process group, a job's process never gets it.
        (False, [], 60, "exit code 130"),
        # `kill` or `docker stop` signal the sweep's own process: its jobs get SIGTERM from it,
        # so each run records the stop the sweep records. Left to end the job's process as it
        # does by default, SIGTERM shows which signal came.
        (True, [Call(signal.signal, signal.SIGTERM, signal.SIG_DFL)], 60, "killed by SIGTERM"),
        # One that ignores Ctrl-C is killed when the stop times out.
        (False, [Call(signal.signal, signal.SIGINT, signal.SIG_IGN)], 1, "killed by SIGKILL"),
    ],
    ids=["missed-ctrl-c", "sigterm", "ignores-ctrl-c"],
)
def test_stopping_the_jobs_ends_each_and_records_it_interrupted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    by_sigterm: bool,
    calls: list[Call],
    timeout: float,
    ended: str,
) -> None:
    monkeypatch.setitem(interrupts._STATE, "terminated", by_sigterm)
    processes = JobProcesses()
    future, deaths = started_job(tmp_path, processes, *calls)
    processes.stop(timeout=timeout)
    # The death is recorded before stop returns: the sweep closes only what is left open.
    (death,) = deaths
    assert (death["interrupted"], death["ended"]) == (True, ended)
    assert future.result(timeout=10).return_value == 7.0


@pytest.mark.parametrize(
    ("calls", "ended"),
    [
        ([], "exit code 130"),
        # One that ignores Ctrl-C can still be stopped.
        ([Call(signal.signal, signal.SIGINT, signal.SIG_IGN)], "killed by SIGTERM"),
    ],
    ids=["as-ctrl-c", "ctrl-c-ignored"],
)
def test_a_jobs_process_takes_sigterm_as_ctrl_c(
    tmp_path: Path, calls: list[Call], ended: str
) -> None:
    # A batch system or a container stops every process of the sweep with SIGTERM.
    payload = pickle.dumps(
        (*calls, Call(signal.raise_signal, signal.SIGTERM), Call(time.sleep, 60))
    )
    deaths: list[dict[str, object]] = []
    ret = _run_in_own_process(
        fork_server_context([]), payload, _sweep_config(tmp_path), lambda **d: deaths.append(d)
    )
    assert ret.status is JobStatus.COMPLETED
    (death,) = deaths
    assert (death["interrupted"], death["ended"]) == (ended == "exit code 130", ended)


def test_once_the_jobs_are_stopped_no_job_starts(tmp_path: Path) -> None:
    processes = JobProcesses()
    processes.stop(timeout=1)
    deaths: list[dict[str, object]] = []
    ret = _run_in_own_process(
        fork_server_context([]), pickle.dumps(Call(os.mkdir, str(tmp_path / "ran"))),
        _sweep_config(tmp_path), lambda **d: deaths.append(d), False, processes,
    )  # fmt: skip
    assert ret.status is JobStatus.FAILED and not deaths
    with pytest.raises(RuntimeError, match="job 3 not started: the sweep was stopped"):
        ret.return_value  # noqa: B018 (reading it raises the job's error)
    assert not (tmp_path / "ran").exists()


def test_every_dead_jobs_exit_code_is_read_while_other_jobs_start(tmp_path: Path) -> None:
    # Starting a process polls every other one multiprocessing started; a poll that raced the
    # job's own wait read an exit code of 255 and a Ctrl-C looked like a crash.
    context = fork_server_context([])
    payload = pickle.dumps(Call(sys.exit, 130))
    deaths: list[dict[str, object]] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                _run_in_own_process,
                context,
                payload,
                _sweep_config(tmp_path),
                lambda **d: deaths.append(d),
            )  # fmt: skip
            for _ in range(24)
        ]
        concurrent.futures.wait(futures)
    assert [d["ended"] for d in deaths] == ["exit code 130"] * 24
    assert all(d["interrupted"] for d in deaths)


def test_sweepers_launcher_settings_name_what_to_preload_and_who_records_a_death() -> None:
    conf = OmegaConf.load(REPO / "conf/hydra/launcher/local.yaml")
    assert conf.preload == ["sweeper.preload"]
    assert get_method(conf.on_job_death) is record_dead_job


def composed_both_ways(jobs: list[list[str]], bare: bool = False) -> list[tuple[str, str]]:
    """Each job's config with its hydra node (``bare``: without, as ``hydra.compose`` gives
    it), as ShapeCache and as Hydra compose it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from hydra_plugins.sweeper_launcher.composing import ShapeCache
    from sweeper.app import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        shapes = ShapeCache(hydra.config_loader)  # type: ignore[arg-type]
        pairs = []
        for job in jobs:
            if bare:
                ours, hydras = shapes.compose("config", job), compose("config", job)
            else:
                ours = shapes.load_configuration("config", job)
                hydras = hydra.config_loader.load_configuration("config", job, RunMode.RUN)
            pairs.append((OmegaConf.to_yaml(ours), OmegaConf.to_yaml(hydras)))
        return pairs


# A job's process as the fork server forks it, its plugins scanned by the preload: it sets the
# sweep's Hydra state (with the scanned plugins or without), then pickles a config of one of
# the launcher's classes, as its return does. Prints whether the class is still its module's,
# and whether the pickle carries it by value.
SCANNED_PLUGINS = textwrap.dedent(
    """
    import sys, cloudpickle
    from hydra.core.plugins import Plugins
    from hydra.core.singleton import Singleton
    from omegaconf import OmegaConf
    from hydra_plugins.sweeper_launcher.local_launcher import with_scanned_plugins

    Plugins.instance()
    module = sys.modules["hydra_plugins.sweeper_launcher.config"]
    cls = module.LocalLauncherConf
    state = Singleton.get_state()
    Singleton.set_state(with_scanned_plugins(state) if sys.argv[1] == "kept" else state)
    by_value = b"_make_skeleton_class" in cloudpickle.dumps(OmegaConf.structured(cls))
    print(module.LocalLauncherConf is cls, by_value, Plugins.instance().class_name_to_class[
        "hydra_plugins.sweeper_launcher.local_launcher.LocalLauncher"
    ].__module__)
    """
)


@pytest.mark.parametrize(
    ("plugins", "seen"),
    [
        ("kept", "True False hydra_plugins.sweeper_launcher.local_launcher"),
        ("scanned again", "False True hydra_plugins.sweeper_launcher.local_launcher"),
    ],
)
def test_a_job_keeps_the_plugins_its_fork_server_scanned(plugins: str, seen: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCANNED_PLUGINS, plugins], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == seen


@pytest.mark.parametrize("bare", [False, True], ids=["with hydra", "without hydra"])
def test_jobs_composed_once_per_shape_get_the_config_hydra_composes(bare: bool) -> None:
    jobs = [
        [f"activation={activation}", f"optimizer.lr={lr}", f"seed={seed}", "train.epochs=5"]
        for activation in ("sigmoid", "relu")
        for lr in (0.01, 0.1)
        for seed in (0, 1)
    ]
    jobs += [
        ["topology.hidden=[32,16]", "train.patience=null", "tracking.experiment='a b'"],
        ["topology.hidden=[8]", "train.patience=3", "tracking.experiment=c"],
        ["optimizer=adam", "optimizer.beta1=0.8", "+experiment=gradcheck"],
        ["optimizer=adam", "optimizer.beta1=0.7", "+experiment=gradcheck"],
        ["regularizer=l2", "regularizer.lam=1e-3", "hydra.job.name=other"],
        ["regularizer=l2", "regularizer.lam=1e-4", "hydra.job.name=other"],
        # A swept value set again later on the line: the later override wins, as in Hydra.
        ["train.patience=3", "++train.patience=7"],
        ["train.patience=4", "++train.patience=7"],
        ["train.patience=3", "train={patience:9}"],
        ["train.patience=4", "train={patience:9}"],
        ["topology.hidden=[8]", "++topology.hidden.0=4"],
        ["topology.hidden=[16,8]", "++topology.hidden.0=4"],
        # Set before the value: the value wins, in a copy of the shape's first as in Hydra.
        ["++train.patience=7", "train.patience=3"],
        ["++train.patience=7", "train.patience=4"],
    ]
    pairs = composed_both_ways(jobs, bare)
    for job, (ours, hydras) in zip(jobs, pairs, strict=True):
        assert ours == hydras, job
    # Each job has its own values, not its shape's first.
    assert "lr: 0.1\n" in pairs[2][0] and "lr: 0.01\n" in pairs[0][0]
    assert "- 8\n" in pairs[9][0] and "- 32\n" not in pairs[9][0]
    assert "patience: 7\n" in pairs[15][0] and "patience: 9\n" in pairs[17][0]
    assert "patience: 4\n" in pairs[21][0]


@pytest.mark.parametrize("bare", [False, True], ids=["with hydra", "without hydra"])
def test_a_bad_value_in_a_later_job_of_a_shape_fails_as_hydra_says_it(bare: bool) -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as ours:
        composed_both_ways([["optimizer.lr=0.1"], ["optimizer.lr=fast"]], bare)
    with pytest.raises(ConfigCompositionException) as hydras:
        composed_both_ways([["optimizer.lr=fast"]], bare)
    assert str(ours.value) == str(hydras.value)
    assert str(ours.value.__cause__) == str(hydras.value.__cause__)


def test_a_sweeps_check_names_each_bad_value_of_a_shape_in_one_line() -> None:
    from hydra import initialize_config_dir

    from sweeper.app import CONF_DIR
    from sweeper.config import ConfigError
    from sweeper.plan import validate_jobs

    jobs = [[f"optimizer.lr={lr}", f"seed={seed}"] for lr in (0.1, -1, 0.2) for seed in (0, 1)]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        with pytest.raises(ConfigError) as err:
            validate_jobs("config", jobs)
        params = validate_jobs("config", [jobs[0], jobs[5]])
    assert str(err.value).splitlines() == [
        "2 of 6 runs are invalid; nothing was run:",
        "  optimizer.lr=-1.0 is invalid: must be finite, > 0  (in: optimizer.lr=-1 seed=0; "
        "optimizer.lr=-1 seed=1)",
    ]
    # Each run's own values, not its shape's first run's.
    assert [(p["optimizer.lr"], p["seed"]) for p in params] == [(0.1, 0), (0.2, 1)]


def test_a_sweeps_check_names_a_config_group_given_a_number() -> None:
    from hydra import initialize_config_dir

    from sweeper.app import CONF_DIR
    from sweeper.config import ConfigError
    from sweeper.plan import validate_jobs

    with (
        initialize_config_dir(str(CONF_DIR), version_base="1.3"),
        pytest.raises(ConfigError) as err,
    ):
        validate_jobs("config", [["regularizer=l2"], ["regularizer=1"]])
    assert str(err.value).splitlines() == [
        "1 of 2 runs are invalid; nothing was run:",
        "  regularizer=1 is invalid: regularizer is a config group; give the name of one of its "
        "options: dropout, l1, l2, none  (in: regularizer=1)",
    ]


def test_a_sweep_composes_each_shape_once_for_both_checks_and_the_launch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from hydra_plugins.sweeper_launcher.composing import ShapeCache
    from sweeper.app import CONF_DIR
    from sweeper.plan import validate_jobs

    jobs = [[f"activation={a}", f"seed={seed}"] for a in ("sigmoid", "relu") for seed in (0, 1, 2)]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        loader = hydra.config_loader
        master = loader.load_configuration("config", ["hydra.launcher.n_jobs=2"], RunMode.MULTIRUN)
        composed = []
        compose = loader.load_configuration

        def counted(*args: Any, **kwargs: Any) -> Any:
            composed.append(kwargs["overrides"])
            return compose(*args, **kwargs)

        monkeypatch.setattr(loader, "load_configuration", counted)
        # The app's check, then for each job the sweeper's check and the launcher's config.
        validate_jobs("config", jobs, list(master.hydra.overrides.hydra))
        shapes = ShapeCache.of(loader)  # type: ignore[arg-type]
        launched = []
        for job in jobs:
            shapes.check_sweep_config(master, job)
            launched.append(shapes.load_sweep_config(master, job))
    assert composed == [
        ["hydra.launcher.n_jobs=2", "activation=sigmoid", "seed=0"],
        ["hydra.launcher.n_jobs=2", "activation=relu", "seed=0"],
    ]
    assert [(c.activation.name.value, c.seed) for c in launched] == [
        (a, seed) for a in ("sigmoid", "relu") for seed in (0, 1, 2)
    ]
    assert launched[4].hydra.overrides.task == ["activation=relu", "seed=1"]


def test_the_default_sweeper_checks_a_batch_as_hydras_basic_sweeper_does() -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException
    from hydra.types import HydraContext, RunMode
    from hydra.utils import get_class

    from sweeper.app import CONF_DIR

    good = [[f"optimizer.lr={lr}", f"seed={seed}"] for lr in (0.1, 0.2) for seed in (0, 1)]
    bad = [*good, ["optimizer.lr=fast", "seed=2"]]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        master = hydra.config_loader.load_configuration(
            "config", ["hydra.launcher.n_jobs=1"], RunMode.MULTIRUN
        )
        assert master.hydra.sweeper._target_.endswith(".ShapedBasicSweeper")
        errors = []
        # As Hydra finds them after its plugin scan, which executes their modules again.
        hydras = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
        for target in (master.hydra.sweeper._target_, hydras):
            sweeper = get_class(target)(max_batch_size=None)
            sweeper.hydra_context = HydraContext(hydra.config_loader, callbacks=None)  # type: ignore[arg-type]
            sweeper.config = master
            sweeper.validate_batch_is_legal(good)
            with pytest.raises(ConfigCompositionException) as err:
                sweeper.validate_batch_is_legal(bad)
            errors.append((str(err.value), str(err.value.__cause__)))
    assert errors[0] == errors[1]
    assert "optimizer.lr=fast" in errors[0][0]


# A sweep's process that starts its fork server with a preload that takes long to import, then
# exits at once, as a sweep stopped by a bad value does; its output is a pipe its caller reads.
SLOW_PRELOAD_EXIT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from hydra_plugins.sweeper_launcher.local_launcher import fork_server_context

    Path(sys.argv[1], "slow_preload.py").write_text("import time\\ntime.sleep(900)\\n")
    sys.path.insert(0, sys.argv[1])
    fork_server_context(["slow_preload"])
    print("exiting")
    """
)


def test_a_sweep_that_stops_at_once_does_not_wait_for_its_fork_servers_preload(
    tmp_path: Path,
) -> None:
    # Without stopping its server, the caller would read until the 900 s preload ended.
    proc = subprocess.run(
        [sys.executable, "-c", SLOW_PRELOAD_EXIT, str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "exiting\n"


class LostRayTask:
    """A Ray ObjectRef whose task Ray could not finish."""

    def future(self) -> concurrent.futures.Future[JobReturn]:
        lost: concurrent.futures.Future[JobReturn] = concurrent.futures.Future()
        lost.set_exception(
            RuntimeError("The worker died unexpectedly while executing this task.\nmore")
        )
        return lost


def test_a_ray_task_that_died_is_handed_to_on_job_death_and_its_job_fails(
    tmp_path: Path,
) -> None:
    deaths: list[dict[str, object]] = []
    future = job_future(LostRayTask(), _sweep_config(tmp_path), lambda **d: deaths.append(d))
    ret = future.result(timeout=10)
    assert ret.status is JobStatus.FAILED
    (death,) = deaths
    assert {k: death[k] for k in ("job", "overrides", "pid", "interrupted", "ended")} == {
        "job": 3,
        "overrides": ["seed=3"],
        "pid": None,
        "interrupted": False,
        "ended": "Ray: The worker died unexpectedly while executing this task.",
    }
    assert death["job_dir"] == tmp_path / "3"


def test_a_dead_job_whose_pid_is_unknown_closes_its_own_run_by_job_number(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = prepare_store(uri, "sweeper")
    parent = client.create_run(experiment_id, tags={"kind": "sweep"}).info.run_id
    runs = {
        job: client.create_run(
            experiment_id, tags={"mlflow.parentRunId": parent, "job": str(job), "pid": "99"}
        ).info.run_id
        for job in (3, 4)
    }
    SweepInfo("s", uri, experiment_id, parent).save(tmp_path)
    record_dead_job(
        sweep_dir=tmp_path, job_dir=tmp_path / "4", job=4, overrides=["seed=4"],
        hydra_overrides=[], pid=None,
        interrupted=False, ended="Ray: The worker died", seconds=1.0,
    )  # fmt: skip
    dead, alive = client.get_run(runs[4]), client.get_run(runs[3])
    assert dead.info.status == "FAILED"
    assert dead.data.tags["reason"] == "worker process died (Ray: The worker died)"
    assert alive.info.status == "RUNNING"
    assert RunOutcome.load(tmp_path / "4" / OUTCOME_FILE).status == "FAILED"


def test_a_search_job_killed_before_its_run_started_is_named_by_its_trial(tmp_path: Path) -> None:
    # No progress file yet: its trial and repeat are the search sweeper's overrides of the job.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    experiment_id = prepare_store(uri, "sweeper")
    parent = MlflowClient(uri).create_run(experiment_id, tags={"kind": "sweep"}).info.run_id
    SweepInfo("s", uri, experiment_id, parent).save(tmp_path)
    given = ["hydra.sweeper.study='s'", "hydra.sweeper.trial=0", "hydra.sweeper.repeat=2"]
    for job, hydra_overrides, named in ((5, given, "0.2"), (6, given[:2], "0"), (7, [], "7")):
        record_dead_job(
            sweep_dir=tmp_path, job_dir=tmp_path / str(job), job=job, overrides=["seed=2"],
            hydra_overrides=hydra_overrides, pid=99, interrupted=True, ended="exit code 130",
            seconds=1.0,
        )  # fmt: skip
        assert RunOutcome.load(tmp_path / str(job) / OUTCOME_FILE).number == named


@pytest.mark.parametrize(
    "left",
    [
        # Ctrl-C held back while its run ended is raised once the outcome is left: the process
        # then exits as interrupted, but the run it finished stays finished, and counted so.
        RunOutcome(2, ["seed=2"], "FINISHED", "", 1.0, "", {"best_val_loss": 0.25}),
        # The run closed itself KILLED and left that outcome (run_config on Ctrl-C) before
        # the process exited.
        RunOutcome(2, ["seed=2"], "KILLED", "interrupted (Ctrl-C)", 7.5, ""),
    ],
    ids=["finished", "killed"],
)
def test_a_job_stopped_by_ctrl_c_keeps_the_outcome_its_run_left(
    tmp_path: Path, left: RunOutcome
) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment_id = prepare_store(uri, "sweeper")
    parent = client.create_run(experiment_id, tags={"kind": "sweep"}).info.run_id
    tags = {"mlflow.parentRunId": parent, "job": "2", "pid": "99"}
    run_id = client.create_run(experiment_id, tags=tags).info.run_id
    client.set_terminated(run_id, left.status)
    SweepInfo("s", uri, experiment_id, parent).save(tmp_path)
    (tmp_path / "2").mkdir()
    left = dataclasses.replace(left, run_id=run_id)
    left.save(tmp_path / "2")
    objective = record_dead_job(
        sweep_dir=tmp_path, job_dir=tmp_path / "2", job=2, overrides=["seed=2"],
        hydra_overrides=[], pid=99,
        interrupted=True, ended="exit code 130", seconds=1.0,
    )  # fmt: skip
    assert objective == left.objective
    assert RunOutcome.load(tmp_path / "2" / OUTCOME_FILE) == left
    assert client.get_run(run_id).info.status == left.status


def test_the_ray_launcher_composes_with_its_death_handler_without_ray_installed() -> None:
    from hydra import compose, initialize_config_dir

    from sweeper.app import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", ["hydra/launcher=ray_cluster"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.sweeper_launcher.ray_launcher.RayClusterLauncher"
    assert get_method(launcher.on_job_death) is record_dead_job
    assert launcher.ray.init.address == "auto" and launcher.ray.remote.num_cpus == 1


# A process that takes SIGTERM as Ctrl-C and, stopped, spends a while closing its records with
# Ctrl-C ignored, as a sweep does.
_CLOSING = """
import signal, sys, time
from hydra_plugins.sweeper_launcher.interrupts import ignore_interrupts, terminate_as_interrupt
def closing(signum, frame):
    ignore_interrupts()
    time.sleep(3.0)
    print("closed", flush=True)
    sys.exit(130)
signal.signal(signal.SIGINT, closing)
terminate_as_interrupt()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("gap", "ended"),
    [
        # timeout signals the command, then its process group: one stop, sent twice.
        (0.05, (130, "closed\n")),
        # Another stop, later: a process stuck closing can still be ended.
        (1.5, (-signal.SIGTERM, "")),
    ],
)
def test_a_sigterm_sent_again_at_once_lets_the_records_close_a_later_one_ends_the_process(
    gap: float, ended: tuple[int, str]
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CLOSING], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert (proc.returncode, out) == ended


def test_a_background_sweep_stopped_by_ctrl_c_then_sigterm_ends_without_a_traceback() -> None:
    # Started with Ctrl-C ignored (`cmd &` in a script), stopped by `kill -INT` all the same
    # (the sweep handles it once it starts), then sent SIGTERM while it closes its records.
    handled_later = _CLOSING.replace(
        "signal.signal(signal.SIGINT, closing)\nterminate_as_interrupt()",
        "terminate_as_interrupt()\nsignal.signal(signal.SIGINT, closing)",
    )
    assert handled_later != _CLOSING
    proc = subprocess.Popen(
        [sys.executable, "-c", handled_later],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out, err) == (-signal.SIGTERM, "", "")


def test_the_ray_launcher_without_its_extra_is_one_line_before_the_sweep_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launcher = OmegaConf.structured(RayClusterLauncherConf)
    monkeypatch.setattr(plan, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as refused:
        check_launcher(launcher)
    assert str(refused.value) == (
        "hydra/launcher=ray_cluster needs Hydra's Ray launcher, the [ray] extra: "
        "make install-ray (or pip install -e '.[ray]')"
    )
    monkeypatch.setattr(plan, "find_spec", lambda name: object())
    check_launcher(launcher)
