"""Past one machine: a sweep and a search on a Ray cluster, tracked on an MLflow tracking server.

The cluster and the server run as separate processes bound to 127.0.0.1, joined by address as
they would be on other machines, and are stopped at teardown even when a test fails.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import FAST, all_runs, child_runs, parent_run, run_cli, store_uri
from helpers import (
    Sweep,
    assert_killed_trial_asked_again,
    assert_pruned_search_agrees,
    assert_study_agrees_with_mlflow,
    refilled_while_another_runs,
    runs_by_trial,
    study_of,
)
from services import BIN, Service, free_port, mlflow_service, start, stop, wait_until
from sweeper.checkpoint import load_checkpoint
from sweeper.data import load_dataset
from sweeper.outcome import PROGRESS_FILE
from sweeper.provenance import PACKAGES_TAG

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
        reason="needs the [ray] extra: pip install -e '.[ray]' (make test-slow installs it)",
    ),
]

# 2 activations x 2 seeds; the joblib comparison runs the same four.
# Every run's model and figures (by default only the best run's), to see each reach the server.
SWEEP = ["activation=tanh,relu", "seed=0,1", *FAST, "tracking.model=every", "tracking.curves=every"]
EXPERIMENT = "cluster"


@dataclass
class TrackingServer:
    uri: str
    artifacts: Path


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """`mlflow server` on loopback: SQLite backend, artifacts proxied into <tmp>/artifacts."""
    root = tmp_path_factory.mktemp("server")
    with mlflow_service(
        [
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        root / "server.log",
    ) as uri:
        yield TrackingServer(uri, root / "artifacts")


@dataclass
class RayCluster:
    address: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A one-node Ray cluster with two CPUs and token authentication, bound to loopback.

    A second node cannot join on loopback: Ray then refuses with "Multi-node Ray clusters are
    not supported on Windows and OSX" (docs/scaling.md).
    """
    logs_dir = tmp_path_factory.mktemp("ray_logs")
    # Ray's unix sockets live under --temp-dir, and their paths must stay under 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        # On Linux Ray replaces a loopback node address by the machine's routable one and
        # listens on every interface; this keeps the whole cluster on 127.0.0.1.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    ray = str(BIN / "ray")
    services: list[Service] = []

    def nodes_alive() -> int:
        status = subprocess.run(
            [ray, "status", "--address", address],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=60,
        )
        return status.stdout.count("node_") if status.returncode == 0 else 0

    try:
        head_log = logs_dir / "head.log"
        services.append(
            (
                start(
                    [
                        ray,
                        "start",
                        "--head",
                        "--block",
                        "--port",
                        str(port),
                        "--num-cpus",
                        "2",
                        "--temp-dir",
                        temp_dir,
                        "--include-dashboard",
                        "false",
                        "--disable-usage-stats",
                    ],
                    head_log,
                    env,
                ),
                head_log,
            )
        )
        wait_until(lambda: nodes_alive() == 1, services, "ray head")
        yield RayCluster(address, env)
    finally:
        for proc, _ in reversed(services):
            stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class RaySweep:
    workdir: Path
    server: TrackingServer
    proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def ray_sweep(
    tracking_server: TrackingServer,
    ray_cluster: RayCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> RaySweep:
    """The four-run sweep on the Ray cluster, tracked on the server."""
    workdir = tmp_path_factory.mktemp("ray_sweep")
    proc = run_cli(
        [
            "-m",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={ray_cluster.address}",
            f"tracking.experiment={EXPERIMENT}",
            *SWEEP,
        ],
        workdir,
        env={**ray_cluster.env, "MLFLOW_TRACKING_URI": tracking_server.uri},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return RaySweep(workdir, tracking_server, proc)


def server_runs(server: str, name: str = EXPERIMENT) -> list[Run]:
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return list(client.search_runs([experiment.experiment_id], max_results=100))


def run_key(run: Run) -> tuple[str, str]:
    return run.data.params["activation.name"], run.data.params["seed"]


def without_timing(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if "seconds" not in key}


def own_tags(run: Run) -> set[str]:
    return {key for key in run.data.tags if not key.startswith("mlflow.")}


def val_loss_history(client: MlflowClient, run: Run) -> list[float]:
    return [m.value for m in client.get_metric_history(run.info.run_id, "val_loss")]


def test_four_runs_finish_on_the_cluster_with_artifacts_on_the_server(
    ray_sweep: RaySweep, tmp_path: Path
) -> None:
    assert "[4/4 done] 0 failed" in ray_sweep.proc.stdout
    server = ray_sweep.server.uri
    runs = server_runs(server)
    parent = parent_run(runs)
    children = child_runs(runs)
    assert parent.info.status == "FINISHED"
    assert sorted(run_key(c) for c in children) == [
        ("relu", "0"),
        ("relu", "1"),
        ("tanh", "0"),
        ("tanh", "1"),
    ]

    client = MlflowClient(server)
    mlflow.set_tracking_uri(server)
    data = load_dataset("digits")
    (sweep_dir,) = (ray_sweep.workdir / "multirun").iterdir()
    for child in children:
        run_id = child.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {a.path for a in client.list_artifacts(run_id)} == {
            "config.yaml",
            "gradcheck.csv",
            "plots",
            "checkpoint",
            "provenance",
        }
        assert {a.path for a in client.list_artifacts(run_id, "plots")} == {
            "plots/loss.png",
            "plots/accuracy.png",
        }

        # Proxied artifacts: uploaded through the server into its destination, and read back.
        assert child.info.artifact_uri.startswith("mlflow-artifacts:")
        stored = [
            p for p in ray_sweep.server.artifacts.rglob("best_model.npz") if run_id in p.parts
        ]
        assert [p.parent.name for p in stored] == ["checkpoint"]
        local = sweep_dir / child.data.tags["job"] / "best_model.npz"
        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path="checkpoint/best_model.npz",
            dst_path=str(tmp_path / run_id),
            tracking_uri=server,
        )
        assert Path(downloaded).read_bytes() == local.read_bytes()

        # The MLflow model, loaded from the server, predicts what the checkpoint predicts.
        model, standardizer = load_checkpoint(local)
        raw = data.x_test * standardizer.std + standardizer.mean
        served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        assert np.array_equal(served.predict(raw), model.predict(data.x_test))


def test_the_cluster_records_what_joblib_records_with_the_same_metrics(
    ray_sweep: RaySweep, tmp_path: Path
) -> None:
    server = ray_sweep.server.uri
    proc = run_cli(["-m", f"tracking.experiment={EXPERIMENT}", *SWEEP], tmp_path)
    assert proc.returncode == 0, proc.stderr
    local_client, server_client = MlflowClient(store_uri(tmp_path)), MlflowClient(server)
    local = {run_key(r): r for r in child_runs(all_runs(tmp_path, EXPERIMENT))}
    remote = {run_key(r): r for r in child_runs(server_runs(server))}
    assert len(local) == 4
    assert remote.keys() == local.keys()
    for key, run in local.items():
        on_server = remote[key]
        assert val_loss_history(server_client, on_server) == val_loss_history(local_client, run)
        assert on_server.data.params == run.data.params
        # MLflow's own mlflow.source.git.* guesses come from the worker's entry point (Ray's
        # default_worker.py, outside the repository); sweeper's tags are what a report reads.
        assert own_tags(on_server) == own_tags(run)
        assert on_server.data.tags["mlflow.runName"] == run.data.tags["mlflow.runName"]
        # The same environment too: Ray's workers have its vendored packages on sys.path.
        for tag in ("config_hash", "overrides", "job", "status", "git_commit", PACKAGES_TAG):
            assert on_server.data.tags[tag] == run.data.tags[tag]
        assert without_timing(on_server.data.metrics) == without_timing(run.data.metrics)


def test_a_sweep_without_the_clusters_token_stops_in_one_line_before_its_parent_run(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ray.init at the first job retried for 20 s, its C++ client logging each try, and failed
    # with "Failed to connect to Ray cluster", naming no token, the parent run made and FAILED.
    for variable in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(variable, raising=False)
    # No ~/.ray/auth_token either.
    cluster = {**ray_cluster.env, "HOME": str(tmp_path)}
    missing = {k: v for k, v in cluster.items() if not k.startswith("RAY_AUTH")}
    where = f"the Ray cluster at {ray_cluster.address} (hydra.launcher.ray.init.address)"
    to_set = "set RAY_AUTH_TOKEN (or ~/.ray/auth_token) to the"
    cases = {
        "no_token": (
            missing,
            f"{where} needs its auth token: {to_set} one its nodes were "
            "started with, and RAY_AUTH_MODE=token",
        ),
        "wrong_token": (
            {**cluster, "RAY_AUTH_TOKEN": "0" * 64},
            f"{where} refuses this process's auth token: {to_set} one its nodes were started with",
        ),
        "token_mode_alone": (
            {**missing, "RAY_AUTH_MODE": "token"},
            f"{where}: RAY_AUTH_MODE=token but no Ray auth token is set: {to_set} cluster's",
        ),
    }
    for name, (env, said) in cases.items():
        workdir = tmp_path / name
        workdir.mkdir()
        start = time.monotonic()
        proc = run_cli(
            [
                "-m",
                "hydra/launcher=ray_cluster",
                f"hydra.launcher.ray.init.address={ray_cluster.address}",
                "activation=tanh,relu",
                "train.epochs=1",
            ],
            workdir,
            env=env,
            timeout=120,
        )
        assert time.monotonic() - start < 15, name
        assert proc.returncode == 1, name
        assert proc.stderr.strip().splitlines() == [f"Error: the sweep could not start: {said}"]
        # Before the store is opened: no parent run, nothing to resume.
        assert not (workdir / "mlruns").exists(), name


def test_the_report_reads_the_sweep_back_from_the_server(ray_sweep: RaySweep) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.report", "--experiment", EXPERIMENT],
        cwd=ray_sweep.workdir,
        env={**os.environ, "MLFLOW_TRACKING_URI": ray_sweep.server.uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    runs = child_runs(server_runs(ray_sweep.server.uri))
    (sweep_dir,) = (ray_sweep.workdir / "reports").iterdir()
    assert sweep_dir.name == runs[0].data.tags["sweep_id"]
    rows = (sweep_dir / "runs.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[0] for row in rows) == sorted(r.info.run_id for r in runs)
    # The confusion matrix needs the best run's checkpoint, downloaded through the server.
    assert (sweep_dir / "figures" / "confusion_matrix.png").stat().st_size > 0


# A search on the digits, two trials at a time on the cluster's two CPUs, tracked on the
# server. Its Optuna study is the SQLite file beside ./mlruns (the workers reach it: they run
# on this machine), or that file behind Optuna's gRPC storage proxy, what workers on other
# machines reach (docs/scaling.md).
SEARCH_EXPERIMENT = "cluster_search"


@dataclass
class StudyProxy:
    url: str
    # The RDB behind the proxy, read directly by the tests.
    storage: str


@pytest.fixture(scope="module")
def study_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudyProxy]:
    """``python -m hydra_plugins.sweeper_search.proxy`` on loopback, a SQLite file behind it."""
    root = tmp_path_factory.mktemp("proxy")
    storage = f"sqlite:///{root / 'optuna.db'}"
    port = free_port()
    log = root / "proxy.log"
    proc = start(
        [
            sys.executable,
            "-m",
            "hydra_plugins.sweeper_search.proxy",
            storage,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        log,
    )
    try:
        wait_until(lambda: "Serving" in log.read_text(), [(proc, log)], "study proxy")
        yield StudyProxy(f"grpc://127.0.0.1:{port}", storage)
    finally:
        stop(proc)


def ray_search(
    cluster: RayCluster, server: TrackingServer, workdir: Path, args: list[str]
) -> tuple[subprocess.CompletedProcess[str], list[Run]]:
    """The search's command, and its child runs as the server holds them."""
    proc = run_cli(
        [
            "-m",
            "+experiment=search",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={cluster.address}",
            f"tracking.experiment={SEARCH_EXPERIMENT}",
            "dataset.val_fraction=0.2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.name=random",
            *args,
        ],
        workdir,
        env={**cluster.env, "MLFLOW_TRACKING_URI": server.uri},
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sweep_dir,) = (workdir / "multirun").iterdir()
    runs = child_runs(server_runs(server.uri, SEARCH_EXPERIMENT))
    return proc, [r for r in runs if r.data.tags["sweep_id"] == sweep_dir.name]


@pytest.mark.parametrize("through_proxy", [False, True], ids=["sqlite", "grpc_proxy"])
def test_a_pruned_search_on_the_cluster_stops_runs_early_and_agrees_with_its_study(
    ray_cluster: RayCluster,
    tracking_server: TrackingServer,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    through_proxy: bool,
) -> None:
    storage = None
    args = []
    if through_proxy:
        proxy: StudyProxy = request.getfixturevalue("study_proxy")
        storage = proxy.storage
        args = [f"hydra.sweeper.storage={proxy.url}"]
    # A rate too small to learn (1e-5) and a good one: once one trial has finished, the median
    # pruner stops every small-rate trial at its first epoch. The random sampler draws 1e-5
    # for trials 2 and 5, asked only after trial 0 or 1 has ended.
    proc, runs = ray_search(
        ray_cluster,
        tracking_server,
        tmp_path,
        [
            *args,
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.sampler.seed=3",
            "hydra.sweeper.pruner.name=median",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "optimizer.lr=choice(0.00001, 0.05)",
            "topology.hidden=[32]",
            "train.epochs=4",
        ],
    )
    assert len(runs) == 6
    pruned = [r for r in runs if r.data.tags["status"] == "PRUNED"]
    slow = [r for r in runs if float(r.data.params["optimizer.lr"]) == 1e-5]
    assert slow and {r.info.run_id for r in slow} <= {r.info.run_id for r in pruned}
    for run in pruned:
        epoch = int(run.data.tags["pruned_epoch"])
        assert run.data.metrics["epochs_run"] == epoch < 4
        assert run.data.tags["reason"] == f"pruned at epoch {epoch}"
        assert run.info.status == "FINISHED"
        assert f"PRUNED at epoch {epoch}" in proc.stdout
    assert {r.data.metrics["epochs_run"] for r in runs if r not in pruned} == {4}
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(tmp_path, sweep_id, storage).get_trials()
    # Through the proxy, nothing of the study is written beside the launching directory.
    assert (tmp_path / "mlruns" / "optuna.db").exists() != through_proxy
    assert_pruned_search_agrees(trials, runs, pruned, 6)


@pytest.mark.parametrize("asynchronous", [True, False])
def test_a_freed_slot_on_the_cluster_takes_the_next_trial_at_once(
    ray_cluster: RayCluster, tracking_server: TrackingServer, tmp_path: Path, asynchronous: bool
) -> None:
    # The random sampler draws 200 epochs for trial 0, then 1 epoch five times: with no batch
    # barrier the five short trials come and go in one slot while the long one holds the
    # other; in batches of two (hydra-ray-launcher's launch), four of them wait for it.
    _, runs = ray_search(
        ray_cluster,
        tracking_server,
        tmp_path,
        [
            f"hydra.sweeper.asynchronous={str(asynchronous).lower()}",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.sampler.seed=2",
            "train.epochs=choice(1, 200)",
            "topology.hidden=[256,256]",
            "optimizer.lr=0.01",
            "regularizer=l2",
            "regularizer.lam=1e-4",
        ],
    )
    assert len(runs) == 6
    (long,) = [r for r in runs if r.data.metrics["epochs_run"] == 200]
    short = [r for r in runs if r is not long]
    assert {r.data.metrics["epochs_run"] for r in short} == {1}
    # No slot idle while trials remain: every short trial ran while the long one trained.
    ran_beside = sum(r.info.end_time < long.info.end_time for r in short)
    assert ran_beside == (5 if asynchronous else 1)
    assert refilled_while_another_runs(runs) == asynchronous
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    assert_study_agrees_with_mlflow(study_of(tmp_path, sweep_id).get_trials(), runs)


def test_a_trial_whose_ray_worker_is_killed_is_asked_again(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # Tracked in ./mlruns: the workers run on this machine, and Sweep reads the runs there.
    sweep = Sweep(
        [
            "-m",
            "+experiment=search",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={ray_cluster.address}",
            "dataset.val_fraction=0.2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.sampler.name=random",
            "hydra.sweeper.n_trials=4",
            "hydra.sweeper.sampler.seed=0",
            "train.epochs=choice(2, 300)",
            "topology.hidden=[32]",
            "optimizer.lr=0.01",
            "regularizer=l2",
            "regularizer.lam=1e-4",
            "train.batch_size=8",
        ],
        tmp_path,
        env=ray_cluster.env,
    )
    # The run's pid tag is its Ray worker's: SIGKILL ends the task, which Ray does not retry.
    victim = sweep.kill_a_run_past_its_first_epoch("300")
    rc, stderr = sweep.finish(timeout=600)
    assert rc == 0, stderr[-3000:]
    killed = int(victim.data.tags["trial"])
    assert f"Trial {killed} returned nothing" in sweep.stdout.read_text()
    runs = child_runs(all_runs(tmp_path))
    assert len(runs) == 5
    by_trial = runs_by_trial(runs)
    (sweep_id,) = {r.data.tags["sweep_id"] for r in runs}
    trials = study_of(tmp_path, sweep_id).get_trials()
    assert_killed_trial_asked_again(trials, by_trial, killed, epochs=300, completed=4)
    # on_job_death closed the killed run, found by its job number (Ray does not say the pid).
    (dead,) = [r for r in runs if r.info.run_id == victim.info.run_id]
    assert dead.info.status == "FAILED"
    assert dead.data.tags["reason"].startswith("worker process died (Ray: ")
    assert_study_agrees_with_mlflow([t for t in trials if t.number != killed], runs)


def ray_grid_sweep(cluster: RayCluster, workdir: Path, args: list[str]) -> Sweep:
    """A grid sweep (Hydra's basic sweeper) on the cluster, tracked in ./mlruns (the workers
    run on this machine), in its own process group as a terminal's foreground job."""
    return Sweep(
        [
            "-m",
            "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={cluster.address}",
            *args,
        ],
        workdir,
        env=cluster.env,
    )


def test_a_killed_ray_worker_in_a_grid_sweep_fails_its_run_alone_and_the_sweep_ends(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    # Two runs on the cluster's two CPUs, three epochs of a few seconds each; one is killed.
    args = ["seed=0,1", "train.epochs=3", "train.batch_size=2", "topology.hidden=[1000,1000]",
            "train.patience=null", "gradcheck.enabled=false"]  # fmt: skip
    sweep = ray_grid_sweep(ray_cluster, tmp_path, args)
    # The run's pid tag is its Ray worker's: SIGKILL ends the task, which Ray does not retry.
    victim = sweep.kill_a_run_past_its_first_epoch("3")
    rc, stderr = sweep.finish(timeout=600)
    stdout = sweep.stdout.read_text()

    assert rc == 1, stderr[-3000:]  # a run failed, and the command says so
    assert "Traceback" not in stderr
    assert "stopped (" not in stderr
    assert f"1 run failed:\n  #{victim.data.tags['job']} " in stderr
    assert ": worker process died (Ray: " in stderr
    assert "Run them again with:" in stderr and "resume=true" in stderr
    assert "[2/2 done] 1 failed" in stdout
    assert "1 finished, 1 failed" in stdout
    # The sweep ended normally: its summary, and the best run's model.
    assert "Made for the best run: " in stdout
    runs = child_runs(all_runs(tmp_path))
    assert len(runs) == 2  # nothing ran twice
    (dead,) = [r for r in runs if r.info.run_id == victim.info.run_id]
    (other,) = [r for r in runs if r is not dead]
    assert dead.info.status == "FAILED"
    assert dead.data.tags["reason"].startswith("worker process died (Ray: ")
    assert other.info.status == "FINISHED"
    assert other.data.metrics["epochs_run"] == 3
    parent = parent_run(all_runs(tmp_path))
    assert parent.info.status == "FAILED"
    assert parent.data.metrics == {"runs": 2, "failed_runs": 1, "killed_runs": 0}


# Three runs for the cluster's two CPUs, each three long epochs: two train, one waits its turn.
RAY_SLOW_RUNS = ["seed=0,1,2", "train.epochs=3", "train.batch_size=2",
                 "topology.hidden=[2000,2000]", "train.patience=null",
                 "gradcheck.enabled=false"]  # fmt: skip


def stop_a_ray_sweep(
    cluster: RayCluster, workdir: Path, stop: signal.Signals, to_group: bool
) -> tuple[Sweep, int, str, dict[str, int]]:
    """Stop the slow sweep with ``stop`` (to its process group, else to its own process) once
    both running runs have finished an epoch, their metrics held back in their workers
    (tracking.flush_seconds: 30); its return code, stderr and each run's epochs done by then."""
    sweep = ray_grid_sweep(cluster, workdir, RAY_SLOW_RUNS)

    def epochs_done() -> dict[str, int]:
        return {
            r.info.run_id: sweep.epochs_done(int(r.data.tags["job"]))
            for r in sweep.running_children()
        }

    sweep.wait_until(
        lambda: len(done := epochs_done()) == 2 and min(done.values()) >= 1, timeout=600
    )
    done = epochs_done()
    if to_group:
        os.killpg(sweep.proc.pid, stop)
    else:
        os.kill(sweep.proc.pid, stop)
    rc, stderr = sweep.finish(timeout=300)
    # What Ray would still start or finish after the command is gone would show by now.
    time.sleep(10)
    return sweep, rc, stderr, done


def assert_ray_runs_stopped(workdir: Path, stderr: str, done: dict[str, int], reason: str) -> None:
    """The runs in progress wrote their held-back epochs and ended KILLED with ``reason``, the
    third never started, and the stop message names exactly the runs cut short."""
    runs = child_runs(all_runs(workdir))
    assert sorted(r.info.run_id for r in runs) == sorted(done)
    client = MlflowClient(store_uri(workdir))
    for run in runs:
        assert run.info.status == "KILLED"
        assert run.data.tags["status"] == "KILLED"
        assert run.data.tags["reason"] == reason
        history = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(history) >= done[run.info.run_id] >= 1
        assert f"  KILLED: {run.data.tags['overrides']}\n" in stderr
    assert stderr.count("  KILLED: ") == 2
    assert (
        "0 runs finished and kept, 0 failed, 3 not run or cut short "
        "(the runs in progress are marked KILLED)."
    ) in stderr
    parent = parent_run(all_runs(workdir))
    assert parent.info.status == "KILLED"
    assert parent.data.metrics == {"runs": 2, "failed_runs": 0, "killed_runs": 2}
    assert not list(workdir.glob("multirun/*/dataset-cache"))
    assert len(list(workdir.glob(f"multirun/*/*/{PROGRESS_FILE}"))) == 2


@pytest.mark.parametrize(
    ("signum", "to_group", "stop"),
    # Ctrl-C at a terminal reaches the group; kill or docker stop, the sweep's own process.
    [(signal.SIGINT, True, "Ctrl-C"), (signal.SIGTERM, False, "SIGTERM")],
)
def test_a_stop_on_ray_starts_no_run_and_the_runs_in_progress_end_killed_with_their_metrics(
    ray_cluster: RayCluster, tmp_path: Path, signum: int, to_group: bool, stop: str
) -> None:
    _, rc, stderr, done = stop_a_ray_sweep(ray_cluster, tmp_path, signum, to_group=to_group)
    assert rc == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.endswith(f"resume=true\nInterrupted ({stop}).\n"), stderr[-3000:]
    assert_ray_runs_stopped(tmp_path, stderr, done, f"interrupted ({stop})")
