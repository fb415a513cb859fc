"""Core throughput: sweeper's NumPy MLP, before and after, vs scikit-learn, PyTorch and the limit.

Three networks, each with its own data: 784-128-10 and 784-1024-1024-10 at batch 128 on real
Fashion-MNIST, and the default study's 64-64-10 at batch 32 on the 8x8 digits. Every
contender trains the same network with SGD and classic momentum 0.9 (same learning rate, no
penalty): sweeper's core now (`sweeper`), the core of an earlier commit imported beside it
(`before`, see previous_core.py), scikit-learn's MLPClassifier and PyTorch, with
``--against bare`` the barest NumPy step (`bare`: what any NumPy MLP pays), and with
``--against floor`` what no step can skip (`floor`: its batch gathered, its products on real
operands and the momentum update in its fewest passes, nothing else). The GEMM limit
(`limit`) is nothing but numpy's matrix products of each training step on the exact shapes:
no implementation of the network can be faster than the BLAS it calls.

Contenders take turns, one round of each (a round is one or more epochs on the same
shuffled order), so a change in the machine's load hits them alike. The time of a round is
this process's CPU time (``time.process_time``), which on a shared machine leaves out the
time spent waiting for a core; wall time is printed beside it. Samples per second are
medians over the rounds.

    python bench/core_throughput.py            # the full tables (several minutes)
    python bench/core_throughput.py --quick    # a smoke run on a slice
    python bench/core_throughput.py --before '' --against bare   # sweeper against bare NumPy
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from machine import describe_machine, load_average, markdown_table
from previous_core import DEFAULT_REF, load_core
from threadpoolctl import threadpool_limits

import sweeper.core
from sweeper.data import load_dataset

N_CLASSES = 10
MOMENTUM = 0.9
LR = 0.01
SEED = 0


@dataclass(frozen=True)
class Network:
    name: str
    dataset: str
    hidden: tuple[int, ...]
    batch: int
    # Training samples used, and epochs per timed round: each round is long enough to time.
    samples: int | None
    epochs_per_round: int


NETWORKS = {
    "h128": Network("h128", "fashion_mnist", (128,), 128, None, 1),
    "h1024x2": Network("h1024x2", "fashion_mnist", (1024, 1024), 128, 6000, 1),
    "digits": Network("digits", "digits", (64,), 32, None, 8),
}


class Contender:
    name = ""

    def epoch(self, order: np.ndarray) -> None:
        raise NotImplementedError

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError


class Sweeper(Contender):
    """``train_epoch`` with what ``train`` keeps for a whole run: workspace and one-hot labels."""

    name = "sweeper"
    core: ModuleType = sweeper.core

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        core = self.core
        sizes = [x.shape[1], *net.hidden, N_CLASSES]
        self.model = core.MLP(sizes, activation, seed=SEED, dtype=x.dtype)
        self.optimizer = core.Momentum(LR, MOMENTUM)
        self.x, self.y, self.batch = x, y, net.batch
        self.y_onehot = core.one_hot(y, N_CLASSES, dtype=x.dtype)
        self.workspace = core.Workspace(self.model, net.batch)

    def epoch(self, order: np.ndarray) -> None:
        self.core.train_epoch(
            self.model, self.optimizer, self.x, self.y, order, self.batch,
            workspace=self.workspace, y_onehot=self.y_onehot,
        )  # fmt: skip

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.evaluate(x, y)[1])


class BeforeWithWorkspace(Sweeper):
    """An earlier core that already had ``Workspace`` (issue 19's second round on)."""

    name = "before"


class Before(Sweeper):
    """The earlier core's ``train_epoch``: one-hot labels, a fresh set of arrays every step."""

    name = "before"
    core: ModuleType

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        core = self.core
        sizes = [x.shape[1], *net.hidden, N_CLASSES]
        self.model = core.MLP(sizes, activation, seed=SEED, dtype=x.dtype)
        self.optimizer = core.Momentum(LR, MOMENTUM)
        self.x, self.batch = x, net.batch
        self.y_onehot = core.one_hot(y, N_CLASSES, dtype=x.dtype)

    def epoch(self, order: np.ndarray) -> None:
        self.core.train_epoch(self.model, self.optimizer, self.x, self.y_onehot, order, self.batch)


class Sklearn(Contender):
    """``partial_fit`` is one epoch over the data, shuffled by the estimator itself."""

    name = "sklearn"

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(
            hidden_layer_sizes=net.hidden, activation=activation, solver="sgd",
            learning_rate="constant", learning_rate_init=LR, momentum=MOMENTUM,
            nesterovs_momentum=False, batch_size=net.batch, alpha=0.0, shuffle=True,
            random_state=SEED, max_iter=1,
        )  # fmt: skip
        self.x, self.y = x, y

    def epoch(self, order: np.ndarray) -> None:
        self.clf.partial_fit(self.x, self.y, classes=np.arange(N_CLASSES))

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.clf.predict(x) == y))


