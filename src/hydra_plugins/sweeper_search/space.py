"""The search space: Hydra override-grammar sweeps turned into Optuna distributions.

``interval(a, b)`` is a float range, ``tag(log, interval(a, b))``
its log-scaled form, ``choice(...)`` a categorical, ``range(a, b[, step])`` a stepped int or
float range (``tag(log, range(a, b))``: log-scaled ints). A bad entry raises
:class:`SearchSpaceError`, one line that names the key: another tag than ``log``, ``log`` on a
choice, an interval of one value included.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
    Sweep,
    Transformer,
)
from hydra.errors import CompactHydraException, HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)


class SearchSpaceError(CompactHydraException):
    """A search-space entry that cannot be searched; one line (Hydra prints it so) naming the
    key."""


@dataclass(frozen=True)
class SearchSpace:
    """What the sampler draws (``distributions``) and what every trial shares (``fixed``,
    overrides as typed)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]

    def key(self, direction: str) -> str:
        """Identifies the space and direction, so that a resumed search finds its study."""
        text = json.dumps(
            {
                "direction": direction,
                "space": {k: distribution_to_json(d) for k, d in self.distributions.items()},
            },
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def overrides(self, params: Mapping[str, object]) -> list[str]:
        """One trial's overrides: the fixed ones, then each drawn value."""
        return [*self.fixed, *(f"{key}={format_value(params[key])}" for key in self.distributions)]


def format_value(value: object) -> str:
    """A drawn value as the override grammar reads it back (choices are already encoded)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _reads_back(text: str, parser: OverridesParser) -> bool:
    try:
        (override,) = parser.parse_overrides([f"k={text}"])
    except HydraException:
        return False
    return override.value() == text


def _option_text(value: str, parser: OverridesParser) -> str:
    """A string option as override text that reads back as that string: as it is where it
    does, else quoted (``'a,b'``, ``'5'``, ``'[1,2]'``)."""
    if _reads_back(value, parser):
        return value
    return QuotedString(text=value, quote=Quote.single).with_quotes()


def _choices(override: Override) -> list[bool | int | float | str]:
    """A sweep's options as Optuna stores them: numbers and booleans as they are, the rest as
    override text (lists and dicts encoded, strings quoted where the grammar needs it)."""
    parser = OverridesParser.create()
    choices: list[bool | int | float | str] = []
    for value in override.sweep_iterator():
        if isinstance(value, str):
            choices.append(_option_text(value, parser))
        else:
            encoded = Transformer.encode(value)  # lists and dicts as text
            assert isinstance(encoded, str | int | float | bool)
            choices.append(encoded)
    return choices


def _log(value: Sweep) -> bool:
    """Whether the sweep is tagged ``log``, the one tag the search reads; any other is a
    mistake it would otherwise ignore."""
    unknown = sorted(value.tags - {"log"})
    if unknown:
        raise ValueError(f"tag {unknown[0]!r} is not one a search reads: log alone")
    log = "log" in value.tags
    scaled = isinstance(value, IntervalSweep) or (
        isinstance(value, RangeSweep) and not value.shuffle
    )
    if log and not scaled:
        raise ValueError("log applies to interval and range, not to a set of options")
    return log


def _distribution(override: Override) -> BaseDistribution:
    value = override.value()
    log = _log(value) if isinstance(value, Sweep) else False
    if isinstance(value, ChoiceSweep):
        choices = _choices(override)
        if not choices:
            raise ValueError("choice() needs at least one option")
        return CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        assert start is not None and stop is not None
        if value.shuffle:
            return CategoricalDistribution(_choices(override))
        if step <= 0 or stop <= start:
            raise ValueError("range() needs start < stop and a positive step")
        # The last value Hydra's range() yields: stop is left out, as in Python's, but for
        # float steps whose rounding lands on it (range(0.7, 1.0, 0.1) ends at 1.0).
        last = start + math.ceil((stop - start) / step - 1) * step
        if any(isinstance(x, float) for x in (start, stop, step)):
            return FloatDistribution(start, last, step=step, log=log)
        return IntDistribution(int(start), int(last), step=int(step), log=log)
    if isinstance(value, IntervalSweep):
        start, end = value.start, value.end
        assert start is not None and end is not None
        if start == end:
            raise ValueError(f"an interval of one value: give the value itself ({start})")
        if isinstance(start, int) and isinstance(end, int):
            return IntDistribution(start, end, log=log)
        return FloatDistribution(float(start), float(end), log=log)
    raise ValueError("only interval, tag(log, interval), choice and range can be searched")


def _reason(err: Exception, value: str) -> str:
    """The line of ``err`` that says why ``value`` does not parse: Hydra's errors open with a
    header that repeats the override, and say how a function failed as ``TypeError while
    evaluating 'VALUE': why``."""
    lines = [
        line
        for line in str(err).strip().splitlines()
        if line and not line.startswith(("Error parsing override", "See https://"))
    ]
    if not lines:
        return type(err).__name__
    return lines[0].partition(f" while evaluating '{value}': ")[2] or lines[0]


def parse_space(params: Mapping[str, str] | None, arguments: Sequence[str]) -> SearchSpace:
    """The space of ``params`` (key: sweep) and of the command line's sweep ``arguments``; the
    command line's plain overrides are fixed for every trial, a searched key's included."""
    parser = OverridesParser.create()
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    distributions: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for line in lines:
        key = line.partition("=")[0]
        try:
            (override,) = parser.parse_overrides([line])
            if not override.is_sweep_override():
                # The command line (after params) fixes a key the params search.
                distributions.pop(override.get_key_element(), None)
                fixed.append(line)
                continue
            distributions[override.get_key_element()] = _distribution(override)
        except (HydraException, ValueError) as err:
            value = line.partition("=")[2]
            raise SearchSpaceError(
                f"search space entry {key}: {value!r} is invalid: {_reason(err, value)}"
            ) from None
    if not distributions:
        raise SearchSpaceError(
            "the search space is empty: give hydra.sweeper.params or a sweep on the command line"
        )
    return SearchSpace(distributions, fixed)
