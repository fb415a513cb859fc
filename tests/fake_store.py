"""A store holding a large fake sweep, written through MLflow's client without any training.

Its runs carry the records a real sweep leaves (params, tags, per-epoch and final metrics),
but no artifacts. ``bench/report_time.py`` times the report on one.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from sweeper.store_setup import prepare_store

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu")
LEARNING_RATES = ("0.01", "0.02", "0.05", "0.1", "0.2")


def fill_fake_sweep(
    uri: str, sweep_id: str, seeds: int = 10, epochs: int = 10, values_seed: int = 0
) -> int:
    """Write a parent run and ``4 x 5 x seeds`` children (activation x lr x seed); the last
    seed of the largest learning rate fails. ``values_seed`` draws the metrics (the
    config_hash of a run is the same for every draw). Return the number of children."""
    client = MlflowClient(uri)
    experiment_id = prepare_store(uri, "sweeper")
    parent = client.create_run(
        experiment_id,
        run_name=f"sweep {sweep_id}",
        tags={
            "kind": "sweep",
            "sweep_id": sweep_id,
            "overrides": f"activation={','.join(ACTIVATIONS)} optimizer.lr="
            f"{','.join(LEARNING_RATES)} seed=range({seeds})",
        },
    )
    rng = np.random.default_rng(values_seed)
    grid = list(itertools.product(ACTIVATIONS, LEARNING_RATES, range(seeds)))
    for activation, lr, seed in grid:
        params = {
            "activation.name": activation,
            "optimizer.lr": lr,
            "seed": str(seed),
            "dataset.name": "digits",
            "train.epochs": str(epochs),
        }
        failed = lr == LEARNING_RATES[-1] and seed == seeds - 1
        run = client.create_run(
            experiment_id,
            run_name=f"{activation} {lr} {seed}",
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "sweep_id": sweep_id,
                "config_hash": f"{activation}-{lr}-{seed}",
                "status": "FAILED" if failed else "FINISHED",
                "reason": "diverged at epoch 1 (loss=nan)" if failed else "max_epochs",
            },
        )
        now = int(time.time() * 1000)
        # The learning rate matters more than the activation, as fANOVA should find.
        effect = 0.3 * LEARNING_RATES.index(lr) / len(LEARNING_RATES)
        effect += 0.02 * ACTIVATIONS.index(activation)
        val_loss = 2.0 / np.arange(1, epochs + 1) + effect + rng.uniform(0, 0.05)
        val_acc = 1 - val_loss / 3
        metrics = [
            Metric(key, float(v), now, epoch)
            for epoch in range(1, epochs + 1)
            if not failed
            for key, v in (
                ("train_loss", val_loss[epoch - 1] * 0.9),
                ("train_acc", val_acc[epoch - 1] + 0.01),
                ("val_loss", val_loss[epoch - 1]),
                ("val_acc", val_acc[epoch - 1]),
            )
        ]
        if not failed:
            best = epochs - 1
            finals = {
                "test_loss": val_loss[best],
                "test_acc": val_acc[best],
                "best_epoch": epochs,
                "epochs_run": epochs,
                "train_seconds": 1.0,
                "best_train_loss": val_loss[best] * 0.9,
                "best_train_acc": val_acc[best] + 0.01,
                "best_val_loss": val_loss[best],
                "best_val_acc": val_acc[best],
            }
            metrics += [Metric(k, float(v), now, 0) for k, v in finals.items()]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("job", str(seed))],
        )
        status = RunStatus.FAILED if failed else RunStatus.FINISHED
        client.set_terminated(run.info.run_id, RunStatus.to_string(status))
    client.set_terminated(parent.info.run_id, RunStatus.to_string(RunStatus.FAILED))
    return len(grid)
