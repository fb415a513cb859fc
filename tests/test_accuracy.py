"""The accuracy the studies expect, end to end through the core and the loaders."""

from __future__ import annotations

import pytest

from helpers import FASHION_MNIST
from sweeper.core.network import MLP
from sweeper.core.optimizers import make_optimizer
from sweeper.core.training import train
from sweeper.data import load_dataset


def test_tanh_64_reaches_95_percent_on_the_embedded_digits() -> None:
    data = load_dataset("digits", seed=0)
    model = MLP([64, 64, 10], activation="tanh", seed=0)
    result = train(
        model,
        make_optimizer("momentum", 0.05, momentum=0.9),
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        epochs=30,
        batch_size=32,
        patience=5,
    )
    _, test_acc = result.best_model.evaluate(data.x_test, data.y_test)
    assert test_acc >= 0.95


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="make data installs Fashion-MNIST")
def test_relu_128_reaches_88_percent_on_fashion_mnist_within_20_epochs() -> None:
    data = load_dataset("fashion_mnist", FASHION_MNIST, normalization="sample", seed=0)
    model = MLP([784, 128, 10], activation="relu", seed=0, dropout=0.2)
    result = train(
        model,
        make_optimizer("momentum", 0.01, momentum=0.9),
        data.x_train,
        data.y_train,
        data.x_val,
        data.y_val,
        epochs=20,
        batch_size=128,
    )
    _, test_acc = result.best_model.evaluate(data.x_test, data.y_test)
    print(
        f"Fashion-MNIST test accuracy {test_acc:.4f} after {result.epochs_run} epochs "
        f"(best epoch {result.best_epoch})"
    )
    assert test_acc >= 0.88
