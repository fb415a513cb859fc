"""Typed configuration: the schema every composed run is validated against, once, here.

Each config group in ``conf/`` fills one of these dataclasses. Types and choices (enums made
from the core's tables of options) are checked by OmegaConf while Hydra composes; value
ranges are checked in ``__post_init__``, which runs when :func:`to_experiment_config` turns the
composed config into objects, so a bad value fails before any training starts and the message
names the key and the value. The core trusts what passed. (``sweeper.app`` registers the
schema with Hydra; this module imports no Hydra.)

Also here: the flat keys a composed config's values go by (``flat_params``), which of them
vary between runs or an override sets, and the hash that identifies a configuration.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from sweeper.core import (
    ACTIVATIONS,
    EVAL_TRAIN,
    INITIALIZERS,
    LR_SCHEDULES,
    MOMENTUM_FORMS,
    OPTIMIZERS,
    REGULARIZERS,
    SUPPORTED_DTYPES,
)
from sweeper.data import DATASETS
from sweeper.data.preprocessing import (
    DEFAULT_NORMALIZATION,
    DEFAULT_VAL_FRACTION,
    NORMALIZATIONS,
)
from sweeper.names import DEFAULT_EXPERIMENT, SEED
from sweeper.store_uri import CONNECT_TIMEOUT_S, MAX_OUTAGE_S

SCHEMA_NAME = "sweeper_schema"
# The app's primary config, conf/config.yaml (another is given with --config-name).
CONFIG_NAME = "config"
# Keys that say where or how a run is recorded, not what it computes: two configs differing
# only in these are the same configuration, so resume=true treats them as done.
NOT_HASHED = ("resume", "tracking.")
# The flat params (``flat_params``) that code reads back from a run's record.
DATASET = "dataset.name"
DATA_DIR = "dataset.data_dir"
ACTIVATION = "activation.name"
INIT = "activation.init"
HIDDEN = "topology.hidden"
DROPOUT_P = "regularizer.p"
MAX_NORM = "regularizer.max_norm"
REGULARIZER = "regularizer.name"
OPTIMIZER = "optimizer.name"
EVAL_TRAIN_KEY = "train.eval_train"
GRADCHECK_TOL = "gradcheck.tol"
TRACKING_URI = "tracking.uri"
TRACKING_EXPERIMENT = "tracking.experiment"


class ConfigError(ValueError):
    """A composed config that cannot run; the message names the key, the value and the rule."""


def _require(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {rule}")


# The choices of each kind of option: an Enum of the names in the core's (or the data's) table
# that implements it, which OmegaConf checks a value against while Hydra composes, naming what
# is allowed. (type: ignore: mypy reads members only where they are written out.)
DatasetName = Enum("DatasetName", [(n, n) for n in DATASETS])  # type: ignore[misc]
Normalization = Enum("Normalization", [(n, n) for n in NORMALIZATIONS])  # type: ignore[misc]
ActivationName = Enum("ActivationName", [(n, n) for n in ACTIVATIONS])  # type: ignore[misc]
# auto: the scheme that suits the activation (its entry in the core's ACTIVATIONS).
AUTO_INIT = "auto"
InitName = Enum("InitName", [(n, n) for n in (AUTO_INIT, *INITIALIZERS)])  # type: ignore[misc]
RegularizerName = Enum("RegularizerName", [(n, n) for n in REGULARIZERS])  # type: ignore[misc]
OptimizerName = Enum("OptimizerName", [(n, n) for n in OPTIMIZERS])  # type: ignore[misc]
MomentumForm = Enum("MomentumForm", [(n, n) for n in MOMENTUM_FORMS])  # type: ignore[misc]
LrSchedule = Enum("LrSchedule", [(n, n) for n in LR_SCHEDULES])  # type: ignore[misc]
Dtype = Enum("Dtype", [(d.name, d.name) for d in SUPPORTED_DTYPES])  # type: ignore[misc]
EvalTrain = Enum("EvalTrain", [(n, n) for n in EVAL_TRAIN])  # type: ignore[misc]


class Made(Enum):
    """Which runs get an artifact that costs more than the run's training on small studies."""

    every = "every"  # each run, as it ends
    best = "best"  # the sweep's best run, at the sweep's end (a single run: that run)
    none = "none"  # none; `python -m sweeper.artifacts RUN_ID` makes it for any run later


