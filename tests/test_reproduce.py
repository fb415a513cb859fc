"""Provenance and ``python -m sweeper.reproduce``: what a run ran on is recorded, a stored run
runs again with identical numbers, a changed data file is refused, a sweep that mixed
environments is flagged in its report."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import FAST, QUICK, REPO, all_runs, child_runs, cli_env, run_cli, store_uri
from helpers import artifact_paths, run_here, write_mnist_like
from sweeper import provenance
from sweeper.core.training import EpochMetrics
from sweeper.data import cache, datasets
from sweeper.data.cache import load_dataset_cached
from sweeper.data.datasets import load_dataset
from sweeper.report.build import build_report
from sweeper.report.provenance import provenance_summary
from sweeper.report.runs import find_sweep, sweep_runs
from sweeper.reproduce import (
    Difference,
    Ending,
    ReproduceError,
    compare_histories,
    comparison_report,
    environment_differences,
    package_differences,
    reproduce,
)
from sweeper.reproduce import main as reproduce_main
from sweeper.store_setup import prepare_store

TIMINGS = {"train_seconds", "cpu_seconds"}
# On the digits, relu at this rate overflows in the second epoch: the run ends FAILED.
DIVERGES = [*FAST, "activation=relu", "optimizer.lr=5"]
# Trials one at a time on a seeded random sampler, so the median pruner decides alike every
# time: a trial at lr 1e-5 is worse than the median of those before it and stops early.
PRUNED_SEARCH = [
    "-m",
    "+experiment=search",
    "train.epochs=4",
    "topology.hidden=[16]",
    "hydra.sweeper.n_trials=4",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.sampler.name=random",
    "hydra.sweeper.sampler.seed=3",
    "hydra.sweeper.pruner.name=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "optimizer.lr=choice(0.00001, 0.05)",
]


def reproduce_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweeper.reproduce", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        for key in run.data.metrics
        if key not in TIMINGS
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_stored_run_reproduces_bit_identically_in_a_fresh_store(workdir: Path) -> None:
    proc = run_cli([*FAST, "regularizer=dropout", "regularizer.p=0.2", "seed=3"], workdir)
    assert proc.returncode == 0, proc.stderr
    (original,) = all_runs(workdir)
    tags = original.data.tags
    assert tags["seed.init"] == tags["seed.shuffle"] == tags["seed.split"] == "3"
    assert tags["seed.dropout"] == "[3, 1]"
    assert tags["env.numpy"] == np.__version__
    assert int(tags["env.blas_threads"]) >= 1
    digits = Path(datasets.__file__).with_name("digits.csv.gz")
    assert json.loads(tags["data_sha256"]) == {str(digits): sha256(digits)}

    proc = reproduce_cli([original.info.run_id], workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Identical: all" in proc.stdout
    assert "Data: 1 file(s), SHA-256 unchanged." in proc.stdout
    assert "Traceback" not in proc.stderr

    client = MlflowClient(store_uri(workdir))
    (copy,) = [r for r in all_runs(workdir) if r.info.run_id != original.info.run_id]
    assert copy.data.tags["reproduces"] == original.info.run_id
    assert copy.data.tags["config_hash"] == tags["config_hash"]
    assert copy.data.tags["env.blas_threads"] == tags["env.blas_threads"]
    expected = histories(client, original.info.run_id)
    assert [step for step, _ in expected["val_loss"]] == [1, 2, 3]
    assert histories(client, copy.info.run_id) == expected


def reproduction_of(workdir: Path, run_id: str) -> Run:
    (copy,) = [r for r in all_runs(workdir) if r.data.tags.get("reproduces") == run_id]
    return copy


@pytest.mark.slow
def test_a_pruned_run_reproduces_stopping_where_its_pruner_stopped_it(workdir: Path) -> None:
    proc = run_cli(PRUNED_SEARCH, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pruned = [r for r in child_runs(all_runs(workdir)) if r.data.tags["status"] == "PRUNED"]
    assert pruned, proc.stdout
    original = pruned[0]
    epoch = int(original.data.tags["pruned_epoch"])
    assert original.data.metrics["epochs_run"] == epoch < 4

    proc = reproduce_cli([original.info.run_id], workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    client = MlflowClient(store_uri(workdir))
    expected = histories(client, original.info.run_id)
    values = sum(len(steps) for steps in expected.values())
    assert f"The original was pruned at epoch {epoch}: the reproduction stops there." in proc.stdout
    assert (
        f"Identical: all {values} values of {len(expected)} metrics, bit for bit (timings not "
        f"compared); both ended PRUNED, pruned at epoch {epoch}.\n"
    ) in proc.stdout
    copy = reproduction_of(workdir, original.info.run_id)
    assert copy.data.tags["status"] == "PRUNED"
    assert copy.data.tags["pruned_epoch"] == str(epoch)
    assert copy.data.metrics["epochs_run"] == epoch
    assert histories(client, copy.info.run_id) == expected


def test_a_run_that_diverged_reproduces_its_divergence(workdir: Path) -> None:
    proc = run_cli(DIVERGES, workdir)
    assert proc.returncode == 1, proc.stderr
    (original,) = all_runs(workdir)
    run_id, reason = original.info.run_id, "diverged at epoch 2 (loss=inf)"
    assert (original.info.status, original.data.tags["reason"]) == ("FAILED", reason)
    # What it logged before training: enough to rebuild it, and its gradient check; nothing
    # training would have made.
    assert {"config.yaml", "provenance/requirements.txt", "gradcheck.csv"} <= artifact_paths(
        store_uri(workdir), run_id
    )
    assert not any(p.startswith("checkpoint") for p in artifact_paths(store_uri(workdir), run_id))

    proc = reproduce_cli([run_id], workdir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"(failed, {reason}), " in proc.stdout
    assert (
        # Its one scored epoch's 5 metrics and the gradient check's 2.
        "Identical: all 7 values of 7 metrics, bit for bit (timings not compared); "
        f"both ended FAILED, {reason}.\n"
    ) in proc.stdout
    copy = reproduction_of(workdir, run_id)
    assert (copy.info.status, copy.data.tags["reason"]) == ("FAILED", reason)

    # As if the code had changed since: the original diverged one epoch later.
    MlflowClient(store_uri(workdir)).set_tag(run_id, "reason", "diverged at epoch 3 (loss=inf)")
    proc = reproduce_cli([run_id], workdir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.endswith(
        "Different: the original ended FAILED, diverged at epoch 3 (loss=inf); "
        f"the reproduction FAILED, {reason}.\n"
    )


def killed_after_epoch_2(tmp_path: Path) -> str:
    """A 4-epoch run in ``tmp_path``'s store, cut short by Ctrl-C as its third epoch starts."""

    def ctrl_c(metrics: EpochMetrics) -> None:
        if metrics.epoch == 2:  # as the third epoch starts
            raise KeyboardInterrupt

    settings = {"train": {"epochs": 4, "patience": None}, "gradcheck": {"enabled": False}}
    with pytest.raises(KeyboardInterrupt):
        run_here(tmp_path, settings, threads=1, epoch_callbacks=[ctrl_c])
    (original,) = all_runs(tmp_path)
    assert original.info.status == "KILLED"
    return str(original.info.run_id)


