"""The confusion matrix of a run's best checkpoint on its dataset's test set."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sweeper.checkpoint import load_checkpoint
from sweeper.config import DATA_DIR, DATASET
from sweeper.data import load_dataset


def _param(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key)
    # MLflow params are strings; the run logged a None as "null".
    return None if value in (None, "null") else value


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows the true class and columns the predicted one."""
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def confusion_on_test_set(
    checkpoint: Path, params: Mapping[str, str], read_from: str | None = None
) -> np.ndarray:
    """Evaluate ``checkpoint`` on the test set of the dataset named in the run's ``params``,
    read from ``read_from`` (the directory the run read, absolute) where it is still there,
    else from the run's ``dataset.data_dir`` (from this directory where it is relative).

    The test images are read raw and standardised with the statistics saved in the
    checkpoint, as the served model does, so the inputs are those the run was tested on
    whatever its seed, validation split or subset.
    """
    model, standardizer = load_checkpoint(checkpoint)
    name = _param(params, DATASET)
    if name is None:
        raise ValueError(f"the run has no {DATASET} param")
    there = read_from is not None and Path(read_from).is_dir()
    data_dir = read_from if there else _param(params, DATA_DIR)
    data = load_dataset(name, data_dir, normalization="none", dtype=model.dtype)
    x = data.x_test if standardizer is None else standardizer.transform(data.x_test)
    return confusion_matrix(data.y_test, model.predict(x), data.n_classes)
