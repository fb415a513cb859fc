"""The dataset registry and ``load_dataset``: raw files to standardised train/val/test arrays."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from sweeper.data.cifar import load_cifar10_split
from sweeper.data.digits import embedded_files, load_digits_split
from sweeper.data.errors import DatasetError, MissingDataError, recording_reads, with_fetch_command
from sweeper.data.idx import IDX_FILES, load_idx_split
from sweeper.data.locations import default_data_dir
from sweeper.data.npz import KMNIST_FILES, NOTMNIST_FILE, load_kmnist_split, load_notmnist_split
from sweeper.data.preprocessing import (
    DEFAULT_NORMALIZATION,
    DEFAULT_VAL_FRACTION,
    OUT_OF_RANGE_MARGIN,
    Standardizer,
    fit_standardizer,
    flatten,
    out_of_range_features,
    stratified_split,
    stratified_subset,
)

# load_dataset's default dtype of the standardised arrays.
DEFAULT_DTYPE = np.float32
# (data_dir, "train" | "test", n_classes) -> (images (n, ...) uint8, labels (n,) int64)
RawLoader = Callable[[Path, str, int], tuple[np.ndarray, np.ndarray]]
# A data file's path -> its SHA-256 (hex).
FileHasher = Callable[[Path], str]


def sha256_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _fetch_hint(name: str, data_dir: str | Path | None) -> str | None:
    """The command that fetches ``name`` into ``data_dir``, None for a dataset it does not.
    sweeper.data.fetch is imported here, as a load fails: imported with the package, it would
    be run a second time by ``python -m sweeper.data.fetch`` (runpy warns of that)."""
    from sweeper.data.fetch import SOURCES, fetch_hint

    return fetch_hint(name, data_dir) if name in SOURCES else None


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one dataset; ``files`` tells users what to download into ``data_dir``, and
    ``embedded`` lists the files of the installed package a dataset needing none reads."""

    load: RawLoader
    files: str
    n_classes: int = 10
    embedded: Callable[[], list[Path]] | None = None

    @property
    def needs_data_dir(self) -> bool:
        return self.embedded is None


