"""Datasets for the MLP: raw file formats, validation, splits and standardisation."""

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