class Torch(Contender):
    """The loop a PyTorch user writes for in-memory data: index the tensors per batch."""

    name = "torch"

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        import torch

        self.torch = torch
        torch.manual_seed(SEED)
        act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[x.dtype.type]
        sizes = [x.shape[1], *net.hidden]
        layers: list[Any] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [torch.nn.Linear(fan_in, fan_out), act()]
        layers.append(torch.nn.Linear(sizes[-1], N_CLASSES))
        self.net = torch.nn.Sequential(*layers).to(dtype)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y.astype(np.int64))
        self.batch = net.batch

    def epoch(self, order: np.ndarray) -> None:
        order_t = self.torch.from_numpy(order)
        for i in range(0, len(order_t), self.batch):
            idx = order_t[i : i + self.batch]
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(self.net(self.x[idx]), self.y[idx]).backward()
            self.optimizer.step()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with self.torch.no_grad():
            predicted = self.net(self.torch.from_numpy(x)).argmax(dim=1).numpy()
        return float(np.mean(predicted == y))


def small_weights(
    sizes: list[int], dtype: np.dtype
) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """The (fan-in, fan-out) of each layer, and seeded small weights of those shapes."""
    rng = np.random.default_rng(SEED)
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    return pairs, [(rng.standard_normal(p) * 0.05).astype(dtype) for p in pairs]