@dataclass
class DatasetConfig:
    name: DatasetName = DatasetName["digits"]
    data_dir: str | None = None
    normalization: Normalization = Normalization[DEFAULT_NORMALIZATION]
    val_fraction: float = DEFAULT_VAL_FRACTION
    max_train_samples: int | None = None

    def __post_init__(self) -> None:
        if self.data_dir is not None:
            # `dataset.data_dir=$UNSET_VAR` would read the current directory.
            _require(
                self.data_dir.strip() != "",
                DATA_DIR,
                self.data_dir,
                "an empty path; use null for the dataset's default place, or a directory",
            )
        _require(
            0.0 < self.val_fraction < 1.0,
            "dataset.val_fraction",
            self.val_fraction,
            "must be in (0, 1)",
        )
        if self.max_train_samples is not None:
            _require(
                self.max_train_samples > 0,
                "dataset.max_train_samples",
                self.max_train_samples,
                "must be a positive count or null",
            )


@dataclass
class ActivationConfig:
    name: ActivationName = ActivationName["tanh"]
    init: InitName = InitName[AUTO_INIT]


@dataclass
class RegularizerConfig:
    name: RegularizerName = RegularizerName["none"]
    lam: float = 0.0
    p: float = 0.0
    # Dropout's probability on the inputs (the dropout regularizer only).
    input_p: float = 0.0
    # A bound on each hidden unit's incoming weight norm, whatever the regularizer.
    max_norm: float | None = None

    def __post_init__(self) -> None:
        _require(0.0 <= self.lam < math.inf, "regularizer.lam", self.lam, "must be finite, >= 0")
        _require(0.0 <= self.p < 1.0, "regularizer.p", self.p, "dropout p must be in [0, 1)")
        _require(
            0.0 <= self.input_p < 1.0,
            "regularizer.input_p",
            self.input_p,
            "input dropout p must be in [0, 1)",
        )
        if self.max_norm is not None:
            _require(
                self.max_norm > 0.0,
                "regularizer.max_norm",
                self.max_norm,
                "must be a positive norm or null",
            )

    @property
    def arguments(self) -> dict[str, float]:
        """The core's arguments (l1, l2, dropout, input_dropout) this regularizer sets, from
        the settings it reads (the core's ``REGULARIZERS``); the others stay 0."""
        reads = REGULARIZERS[self.name.value]
        return {argument: getattr(self, setting) for setting, argument in reads.items()}

    @property
    def l1(self) -> float:
        return self.arguments.get("l1", 0.0)

    @property
    def l2(self) -> float:
        return self.arguments.get("l2", 0.0)

    @property
    def dropout(self) -> float:
        return self.arguments.get("dropout", 0.0)

    @property
    def input_dropout(self) -> float:
        return self.arguments.get("input_dropout", 0.0)

    @property
    def drops(self) -> bool:
        """Whether training draws dropout masks (a stream of its own)."""
        return self.dropout > 0 or self.input_dropout > 0


