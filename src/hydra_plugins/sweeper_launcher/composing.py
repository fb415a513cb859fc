"""Hydra's composition of a sweep's jobs, done once per shape of job instead of once per job.

The jobs of a sweep mostly differ in values (``optimizer.lr=0.01`` against ``0.02``,
``seed=3``), not in config groups or keys. Composing a job (reading its YAML files, building its
defaults tree, merging them) takes about a tenth of a second, and a sweep composes each of its
jobs more than once: to check it before any run (the sweeper, and the app may too) and to
launch it. Here the first job of each shape is composed by Hydra, once for all of them (they
share the config loader's cache, :meth:`ShapeCache.of`), and every later job of that shape is
a copy of it with the job's own values set by Hydra's own code for command-line overrides, the
step that follows the composition in Hydra; its ``hydra`` node is filled as Hydra fills it.

A job's shape is its overrides with the values of plain ones left out: ``key=value`` on a key
that is not a config group, with no package, no ``+``/``++``/``~``, not under ``hydra.``, and
a value that is not a dict (a dict merges into what the key held, so it belongs to the shape).
Jobs whose plain value is set again by a later override of the shape (``++key=``, a dict on
its parent, a child of it) have no shape: each is composed by Hydra.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.plugins.config_source import ConfigLoadError
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

# (config name, run mode, override lines with the values of plain ones left out). Not whether
# the overrides came from a shell: that changes only the wording of an error for a sweep
# override in a single run, which the shape's first job, composed by Hydra, would have raised.
_Shape = tuple[str | None, RunMode, tuple[str, ...]]
# Each config loader's cache, as long as the loader lives.
_OF_LOADER: weakref.WeakKeyDictionary[ConfigLoaderImpl, ShapeCache] = weakref.WeakKeyDictionary()


def typed(overrides: Sequence[str]) -> list[str]:
    """Override lines as typed, from a config's ``hydra.overrides.*``: iterating that
    ListConfig would resolve an interpolation in a line (``train.patience=${train.epochs}``)
    against the config holding it, a sweep's main config, not the job's."""
    if isinstance(overrides, ListConfig):
        lines = OmegaConf.to_container(overrides)
        assert isinstance(lines, list)
        return [str(line) for line in lines]
    return list(overrides)


def _nested(key: str, other: str) -> bool:
    """Whether ``key`` and ``other`` name one node, or one holds the other."""
    return key == other or key.startswith(f"{other}.") or other.startswith(f"{key}.")


class ShapeCache:
    """Composes configs with ``loader`` as ``loader.load_configuration`` does, reusing the
    first config of each shape."""

    @classmethod
    def of(cls, loader: ConfigLoaderImpl) -> ShapeCache:
        """``loader``'s cache, shared by everything in this process that composes with it."""
        cache = _OF_LOADER.get(loader)
        if cache is None:
            cache = _OF_LOADER[loader] = cls(loader)
        return cache

    def __init__(self, loader: ConfigLoaderImpl) -> None:
        self.loader = loader
        self._parser = OverridesParser.create()
        # Each shape's first config, with its hydra node and (for compose) without.
        self._composed: dict[_Shape, DictConfig] = {}
        self._bare: dict[_Shape, DictConfig] = {}
        self._groups: dict[str, bool] = {}
        # Sweeps repeat the same few override lines, and Hydra's parser is slow.
        self._parsed: dict[str, Override] = {}

    def is_group(self, key: str) -> bool:
        if key not in self._groups:
            try:
                self._groups[key] = self.loader.repository.group_exists(key)
            except ConfigLoadError:
                self._groups[key] = True
        return self._groups[key]

    def _is_value(self, override: Override) -> bool:
        return (
            override.type is OverrideType.CHANGE
            and override.package is None
            and not override.is_sweep_override()
            and not override.is_hydra_override()
            and not self.is_group(override.key_or_group)
            and not isinstance(override.value(), dict)
        )

    def _parse(self, overrides: Sequence[str]) -> list[Override]:
        missing = [line for line in overrides if line not in self._parsed]
        if missing:
            for line, override in zip(missing, self._parser.parse_overrides(missing), strict=True):
                self._parsed[line] = override
        return [self._parsed[line] for line in overrides]

    def _shape(
        self, config_name: str | None, overrides: Sequence[str], run_mode: RunMode
    ) -> tuple[_Shape | None, list[Override], list[Override]]:
        """The shape of ``overrides``, each parsed, and the plain values among them; no shape
        when a key is set twice (Hydra's composition decides which wins), nor when an override
        of the shape sets a value's key, its parent or its child after it: Hydra applies it
        after the value, a copy of the shape's first config before."""
        parsed = self._parse(overrides)
        values = [o for o in parsed if self._is_value(o)]
        keys = [o.key_or_group for o in values]
        if len(set(keys)) != len(keys):
            return None, parsed, values
        before: list[str] = []
        for override in parsed:
            key = override.key_or_group
            if override in values:
                before.append(key)
            elif any(_nested(key, value) for value in before) and not self.is_group(key):
                return None, parsed, values
        lines = tuple(o.key_or_group if o in values else str(o.input_line) for o in parsed)
        return (config_name, run_mode, lines), parsed, values

    def _compose(
        self, config_name: str | None, overrides: Sequence[str], run_mode: RunMode, from_shell: bool
    ) -> DictConfig:
        return self.loader.load_configuration(
            config_name=config_name,
            overrides=list(overrides),
            run_mode=run_mode,
            from_shell=from_shell,
        )

    def _with_values(
        self,
        composed: DictConfig,
        values: list[Override],
        config_name: str | None,
        overrides: Sequence[str],
        run_mode: RunMode,
        from_shell: bool,
    ) -> DictConfig:
        """A copy of ``composed`` with ``values`` set, as Hydra sets command-line overrides;
        a value that cannot be set fails in Hydra's own composition, as Hydra says it."""
        cfg = copy.deepcopy(composed)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except Exception:
            cfg = self._compose(config_name, overrides, run_mode, from_shell)
            if composed.get("hydra") is None:
                with open_dict(cfg):
                    del cfg["hydra"]
        return cfg

    def load_configuration(
        self,
        config_name: str | None,
        overrides: Sequence[str],
        run_mode: RunMode = RunMode.RUN,
        from_shell: bool = True,
    ) -> DictConfig:
        """The config Hydra composes for ``overrides`` (the ``hydra`` node included)."""
        shape, parsed, values = self._shape(config_name, overrides, run_mode)
        composed = self._composed.get(shape) if shape is not None else None
        if composed is None:
            cfg = self._compose(config_name, overrides, run_mode, from_shell)
            if shape is not None:
                self._composed[shape] = copy.deepcopy(cfg)
            return cfg
        cfg = self._with_values(composed, values, config_name, overrides, run_mode, from_shell)
        task = [o for o in parsed if not o.is_hydra_override()]
        hydra = cfg.hydra
        with open_dict(hydra):
            hydra.overrides.task = [o.input_line for o in task]
            dirname = hydra.job.config.override_dirname
            hydra.job.override_dirname = get_overrides_dirname(
                overrides=task,
                kv_sep=dirname.kv_sep,
                item_sep=dirname.item_sep,
                exclude_keys=dirname.exclude_keys,
            )
        return cfg

    def compose(
        self,
        config_name: str | None,
        overrides: Sequence[str],
        run_mode: RunMode = RunMode.RUN,
        from_shell: bool = False,
    ) -> DictConfig:
        """As ``hydra.compose(config_name, overrides)``: the job's config without ``hydra``.
        Each shape's first config is kept without its ``hydra`` node too, which is most of
        what a copy would cost."""
        shape, _, values = self._shape(config_name, overrides, run_mode)
        bare = self._bare.get(shape) if shape is not None else None
        if bare is not None:
            return self._with_values(bare, values, config_name, overrides, run_mode, from_shell)
        cfg = self.load_configuration(config_name, overrides, run_mode, from_shell)
        with open_dict(cfg):
            del cfg["hydra"]
        if shape is not None:
            self._bare[shape] = copy.deepcopy(cfg)
        return cfg

    def check_sweep_config(self, master_config: DictConfig, overrides: Sequence[str]) -> None:
        """Raise what ``load_sweep_config`` would raise for ``overrides``: the ``hydra`` node
        is composed with each shape's first job (its overrides are part of the shape), and
        only the values of the others are set."""
        hydra_overrides = typed(master_config.hydra.overrides.hydra)
        self.compose(
            master_config.hydra.job.config_name,
            [*hydra_overrides, *overrides],
            RunMode.RUN,
            from_shell=True,
        )

    def load_sweep_config(self, master_config: DictConfig, overrides: Sequence[str]) -> DictConfig:
        """As Hydra's ``ConfigLoader.load_sweep_config``: one job's config in a sweep."""
        hydra_overrides = typed(master_config.hydra.overrides.hydra)
        cfg = self.load_configuration(
            master_config.hydra.job.config_name, [*hydra_overrides, *overrides], RunMode.RUN
        )
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg
