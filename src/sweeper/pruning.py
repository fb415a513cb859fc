"""A run's side of a search's pruning: its validation loss goes to its trial after every
epoch, and training stops when the search's pruner says so.

The search sweeper (``hydra_plugins.sweeper_search``) gives each job a trial; a run started
any other way has none, and this does nothing. A pruned run keeps its metrics and its
best-so-far checkpoint; it is tagged ``status=PRUNED`` and ``pruned_epoch``, which the report
reads to keep it out of the ranking (``sweeper.names`` names the tags).
"""

from __future__ import annotations

from hydra_plugins.sweeper_search.trial import TrialReporter, current_trial
from sweeper.core.training import EpochMetrics
from sweeper.names import PRUNED_EPOCH_TAG, REPEAT_TAG, TRIAL_TAG
from sweeper.outcome import trial_label


def pruned_reason(epoch: int) -> str:
    return f"pruned at epoch {epoch}"


class Pruning:
    """The run's trial, if a search started it."""

    def __init__(self, reporter: TrialReporter | None, epochs: int | None = None) -> None:
        self.reporter = reporter
        # The run's last epoch, not judged: a run pruned there would have trained all it could.
        self.epochs = epochs

    @classmethod
    def of_job(cls, epochs: int) -> Pruning:
        return cls(current_trial(), epochs)

    @property
    def pruned_at(self) -> int | None:
        return self.reporter.pruned_at if self.reporter is not None else None

    @property
    def trial(self) -> str | None:
        """The run's trial as the sweep's lines name it: its number, and ``.k`` after it for
        its repeat k where the search repeats trials (``4.1``); None without a trial."""
        reporter = self.reporter
        if reporter is None:
            return None
        return trial_label(reporter.number, reporter.repeat if reporter.repeats > 1 else None)

    def tags(self) -> dict[str, str]:
        """The run's trial number and which of the trial's repeats it is, which match its
        MLflow run with the study's trial."""
        if self.reporter is None:
            return {}
        return {TRIAL_TAG: str(self.reporter.number), REPEAT_TAG: str(self.reporter.repeat)}

    def ended(self, objective: float, stop: bool = True) -> None:
        """Record the run's objective on its trial, as soon as the run has ended; ``stop``: a
        trial the search's stop ended first stops the run as Ctrl-C does
        (``TrialReporter.ended``)."""
        if self.reporter is not None:
            self.reporter.ended(objective, stop)

    def end_tags(self) -> dict[str, str]:
        """The epoch a pruned run stopped at (its ``status`` is the run's own to set)."""
        return {} if self.pruned_at is None else {PRUNED_EPOCH_TAG: str(self.pruned_at)}

    def on_epoch(self, metrics: EpochMetrics) -> str | None:
        """The epoch callback: report the validation loss; a reason to stop when pruned."""
        if self.reporter is None:
            return None
        if self.reporter.report(metrics.epoch, metrics.val_loss, metrics.epoch == self.epochs):
            return pruned_reason(metrics.epoch)
        return None