def test_a_killed_run_reproduces_up_to_the_last_epoch_it_logged(tmp_path: Path) -> None:
    run_id = killed_after_epoch_2(tmp_path)
    uri = store_uri(tmp_path)

    said: list[str] = []
    status = reproduce(run_id, uri, out_root=tmp_path / "outputs", say=said.append)
    assert status == 0, said
    text = "\n".join(said)
    assert "The original was killed after epoch 2: the reproduction stops there" in text
    assert text.endswith(
        "Identical: all 10 values of 5 metrics, bit for bit (timings not compared)."
    )
    copy = reproduction_of(tmp_path, run_id)
    assert copy.data.metrics["epochs_run"] == 2
    assert copy.data.tags["reason"] == f"stopped after epoch 2, where run {run_id} was killed"
    client = MlflowClient(uri)
    expected = histories(client, run_id)
    assert {
        k: v for k, v in histories(client, copy.info.run_id).items() if k in expected
    } == expected


def test_a_run_that_never_ended_reproduces_up_to_the_last_epoch_it_logged(tmp_path: Path) -> None:
    run_id = killed_after_epoch_2(tmp_path)
    uri = store_uri(tmp_path)
    # As kill -9 or the OOM killer leaves a run: RUNNING, with no end of its own recorded.
    client = MlflowClient(uri)
    client.update_run(run_id, status="RUNNING")
    client.delete_tag(run_id, "status")
    client.delete_tag(run_id, "reason")

    said: list[str] = []
    status = reproduce(run_id, uri, out_root=tmp_path / "outputs", say=said.append)
    assert status == 0, said
    text = "\n".join(said)
    assert (
        "The original never ended (RUNNING): it may still be training, or its process was "
        "killed (kill -9, out of memory); it logged up to epoch 2: the reproduction stops there, "
        "and what the original logged is compared.\n"
    ) in text
    assert text.endswith(
        "Identical: all 10 values of 5 metrics, bit for bit (timings not compared)."
    )
    copy = reproduction_of(tmp_path, run_id)
    assert copy.data.metrics["epochs_run"] == 2
    assert copy.data.tags["reason"] == f"stopped after epoch 2, the last run {run_id} logged"


