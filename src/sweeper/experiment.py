"""What one run computes, from a validated config to files on disk; no Hydra, no MLflow.

Data, network, gradient check, training, test evaluation, checkpoint and curves. The caller
(``sweeper.run``) decides where the per-epoch metrics and the files go: MLflow.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sweeper import names
from sweeper.checkpoint import save_checkpoint
from sweeper.config import AUTO_INIT, ExperimentConfig
from sweeper.core.gradcheck import GradCheckRow, check_gradients, rows_to_records
from sweeper.core.losses import one_hot
from sweeper.core.network import MLP
from sweeper.core.optimizers import make_optimizer
from sweeper.core.training import EpochMetrics, TrainResult, dropout_seed, train
from sweeper.data import Dataset, load_dataset
from sweeper.data.cache import DataCache, load_dataset_cached
from sweeper.plots import save_curves

CHECKPOINT_FILE = "best_model.npz"
GRADCHECK_FILE = "gradcheck.csv"

log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    training: TrainResult
    test_loss: float
    test_acc: float
    train_seconds: float
    cpu_seconds: float
    gradcheck: list[GradCheckRow]
    figures: list[Path]
    checkpoint: Path

    def summary_metrics(self) -> dict[str, float]:
        best = self.training.history[self.training.best_epoch - 1]
        return {
            names.TEST_LOSS: self.test_loss,
            names.TEST_ACC: self.test_acc,
            names.BEST_EPOCH: float(self.training.best_epoch),
            names.EPOCHS_RUN: float(self.training.epochs_run),
            names.TRAIN_SECONDS: self.train_seconds,
            names.CPU_SECONDS: self.cpu_seconds,
            names.BEST_TRAIN_LOSS: best.train_loss,
            names.BEST_TRAIN_ACC: best.train_acc,
            names.BEST_VAL_LOSS: best.val_loss,
            names.BEST_VAL_ACC: best.val_acc,
        }


def build_model(config: ExperimentConfig, dataset: Dataset) -> MLP:
    sizes = [dataset.x_train.shape[1], *config.topology.hidden, dataset.n_classes]
    init = config.activation.init.value
    return MLP(
        sizes,
        activation=config.activation.name.value,
        init=None if init == AUTO_INIT else init,
        seed=config.seed,
        dtype=np.dtype(config.train.dtype.value),
        dropout=config.regularizer.dropout,
        input_dropout=config.regularizer.input_dropout,
    )


def run_seeds(config: ExperimentConfig) -> dict[str, str]:
    """The seed of each random stream of the run, as the data and the core derive it."""
    seed = config.seed
    return {
        "seed.split": str(seed),
        "seed.init": str(seed),
        "seed.shuffle": str(seed),
        "seed.dropout": str(dropout_seed(seed)) if config.regularizer.drops else "none",
    }


def gradient_check(config: ExperimentConfig, model: MLP, dataset: Dataset) -> list[GradCheckRow]:
    """The studies' check on the untrained network, a few training samples, in float64."""
    n = config.gradcheck.samples
    x = dataset.x_train[:n].astype(np.float64)
    y = one_hot(dataset.y_train[:n], dataset.n_classes, dtype=np.float64)
    reg = config.regularizer
    return check_gradients(
        model,
        x,
        y,
        eps=config.gradcheck.eps,
        tol=config.gradcheck.tol,
        seed=config.seed,
        l1=reg.l1,
        l2=reg.l2,
        dropout_seed=config.seed if reg.drops else None,
    )


def gradcheck_metrics(rows: list[GradCheckRow]) -> dict[str, float]:
    """The check in two numbers: its largest difference, and whether every row passed."""
    return {
        names.GRADCHECK_MAX_ABS_DIFF: max(r.abs_diff for r in rows),
        names.GRADCHECK_PASSED: float(all(r.passed for r in rows)),
    }


def write_gradcheck_csv(rows: list[GradCheckRow], path: Path) -> Path:
    records = rows_to_records(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(records)
    return path


def train_and_evaluate(
    config: ExperimentConfig,
    out_dir: Path,
    epoch_callbacks: Sequence[Callable[[EpochMetrics], str | None]] = (),
    dataset_cache: DataCache | None = None,
    on_data: Callable[[Mapping[str, str]], None] | None = None,
    on_gradcheck: Callable[[Mapping[str, float], Path], None] | None = None,
    curves: bool = True,
) -> ExperimentResult:
    """Train one network as ``config`` says, writing its files to ``out_dir``.

    With ``dataset_cache``, the prepared data is memory-mapped from that cache, shared with
    every other run that uses it (see ``sweeper.data.cache``). ``on_data`` receives the
    SHA-256 of every data file read, by path, once the data is loaded; ``on_gradcheck``
    receives the gradient check's :func:`gradcheck_metrics` and its CSV once the check is
    done, before training (which may fail or be stopped). ``curves``: draw the loss and
    accuracy figures.

    Raises the core's ``TrainingDiverged`` or the data's ``DatasetError`` unchanged, so the
    caller can record why the run failed; metrics sent to ``epoch_callbacks`` before that
    stay. A callback may stop training by returning a reason (``core.training.train``).
    """
    # This process's CPU time, all its threads, from the data's loading to the test score.
    cpu_start = time.process_time()
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(config.train.dtype.value)
    load = (
        load_dataset
        if dataset_cache is None
        else partial(
            load_dataset_cached,
            dataset_cache.directory,
            max_bytes=dataset_cache.max_bytes,
            read_also=dataset_cache.read_also,
        )
    )
    dataset = load(
        config.dataset.name.value,
        config.dataset.data_dir,
        normalization=config.dataset.normalization.value,
        val_fraction=config.dataset.val_fraction,
        seed=config.seed,
        dtype=dtype,
        max_train_samples=config.dataset.max_train_samples,
    )
    if on_data is not None:
        on_data(dataset.sources)
    for warning in dataset.range_warnings():
        log.warning(warning)
    model = build_model(config, dataset)

    rows: list[GradCheckRow] = []
    if config.gradcheck.enabled:
        rows = gradient_check(config, model, dataset)
        gradcheck_csv = write_gradcheck_csv(rows, out_dir / GRADCHECK_FILE)
        if on_gradcheck is not None:
            on_gradcheck(gradcheck_metrics(rows), gradcheck_csv)

    opt = config.optimizer
    optimizer = make_optimizer(
        opt.name.value,
        opt.lr,
        schedule=opt.schedule.value,
        momentum=opt.momentum,
        form=opt.form.value,
        beta1=opt.beta1,
        beta2=opt.beta2,
    )
    start = time.perf_counter()
    training = train(
        model,
        optimizer,
        dataset.x_train,
        dataset.y_train,
        dataset.x_val,
        dataset.y_val,
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        patience=config.train.patience,
        l1=config.regularizer.l1,
        l2=config.regularizer.l2,
        max_norm=config.regularizer.max_norm,
        seed=config.seed,
        eval_train=config.train.eval_train.value,
        callbacks=epoch_callbacks,
    )
    train_seconds = time.perf_counter() - start
    test_loss, test_acc = training.best_model.evaluate(dataset.x_test, dataset.y_test)
    cpu_seconds = time.process_time() - cpu_start

    checkpoint = save_checkpoint(
        out_dir / CHECKPOINT_FILE, training.best_model, dataset.standardizer, dataset.image_shape
    )
    return ExperimentResult(
        training=training,
        test_loss=float(test_loss),
        test_acc=float(test_acc),
        train_seconds=train_seconds,
        cpu_seconds=cpu_seconds,
        gradcheck=rows,
        figures=save_curves(
            training.history, training.best_epoch, out_dir, config.train.eval_train.value
        )
        if curves
        else [],
        checkpoint=checkpoint,
    )
