"""A trial's runs when a search repeats each trial (``hydra.sweeper.repeats``): one run per
value of the repeated key, and what the trial is told once they have all ended.

The first run (repeat 0) is the one the pruner judges: it reports every epoch, and the others
are queued only once it has finished unpruned, so a pruned trial costs one run. The trial's
value is the mean of its runs' values. A run that fails or diverges fails the trial: a mean
over fewer seeds would be another statistic than the other trials', and a configuration that
diverges on one seed in k is not one to choose. A run whose process died fails the trial too,
which is asked again with the values of its finished runs carried over, so only the missing
runs run again.

Hydra imports this module while it scans ``hydra_plugins`` at start-up (no ``from __future__
import annotations``: dataclasses must resolve their annotations then).
"""

import math
from dataclasses import dataclass, field

import optuna


@dataclass
class TrialRuns:
    """One trial's runs: ``values`` of those that ended (carried over from an earlier attempt
    included), how many are queued or running (``open``), and how the others ended."""

    trial: optuna.Trial
    repeats: int
    values: dict[int, float] = field(default_factory=dict)
    open: int = 0
    pruned: bool = False
    # Why a run returned nothing (its process died, or it raised): the trial is asked again.
    death: str | None = None

    def missing(self) -> list[int]:
        return [r for r in range(self.repeats) if r not in self.values]

    def first(self) -> list[int]:
        """The repeats to start with: the first, or every missing one if the first's value is
        carried over (it was judged already)."""
        return [0] if 0 not in self.values else self.missing()

    @property
    def failed(self) -> bool:
        """Whether the trial can no longer get a value from all its runs."""
        return (
            self.pruned
            or self.death is not None
            or not all(math.isfinite(v) for v in self.values.values())
        )

    def ended(self, repeat: int, value: float | None, pruned: bool, death: str | None) -> list[int]:
        """Record how one run ended (``value`` None: it returned none); the repeats to queue
        next: the others, once the first has ended with a value and nothing failed."""
        self.open -= 1
        if value is not None:
            self.values[repeat] = value
        self.pruned = self.pruned or pruned
        self.death = self.death or death
        if self.failed or self.open:
            return []
        return self.missing()

    @property
    def done(self) -> bool:
        return self.open == 0

    @property
    def mean(self) -> float:
        return math.fsum(self.values.values()) / len(self.values)
