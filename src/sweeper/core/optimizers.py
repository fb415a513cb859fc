"""First-order optimisers: each ``update`` changes the parameter arrays in place.

State (velocities, moments) is created lazily on the first ``update``, one array per
parameter, in the parameters' own dtype, with scratch arrays of the same shapes so that an
update allocates nothing. Hyper-parameters are kept as Python floats so float32 parameters
are never promoted. The training loop passes the model's one flat parameter vector, so each
operation is one pass over every parameter.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam")
MOMENTUM_FORMS = ("classic", "ema")


class Optimizer(Protocol):
    # Read and set between epochs by a learning-rate schedule.
    lr: float

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None: ...


def _check_lr(lr: float) -> float:
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return float(lr)


def _check_unit(name: str, value: float) -> float:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")
    return float(value)


def _like(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.zeros_like(a) for a in arrays]


class SGD:
    def __init__(self, lr: float) -> None:
        self.lr = _check_lr(lr)
        self.scratch: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.scratch:
            self.scratch = _like(params)
        for p, g, s in zip(params, grads, self.scratch, strict=True):
            p -= np.multiply(g, self.lr, out=s)


class Momentum:
    """Heavy-ball momentum.

    ``classic``: v = m*v - lr*grad; w += v.
    ``ema``: v = m*v + (1-m)*grad; w -= lr*v (v is an average gradient, so the step size
    does not grow by 1/(1-m) as in the classic form).
    """

    def __init__(self, lr: float, momentum: float = 0.9, form: str = "classic") -> None:
        self.lr = _check_lr(lr)
        self.momentum = _check_unit("momentum", momentum)
        if form not in MOMENTUM_FORMS:
            raise ValueError(f"form={form!r} is unknown; allowed: {', '.join(MOMENTUM_FORMS)}")
        self.form = form
        self.velocities: list[np.ndarray] = []
        self.scratch: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.velocities:
            self.velocities, self.scratch = _like(params), _like(params)
        m = self.momentum
        for p, g, v, s in zip(params, grads, self.velocities, self.scratch, strict=True):
            v *= m
            if self.form == "classic":
                v -= np.multiply(g, self.lr, out=s)
                p += v
            else:
                v += np.multiply(g, 1 - m, out=s)
                p -= np.multiply(v, self.lr, out=s)


class Nesterov:
    """Nesterov momentum using the gradient at the current weights (Sutskever et al.).

    v = m*v - lr*grad; w += m*v - lr*grad.
    """

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        self.lr = _check_lr(lr)
        self.momentum = _check_unit("momentum", momentum)
        self.velocities: list[np.ndarray] = []
        self.scratch: list[np.ndarray] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.velocities:
            self.velocities, self.scratch = _like(params), _like(params)
        m = self.momentum
        for p, g, v, s in zip(params, grads, self.velocities, self.scratch, strict=True):
            step = np.multiply(g, self.lr, out=s)
            v *= m
            v -= step
            p -= step
            p += np.multiply(v, m, out=s)


class Adam:
    """Adam with bias-corrected moments: w -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        self.lr = _check_lr(lr)
        self.beta1 = _check_unit("beta1", beta1)
        self.beta2 = _check_unit("beta2", beta2)
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.eps = float(eps)
        self.t = 0
        self.m: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.scratch: list[tuple[np.ndarray, np.ndarray]] = []

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.m:
            self.m, self.v = _like(params), _like(params)
            self.scratch = list(zip(_like(params), _like(params), strict=True))
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step = self.lr / (1 - b1**self.t)
        root_correction = math.sqrt(1 - b2**self.t)
        for p, g, m, v, (s, d) in zip(params, grads, self.m, self.v, self.scratch, strict=True):
            m *= b1
            m += np.multiply(g, 1 - b1, out=s)
            v *= b2
            g2 = np.multiply(g, g, out=s)
            g2 *= 1 - b2
            v += g2
            denom = np.sqrt(v, out=d)
            denom /= root_correction
            denom += self.eps
            move = np.multiply(m, step, out=s)
            move /= denom
            p -= move


def make_optimizer(
    name: str,
    lr: float,
    momentum: float = 0.9,
    form: str = "classic",
    beta1: float = 0.9,
    beta2: float = 0.999,
) -> Optimizer:
    if name == "sgd":
        return SGD(lr)
    if name == "momentum":
        return Momentum(lr, momentum, form)
    if name == "nesterov":
        return Nesterov(lr, momentum)
    if name == "adam":
        return Adam(lr, beta1, beta2)
    raise ValueError(f"optimizer={name!r} is unknown; allowed: {', '.join(OPTIMIZER_NAMES)}")
