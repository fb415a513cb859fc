"""First-order optimisers, and ``OPTIMIZERS``, the table of them by name: each ``update``
changes the parameter arrays in place, and each owns its learning-rate schedule.

Before each epoch the training loop calls ``epoch_starts``, which sets ``lr`` from the rate
the optimiser was built with and its schedule (``schedules``), as scikit-learn's optimisers
own theirs (``iteration_ends``). State (velocities, moments) is created lazily on the first
``update``, one array per parameter, in the parameters' own dtype. An update consumes its
gradients: it works in their arrays, so it allocates nothing; Adam alone also keeps one
scratch array per parameter, as its step forms g*g while g is still needed. Hyper-parameters
are kept as Python floats so float32 parameters are never promoted. The training loop passes
the model's one flat parameter vector, so each operation is one pass over every parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .registry import lookup
from .schedules import LR_SCHEDULES


def _classic_step(p: np.ndarray, g: np.ndarray, v: np.ndarray, m: float, lr: float) -> None:
    """v = m*v - lr*g; w += v."""
    v *= m
    g *= lr
    v -= g
    p += v


def _ema_step(p: np.ndarray, g: np.ndarray, v: np.ndarray, m: float, lr: float) -> None:
    """v = m*v + (1-m)*g; w -= lr*v."""
    v *= m
    g *= 1 - m
    v += g
    p -= np.multiply(v, lr, out=g)


# The forms of heavy-ball momentum by name (Momentum's ``form``): the step each makes in place.
MOMENTUM_FORMS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, float, float], None]] = {
    "classic": _classic_step,
    "ema": _ema_step,
}


def _like(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.zeros_like(a) for a in arrays]


class Optimizer:
    """What every optimiser shares: its rate, set by its schedule before each epoch.

    Values (rates, momenta) are trusted: the config checked them, once, before any run.
    """

    def __init__(self, lr: float, schedule: str = "constant") -> None:
        self.base_lr = float(lr)
        self.lr = self.base_lr
        # Looked up once: an unknown name fails here, not at epoch 1.
        self._rate = lookup(LR_SCHEDULES, "schedule", schedule)
        self.schedule = schedule

    def epoch_starts(self, epoch: int, epochs: int) -> None:
        """Set the rate of ``epoch`` (1-based, as the training loop counts) out of ``epochs``
        from the schedule."""
        self.lr = self._rate(self.base_lr, epoch, epochs)

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Change ``params`` in place by one step; ``grads`` are overwritten."""
        raise NotImplementedError


class SGD(Optimizer):
    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        for p, g in zip(params, grads, strict=True):
            g *= self.lr
            p -= g


class Momentum(Optimizer):
    """Heavy-ball momentum.

    ``classic``: v = m*v - lr*grad; w += v.
    ``ema``: v = m*v + (1-m)*grad; w -= lr*v (v is an average gradient, so the step size
    does not grow by 1/(1-m) as in the classic form).
    """

    def __init__(
        self, lr: float, momentum: float = 0.9, form: str = "classic", schedule: str = "constant"
    ) -> None:
        super().__init__(lr, schedule)
        self.momentum = float(momentum)
        self._step = lookup(MOMENTUM_FORMS, "form", form)
        self.form = form
        self.velocities: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.velocities:
            self.velocities = _like(params)
        for p, g, v in zip(params, grads, self.velocities, strict=True):
            self._step(p, g, v, self.momentum, self.lr)


class Nesterov(Optimizer):
    """Nesterov momentum using the gradient at the current weights (Sutskever et al.).

    v = m*v - lr*grad; w += m*v - lr*grad.
    """

    def __init__(self, lr: float, momentum: float = 0.9, schedule: str = "constant") -> None:
        super().__init__(lr, schedule)
        self.momentum = float(momentum)
        self.velocities: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.velocities:
            self.velocities = _like(params)
        m = self.momentum
        for p, g, v in zip(params, grads, self.velocities, strict=True):
            g *= self.lr  # the step
            v *= m
            v -= g
            p -= g
            p += np.multiply(v, m, out=g)


class Adam(Optimizer):
    """Adam with bias-corrected moments: w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        schedule: str = "constant",
    ) -> None:
        super().__init__(lr, schedule)
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.t = 0
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.scratch: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.m:
            self.m, self.v, self.scratch = _like(params), _like(params), _like(params)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = self.lr / (1 - b1**self.t)
        root_correction = math.sqrt(1 - b2**self.t)
        for p, g, m, v, s in zip(params, grads, self.m, self.v, self.scratch, strict=True):
            v *= b2
            g2 = np.multiply(g, g, out=s)
            g2 *= 1 - b2
            v += g2
            m *= b1
            g *= 1 - b1
            m += g
            denom = np.sqrt(v, out=s)
            denom /= root_correction
            denom += self.eps
            move = np.multiply(m, step, out=g)
            move /= denom
            p -= move


# Each optimiser by its name in the config, and the settings (beyond lr and schedule) it takes.
OPTIMIZERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "sgd": (SGD, ()),
    "momentum": (Momentum, ("momentum", "form")),
    "nesterov": (Nesterov, ("momentum",)),
    "adam": (Adam, ("beta1", "beta2")),
}


def make_optimizer(
    name: str, lr: float, *, schedule: str = "constant", **settings: Any
) -> Optimizer:
    """The optimiser ``name`` with rate ``lr``, its ``schedule``, and those of ``settings``
    (momentum, form, beta1, beta2) it takes; the others are ignored."""
    cls, takes = lookup(OPTIMIZERS, "optimizer", name)
    return cls(lr, schedule=schedule, **{k: v for k, v in settings.items() if k in takes})
