"""Real MNIST, from ../shared/datasets/mnist beside the repository: bounded standardisation,
the out-of-range warning a run prints, and the MNIST study's preset reproducing its number.

Skipped where the directory is absent (a fresh clone); CI provides it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import all_runs, run_cli
from helpers import SHARED_MNIST
from sweeper.data import Dataset, load_dataset
from sweeper.data.preprocessing import STD_FLOOR

pytestmark = pytest.mark.skipif(
    not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST is not in {SHARED_MNIST} (the four official .gz files)",
)


@pytest.fixture(scope="module")
def mnist_feature() -> Dataset:
    return load_dataset("mnist", SHARED_MNIST, normalization="feature", seed=0)


def test_per_feature_standardisation_of_mnist_stays_bounded(mnist_feature: Dataset) -> None:
    # Unfloored, MNIST's test set reached z = 680 here (49,515 with another split, in issue
    # 14): a border pixel's std is as small as 0.018 over the 48,000 training images.
    raw = load_dataset("mnist", SHARED_MNIST, normalization="none", seed=0).x_train
    bound = 255 / (STD_FLOOR * float(raw.std(dtype=np.float64)))
    assert 30 < bound < 35
    for split in (mnist_feature.x_train, mnist_feature.x_val, mnist_feature.x_test):
        assert np.abs(split).max() <= bound * (1 + 1e-6)


def test_mnist_feature_mode_warns_of_test_pixels_never_inked_in_training(
    mnist_feature: Dataset,
) -> None:
    warnings = mnist_feature.range_warnings()
    assert len(warnings) == 2
    validation, test = warnings
    assert "of 784 features of the validation split lie more than 10 beyond" in validation
    assert "of 784 features of the test split lie more than 10 beyond" in test
    assert "check dataset.normalization" in test
    count = int(test.split(": ")[1].split(" of ")[0])
    assert 1 <= count <= 20


def test_mnist_default_per_image_standardisation_is_bounded_and_warns_of_nothing() -> None:
    data = load_dataset("mnist", SHARED_MNIST, normalization="sample", seed=0)
    assert data.range_warnings() == []
    assert np.abs(data.x_test).max() < math.sqrt(783)


@pytest.mark.slow
def test_a_run_prints_the_out_of_range_warning(tmp_path: Path) -> None:
    # A small training subset leaves more border pixels never inked than the test set does.
    proc = run_cli(
        [
            "dataset=mnist",
            f"dataset.data_dir={SHARED_MNIST}",
            "dataset.normalization=feature",
            "dataset.max_train_samples=2000",
            "topology=softmax_regression",
            "train.epochs=1",
            "gradcheck.enabled=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "features of the test split lie more than 10 beyond their range" in output


@pytest.mark.slow
def test_the_mnist_study_preset_reproduces_its_tanh_network(tmp_path: Path) -> None:
    # The study: 784-128-10 tanh, momentum 0.9 at lr 0.1, batch 128, patience 3: 97.45%.
    proc = run_cli(
        ["+experiment=mnist_study", f"dataset.data_dir={SHARED_MNIST}"],
        tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    assert run.data.params["dataset.normalization"] == "sample"
    assert run.data.metrics["test_acc"] >= 0.9695
