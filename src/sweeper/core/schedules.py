"""Learning-rate schedules: the rate for each epoch of a run, from the optimiser's base rate.

A constant rate keeps the noise of minibatch steps to the end; cosine annealing lowers it
smoothly to zero over the planned epochs, so the last epochs settle into a minimum instead of
bouncing around it, which is worth most when a run trains for its whole budget.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(schedule: str, base_lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of ``epoch`` (1-based) out of ``epochs``."""
    if not 1 <= epoch <= epochs:
        raise ValueError(f"epoch must lie in [1, {epochs}], got {epoch}")
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        # Epoch 1 trains at base_lr; the rate would reach 0 one epoch after the last.
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / epochs))
    raise ValueError(f"schedule={schedule!r} is unknown; allowed: {', '.join(LR_SCHEDULES)}")
