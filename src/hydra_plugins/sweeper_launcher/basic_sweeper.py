"""Hydra's basic sweeper (``hydra/sweeper=basic``, the default, under Hydra's name), whose
check that every job of a batch composes, made before the batch is launched, composes each
shape of job once (``composing.ShapeCache``) instead of every job: Hydra's own check composes
each job in full, about a tenth of a second each, before the first one starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from hydra_plugins.sweeper_launcher.composing import ShapeCache


class ShapedBasicSweeper(BasicSweeper):
    """Hydra's ``BasicSweeper``, the same jobs in the same batches, checked once per shape."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        shapes = ShapeCache.of(self.hydra_context.config_loader)  # type: ignore[arg-type]
        for overrides in batch:
            shapes.check_sweep_config(self.config, overrides)
