"""How close a bare NumPy training step comes to the GEMM limit, beside sweeper's step.

The bare step is one hidden layer of tanh and momentum SGD written as tightly as NumPy
allows: preallocated arrays, every product and activation in place, no input checks, no
accuracy count, no dropout or penalty branches. It and sweeper's ``train_epoch`` train on
the same shuffled batches of random float32 data of the network's shape (the values do not
change the time): 784-128-10 at batch 128 on 48,000 samples (Fashion-MNIST's training split),
64-64-10 at batch 32 on 1,150 (the digits default, eight epochs a round). The limit is the
step's five matrix products alone on one batch kept hot in cache, as in
``core_throughput.py``. Rounds of the three alternate, one BLAS thread, and the medians of
the process's CPU time are given.

    python bench/bare_step.py [--rounds 7] [--networks h128 digits]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from machine import describe_machine
from threadpoolctl import threadpool_limits

from sweeper.core import MLP, Momentum, Workspace, one_hot
from sweeper.core.training import train_epoch

K = 10
LR, MOMENTUM = 0.01, 0.9


class Shape(NamedTuple):
    samples: int
    inputs: int
    hidden: int
    batch: int
    epochs: int  # per round, so that a round of the small network is not all timer noise


NETWORKS = {"h128": Shape(48_000, 784, 128, 128, 1), "digits": Shape(1_150, 64, 64, 32, 8)}


def batches(shape: Shape) -> range:
    """The start of every whole batch of an epoch."""
    return range(0, shape.samples - shape.batch + 1, shape.batch)


def bare_trainer(shape: Shape, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Callable:
    d, h_, b = shape.inputs, shape.hidden, shape.batch
    w1 = (rng.standard_normal((d, h_)) * 0.05).astype(np.float32)
    w2 = (rng.standard_normal((h_, K)) * 0.05).astype(np.float32)
    b1, b2 = np.zeros(h_, np.float32), np.zeros(K, np.float32)
    params = [w1, b1, w2, b2]
    velocities = [np.zeros_like(p) for p in params]
    grads = [np.empty_like(p) for p in params]
    xb, yb = np.empty((b, d), np.float32), np.empty((b, K), np.float32)
    h, dh, t = (np.empty((b, h_), np.float32) for _ in range(3))
    z, row = np.empty((b, K), np.float32), np.empty((b, 1), np.float32)

    def epoch(order: np.ndarray) -> None:
        for i in batches(shape):
            idx = order[i : i + b]
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
            np.multiply(z, 1.0 / b, out=z)
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


def sweeper_trainer(shape: Shape, x: np.ndarray, labels: np.ndarray, y: np.ndarray) -> Callable:
    model = MLP([shape.inputs, shape.hidden, K], "tanh")
    optimizer = Momentum(LR, MOMENTUM)
    workspace = Workspace(model, shape.batch)
    whole = len(batches(shape)) * shape.batch

    def epoch(order: np.ndarray) -> None:
        # Whole batches only, as the bare step and the limit.
        train_epoch(
            model, optimizer, x, labels, order[:whole], shape.batch,
            workspace=workspace, y_onehot=y,
        )  # fmt: skip

    return epoch


def limit_trainer(shape: Shape, x: np.ndarray, rng: np.random.Generator) -> Callable:
    d, h_, b = shape.inputs, shape.hidden, shape.batch
    w1, w2 = rng.standard_normal((d, h_), np.float32), rng.standard_normal((h_, K), np.float32)
    hot = np.ascontiguousarray(x[:b])
    h, dh = np.empty((b, h_), np.float32), np.empty((b, h_), np.float32)
    z = np.empty((b, K), np.float32)
    g1, g2 = np.empty_like(w1), np.empty_like(w2)

    def epoch(order: np.ndarray) -> None:
        for _ in batches(shape):
            np.matmul(hot, w1, out=h)
            np.matmul(h, w2, out=z)
            np.matmul(h.T, z, out=g2)
            np.matmul(z, w2.T, out=dh)
            np.matmul(hot.T, dh, out=g1)

    return epoch


def measure(name: str, shape: Shape, rounds: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((shape.samples, shape.inputs), dtype=np.float32)
    labels = rng.integers(0, K, shape.samples)
    y = one_hot(labels, K)
    trainers = {
        "bare": bare_trainer(shape, x, y, rng),
        "sweeper": sweeper_trainer(shape, x, labels, y),
        "limit": limit_trainer(shape, x, rng),
    }
    seconds: dict[str, list[float]] = {contender: [] for contender in trainers}
    with threadpool_limits(limits=1):
        for _ in range(rounds):
            orders = [rng.permutation(shape.samples) for _ in range(shape.epochs)]
            for contender, epoch in trainers.items():
                start = time.process_time()
                for order in orders:
                    epoch(order)
                seconds[contender].append(time.process_time() - start)
    median = {contender: statistics.median(s) for contender, s in seconds.items()}
    steps = len(batches(shape)) * shape.epochs
    network = f"{shape.inputs}-{shape.hidden}-{K} b{shape.batch}"
    print(f"\n{name}, {network}: medians of {rounds} rounds of {steps} steps, CPU time\n")
    print("| step | us per step | fraction of the limit |")
    print("|---|---|---|")
    for contender, s in median.items():
        print(f"| {contender} | {s / steps * 1e6:.1f} | {median['limit'] / s:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    args = parser.parse_args()
    print("## A bare NumPy step against sweeper's and the limit\n")
    print(describe_machine())
    for name in args.networks:
        measure(name, NETWORKS[name], args.rounds)


if __name__ == "__main__":
    main()
