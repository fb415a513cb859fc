"""What a sweep leaves in its directory for its runs: ``sweep.json`` (where and under which
parent run they record, what to skip) and the shared dataset cache beside it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SWEEP_FILE = "sweep.json"
# The runs' shared, memory-mapped copy of the prepared data; handed to the user's cache or
# removed however the sweep ends (finished, interrupted, or stopped by an error).
DATASET_CACHE = "dataset-cache"


@dataclass
class SweepInfo:
    sweep_id: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    # config_hash of the planned runs that the resumed sweep already FINISHED.
    done_hashes: list[str] = field(default_factory=list)
    # The override keys that differ between runs, which name them; None: not known.
    varied_keys: list[str] | None = None

    def save(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepInfo:
        return cls(**json.loads((sweep_dir / SWEEP_FILE).read_text()))