@pytest.mark.slow
def test_a_data_file_changed_by_one_byte_is_refused_naming_it(workdir: Path) -> None:
    data = workdir / "data"
    write_mnist_like(data)
    proc = run_cli([*FAST, "dataset=mnist", f"dataset.data_dir={data}"], workdir)
    assert proc.returncode == 0, proc.stderr
    (original,) = all_runs(workdir)
    recorded = json.loads(original.data.tags["data_sha256"])
    assert recorded == {str(p): sha256(p) for p in sorted(data.iterdir())}

    images = data / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[-1] ^= 1  # one pixel of the last image, still a valid file
    images.write_bytes(bytes(raw))
    proc = reproduce_cli([original.info.run_id], workdir)
    assert proc.returncode == 2
    assert f"{images}: sha256 {recorded[str(images)][:16]}... when recorded" in proc.stderr
    assert "--allow-data-change" in proc.stderr
    assert "t10k" not in proc.stderr  # the unchanged files are not named
    assert len(all_runs(workdir)) == 1  # nothing ran

    proc = reproduce_cli([original.info.run_id, "--allow-data-change"], workdir)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Data: changed (--allow-data-change)" in proc.stdout
    (copy,) = [r for r in all_runs(workdir) if r.info.run_id != original.info.run_id]
    assert json.loads(copy.data.tags["data_sha256"]) == recorded | {str(images): sha256(images)}


