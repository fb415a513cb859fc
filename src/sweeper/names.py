"""The names sweeper's runs go by in MLflow, each defined here once for the code that writes
them and the code that reads them back (the sweep, the report, reproduce): the statuses a run
ends with, the tag that marks a sweep's parent run, and the metrics a run logs.

Plain strings, no imports: the tracking code, the report and the run all import this.
"""

from __future__ import annotations

# A run's status, as MLflow's RunStatus names it and as sweeper's ``status`` tag repeats it;
# PRUNED is the tag's alone: a run a search's pruner stopped ends FINISHED in MLflow.
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"  # stopped by Ctrl-C or SIGTERM, or with its sweep
PRUNED = "PRUNED"

# The tag that tells a sweep's parent run from the runs of its configurations.
KIND_TAG = "kind"
SWEEP_KIND = "sweep"
SWEEP_FILTER = f"tags.{KIND_TAG} = '{SWEEP_KIND}'"

# The param a configuration's runs differ in (its seeds): runs are grouped by the others.
SEED = "seed"

# Logged after every epoch, at step = epoch: the fields of ``core.training.EpochMetrics`` of
# the same names.
TRAIN_LOSS = "train_loss"
TRAIN_ACC = "train_acc"
VAL_LOSS = "val_loss"
VAL_ACC = "val_acc"
LR = "lr"
EPOCH_METRICS = (TRAIN_LOSS, TRAIN_ACC, VAL_LOSS, VAL_ACC, LR)

# Logged once, as a run ends: the values at its best epoch (the one its checkpoint keeps),
# its score on the test set, and its totals.
BEST_TRAIN_LOSS = f"best_{TRAIN_LOSS}"
BEST_TRAIN_ACC = f"best_{TRAIN_ACC}"
BEST_VAL_LOSS = f"best_{VAL_LOSS}"
BEST_VAL_ACC = f"best_{VAL_ACC}"
TEST_LOSS = "test_loss"
TEST_ACC = "test_acc"
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
TRAIN_SECONDS = "train_seconds"
CPU_SECONDS = "cpu_seconds"
