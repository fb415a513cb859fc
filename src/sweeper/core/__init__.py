"""NumPy neural-network core: activations, MLP, losses, optimisers, training, grad checks."""

from .activations import ACTIVATION_NAMES, ACTIVATIONS, DERIVATIVES
from .gradcheck import GradCheckRow, check_gradients, max_relative_error, rows_to_records
from .initializers import INIT_SCHEMES, default_init, init_weights
from .losses import cross_entropy, log_softmax, one_hot, softmax, softmax_cross_entropy
from .network import MLP, Workspace
from .optimizers import (
    MOMENTUM_FORMS,
    OPTIMIZER_NAMES,
    SGD,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    make_optimizer,
)
from .regularizers import add_penalty_gradients, penalty
from .schedules import LR_SCHEDULES, scheduled_lr
from .training import EVAL_TRAIN, EpochMetrics, TrainingDiverged, TrainResult, train, train_epoch

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "DERIVATIVES",
    "EVAL_TRAIN",
    "INIT_SCHEMES",
    "LR_SCHEDULES",
    "MLP",
    "MOMENTUM_FORMS",
    "OPTIMIZER_NAMES",
    "SGD",
    "Adam",
    "EpochMetrics",
    "GradCheckRow",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "TrainResult",
    "TrainingDiverged",
    "Workspace",
    "add_penalty_gradients",
    "check_gradients",
    "cross_entropy",
    "default_init",
    "init_weights",
    "log_softmax",
    "make_optimizer",
    "max_relative_error",
    "one_hot",
    "penalty",
    "rows_to_records",
    "scheduled_lr",
    "softmax",
    "softmax_cross_entropy",
    "train",
    "train_epoch",
]
