"""NumPy neural-network core: activations, MLP, losses, optimisers, training, grad checks.

Every kind of option is one table from its name to its implementation (``ACTIVATIONS``,
``INITIALIZERS``, ``REGULARIZERS``, ``OPTIMIZERS``, ``MOMENTUM_FORMS``, ``LR_SCHEDULES``,
``EVAL_TRAIN``), and the dtypes are ``SUPPORTED_DTYPES``; the config's choices are made from
these.
"""

from .activations import ACTIVATIONS, Activation
from .gradcheck import GradCheckRow, check_gradients, rows_to_records
from .initializers import INITIALIZERS, default_init, init_weights
from .losses import one_hot, softmax, softmax_cross_entropy
from .network import MLP, SCORING_ROWS, SUPPORTED_DTYPES, Workspace
from .optimizers import (
    MOMENTUM_FORMS,
    OPTIMIZERS,
    SGD,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    make_optimizer,
)
from .regularizers import REGULARIZERS, add_penalty_gradients, penalty
from .schedules import LR_SCHEDULES
from .training import (
    EVAL_TRAIN,
    EpochMetrics,
    TrainingDiverged,
    TrainMeasure,
    TrainResult,
    dropout_seed,
    train,
    train_epoch,
)

__all__ = [
    "ACTIVATIONS",
    "EVAL_TRAIN",
    "INITIALIZERS",
    "LR_SCHEDULES",
    "MLP",
    "MOMENTUM_FORMS",
    "OPTIMIZERS",
    "REGULARIZERS",
    "SCORING_ROWS",
    "SGD",
    "SUPPORTED_DTYPES",
    "Activation",
    "Adam",
    "EpochMetrics",
    "GradCheckRow",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "TrainMeasure",
    "TrainResult",
    "TrainingDiverged",
    "Workspace",
    "add_penalty_gradients",
    "check_gradients",
    "default_init",
    "dropout_seed",
    "init_weights",
    "make_optimizer",
    "one_hot",
    "penalty",
    "rows_to_records",
    "softmax",
    "softmax_cross_entropy",
    "train",
    "train_epoch",
]
