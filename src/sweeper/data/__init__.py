"""Datasets for the MLP: downloading and verifying them (``fetch``, ``python -m sweeper.data``),
raw file formats, validation, splits and standardisation, and the on-disk cache of prepared
datasets that a sweep's runs share (``cache``)."""

from sweeper.data.datasets import DATASETS, Dataset, load_dataset
from sweeper.data.errors import DatasetError, MissingDataError
from sweeper.data.preprocessing import Standardizer, fit_standardizer, flatten, stratified_split

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetError",
    "MissingDataError",
    "Standardizer",
    "fit_standardizer",
    "flatten",
    "load_dataset",
    "stratified_split",
]