class Bare(Contender):
    """The barest NumPy step: preallocated arrays, everything in place, no input checks, no
    running loss or accuracy, no dropout or penalty branches; what any NumPy MLP pays."""

    name = "bare"

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        sizes = [x.shape[1], *net.hidden, N_CLASSES]
        pairs, self.weights = small_weights(sizes, x.dtype)
        self.biases = [np.zeros(o, x.dtype) for _, o in pairs]
        self.params = [*self.weights, *self.biases]
        self.velocities = [np.zeros_like(p) for p in self.params]
        self.grads = [np.empty_like(p) for p in self.params]
        self.x, self.y = x, np.eye(N_CLASSES, dtype=x.dtype)[y]
        self.sizes, self.batch, self.relu = sizes, net.batch, activation == "relu"
        self.buffers: dict[int, tuple[Any, ...]] = {}

    def _buffers(self, n: int) -> tuple[Any, ...]:
        """Inputs, targets, each layer's outputs, the deltas and derivatives of the hidden
        layers, and a column (a row's max, then its sum), for batches of ``n`` rows."""
        if n not in self.buffers:
            dt, hidden = self.x.dtype, self.sizes[1:-1]
            self.buffers[n] = (
                np.empty((n, self.sizes[0]), dt),
                np.empty((n, N_CLASSES), dt),
                [np.empty((n, h), dt) for h in self.sizes[1:]],
                [np.empty((n, h), dt) for h in hidden],
                [np.empty((n, h), dt) for h in hidden],
                np.empty((n, 1), dt),
            )
        return self.buffers[n]

    def epoch(self, order: np.ndarray) -> None:
        last = len(self.weights) - 1
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            xb, yb, outs, deltas, derivatives, row = self._buffers(len(idx))
            self.x.take(idx, axis=0, out=xb, mode="clip")
            self.y.take(idx, axis=0, out=yb, mode="clip")
            a = xb
            for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                a = np.matmul(a, w, out=outs[layer])
                a += b
                if layer < last:
                    if self.relu:
                        np.maximum(a, 0, out=a)
                    else:
                        np.tanh(a, out=a)
            np.maximum.reduce(a, axis=1, keepdims=True, out=row)
            a -= row
            np.exp(a, out=a)
            np.add.reduce(a, axis=1, keepdims=True, out=row)
            a /= row
            a -= yb
            a *= 1.0 / len(idx)
            delta = a
            for layer in range(last, -1, -1):
                below = xb if layer == 0 else outs[layer - 1]
                np.matmul(below.T, delta, out=self.grads[layer])
                np.add.reduce(delta, axis=0, out=self.grads[last + 1 + layer])
                if layer == 0:
                    break
                back = np.matmul(delta, self.weights[layer].T, out=deltas[layer - 1])
                derivative = derivatives[layer - 1]
                if self.relu:
                    np.greater(below, 0, out=derivative)
                else:
                    np.multiply(below, below, out=derivative)
                    np.subtract(1, derivative, out=derivative)
                back *= derivative
                delta = back
            for p, v, g in zip(self.params, self.velocities, self.grads, strict=True):
                v *= MOMENTUM
                g *= LR
                v -= g
                p += v

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        a = x
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            a = a @ w + b
            if layer < len(self.weights) - 1:
                a = np.maximum(a, 0) if self.relu else np.tanh(a)
        return float(np.mean(a.argmax(axis=1) == y))


class Floor(Contender):
    """What no training step with momentum can skip: its batch gathered from the training
    set, its matrix products on it (each one's output the next one's input, as in a real
    step), and the update in its fewest passes (v = m*v - g; w += v, the rate taken as folded
    into the gradient); no activation, loss or bias. Beside ``limit`` (the products alone, on
    operands that stay in cache) it bounds the fraction of the limit a NumPy step can reach."""

    name = "floor"

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        pairs, self.weights = small_weights([x.shape[1], *net.hidden, N_CLASSES], x.dtype)
        self.grads = [np.empty(p, x.dtype) for p in pairs]
        self.velocities = [np.zeros(p, x.dtype) for p in pairs]
        self.x, self.batch = x, net.batch
        self.xb = np.empty((net.batch, x.shape[1]), x.dtype)
        self.outs = [np.empty((net.batch, o), x.dtype) for _, o in pairs]
        self.deltas = [np.empty((net.batch, i), x.dtype) for i, _ in pairs[1:]]

    def epoch(self, order: np.ndarray) -> None:
        last = len(self.weights) - 1
        for i in range(0, len(order), self.batch):
            idx = order[i : i + self.batch]
            n = len(idx)
            xb = self.x.take(idx, axis=0, out=self.xb[:n], mode="clip")
            a = xb
            for w, out in zip(self.weights, self.outs, strict=True):
                a = np.matmul(a, w, out=out[:n])
            # The rate folded into the gradient: the step scales the output's error anyway.
            a *= LR / n
            delta = a
            for layer in range(last, -1, -1):
                below = xb if layer == 0 else self.outs[layer - 1][:n]
                np.matmul(below.T, delta, out=self.grads[layer])
                if layer > 0:
                    delta = np.matmul(delta, self.weights[layer].T, out=self.deltas[layer - 1][:n])
            for w, v, g in zip(self.weights, self.velocities, self.grads, strict=True):
                v *= MOMENTUM
                v -= g
                w += v

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float("nan")


