"""Core throughput: sweeper's NumPy MLP vs scikit-learn's MLPClassifier vs PyTorch on the CPU.

The same network (784-128-10), batch 128, SGD with classic momentum 0.9 and the same learning
rate, on real Fashion-MNIST. Each contender's epochs are interleaved (one epoch of each in
turn), so a change in machine load hits them alike; samples per second are medians over the
epochs. The GEMM limit is an epoch of nothing but numpy's matrix products of each training
step on the exact shapes, timed in the same round robin: no implementation of this network can
be faster than the BLAS it calls, so each contender's fraction of that limit shows what is left.

    python bench/core_throughput.py            # the full tables (several minutes)
    python bench/core_throughput.py --quick    # a smoke run on a slice
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from machine import describe_machine, load_average, markdown_table
from threadpoolctl import threadpool_limits

from sweeper.core import MLP, Momentum, one_hot, train_epoch
from sweeper.data import load_dataset

HIDDEN = 128
N_CLASSES = 10
BATCH = 128
MOMENTUM = 0.9
LR = 0.01
SEED = 0


class Contender:
    name = ""

    def epoch(self, order: np.ndarray) -> None:
        raise NotImplementedError

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError


class Sweeper(Contender):
    name = "sweeper"

    def __init__(self, x: np.ndarray, y: np.ndarray, activation: str) -> None:
        self.model = MLP([x.shape[1], HIDDEN, N_CLASSES], activation, seed=SEED, dtype=x.dtype)
        self.optimizer = Momentum(LR, MOMENTUM)
        self.x = x
        self.y_onehot = one_hot(y, N_CLASSES, dtype=x.dtype)

    def epoch(self, order: np.ndarray) -> None:
        train_epoch(self.model, self.optimizer, self.x, self.y_onehot, order, BATCH)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.model.evaluate(x, y)[1]


class Sklearn(Contender):
    """``partial_fit`` is one epoch over the data, shuffled by the estimator itself."""

    name = "sklearn"

    def __init__(self, x: np.ndarray, y: np.ndarray, activation: str) -> None:
        from sklearn.neural_network import MLPClassifier

        self.clf = MLPClassifier(
            hidden_layer_sizes=(HIDDEN,), activation=activation, solver="sgd",
            learning_rate="constant", learning_rate_init=LR, momentum=MOMENTUM,
            nesterovs_momentum=False, batch_size=BATCH, alpha=0.0, shuffle=True,
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

    def __init__(self, x: np.ndarray, y: np.ndarray, activation: str) -> None:
        import torch

        self.torch = torch
        torch.manual_seed(SEED)
        act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[activation]
        dtype = {np.float32: torch.float32, np.float64: torch.float64}[x.dtype.type]
        self.net = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], HIDDEN), act(), torch.nn.Linear(HIDDEN, N_CLASSES)
        ).to(dtype)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = torch.nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y)

    def epoch(self, order: np.ndarray) -> None:
        order_t = self.torch.from_numpy(order)
        for i in range(0, len(order_t), BATCH):
            idx = order_t[i : i + BATCH]
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(self.net(self.x[idx]), self.y[idx]).backward()
            self.optimizer.step()

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        with self.torch.no_grad():
            predicted = self.net(self.torch.from_numpy(x)).argmax(dim=1).numpy()
        return float(np.mean(predicted == y))


def available_contenders(wanted: list[str]) -> list[type[Contender]]:
    contenders: list[type[Contender]] = [Sweeper]
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


def gemm_shapes(d_in: int, batch: int) -> list[tuple[str, tuple[int, int], tuple[int, int], bool]]:
    """(name, left shape, right shape, left transposed) of every product in one step."""
    return [
        ("x@W1", (batch, d_in), (d_in, HIDDEN), False),
        ("h@W2", (batch, HIDDEN), (HIDDEN, N_CLASSES), False),
        ("dW2=h.T@d", (batch, HIDDEN), (batch, N_CLASSES), True),
        ("dh=d@W2.T", (batch, N_CLASSES), (N_CLASSES, HIDDEN), False),
        ("dW1=x.T@dh", (batch, d_in), (batch, HIDDEN), True),
    ]


def step_flops(d_in: int, batch: int) -> int:
    total = 0
    for _, left, right, transposed in gemm_shapes(d_in, batch):
        m, k = (left[1], left[0]) if transposed else left
        total += 2 * m * k * right[1]
    return total


class GemmLimit(Contender):
    """Only the matrix products of each step, on the same shapes, into preallocated outputs.

    Timed in the same round robin as the contenders, so it sees the same machine load.
    """

    name = "limit"

    def __init__(self, x: np.ndarray, y: np.ndarray, activation: str) -> None:
        rng = np.random.default_rng(0)
        self.products = []
        for _, left_shape, right_shape, transposed in gemm_shapes(x.shape[1], BATCH):
            left = rng.standard_normal(left_shape).astype(x.dtype)
            right = rng.standard_normal(right_shape).astype(x.dtype)
            a = left.T if transposed else left
            self.products.append((a, right, np.empty((a.shape[0], right.shape[1]), x.dtype)))

    def epoch(self, order: np.ndarray) -> None:
        for _ in range(0, len(order), BATCH):
            for a, b, out in self.products:
                np.matmul(a, b, out=out)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float("nan")


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    activation: str,
    epochs: int,
    contenders: list[type[Contender]],
) -> dict[str, tuple[float, float]]:
    """Median samples/s and final test accuracy of each contender, epochs interleaved."""
    models = [cls(x, y, activation) for cls in contenders]
    rng = np.random.default_rng(SEED)
    seconds: dict[str, list[float]] = {m.name: [] for m in models}
    with warnings.catch_warnings():
        # sklearn warns after every one-epoch partial_fit that it has not converged.
        warnings.simplefilter("ignore")
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for model in models:
                seconds[model.name].append(timed(lambda m=model, o=order: m.epoch(o)))
    return {
        m.name: (len(x) / statistics.median(seconds[m.name]), m.accuracy(x_test, y_test))
        for m in models
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--activations", nargs="+", default=["tanh", "relu"])
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument(
        "--against", nargs="*", default=["sklearn", "torch"], choices=["sklearn", "torch"]
    )
    parser.add_argument("--quick", action="store_true", help="2 epochs, 6,000 samples, float32")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.dtypes, args.activations = 2, ["float32"], ["tanh"]
        args.max_train_samples = args.max_train_samples or 6000

    contenders = available_contenders(args.against)
    names = [c.name for c in contenders]
    print("## Core throughput\n")
    print(describe_machine())
    for module in ("sklearn", "torch"):
        if module in names:
            print(f"{module} {__import__(module).__version__}")
    if "torch" in names:
        import torch

        print(
            f"torch BLAS: MKL {torch.backends.mkl.is_available()},"
            f" oneDNN {torch.backends.mkldnn.is_available()}"
        )
    data = load_dataset(
        "fashion_mnist", args.data_dir, val_fraction=0.2, dtype=np.float64,
        max_train_samples=args.max_train_samples,
    )  # fmt: skip
    n, d_in = data.x_train.shape
    print(
        f"\nFashion-MNIST (80% of train, as a sweep run trains): {n} samples,"
        f" {len(data.y_test)} test; {d_in}-{HIDDEN}-{N_CLASSES}, batch {BATCH}, SGD lr {LR}"
        f" momentum {MOMENTUM}; medians over {args.epochs} epochs;"
        f" {step_flops(d_in, BATCH) * n / BATCH / 1e9:.2f} GFLOP per epoch"
    )
    speed_rows, limit_rows, accuracy_rows = [], [], []
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
                        x, data.y_train, x_test, data.y_test, activation, args.epochs,
                        [*contenders, GemmLimit],
                    )  # fmt: skip
                    limit = rates["limit"][0]
                    key = [activation, dtype_name, str(threads)]
                    speed = [f"{rates[name][0]:,.0f}" for name in names]
                    ratios = [
                        f"{rates['sweeper'][0] / rates[other][0]:.2f}"
                        for other in names
                        if other != "sweeper"
                    ]
                    speed_rows.append(key + speed + ratios + [f"{os.getloadavg()[0]:.1f}"])
                    limit_rows.append(
                        key
                        + [f"{limit:,.0f}", f"{step_flops(d_in, BATCH) * limit / BATCH / 1e9:.1f}"]
                        + [f"{rates[name][0] / limit:.0%}" for name in names]
                    )
                    accuracy_rows.append(key + [f"{rates[name][1]:.4f}" for name in names])
                    done = ", ".join(f"{k} {rate:,.0f}/s" for k, (rate, _) in rates.items())
                    print(f"  {' '.join(key)}: {done}", flush=True)

    others = [f"sweeper/{name}" for name in names if name != "sweeper"]
    print("\nSamples per second (median over epochs) and sweeper's ratio to each:\n")
    header = ["activation", "dtype", "threads", *names, *others, "load (1 min)"]
    print(markdown_table(header, speed_rows))
    print("\nGEMM limit (numpy matmul on one step's shapes) and the fraction each reaches:\n")
    header = ["activation", "dtype", "threads", "limit samples/s", "limit GFLOP/s", *names]
    print(markdown_table(header, limit_rows))
    print(f"\nTest accuracy after {args.epochs} epochs:\n")
    print(markdown_table(["activation", "dtype", "threads", *names], accuracy_rows))
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
