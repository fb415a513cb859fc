"""Where a real run's time goes: minibatch steps, per-epoch evaluation, logging, checkpoint, rest.

Each configuration is run through ``sweeper.run.run_config`` (everything a run of a sweep
does: data, network, training, test evaluation, checkpoint, curves, MLflow logging into a
SQLite store created beforehand) in a child process, at one BLAS thread, with the functions
that make up a run wrapped in stopwatches. The time of each part is exclusive (a part called
inside another is counted once, in the inner part). The same configuration runs with this
checkout's code (`after`) and an earlier commit's whole ``src/`` (`before`, extracted with
``git archive``), the two alternating, repeats interleaved; the tables give medians. As a run
of its own does, `after` keeps its prepared data in a user cache (a fresh one per invocation):
its first repeat prepares it, the next ones read it. With more than one repeat the tables
summarise repeats 2 to n (the common case); every repeat's seconds are printed as it ends.

    python bench/run_breakdown.py                      # Fashion-MNIST and MNIST, h128, 20 epochs
    python bench/run_breakdown.py --hidden 1024,1024 --max-train-samples 12000
    python bench/run_breakdown.py --quick              # a smoke run on the digits
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from machine import describe_machine, load_average, markdown_table
from previous_core import DEFAULT_REF, REPO, extract

# (part, what it holds), in the order of the tables.
PARTS = [
    ("steps", "the epochs' minibatch steps (train_epoch)"),
    ("evaluation", "per-epoch scoring of the validation set (and training set if full)"),
    ("logging", "per-epoch metrics to MLflow (RunLogger.log_epoch)"),
    ("loop", "the rest of the epoch loop: shuffling, best-model copy"),
    ("data", "loading and standardising the dataset"),
    ("test", "test evaluation of the best model"),
    ("checkpoint", "checkpoint file and the MLflow model"),
    ("curves", "the two plots"),
    ("mlflow", "the run's other MLflow logging: params, files, summary metrics, tags"),
]
# A contender's marker (not an override): its run is one of a sweep's.
IN_SWEEP = "--in-sweep"
IN_SWEEP_ENV = "SWEEPER_BENCH_IN_SWEEP"
# Set for the `before` child, whose code comes first on PYTHONPATH.
BEFORE_ENV = "SWEEPER_BENCH_BEFORE"
# "other" in the tables: the rest of the run (MLflow's start and end of the run, building the
# network and optimiser).


class Stopwatches:
    """Exclusive CPU and wall time per part: a nested call's time leaves its caller's part."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []

    def wrap(self, owner: object, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            # Scoring outside the epoch loop is the test evaluation.
            if part == "evaluation" and not any(f[0] == "loop" for f in self.stack):
                part_now = "test"
            else:
                part_now = part
            frame = [part_now, time.perf_counter(), time.process_time(), 0.0, 0.0]
            self.stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self.stack.pop()
                wall = time.perf_counter() - frame[1]
                cpu = time.process_time() - frame[2]
                self.wall[frame[0]] += wall - frame[3]
                self.cpu[frame[0]] += cpu - frame[4]
                if self.stack:
                    self.stack[-1][3] += wall
                    self.stack[-1][4] += cpu

        setattr(owner, name, timed)


def child(overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One tracked run of ``overrides`` with the importable sweeper; the parts' seconds."""
    # The imports' objects frozen, as the command freezes its own (sweeper/__main__.py): else
    # the collections that scan them fall wherever the heap's growth puts them, here inside
    # the run, in a command before it starts (the `before` commit's command too).
    gc.disable()
    from hydra import compose, initialize_config_dir
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf
    from threadpoolctl import threadpool_limits

    import sweeper.app as app
    import sweeper.core.network as network
    import sweeper.core.training as training
    import sweeper.experiment as experiment
    from sweeper.config import flat_params, to_experiment_config

    try:  # the layout since issue 16
        import sweeper.run as run
        import sweeper.run_records as records
        from sweeper.store_setup import prepare_store
        from sweeper.sweep_info import SweepInfo
    except ImportError:  # an earlier commit's, timed as `before`
        import sweeper.tracking as records  # type: ignore[no-redef]
        from sweeper.tracking import prepare_store  # type: ignore[no-redef]

        from sweeper.sweep import SweepInfo  # type: ignore[no-redef]

        run = app  # type: ignore[assignment]

    gc.freeze()
    gc.enable()
    clock = Stopwatches()

    def wrap(owner: Any, name: str, part: str) -> None:
        if hasattr(owner, name):
            clock.wrap(owner, name, part)

    wrap(experiment, "train", "loop")
    wrap(training, "train_epoch", "steps")
    wrap(network.MLP, "evaluate", "evaluation")
    if hasattr(network, "Workspace"):
        wrap(network.Workspace, "evaluate", "evaluation")
    # Every epoch's metrics (log_epoch before issue 16), and the summary once: log_metrics.
    wrap(records.RunLogger, "log_epoch", "logging")
    wrap(records.RunLogger, "log_metrics", "logging")
    wrap(experiment, "load_dataset", "data")
    wrap(experiment, "load_dataset_cached", "data")
    wrap(experiment, "save_checkpoint", "checkpoint")
    wrap(records.RunLogger, "log_model", "checkpoint")
    wrap(run, "log_served_model", "checkpoint")
    wrap(experiment, "save_curves", "curves")
    wrap(run, "train_and_evaluate", "experiment")
    wrap(app, "run_experiment", "experiment")
    for name in ("log_params", "set_tags", "log_files", "log_tree", "flush"):
        wrap(records.RunLogger, name, "mlflow")
    in_sweep = bool(os.environ.get(IN_SWEEP_ENV))
    try:  # what a run reads its data from, since issue 19's second round
        from sweeper.data.cache import DataCache, user_data_cache

        # A sweep's run: the sweep's cache (kept across repeats here, as across a sweep's runs).
        shared = Path(os.environ.get("XDG_CACHE_HOME", str(workdir))) / "sweep"
        caches = (
            {"dataset_cache": DataCache(shared), "environment_cache": shared}
            if in_sweep
            else {"dataset_cache": user_data_cache()}
        )
    except ImportError:
        caches = {}
    if hasattr(run, "run_config"):
        run_one = functools.partial(run.run_config, threads=1, **caches)
    else:
        run_one = app.execute_run  # type: ignore[attr-defined]

    with initialize_config_dir(str(app.CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    config = to_experiment_config(cfg)
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    experiment_id = prepare_store(uri, "bench")
    # Under a parent run, the run is one of a sweep's: its model and curves are the sweep's
    # best run's, made at the sweep's end, not its own.
    parent = MlflowClient(uri).create_run(experiment_id).info.run_id if in_sweep else ""
    sweep = SweepInfo("bench", uri, experiment_id, parent_run_id=parent)
    out = workdir / "run"
    (out / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    with threadpool_limits(limits=1):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        outcome = run_one(config, flat_params(cfg), out, 0, overrides, sweep)
        run_wall, run_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    if outcome.status != "FINISHED":
        raise SystemExit(f"run failed: {outcome.reason}")
    return {
        "wall": dict(clock.wall),
        "cpu": dict(clock.cpu),
        "run_wall": run_wall,
        "run_cpu": run_cpu,
        "test_acc": outcome.metrics["test_acc"],
        "epochs": int(outcome.metrics["epochs_run"]),
    }


def run_child(src: Path | None, overrides: list[str], env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sweeper-breakdown-") as tmp:
        env = dict(env)
        if IN_SWEEP in overrides:
            overrides = [o for o in overrides if o != IN_SWEEP]
            env[IN_SWEEP_ENV] = "1"
        if src is not None:
            env["PYTHONPATH"] = f"{src}{os.pathsep}{env.get('PYTHONPATH', '')}"
            env[BEFORE_ENV] = "1"
        proc = subprocess.run(
            [sys.executable, __file__, "--child", tmp, "--", *overrides],
            capture_output=True, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        if proc.returncode != 0:
            raise SystemExit(f"child failed ({' '.join(overrides)}):\n{proc.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result


def warm(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The repeats after the first, which prepared the data its cache keeps for the others
    (the common case: a user's next run, a sweep's other runs); all of one repeat."""
    return results[1:] or results


def summary(results: list[dict[str, Any]], clock: str) -> dict[str, float]:
    """Medians over ``results``: seconds of the run and of its steps, and the fraction of the
    run each part, the rest ("other") and everything outside the steps took, each fraction
    taken repeat by repeat (a median of parts from different repeats need not add up)."""
    out: dict[str, float] = {
        "run": statistics.median(r[f"run_{clock}"] for r in results),
        "steps_s": statistics.median(r[clock].get("steps", 0.0) for r in results),
    }
    for part, _ in PARTS:
        out[part] = statistics.median(r[clock].get(part, 0.0) / r[f"run_{clock}"] for r in results)
    out["other"] = statistics.median(
        1 - sum(r[clock].get(p, 0.0) for p, _ in PARTS) / r[f"run_{clock}"] for r in results
    )
    out["outside"] = statistics.median(
        1 - r[clock].get("steps", 0.0) / r[f"run_{clock}"] for r in results
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"])
    parser.add_argument("--mnist-dir", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    parser.add_argument("--hidden", default="128", help="hidden layer sizes, comma separated")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-train-samples", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=DEFAULT_REF, help="commit timed as `before`")
    parser.add_argument("--full", action="store_true", help="also after, eval_train=full")
    parser.add_argument("--quick", action="store_true", help="digits, 5 epochs, 1 repeat")
    parser.add_argument(
        "--in-sweep", action="store_true", help="also before and after as a sweep's runs"
    )
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if os.environ.get(BEFORE_ENV):
            # An earlier commit's src/ first, and this checkout's (the editable install's) gone:
            # Hydra's plugin scan would list this one's modules in the other's packages.
            sys.path = [p for p in sys.path if Path(p).resolve() != REPO / "src"]
        print(json.dumps(child(args.overrides, Path(args.child))))
        return
    if args.quick:
        args.datasets, args.epochs, args.repeats = ["digits"], 5, 1

    print("## Run breakdown\n")
    print(describe_machine())
    # Its conf/ too: the app finds its config directory beside src/.
    before_src = extract(args.before, ["src", "conf"], "sweeper-before-") / "src"
    contenders: list[tuple[str, Path | None, list[str]]] = [
        (f"before ({args.before})", before_src, []),
        ("after", None, []),
    ]
    if args.full:
        contenders.append(("after, eval_train=full", None, ["train.eval_train=full"]))
    if args.in_sweep:
        contenders.insert(1, (f"before ({args.before}), a sweep's run", before_src, [IN_SWEEP]))
        contenders.append(("after, a sweep's run", None, [IN_SWEEP]))
    # The user's cache of prepared data, empty at the start: a run's first repeat prepares
    # it (cold), the next ones read it (warm), as a user's runs do.
    data_cache = tempfile.TemporaryDirectory(prefix="sweeper-breakdown-cache-")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": data_cache.name}
    rows_share, rows_parts, rows_acc = [], [], []
    for dataset in args.datasets:
        overrides = [
            f"dataset={dataset}", f"topology.hidden=[{args.hidden}]", "activation=tanh",
            "optimizer.lr=0.01", "train.batch_size=128", f"train.epochs={args.epochs}",
            "train.patience=null", "gradcheck.enabled=false",
        ]  # fmt: skip
        if dataset == "mnist":
            overrides.append(f"dataset.data_dir={args.mnist_dir}")
        if args.max_train_samples:
            overrides.append(f"dataset.max_train_samples={args.max_train_samples}")
        if dataset == "digits":
            overrides = [o for o in overrides if not o.startswith("train.batch_size")]
        print(f"\n{dataset}: {' '.join(overrides)}", flush=True)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in contenders}
        for repeat in range(args.repeats):
            for name, src, extra in contenders:
                result = run_child(src, [*overrides, *extra], env)
                results[name].append(result)
                print(
                    f"  {repeat + 1} {name}: run {result['run_wall']:.1f} s wall,"
                    f" {result['run_cpu']:.1f} s CPU; steps {result['cpu'].get('steps', 0):.1f} s"
                    f" CPU; test_acc {result['test_acc']:.4f} ({load_average()})",
                    flush=True,
                )
                parts = ", ".join(
                    f"{p} {result['cpu'].get(p, 0.0):.2f}/{result['wall'].get(p, 0.0):.2f}"
                    for p, _ in PARTS
                )
                print(f"    CPU/wall seconds: {parts}", flush=True)
        for name, _, _ in contenders:
            for clock in ("cpu", "wall"):
                s = summary(warm(results[name]), clock)
                rows_share.append(
                    [dataset, name, clock, f"{s['run']:.2f}", f"{s['steps_s']:.2f}",
                     f"**{s['outside']:.0%}**"]
                )  # fmt: skip
                rows_parts.append(
                    [dataset, name, clock]
                    + [f"{s[p]:.1%}" for p, _ in PARTS]
                    + [f"{s['other']:.1%}"]
                )
            rows_acc.append([dataset, name] + [f"{r['test_acc']:.4f}" for r in results[name]])
    which = "repeats 2 to n, the data read from the cache" if args.repeats > 1 else "one repeat"
    print(f"\nA run's time and the share outside its minibatch steps (medians of {which}):\n")
    header = ["dataset", "code", "clock", "run (s)", "steps (s)", "share outside the steps"]
    print(markdown_table(header, rows_share))
    print(f"\nEach part's share of the run (medians of {which}):\n")
    print(markdown_table(["dataset", "code", "clock", *[p for p, _ in PARTS], "other"], rows_parts))
    print("\nParts: " + "; ".join(f"{p}: {what}" for p, what in PARTS) + ".")
    print("\nTest accuracy of each repeat (same seed):\n")
    print(
        markdown_table(["dataset", "code", *[f"#{i + 1}" for i in range(args.repeats)]], rows_acc)
    )
    print(f"\n{load_average()} at the end")


if __name__ == "__main__":
    main()