def gemm_shapes(
    sizes: list[int], batch: int
) -> list[tuple[tuple[int, int], tuple[int, int], bool]]:
    """(left shape, right shape, left transposed) of every matrix product in one step.

    Forward ``a @ W`` per layer; backward ``a.T @ delta`` per layer and ``delta @ W.T`` for
    every layer but the first.
    """
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    shapes = [((batch, i), (i, o), False) for i, o in pairs]
    for layer in range(len(pairs) - 1, -1, -1):
        i, o = pairs[layer]
        shapes.append(((batch, i), (batch, o), True))
        if layer > 0:
            shapes.append(((batch, o), (o, i), False))
    return shapes


def step_flops(sizes: list[int], batch: int) -> int:
    total = 0
    for left, right, transposed in gemm_shapes(sizes, batch):
        m, k = (left[1], left[0]) if transposed else left
        total += 2 * m * k * right[1]
    return total


class GemmLimit(Contender):
    """Only the matrix products of each step, on the same shapes, into preallocated outputs."""

    name = "limit"

    def __init__(self, x: np.ndarray, y: np.ndarray, net: Network, activation: str) -> None:
        rng = np.random.default_rng(0)
        self.batch = net.batch
        self.products = []
        for left_shape, right_shape, transposed in gemm_shapes(
            [x.shape[1], *net.hidden, N_CLASSES], net.batch
        ):
            left = rng.standard_normal(left_shape).astype(x.dtype)
            right = rng.standard_normal(right_shape).astype(x.dtype)
            a = left.T if transposed else left
            self.products.append((a, right, np.empty((a.shape[0], right.shape[1]), x.dtype)))

    def epoch(self, order: np.ndarray) -> None:
        for _ in range(0, len(order), self.batch):
            for a, b, out in self.products:
                np.matmul(a, b, out=out)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float("nan")


@dataclass
class Measured:
    cpu_rate: float  # samples per CPU second, median over rounds
    wall_rate: float
    accuracy: float


def measure(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    net: Network,
    activation: str,
    rounds: int,
    contenders: list[type[Contender]],
) -> dict[str, Measured]:
    """Each contender's median rates and final test accuracy, rounds interleaved."""
    models = [cls(x, y, net, activation) for cls in contenders]
    rng = np.random.default_rng(SEED)
    cpu: dict[str, list[float]] = {m.name: [] for m in models}
    wall: dict[str, list[float]] = {m.name: [] for m in models}
    with warnings.catch_warnings():
        # sklearn warns after every one-epoch partial_fit that it has not converged.
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            orders = [rng.permutation(len(x)) for _ in range(net.epochs_per_round)]
            for model in models:
                start_cpu, start_wall = time.process_time(), time.perf_counter()
                for order in orders:
                    model.epoch(order)
                cpu[model.name].append(time.process_time() - start_cpu)
                wall[model.name].append(time.perf_counter() - start_wall)
    per_round = len(x) * net.epochs_per_round
    return {
        m.name: Measured(
            per_round / statistics.median(cpu[m.name]),
            per_round / statistics.median(wall[m.name]),
            m.accuracy(x_test, y_test),
        )
        for m in models
    }