@dataclass
class TopologyConfig:
    hidden: list[int] = field(default_factory=lambda: [64])

    def __post_init__(self) -> None:
        _require(
            all(h > 0 for h in self.hidden),
            "topology.hidden",
            list(self.hidden),
            "every hidden layer needs at least one unit",
        )


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName["momentum"]
    lr: float = 0.05
    momentum: float = 0.9
    # classic: v = m*v - lr*g; w += v.  ema: v = m*v + (1-m)*g; w -= lr*v.
    form: MomentumForm = MomentumForm["classic"]
    beta1: float = 0.9
    beta2: float = 0.999
    # constant, or cosine: lr annealed from `lr` towards 0 over train.epochs.
    schedule: LrSchedule = LrSchedule["constant"]

    def __post_init__(self) -> None:
        _require(0.0 < self.lr < math.inf, "optimizer.lr", self.lr, "must be finite, > 0")
        _require(
            0.0 <= self.momentum < 1.0, "optimizer.momentum", self.momentum, "must be in [0, 1)"
        )
        _require(0.0 <= self.beta1 < 1.0, "optimizer.beta1", self.beta1, "must be in [0, 1)")
        _require(0.0 <= self.beta2 < 1.0, "optimizer.beta2", self.beta2, "must be in [0, 1)")


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    # null disables early stopping.
    patience: int | None = 5
    dtype: Dtype = Dtype["float32"]
    # Training metrics per epoch: running mean over its steps (free), or a full pass.
    eval_train: EvalTrain = EvalTrain["running"]

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "train.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be >= 1")
        if self.patience is not None:
            _require(self.patience >= 1, "train.patience", self.patience, "must be >= 1 or null")


@dataclass
class GradCheckConfig:
    enabled: bool = True
    eps: float = 1e-2
    tol: float = 1e-4
    samples: int = 5

    def __post_init__(self) -> None:
        _require(0.0 < self.eps < math.inf, "gradcheck.eps", self.eps, "must be finite, > 0")
        _require(0.0 < self.tol < math.inf, "gradcheck.tol", self.tol, "must be finite, > 0")
        _require(self.samples >= 1, "gradcheck.samples", self.samples, "must be >= 1")


@dataclass
class TrackingConfig:
    # null: $MLFLOW_TRACKING_URI if set, else a SQLite store in ./mlruns.
    uri: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    # Seconds a tracking server has to answer the check made before any run starts.
    connect_timeout: float = CONNECT_TIMEOUT_S
    # Seconds a run keeps retrying a store that does not answer before it ends FAILED.
    max_outage: float = MAX_OUTAGE_S
    # The MLflow pyfunc model, and the loss/accuracy figures drawn from the metrics.
    model: Made = Made.best
    curves: Made = Made.best
    # A run's metrics and tags wait this long at most before they are written, together.
    flush_seconds: float = 30.0

    def __post_init__(self) -> None:
        _require(
            self.connect_timeout > 0,
            "tracking.connect_timeout",
            self.connect_timeout,
            "must be > 0",
        )
        _require(self.max_outage >= 0, "tracking.max_outage", self.max_outage, "must be >= 0")
        _require(
            self.flush_seconds >= 0, "tracking.flush_seconds", self.flush_seconds, "must be >= 0"
        )


@dataclass
class ExperimentConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gradcheck: GradCheckConfig = field(default_factory=GradCheckConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    seed: int = 0
    # With -m: run only the planned configurations the resumed sweep has not FINISHED.
    resume: bool = False

    def __post_init__(self) -> None:
        _require(self.seed >= 0, SEED, self.seed, "must be >= 0")


def to_experiment_config(cfg: DictConfig) -> ExperimentConfig:
    """Validate a composed run config and return it as objects."""
    for key in (f.name for f in fields(ExperimentConfig)):
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key}=??? is invalid: give it a value")
        if key not in cfg:
            # Deleted (~key): the schema's default would train, and no param would say so.
            raise ConfigError(f"~{key} is invalid: every run reads {key}; give it a value instead")
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(err, MissingMandatoryValue) and err.full_key:
            raise ConfigError(f"{err.full_key}=??? is invalid: give it a value") from None
        raise ConfigError(str(err).splitlines()[0]) from None
    assert isinstance(obj, ExperimentConfig)
    _refuse_unknown_keys(obj, "")
    return obj


def _refuse_unknown_keys(node: Any, prefix: str) -> None:
    """Raise a ConfigError for a key the schema lacks (added with ``+key=value``), which
    ``OmegaConf.to_object`` keeps as an attribute nothing reads."""
    known = [f.name for f in fields(node)]
    for key, value in vars(node).items():
        if key not in known:
            where = f"of {prefix[:-1]}" if prefix else "of the config"
            raise ConfigError(f"{prefix}{key} is not a key {where}, which has: {', '.join(known)}")
        if is_dataclass(value):
            _refuse_unknown_keys(value, f"{prefix}{key}.")