def test_a_relative_data_dir_is_checked_where_the_reproduction_reads_it(workdir: Path) -> None:
    first, elsewhere = workdir / "first", workdir / "elsewhere"
    write_mnist_like(first / "data")
    write_mnist_like(elsewhere / "data", seed=1)  # what data=data names from there
    proc = run_cli(["-m", "seed=0", *FAST, "dataset=mnist", "dataset.data_dir=data"], first)
    assert proc.returncode == 0, proc.stderr
    (original,) = child_runs(all_runs(first))
    assert original.data.tags["data_dir_resolved"] == str(first / "data")
    store = ["--tracking-uri", str(first / "mlruns")]
    images = elsewhere / "data" / "train-images-idx3-ubyte"
    recorded = json.loads(original.data.tags["data_sha256"])[str(first / "data" / images.name)]

    proc = reproduce_cli([original.info.run_id, *store], elsewhere)
    assert proc.returncode == 2
    assert f"{images}: sha256 {recorded[:16]}... when recorded" in proc.stderr
    # Where the run read them, and how to read those.
    assert (
        f"\nThe run read them in {first / 'data'}, which dataset.data_dir=data names from where "
        "it was started: run there.\nRefusing to reproduce it on other data;"
    ) in proc.stderr
    assert len(all_runs(first)) == 2  # nothing ran
    assert not (elsewhere / "outputs").exists()  # nor was its directory made

    shutil.rmtree(elsewhere / "data")
    shutil.copytree(first / "data", elsewhere / "data")
    # A run that did not record the directory it read: its files are not where it reads.
    client = MlflowClient(store_uri(first))
    client.delete_tag(original.info.run_id, "data_dir_resolved")
    proc = reproduce_cli([original.info.run_id, *store], elsewhere)
    assert proc.returncode == 2
    assert (
        f"{first / 'data' / images.name}: read by the run, not in {elsewhere / 'data'}, which "
        "dataset.data_dir=data names from here"
    ) in proc.stderr
    client.set_tag(original.info.run_id, "data_dir_resolved", str(first / "data"))
    proc = reproduce_cli([original.info.run_id, *store], elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        f"Data: 4 files in {elsewhere / 'data'}, SHA-256 the same as the run's in "
        f"{first / 'data'}.\n"
    ) in proc.stdout

    # The report, from a directory where data=data names nothing, reads what the run read.
    sweep_id = original.data.tags["sweep_id"]
    (workdir / "away").mkdir()
    report = subprocess.run(
        [sys.executable, "-m", "sweeper.report", "--sweep", sweep_id, *store],
        cwd=workdir / "away", env=cli_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    (text,) = [p.read_text() for p in (workdir / "away" / "reports").glob("*/report.md")]
    assert "No confusion matrix" not in text
    assert "![confusion matrix of the best run on the test set]" in text


def test_the_embedded_digits_are_checked_in_this_installation_wherever_the_runs_was(
    tmp_path: Path,
) -> None:
    outcome = run_here(tmp_path, {"train": {"epochs": 1}, "gradcheck": {"enabled": False}})
    run_id, uri = str(outcome.run_id), store_uri(tmp_path)
    digits = Path(datasets.__file__).with_name("digits.csv.gz")
    # As a sweeper installed elsewhere records it (a moved checkout, a teammate's), where
    # another file is now.
    old = tmp_path / "old" / "src" / "sweeper" / "data" / digits.name
    old.parent.mkdir(parents=True)
    old.write_bytes(b"another file")
    client = MlflowClient(uri)
    client.set_tag(run_id, "data_sha256", json.dumps({str(old): "0" * 64}))
    said: list[str] = []
    with pytest.raises(ReproduceError) as info:
        reproduce(run_id, uri, out_root=tmp_path / "outputs", say=said.append)
    assert str(info.value) == (
        f"data changed since run {run_id}:\n  {digits}: sha256 {'0' * 16}... when recorded, "
        f"{sha256(digits)[:16]}... now\nThe run read them in {old.parent}.\n"
        "Refusing to reproduce it on other data; --allow-data-change runs it anyway."
    )
    # Refused before anything is made.
    assert not (tmp_path / "outputs").exists()

    client.set_tag(run_id, "data_sha256", json.dumps({str(old): sha256(digits)}))
    status = reproduce(run_id, uri, out_root=tmp_path / "outputs", say=said.append)
    assert status == 0, said
    assert (
        f"Data: 1 file in {digits.parent}, SHA-256 the same as the run's in {old.parent}."
    ) in said


def test_a_data_directory_of_links_is_checked_by_the_files_it_names_now(workdir: Path) -> None:
    # As a shared copy is often used: data/ holds links to it.
    write_mnist_like(workdir / "shared")
    write_mnist_like(workdir / "other", seed=1)
    links = workdir / "data"
    links.mkdir()
    for file in (workdir / "shared").iterdir():
        (links / file.name).symlink_to(file)
    proc = run_cli([*FAST, "dataset=mnist", f"dataset.data_dir={links}"], workdir)
    assert proc.returncode == 0, proc.stderr
    (original,) = all_runs(workdir)
    assert sorted(json.loads(original.data.tags["data_sha256"])) == sorted(
        str(link) for link in links.iterdir()
    )
    images = links / "train-images-idx3-ubyte"
    images.unlink()
    images.symlink_to(workdir / "other" / images.name)
    proc = reproduce_cli([original.info.run_id], workdir)
    assert proc.returncode == 2
    assert f"{images}: sha256 " in proc.stderr
    assert len(all_runs(workdir)) == 1  # nothing ran
    assert not list(workdir.glob("outputs/reproduce-*"))  # nor was its directory made


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def dirty_checkout(tmp_path: Path) -> Path:
    """A git repository with a commit, a changed file and an untracked one."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "model.py").write_text("lr = 0.05\n")
    (repo / ".gitignore").write_text("ignored/\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "model.py").write_text("lr = 0.01\n")
    (repo / "new.py").write_text("extra = 1\n")
    (repo / "ignored").mkdir()
    (repo / "ignored" / "out.txt").write_text("not code\n")
    return repo


def test_a_dirty_tree_is_recorded_with_its_diff(
    dirty_checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objects_before = sorted((dirty_checkout / ".git" / "objects").rglob("*"))
    monkeypatch.setattr(provenance, "SOURCE_DIR", dirty_checkout)
    provenance._capture.cache_clear()
    try:
        outcome = run_here(tmp_path, {"train": {"epochs": 1}})
    finally:
        provenance._capture.cache_clear()
    assert outcome.status == "FINISHED", outcome.reason

    uri = store_uri(tmp_path)
    client = MlflowClient(uri)
    assert outcome.run_id is not None
    tags = client.get_run(outcome.run_id).data.tags
    assert tags["git_commit"] == git(dirty_checkout, "rev-parse", "HEAD").strip()
    assert tags["git_dirty"] == "true"
    diff_file = Path(
        mlflow.artifacts.download_artifacts(
            run_id=outcome.run_id, artifact_path="provenance/git.diff", tracking_uri=uri
        )
    )
    diff = diff_file.read_text()
    assert tags["git_diff_sha256"] == hashlib.sha256(diff.encode()).hexdigest()[:16]
    assert "-lr = 0.05\n+lr = 0.01" in diff
    assert "+extra = 1" in diff and "not code" not in diff
    # The checkout's own index is left as it was (nothing staged), its objects too.
    assert git(dirty_checkout, "status", "--porcelain") == " M model.py\n?? new.py\n"
    assert objects_before == sorted((dirty_checkout / ".git" / "objects").rglob("*"))

    # The diff rebuilds the tree on the commit.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(dirty_checkout), str(clone))
    git(clone, "apply", str(diff_file))
    assert (clone / "model.py").read_text() == "lr = 0.01\n"
    assert (clone / "new.py").read_text() == "extra = 1\n"


def test_a_clean_tree_and_no_checkout(dirty_checkout: Path, tmp_path: Path) -> None:
    git(dirty_checkout, "add", "-A")
    git(dirty_checkout, "commit", "-q", "-m", "second")
    clean = provenance.git_state(dirty_checkout)
    assert (clean.dirty, clean.diff) == (False, "")
    assert clean.commit == git(dirty_checkout, "rev-parse", "HEAD").strip()
    (tmp_path / "plain").mkdir()
    assert provenance.git_state(tmp_path / "plain") == provenance.GitState("unknown", False, "")


def test_the_environment_is_captured_once_per_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = provenance._capture.__wrapped__

    def counting() -> provenance.Environment:
        calls.append(1)
        return real()

    monkeypatch.setattr(provenance, "_capture", counting)
    first, first_files = provenance.capture_environment(tmp_path / "run0", tmp_path / "cache")
    second, second_files = provenance.capture_environment(tmp_path / "run1", tmp_path / "cache")
    assert len(calls) == 1
    assert first == second and first_files == second_files
    assert first_files[0].name == "requirements.txt"
    assert f"numpy=={first.versions['numpy']}\n" in first_files[0].read_text()


def test_the_packages_are_the_environments_not_a_private_copy_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def distribution(directory: Path, name: str) -> Path:
        info = directory / f"{name}-9.9.9.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 9.9.9\n")
        return directory

    # As a Ray worker's sys.path holds .../site-packages/ray/thirdparty_files: Ray's own
    # colorama and psutil, installed nowhere else.
    site_packages = tmp_path / "site-packages"
    sites = [*provenance.site_directories(), str(site_packages)]
    monkeypatch.setattr(provenance, "site_directories", lambda: sites)
    monkeypatch.syspath_prepend(str(distribution(site_packages / "ray" / "private", "vendored")))
    # A PYTHONPATH (or pip install --target) install is the environment's, as pip freeze says.
    monkeypatch.syspath_prepend(str(distribution(tmp_path / "target", "targeted")))
    listed = provenance.installed_packages()
    assert "vendored" not in listed
    assert "targeted==9.9.9\n" in listed
    monkeypatch.undo()
    # Otherwise the same list as a fresh interpreter of this environment; the editable install
    # of sweeper among them.
    listed = provenance.installed_packages()
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sweeper import provenance as p; print(p.installed_packages())",
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=True,
    ).stdout
    assert listed == fresh.removesuffix("\n")
    assert f"sweeper=={provenance._version('sweeper')}\n" in listed


def test_each_data_file_is_hashed_once_per_sweep_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist_like(tmp_path / "data")
    hashed: list[Path] = []
    real = datasets.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(cache, "sha256_file", counting)
    direct = load_dataset("mnist", tmp_path / "data")
    for seed in (0, 1, 2):  # three cache entries
        entry = load_dataset_cached(tmp_path / "cache", "mnist", tmp_path / "data", seed=seed)
        assert entry.sources == direct.sources
    assert sorted(hashed) == sorted(Path(name) for name in direct.sources)
    assert len(direct.sources) == 4


def test_the_comparison_names_the_first_epoch_and_metric_that_differ() -> None:
    original = {
        "train_loss": {1: 0.9, 2: 0.7, 3: 0.6},
        "val_loss": {1: 0.8, 2: 0.75, 3: math.nan},
        "test_acc": {0: 0.875},
        "train_seconds": {0: 3.0},
    }
    same = {k: dict(v) for k, v in original.items()} | {"train_seconds": {0: 9.0}}
    assert compare_histories(original, same) == []
    assert comparison_report(original, same, []).startswith("Identical: all 7 values of 3 metrics")

    changed = same | {"val_loss": {1: 0.8, 2: 0.75 + 2**-40, 3: 0.5}, "test_acc": {0: 0.9}}
    found = compare_histories(original, changed)
    assert found == [
        Difference(2, "val_loss", 0.75, 0.75 + 2**-40),
        Difference(3, "val_loss", math.nan, 0.5),
        Difference(0, "test_acc", 0.875, 0.9),
    ]
    text = comparison_report(original, changed, found)
    assert "3 of 7 values differ; the first:\n  epoch 2 val_loss: 0.75 (original) vs" in text
    assert "differs by +9.09e-13" in text
    assert "final test_acc: 0.875 (original) vs 0.9 (reproduction), differs by +0.025" in text

    stopped_early = same | {"train_loss": {1: 0.9, 2: 0.7}}
    (missing,) = compare_histories(original, stopped_early)
    assert missing.describe() == "epoch 3 train_loss: not logged by the reproduction"


def test_the_count_of_differences_is_out_of_every_value_either_run_logged() -> None:
    original = {"val_loss": {1: 0.8, 2: 0.7}, "test_acc": {0: 0.9}}
    longer = {"val_loss": {1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5}, "test_acc": {0: 0.8}}
    longer |= {"epochs_run": {0: 4.0}}
    found = compare_histories(original, longer)
    assert len(found) == 4  # epochs 3 and 4, test_acc, epochs_run
    text = comparison_report(original, longer, found)
    assert text.startswith("Different: 4 of 6 values differ; the first:\n  epoch 3 val_loss:")
    shorter = comparison_report(longer, original, compare_histories(longer, original))
    assert shorter.startswith("Different: 4 of 6 values differ; the first:")


def test_how_a_run_ended_is_compared_too() -> None:
    history = {"val_loss": {1: 0.8}}
    diverged = Ending("FAILED", "diverged at epoch 2 (loss=inf)")
    assert comparison_report(history, history, [], (diverged, diverged)) == (
        "Identical: all 1 values of 1 metrics, bit for bit (timings not compared); "
        "both ended FAILED, diverged at epoch 2 (loss=inf)."
    )
    finished = Ending("FINISHED", "max_epochs")
    assert comparison_report(history, history, [], (diverged, finished)) == (
        "Different: the original ended FAILED, diverged at epoch 2 (loss=inf); "
        "the reproduction FINISHED, max_epochs."
    )
    assert comparison_report({}, {}, [], (diverged, diverged)) == (
        "Identical: neither run logged a metric; both ended FAILED, diverged at epoch 2 (loss=inf)."
    )
    # A run that predates the status tag is compared on its metrics alone.
    assert comparison_report(history, history, [], (None, finished)).startswith("Identical")


def test_environment_and_package_differences() -> None:
    recorded = {"git_commit": "a" * 40, "git_dirty": "false", "env.numpy": "2.1.0"}
    now = {"git_commit": "b" * 40, "git_dirty": "true", "git_diff_sha256": "f00d"}
    now |= {"env.numpy": "2.1.0"}
    assert environment_differences(recorded, now)[:3] == [
        f"git_commit: {'a' * 12} -> {'b' * 12}",
        "git_dirty: false -> true",
        "git_diff_sha256: (not recorded) -> f00d",
    ]
    clean = {"git_commit": "a" * 40, "git_dirty": "false"}
    assert environment_differences(clean, clean | {"env.numpy": "2.1.0"}) == [
        "env.numpy: (not recorded) -> 2.1.0"
    ]
    assert package_differences("a==1\nb==2\nc==3\n", "a==1\nb==2.1\nd==4\n") == [
        "b 2 -> 2.1",
        "c 3 -> (absent)",
        "d (absent) -> 4",
    ]


def test_the_report_flags_a_sweep_whose_runs_differ(workdir: Path) -> None:
    proc = run_cli(["-m", *FAST, "seed=0,1", "hydra.launcher.n_jobs=2"], workdir)
    assert proc.returncode == 0, proc.stderr
    runs = [r for r in all_runs(workdir) if r.data.tags.get("kind") != "sweep"]
    client = MlflowClient(store_uri(workdir))
    sweep = find_sweep(client, "sweeper", runs[0].data.tags["sweep_id"])
    text, shared = provenance_summary([r.tags for r in sweep_runs(client, sweep)])
    commit = runs[0].data.tags["git_commit"][:12]
    assert shared, text
    assert text.startswith(f"Provenance: every run shares one commit ({commit}")
    assert "one set of data hashes (1 file(s): digits.csv.gz" in text

    client.set_tag(runs[0].info.run_id, "env.numpy", "1.26.0")
    report = build_report(store_uri(workdir), out_dir=workdir / "reports")
    assert "**Provenance differs between the runs of this sweep**" in report.summary
    assert "Runs differ in environment: `Python" in report.summary
    assert "numpy 1.26.0" in report.summary
    assert "**Provenance differs" in (report.directory / "report.md").read_text()


def test_provenance_summary_counts_each_variant() -> None:
    base = {"git_commit": "c" * 40, "git_dirty": "false", "env.numpy": "2", "data_sha256": "{}"}
    dirty = base | {"git_dirty": "true", "git_diff_sha256": "d1ff"}
    text, shared = provenance_summary([base, base, dirty])
    assert not shared
    assert (
        f"Runs differ in commit: `{'c' * 12}` (2 runs); `{'c' * 12} + changes d1ff` (1 run)."
        in text
    )
    assert "They share one environment" in text and "one set of data hashes (0 file(s): )" in text
    text, shared = provenance_summary([base, base])
    assert shared and text.startswith(f"Provenance: every run shares one commit ({'c' * 12})")
    older = {"git_commit": "c" * 40}
    text, shared = provenance_summary([older])
    assert "one environment (not recorded)" in text
    # One BLAS thread per run, as a sweep with one worker per core gives each.
    text, shared = provenance_summary([base | {"env.blas_threads": "1"}])
    assert ", 1 BLAS thread, packages ?" in text


def test_no_such_run_is_one_line(workdir: Path) -> None:
    prepare_store(store_uri(workdir), "sweeper")
    proc = reproduce_cli(["0123456789abcdef"], workdir)
    assert proc.returncode == 2
    assert proc.stderr == f"Error: no run '0123456789abcdef' in the store {store_uri(workdir)}\n"


def test_a_store_that_is_no_database_is_one_line(workdir: Path) -> None:
    (workdir / "mlruns").mkdir()
    (workdir / "mlruns" / "mlflow.db").write_text("garbage")
    proc = reproduce_cli(["0123456789abcdef"], workdir)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"Error: the store {workdir / 'mlruns' / 'mlflow.db'} is not a usable")
    # The command's own option, not the app's tracking.uri.
    assert line.endswith("or set --tracking-uri or MLFLOW_TRACKING_URI to another store")


def test_a_tracking_server_that_does_not_answer_names_the_commands_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert reproduce_main(["0123456789abcdef", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("Error: tracking server http://127.0.0.1:9 not answering (")
    assert line.endswith("is the URI right? (--tracking-uri or MLFLOW_TRACKING_URI)")


def test_a_store_mlflow_will_not_open_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"file://{tmp_path}"  # MLflow 3's file store, which it no longer opens
    assert reproduce_main(["0123456789abcdef", "--tracking-uri", uri]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"Error: MLflow cannot open the store {uri} (")
    assert line.endswith(
        "give a URI such as sqlite:///path/mlflow.db, or a directory holding mlflow.db"
    )


def test_a_file_that_is_not_utf8_in_the_tree_is_kept_in_the_diff(dirty_checkout: Path) -> None:
    (dirty_checkout / "notes.txt").write_bytes("café, in Latin-1\n".encode("latin-1"))
    state = provenance.git_state(dirty_checkout)
    assert state.dirty
    assert "+caf\ufffd, in Latin-1" in state.diff


def test_a_stored_config_that_no_longer_fits_the_schema_is_one_line(workdir: Path) -> None:
    proc = run_cli([*FAST], workdir)
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(workdir)
    # What a run recorded before a key was removed from the schema.
    config = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="config.yaml", tracking_uri=store_uri(workdir)
        )
    )
    stored = Path(run.info.artifact_uri.removeprefix("file://")) / "config.yaml"
    stored.write_text(config.read_text().replace("train:\n", "train:\n  warmup_epochs: 0\n"))
    proc = reproduce_cli([run.info.run_id], workdir)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(
        f"Error: the stored config of run {run.info.run_id} does not fit today's schema: "
    )
    assert "warmup_epochs" in line


def checkout_copy(tmp_path: Path) -> Path:
    """A git repository holding a copy of this checkout's code (its src/, conf/ and
    .gitignore) and a docs/ directory, committed: the command run from it records its state."""
    repo = tmp_path / "checkout"
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    (repo / "docs").mkdir()
    (repo / "docs" / "index.md").write_text("docs\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def diffed_files(uri: str, run: Run) -> list[str]:
    diff = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="provenance/git.diff", tracking_uri=uri
    )
    return re.findall(r"^diff --git a/(\S+) ", Path(diff).read_text(), flags=re.MULTILINE)


def test_the_stores_and_outputs_of_the_command_are_no_change_to_the_code(
    tmp_path: Path,
) -> None:
    repo = checkout_copy(tmp_path)
    code = {"PYTHONPATH": str(repo / "src")}
    commit = git(repo, "rev-parse", "HEAD").strip()

    # Started from a subdirectory: ./mlruns and ./outputs are made there.
    docs = repo / "docs"
    proc = run_cli([*QUICK, "train.epochs=1"], docs, env=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = all_runs(docs)
    assert (run.data.tags["git_commit"], run.data.tags["git_dirty"]) == (commit, "false")
    proc = subprocess.run(
        [sys.executable, "-m", "sweeper.reproduce", run.info.run_id],
        cwd=docs,
        env=cli_env(code),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Environment: the same as the run's (commit {commit[:12]}, clean;" in proc.stdout

    # A store and sweep directories of its own naming, in the checkout: the second sweep
    # sees the first's too, and the one change to the code alone.
    named = [
        "-m",
        *QUICK,
        "train.epochs=1",
        "seed=1",
        "tracking.uri=stores/main",
        "hydra.sweep.dir=sweeps/${now:%Y-%m-%d_%H-%M-%S-%f}",
    ]
    uri = f"sqlite:///{repo / 'stores' / 'main' / 'mlflow.db'}"
    proc = run_cli(named, repo, env=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (first,) = child_runs(MlflowClient(uri).search_runs(["1"]))
    assert first.data.tags["git_dirty"] == "false"
    (repo / "src" / "sweeper" / "extra.py").write_text("EXTRA = 1\n")
    proc = run_cli(named, repo, env=code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = child_runs(MlflowClient(uri).search_runs(["1"]))
    (second,) = [r for r in runs if r.info.run_id != first.info.run_id]
    assert second.data.tags["git_dirty"] == "true"
    assert diffed_files(uri, second) == ["src/sweeper/extra.py"]


def test_a_working_directory_that_cannot_be_written_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = run_here(tmp_path, {"train": {"epochs": 1}})
    assert outcome.run_id is not None
    # outputs/ cannot be made where a file is (root may write anywhere else).
    here = tmp_path / "here"
    here.mkdir()
    (here / "outputs").write_text("a file\n")
    monkeypatch.chdir(here)
    store = str(tmp_path / "mlruns")
    assert reproduce_main([outcome.run_id, "--tracking-uri", store]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"Error: the reproduction's directory {here / 'outputs'}/reproduce-")
    assert line.endswith(
        "cannot be written (Not a directory): run from a writable directory (its files go to "
        "outputs/ there)"
    )
    assert len(all_runs(tmp_path)) == 1  # nothing ran