def available_contenders(wanted: list[str], before_ref: str | None) -> list[type[Contender]]:
    contenders: list[type[Contender]] = [Sweeper]
    if before_ref:
        core = load_core(before_ref)
        before = BeforeWithWorkspace if hasattr(core, "Workspace") else Before
        before.core = core
        contenders.append(before)
    if "bare" in wanted:
        contenders.append(Bare)
    if "floor" in wanted:
        contenders.append(Floor)
    for module, cls in (("sklearn", Sklearn), ("torch", Torch)):
        if module not in wanted:
            continue
        try:
            __import__(module)
        except ImportError:
            print(f"({module} not installed: skipped; `pip install -e '.[bench]'`)")
            continue
        contenders.append(cls)
    return contenders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    # What every contender implements alike (the bare step knows only these two).
    parser.add_argument("--activations", nargs="+", default=["tanh"], choices=["tanh", "relu"])
    parser.add_argument(
        "--before", default=DEFAULT_REF, help="commit whose core is timed as `before` ('' : none)"
    )
    parser.add_argument(
        "--against",
        nargs="*",
        default=["sklearn", "torch"],
        choices=["bare", "floor", "sklearn", "torch"],
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds on slices, h128 only")
    args = parser.parse_args()
    networks = [NETWORKS[name] for name in args.networks]
    if args.quick:
        args.rounds, networks = 2, [Network("h128", "fashion_mnist", (128,), 128, 6000, 1)]

    contenders = available_contenders(args.against, args.before)
    names = [c.name for c in contenders]
    print("## Core throughput\n")
    print(describe_machine())
    for module in ("sklearn", "torch"):
        if module in names:
            print(f"{module} {__import__(module).__version__}")
    if args.before:
        print(f"before: sweeper.core at {args.before}")
    print(f"medians over {args.rounds} rounds; rates in samples per CPU second of this process")

    speed_rows, wall_rows, limit_rows, accuracy_rows = [], [], [], []
    for net in networks:
        data = load_dataset(
            net.dataset, args.data_dir if net.dataset != "digits" else None,
            val_fraction=0.2, dtype=np.float64, max_train_samples=net.samples,
        )  # fmt: skip
        n, d_in = data.x_train.shape
        sizes = [d_in, *net.hidden, N_CLASSES]
        shape = "-".join(map(str, sizes))
        print(
            f"\n{net.name}: {net.dataset} {n} training samples, {len(data.y_test)} test;"
            f" {shape}, batch {net.batch}; {net.epochs_per_round} epoch(s) per round;"
            f" {step_flops(sizes, net.batch) / 1e6:.2f} MFLOP per step",
            flush=True,
        )
        for dtype_name in args.dtypes:
            dtype = np.dtype(dtype_name)
            x, x_test = data.x_train.astype(dtype), data.x_test.astype(dtype)
            for threads in args.threads:
                with threadpool_limits(limits=threads):
                    if "torch" in names:
                        import torch

                        torch.set_num_threads(threads)
                    for activation in args.activations:
                        rates = measure(
                            x, data.y_train, x_test, data.y_test, net, activation,
                            args.rounds, [*contenders, GemmLimit],
                        )  # fmt: skip
                        limit = rates["limit"].cpu_rate
                        key = [f"{shape} b{net.batch}", activation, dtype_name, str(threads)]
                        ratios = [
                            f"{rates['sweeper'].cpu_rate / rates[other].cpu_rate:.2f}"
                            for other in names
                            if other != "sweeper"
                        ]
                        speed_rows.append(
                            key + [f"{rates[c].cpu_rate:,.0f}" for c in names] + ratios
                        )
                        wall_rows.append(
                            key + [f"{rates[c].wall_rate:,.0f}" for c in [*names, "limit"]]
                        )
                        gflops = step_flops(sizes, net.batch) * limit / net.batch / 1e9
                        limit_rows.append(
                            key
                            + [f"{limit:,.0f}", f"{gflops:.1f}"]
                            + [f"{rates[c].cpu_rate / limit:.0%}" for c in names]
                        )
                        accuracy_rows.append(key + [f"{rates[c].accuracy:.4f}" for c in names])
                        done = ", ".join(f"{k} {r.cpu_rate:,.0f}/s" for k, r in rates.items())
                        print(f"  {' '.join(key)}: {done} ({load_average()})", flush=True)

    key = ["network", "activation", "dtype", "threads"]
    others = [f"sweeper/{name}" for name in names if name != "sweeper"]
    print("\nSamples per CPU second (median over rounds) and sweeper's ratio to each:\n")
    print(markdown_table([*key, *names, *others], speed_rows))
    print("\nGEMM limit (numpy matmul on one step's shapes) and the fraction each reaches:\n")
    print(markdown_table([*key, "limit samples/s", "limit GFLOP/s", *names], limit_rows))
    print("\nThe same in samples per wall-clock second (includes waiting for a core):\n")
    print(markdown_table([*key, *names, "limit"], wall_rows))
    print(f"\nTest accuracy after {args.rounds} rounds:\n")
    print(markdown_table([*key, *names], accuracy_rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