def flat_params(cfg: DictConfig) -> dict[str, Any]:
    """The composed run config as ``{"optimizer.lr": 0.05, ...}``, the ``hydra`` node left out."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert isinstance(container, dict)
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}{key}.", value)
        else:
            flat[prefix[:-1]] = node

    walk("", {k: v for k, v in container.items() if k != "hydra"})
    return flat


def varied_params(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """The config keys (``flat_params`` names) whose values differ between the planned runs,
    every key included: a sweep must see ``tracking.*`` vary to refuse it
    (``plan.SWEEP_WIDE``), where the report's ``report.runs.varying_params`` leaves out the
    keys that name no configuration (``NOT_HASHED``)."""
    keys = sorted({key for run in params for key in run})
    return [key for key in keys if len({repr(run.get(key)) for run in params}) > 1]


def params_of_keys(params: Mapping[str, Any], override_keys: Collection[str]) -> list[str]:
    """The config keys an override key sets: itself, or every key of a group (``regularizer``
    sets ``regularizer.name``, ``regularizer.lam``, ...)."""
    return sorted(
        key
        for key in params
        if any(key == k or key.startswith(f"{k.lstrip('+~')}.") for k in override_keys)
    )


def unread_keys(params: dict[str, Any]) -> dict[str, str]:
    """The keys of ``params`` (``flat_params``) that the run does not read, each with the
    setting that leaves it unread: whatever their values, the run computes the same."""
    regularizer, optimizer = params[REGULARIZER], params[OPTIMIZER]
    reads = REGULARIZERS[regularizer]
    takes = OPTIMIZERS[optimizer][1]
    # max_norm, in no regularizer's entry, is read whatever the regularizer.
    unread = {
        **{
            f"regularizer.{k}": f"regularizer={regularizer}"
            for ks in REGULARIZERS.values()
            for k in ks
            if k not in reads
        },
        **{
            f"optimizer.{k}": f"optimizer={optimizer}"
            for _, ks in OPTIMIZERS.values()
            for k in ks
            if k not in takes
        },
    }
    if not params[HIDDEN]:
        # No hidden unit to drop out or bound; the activation picks only the init scheme.
        for key in (DROPOUT_P, MAX_NORM, ACTIVATION):
            unread.setdefault(key, f"{HIDDEN}=[]")
    return unread


def read_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the keys the run does not read (``unread_keys``), an ``auto`` init
    named by the scheme an unread activation picks."""
    unread = unread_keys(params)
    read = {k: v for k, v in params.items() if k not in unread}
    if ACTIVATION in unread and read.get(INIT) == AUTO_INIT:
        read[INIT] = ACTIVATIONS[params[ACTIVATION]].init
    return read


def names_configuration(key: str) -> bool:
    """Whether the flat param ``key`` is part of what a run computes: not one of NOT_HASHED's
    (``resume``, ``tracking.*``), in which runs of one configuration may differ."""
    return not key.startswith(NOT_HASHED)


def config_hash(params: dict[str, Any]) -> str:
    """Identifies what a composed configuration (``flat_params``) computes, whatever the order
    of its overrides: the keys in NOT_HASHED are left out, ``dataset.data_dir`` counts as the
    directory it names (``~`` expanded, ``..`` resolved; an absolute path's symlinks too),
    and ``activation.init`` naming its activation's own scheme counts as ``auto``."""
    kept = {k: v for k, v in params.items() if names_configuration(k)}
    if kept.get(DATA_DIR) is not None:
        # A relative path hashes alike from any directory: reproduce and a cluster's workers
        # run elsewhere.
        named = os.path.expanduser(kept[DATA_DIR])
        absolute = os.path.isabs(named)
        kept[DATA_DIR] = os.path.realpath(named) if absolute else os.path.normpath(named)
    activation = ACTIVATIONS.get(str(kept.get(ACTIVATION)))
    if activation is not None and kept.get(INIT) == activation.init:
        kept[INIT] = AUTO_INIT
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
