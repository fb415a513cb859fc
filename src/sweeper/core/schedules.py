"""Learning-rate schedules: the rate for each epoch of a run, from the optimiser's base rate.

A constant rate keeps the noise of minibatch steps to the end; cosine annealing lowers it
smoothly toward zero over the planned epochs (the last trains at a small fraction of the base
rate), so the last epochs settle into a minimum instead of bouncing around it, which is worth
most when a run trains for its whole budget.
"""

from __future__ import annotations

import math
from collections.abc import Callable


def constant(base_lr: float, epoch: int, epochs: int) -> float:
    return base_lr


def cosine(base_lr: float, epoch: int, epochs: int) -> float:
    # Epoch 1 trains at base_lr; the rate would reach 0 one epoch after the last.
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))


# Each schedule by its name in the config: the rate of an epoch from the base rate.
LR_SCHEDULES: dict[str, Callable[[float, int, int], float]] = {
    "constant": constant,
    "cosine": cosine,
}
