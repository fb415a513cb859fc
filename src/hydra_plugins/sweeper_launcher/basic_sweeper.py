"""Hydra's basic sweeper (``hydra/sweeper=basic``, the default, under Hydra's name), whose
check that every job of a batch composes, made before the batch is launched, composes each
shape of job once (``composing.ShapeCache``) instead of every job: Hydra's own check composes
each job in full, about a tenth of a second each, before the first one starts. Its launcher is
set up with Ctrl-C held back.
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.sweeper_launcher.composing import ShapeCache
from hydra_plugins.sweeper_launcher.interrupts import interrupts_deferred


class ShapedBasicSweeper(BasicSweeper):
    """Hydra's ``BasicSweeper``, the same jobs in the same batches, checked once per shape."""

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        # Ctrl-C inside OmegaConf's building of the launcher's config leaves a node half-made,
        # which then fails as an AttributeError with a traceback: it waits until that is done.
        with interrupts_deferred():
            super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        assert self.hydra_context is not None and self.config is not None
        shapes = ShapeCache.of(self.hydra_context.config_loader)  # type: ignore[arg-type]
        for overrides in batch:
            shapes.check_sweep_config(self.config, overrides)
