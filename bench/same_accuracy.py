"""Same seeds, same results: this core against an earlier commit's, trained side by side.

Each configuration is composed from ``conf/`` as ``python -m sweeper`` would (so the network,
initialisation, optimiser and early stopping are the study's), then trained by both cores
in this process, at one BLAS thread, on the same prepared data. The table gives each one's
test accuracy and loss of the best model, its best epoch, and whether the two trained
models' parameters are bitwise equal.

    python bench/same_accuracy.py
"""

from __future__ import annotations

import argparse
from types import ModuleType

import numpy as np
from hydra import compose, initialize_config_dir
from machine import describe_machine, load_average, markdown_table
from previous_core import DEFAULT_REF, load_core
from threadpoolctl import threadpool_limits

import sweeper.core
from sweeper.app import CONF_DIR
from sweeper.config import ExperimentConfig, to_experiment_config
from sweeper.data import Dataset, load_dataset

CASES = [
    ("digits default", []),
    ("digits relu adam dropout", ["activation=relu", "optimizer=adam", "regularizer=dropout"]),
    ("digits sigmoid l2 [128,128]", ["activation=sigmoid", "regularizer=l2", "topology=h128x128"]),
    ("digits nesterov cosine", ["optimizer=nesterov", "optimizer.schedule=cosine"]),
    (
        "fashion_mnist h128, 3 epochs",
        [
            "dataset=fashion_mnist",
            "topology=h128",
            "optimizer.lr=0.01",
            "train.batch_size=128",
            "train.epochs=3",
            "train.patience=null",
        ],
    ),  # fmt: skip
]


def train_with(
    core: ModuleType, config: ExperimentConfig, data: Dataset
) -> tuple[float, float, int, np.ndarray]:
    init = config.activation.init.value
    model = core.MLP(
        [data.x_train.shape[1], *config.topology.hidden, data.n_classes],
        activation=config.activation.name.value, init=None if init == "auto" else init,
        seed=config.seed, dtype=np.dtype(config.train.dtype.value),
        dropout=config.regularizer.dropout,
    )  # fmt: skip
    opt = config.optimizer
    settings = {"momentum": opt.momentum, "form": opt.form.value, "beta1": opt.beta1,
                "beta2": opt.beta2}  # fmt: skip
    # A core whose optimisers own their schedule (OPTIMIZERS) takes it when built; an earlier
    # one took it in train().
    owns_schedule = hasattr(core, "OPTIMIZERS")
    if owns_schedule:
        optimizer = core.make_optimizer(opt.name.value, opt.lr, schedule=opt.schedule.value,
                                        **settings)  # fmt: skip
        schedule = {}
    else:
        optimizer = core.make_optimizer(opt.name.value, opt.lr, **settings)
        schedule = {"lr_schedule": opt.schedule.value}
    result = core.train(
        model, optimizer, data.x_train, data.y_train, data.x_val, data.y_val,
        epochs=config.train.epochs, batch_size=config.train.batch_size,
        patience=config.train.patience, l1=config.regularizer.l1, l2=config.regularizer.l2,
        seed=config.seed, **schedule,
    )  # fmt: skip
    loss, acc = result.best_model.evaluate(data.x_test, data.y_test)
    flat = np.concatenate([p.ravel() for p in result.best_model.parameters()])
    return acc, loss, result.best_epoch, flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--before", default=DEFAULT_REF)
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    before = load_core(args.before)
    print("## Same seeds, same accuracy\n")
    print(describe_machine())
    rows = []
    with threadpool_limits(limits=1):
        for label, overrides in CASES:
            for seed in args.seeds:
                with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
                    cfg = compose("config", overrides=[*overrides, f"seed={seed}"])
                config = to_experiment_config(cfg)
                data_dir = args.fashion_dir if "fashion" in label else config.dataset.data_dir
                data = load_dataset(
                    config.dataset.name.value, data_dir, seed=seed,
                    val_fraction=config.dataset.val_fraction,
                    normalization=config.dataset.normalization.value,
                )  # fmt: skip
                old = train_with(before, config, data)
                new = train_with(sweeper.core, config, data)
                rows.append(
                    [label, str(seed), f"{old[0]:.4f}", f"{new[0]:.4f}", f"{old[1]:.6f}",
                     f"{new[1]:.6f}", f"{old[2]} / {new[2]}",
                     "yes" if np.array_equal(old[3], new[3]) else "no"]
                )  # fmt: skip
                print(f"  {label} seed {seed}: {rows[-1][2:]}", flush=True)
    print(f"\nbefore: sweeper.core at {args.before}; after: this checkout\n")
    header = [
        "configuration", "seed", "test acc before", "test acc after", "test loss before",
        "test loss after", "best epoch", "parameters bitwise equal",
    ]  # fmt: skip
    print(markdown_table(header, rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