def _load_digits(data_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    return load_digits_split(split, n_classes)


def _all_there(directory: Path, names: Iterable[str], *suffixes: str) -> bool:
    """Whether every file of ``names`` is in ``directory``, under its name or with a suffix."""
    return all(
        any((directory / f"{name}{suffix}").is_file() for suffix in ("", *suffixes))
        for name in names
    )


def _npz_or_idx(load_npz: RawLoader, npz_files: Iterable[str], fetched: str) -> RawLoader:
    """Read whichever of the npz release and the IDX files is whole in the directory; where
    neither is, ``fetched`` (``npz`` or ``idx``, what ``fetch`` writes), so the error names
    what the fetch command it suggests puts there."""
    npz_files = tuple(npz_files)
    idx_files = [name for pair in IDX_FILES.values() for name in pair]

    def load(data_dir: Path, split: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
        if _all_there(data_dir, npz_files):
            return load_npz(data_dir, split, n_classes)
        if _all_there(data_dir, idx_files, ".gz") or fetched == "idx":
            return load_idx_split(data_dir, split, n_classes)
        return load_npz(data_dir, split, n_classes)

    return load


_IDX_NAMES = ", ".join(f"{name}[.gz]" for pair in IDX_FILES.values() for name in pair)
_KMNIST_NPZ_NAMES = ", ".join(name for pair in KMNIST_FILES.values() for name in pair)

DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(_load_digits, files="", embedded=embedded_files),
    "mnist": DatasetSpec(load_idx_split, files=_IDX_NAMES),
    "kmnist": DatasetSpec(
        _npz_or_idx(load_kmnist_split, (n for pair in KMNIST_FILES.values() for n in pair), "idx"),
        files=f"{_KMNIST_NPZ_NAMES} (or {_IDX_NAMES})",
    ),
    "fashion_mnist": DatasetSpec(load_idx_split, files=_IDX_NAMES),
    "cifar10": DatasetSpec(
        load_cifar10_split,
        files="data_batch_1..data_batch_5, test_batch (or cifar-10-batches-py/ holding them)",
    ),
    "notmnist": DatasetSpec(
        _npz_or_idx(load_notmnist_split, [NOTMNIST_FILE], "npz"),
        files=f"{NOTMNIST_FILE} (or {_IDX_NAMES})",
    ),
}


@dataclass
class Dataset:
    """Flattened, standardised splits; ``standardizer`` was fitted on ``x_train`` only."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, ...]
    standardizer: Standardizer
    # The SHA-256 of every data file the split was read from, by path.
    sources: dict[str, str] = field(default_factory=dict)
    # What range_warnings says, when known: a cache entry checks once, not every run it serves.
    known_range_warnings: list[str] | None = None

    def range_warnings(self) -> list[str]:
        """One line per held-out split with features standardised far outside anything in the
        training split (see ``out_of_range_features``); empty when there are none, or when
        the data are not standardised (``none`` keeps the raw values)."""
        if self.known_range_warnings is not None:
            return self.known_range_warnings
        if self.standardizer.mode == "none":
            return []
        warnings = []
        n_features = self.x_train.shape[1]
        for split, x in (("validation", self.x_val), ("test", self.x_test)):
            count, excess = out_of_range_features(self.x_train, x)
            if count:
                warnings.append(
                    f"{self.name}: {count} of {n_features} features of the {split} split lie"
                    f" more than {OUT_OF_RANGE_MARGIN:g} beyond their range in the training split"
                    f" after {self.standardizer.mode} standardisation (up to {excess:.1f}"
                    " beyond); the network never saw such inputs, so check"
                    " dataset.normalization"
                )
        return warnings


def resolve_data_dir(name: str, data_dir: str | Path | None) -> Path | None:
    """The directory ``name`` is read from: ``data_dir``, else its default place (see
    ``sweeper.data.locations``); None for a dataset that needs no files."""
    if not DATASETS[name].needs_data_dir:
        return None
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir(name)


def _data_dir(name: str, spec: DatasetSpec, data_dir: str | Path | None) -> Path:
    path = resolve_data_dir(name, data_dir)
    if path is None:
        return Path()
    if not path.is_dir():
        raise MissingDataError(
            f"data directory {path} for dataset {name!r} does not exist: download {spec.files}"
            " and put them there, or set dataset.data_dir=... to the directory that holds them"
        )
    return path


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    normalization: str = DEFAULT_NORMALIZATION,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    dtype: DTypeLike = DEFAULT_DTYPE,
    max_train_samples: int | None = None,
    file_hash: FileHasher = sha256_file,
) -> Dataset:
    """Load ``name`` and return seeded, stratified train/val splits and the untouched test set.

    ``max_train_samples`` keeps a stratified subset of the training data before the
    validation split. Statistics for ``normalization`` come from the training split alone.
    Every file read is hashed with ``file_hash``.

    The arguments are trusted as ``sweeper.config`` checks them (a floating ``dtype``,
    ``0 < val_fraction < 1``, ``max_train_samples`` >= 1), but for ``name``.
    """
    # The report passes the name a run logged, read back from the store, unchecked by config.
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    spec = DATASETS[name]
    given = resolve_data_dir(name, data_dir)
    if given is not None and given.is_file():
        raise DatasetError(
            f"dataset.data_dir={given} is a file: set it to the directory that holds {spec.files}"
        )
    try:
        directory = _data_dir(name, spec, data_dir)
        with recording_reads() as read:
            images, labels = spec.load(directory, "train", spec.n_classes)
            test_images, y_test = spec.load(directory, "test", spec.n_classes)
    except MissingDataError as error:
        hint = _fetch_hint(name, data_dir)
        if hint is None:
            raise
        raise MissingDataError(with_fetch_command(str(error), hint)) from None
    except DatasetError as error:
        hint = _fetch_hint(name, data_dir)
        if hint is None:
            raise
        raise DatasetError(
            f"{error}; if a download is damaged, delete the file and fetch it again: {hint}"
        ) from None
    image_shape = images.shape[1:]
    if test_images.shape[1:] != image_shape:
        raise DatasetError(
            f"{directory}: training images are {image_shape} but test images are"
            f" {test_images.shape[1:]}"
        )

    if max_train_samples is not None and max_train_samples < len(labels):
        kept = stratified_subset(labels, max_train_samples, seed)
        images, labels = images[kept], labels[kept]
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(
            f"val_fraction={val_fraction} of {len(labels)} training images leaves "
            f"{len(train_idx)} to train on and {len(val_idx)} to validate on; each needs one "
            "at least (dataset.val_fraction, dataset.max_train_samples)"
        )

    x_train = flatten(images[train_idx]).astype(dtype)
    channels = image_shape[0] if len(image_shape) == 3 else 1
    standardizer = fit_standardizer(x_train, normalization, channels)
    # In place: each array is a fresh copy, and CIFAR-10's training split is 469 MiB of float32.
    x_val = flatten(images[val_idx]).astype(dtype)
    x_test = flatten(test_images).astype(dtype)
    return Dataset(
        name=name,
        x_train=standardizer.transform(x_train, out=x_train),
        y_train=labels[train_idx],
        x_val=standardizer.transform(x_val, out=x_val),
        y_val=labels[val_idx],
        x_test=standardizer.transform(x_test, out=x_test),
        y_test=y_test,
        n_classes=spec.n_classes,
        image_shape=image_shape,
        standardizer=standardizer,
        # By the path read, not a link's target: reproduce checks the files a directory names.
        sources={os.path.abspath(path): file_hash(path) for path in read},
    )
