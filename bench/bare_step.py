"""How close a bare NumPy training step comes to the GEMM limit, beside sweeper's step.

The bare step is 784-128-10, tanh, batch 128, momentum SGD written as tightly as NumPy
allows: preallocated arrays, every product and activation in place, no input checks, no
accuracy count, no dropout or penalty branches. It and sweeper's ``train_epoch`` train on
the same shuffled batches of random float32 data (48,000 x 784, Fashion-MNIST's training
split's shape; the values do not change the time); the limit is the step's five matrix
products alone on one batch kept hot in cache, as in ``core_throughput.py``. Epochs of
the three alternate, one BLAS thread, and the medians of the process's CPU time are given.

    python bench/bare_step.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from machine import describe_machine
from threadpoolctl import threadpool_limits

from sweeper.core import MLP, Momentum, Workspace, one_hot
from sweeper.core.training import train_epoch

N, D, H, K, B = 48_000, 784, 128, 10, 128
LR, MOMENTUM = 0.01, 0.9


def bare_trainer(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Callable:
    w1 = (rng.standard_normal((D, H)) * 0.05).astype(np.float32)
    w2 = (rng.standard_normal((H, K)) * 0.05).astype(np.float32)
    b1, b2 = np.zeros(H, np.float32), np.zeros(K, np.float32)
    params = [w1, b1, w2, b2]
    velocities = [np.zeros_like(p) for p in params]
    grads = [np.empty_like(p) for p in params]
    xb, yb = np.empty((B, D), np.float32), np.empty((B, K), np.float32)
    h, dh, t = (np.empty((B, H), np.float32) for _ in range(3))
    z, row = np.empty((B, K), np.float32), np.empty((B, 1), np.float32)

    def epoch(order: np.ndarray) -> None:
        for i in range(0, N - B + 1, B):
            idx = order[i : i + B]
            x.take(idx, axis=0, out=xb, mode="clip")
            y.take(idx, axis=0, out=yb, mode="clip")
            np.matmul(xb, w1, out=h)
            np.add(h, b1, out=h)
            np.tanh(h, out=h)
            np.matmul(h, w2, out=z)
            np.add(z, b2, out=z)
            np.maximum.reduce(z, axis=1, keepdims=True, out=row)
            np.subtract(z, row, out=z)
            np.exp(z, out=z)
            np.add.reduce(z, axis=1, keepdims=True, out=row)
            np.divide(z, row, out=z)
            np.subtract(z, yb, out=z)
            np.multiply(z, 1.0 / B, out=z)
            np.matmul(h.T, z, out=grads[2])
            np.add.reduce(z, axis=0, out=grads[3])
            np.matmul(z, w2.T, out=dh)
            np.multiply(h, h, out=t)
            np.subtract(1, t, out=t)
            np.multiply(dh, t, out=dh)
            np.matmul(xb.T, dh, out=grads[0])
            np.add.reduce(dh, axis=0, out=grads[1])
            for p, v, g in zip(params, velocities, grads, strict=True):
                v *= MOMENTUM
                g *= LR
                v -= g
                p += v

    return epoch


def sweeper_trainer(x: np.ndarray, labels: np.ndarray, y: np.ndarray) -> Callable:
    model = MLP([D, H, K], "tanh")
    optimizer = Momentum(LR, MOMENTUM)
    workspace = Workspace(model, B)

    def epoch(order: np.ndarray) -> None:
        # Whole batches only, as the bare step and the limit.
        order = order[: N - N % B]
        train_epoch(model, optimizer, x, labels, order, B, workspace=workspace, y_onehot=y)

    return epoch


def limit_trainer(x: np.ndarray, rng: np.random.Generator) -> Callable:
    w1, w2 = rng.standard_normal((D, H), np.float32), rng.standard_normal((H, K), np.float32)
    hot = np.ascontiguousarray(x[:B])
    h, dh = np.empty((B, H), np.float32), np.empty((B, H), np.float32)
    z = np.empty((B, K), np.float32)
    g1, g2 = np.empty_like(w1), np.empty_like(w2)

    def epoch(order: np.ndarray) -> None:
        for _ in range(0, N - B + 1, B):
            np.matmul(hot, w1, out=h)
            np.matmul(h, w2, out=z)
            np.matmul(h.T, z, out=g2)
            np.matmul(z, w2.T, out=dh)
            np.matmul(hot.T, dh, out=g1)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("## A bare NumPy step against sweeper's and the limit\n")
    print(describe_machine())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D), dtype=np.float32)
    labels = rng.integers(0, K, N)
    y = one_hot(labels, K)
    trainers = {
        "bare": bare_trainer(x, y, rng),
        "sweeper": sweeper_trainer(x, labels, y),
        "limit": limit_trainer(x, rng),
    }
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    with threadpool_limits(limits=1):
        for _ in range(args.rounds):
            order = rng.permutation(N)
            for name, epoch in trainers.items():
                start = time.process_time()
                epoch(order)
                seconds[name].append(time.process_time() - start)
    median = {name: statistics.median(s) for name, s in seconds.items()}
    steps = N // B
    print(f"\nmedians of {args.rounds} epochs of {steps} steps, CPU time:\n")
    print("| step | us per step | fraction of the limit |")
    print("|---|---|---|")
    for name, s in median.items():
        print(f"| {name} | {s / steps * 1e6:.0f} | {median['limit'] / s:.0%} |")


if __name__ == "__main__":
    main()
