"""The one-line result a run leaves in its output directory for the sweep to pick up."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOME_FILE = "outcome.json"


@dataclass
class RunOutcome:
    job: int
    overrides: list[str]
    status: str  # FINISHED or FAILED, as in MLflow; or PRUNED (a finished run a search stopped)
    reason: str
    seconds: float
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status not in ("FINISHED", "PRUNED")

    @property
    def pruned(self) -> bool:
        return self.status == "PRUNED"

    @property
    def objective(self) -> float:
        """What a hyperparameter search minimises: the best validation loss. A failed run
        scores +inf, so a diverged trial ranks last and the search goes on."""
        if self.failed:
            return math.inf
        return self.metrics.get("best_val_loss", math.inf)

    def save(self, directory: Path) -> Path:
        path = directory / OUTCOME_FILE
        # Written whole then renamed, so the sweep's monitor never reads half a file.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> RunOutcome:
        return cls(**json.loads(path.read_text()))
