"""The names sweeper's runs go by in MLflow, each defined here once for the code that writes
them and the code that reads them back (the sweep, the report, reproduce): the experiment they
go to, the statuses a run ends with, the tags a run is found and described by, the metrics a
run logs, and the key of its served model's checkpoint; the tags of what a run ran on are
``sweeper.provenance``'s.

Plain strings, no imports: the tracking code, the report and the run all import this, and so
does the served model as MLflow loads it.
"""

from __future__ import annotations

# The experiment runs go to unless ``tracking.experiment`` (or a command's --experiment) names
# another.
DEFAULT_EXPERIMENT = "sweeper"

# A run's status, as MLflow's RunStatus names it and as sweeper's ``status`` tag repeats it;
# PRUNED is the tag's alone: a run a search's pruner stopped ends FINISHED in MLflow.
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"  # stopped by Ctrl-C or SIGTERM, or with its sweep
PRUNED = "PRUNED"
RUNNING = "RUNNING"  # MLflow's alone: not ended yet, or its process killed outright

# The tag that tells a sweep's parent run from the runs of its configurations.
KIND_TAG = "kind"
SWEEP_KIND = "sweep"
SWEEP_FILTER = f"tags.{KIND_TAG} = '{SWEEP_KIND}'"
# MLflow's own tag of a child run: its sweep's parent run.
PARENT_RUN_TAG = "mlflow.parentRunId"

# A sweep's parent run and each of its runs: the sweep's id, and the command line's overrides
# (the sweep's, or the run's own).
SWEEP_ID_TAG = "sweep_id"
OVERRIDES_TAG = "overrides"
# A run of a configuration: which (``config.config_hash``), its job number in the sweep, and
# the process that trains it (to find, or kill, a worker from the store).
CONFIG_HASH_TAG = "config_hash"
JOB_TAG = "job"
PID_TAG = "pid"
# How a run ended: one of the statuses above, and why, in one line.
STATUS_TAG = "status"
REASON_TAG = "reason"
# A search's run: its trial's number, which of the trial's repeats it is, and the epoch its
# pruner stopped it at.
TRIAL_TAG = "trial"
REPEAT_TAG = "repeat"
PRUNED_EPOCH_TAG = "pruned_epoch"

# The param a configuration's runs differ in (its seeds): runs are grouped by the others.
SEED = "seed"

# Logged as soon as the gradient check is done: its largest difference, and 1.0 where every
# row passed, else 0.0.
GRADCHECK_MAX_ABS_DIFF = "gradcheck_max_abs_diff"
GRADCHECK_PASSED = "gradcheck_passed"

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

# The key of the checkpoint among a served model's artifacts (``sweeper.served_model``).
MODEL_CHECKPOINT = "checkpoint"
