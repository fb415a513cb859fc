"""How sweeper ranks a sweep's runs wherever it ranks them (a search's objective, the sweep's
best run, its summary, the UI's view of a sweep, the report): by which metric, in which
direction, which runs may be ranked, and the results shown beside the ranking metric.

Plain names and pure functions: the run's process, the sweep and the report import this.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from sweeper.names import BEST_VAL_ACC, BEST_VAL_LOSS, EPOCHS_RUN, TEST_ACC

# The metric every ranking of runs goes by, lowest first: a search's objective, the sweep's best
# run (its model and curves, the parent run's description), the summary table, the UI's order
# of a sweep's runs, and the report; each run's checkpoint is its epoch of lowest val loss too.
RANKED_BY = BEST_VAL_LOSS
RANK_ASCENDING = True
# A run's results as the sweep lists them, the ranking metric first: the summary table's
# columns (a resumed sweep reads back the runs that have them all), the UI view's columns, and
# the parent run's description (the scores alone).
SUMMARY_METRICS = (RANKED_BY, BEST_VAL_ACC, TEST_ACC, EPOCHS_RUN)


def seeds_missing(configurations: Sequence[Hashable], seeds: Sequence[Hashable]) -> list[int]:
    """For each run, of configuration ``configurations[i]`` and seed ``seeds[i]``, how many of
    the seeds the runs have its configuration has no run of: a grid crosses every
    configuration with every seed, so a seed any run has is one each plans (a sweep stopped
    before it left it out); a seed no run has yet is no difference between them."""
    every = set(seeds)
    ran: dict[Hashable, set[Hashable]] = {}
    for configuration, seed in zip(configurations, seeds, strict=True):
        ran.setdefault(configuration, set()).add(seed)
    return [len(every - ran[c]) for c in configurations]


def complete_configurations(
    configurations: Sequence[Hashable],
    trained: Sequence[bool],
    seeds: Sequence[Hashable] | None = None,
) -> list[bool]:
    """For each run, of configuration ``configurations[i]`` (its settings but the seed),
    whether that configuration is complete: each of its runs ``trained`` (finished, or
    stopped by a pruner) or was run again to its end, and, where the runs' ``seeds`` are
    given (a grid's: a search's trials plan their own repeats), none missing
    (:func:`seeds_missing`). Only a complete configuration's runs are ranked: a mean over
    fewer seeds is another statistic, and a configuration that failed or diverged on a seed
    is not one to choose. Where none is complete there is no better one to choose: the
    configurations without a failure count as complete (a sweep stopped before any had every
    seed), or where every one failed a seed (a sweep of seeds alone, one of which diverged),
    each with a trained run."""
    pairs = list(zip(configurations, trained, strict=True))
    broken = {c for c, ok in pairs if not ok}
    with_trained = {c for c, ok in pairs if ok}
    if with_trained <= broken:
        return [c in with_trained for c in configurations]
    short: set[Hashable] = set()
    if seeds is not None:
        missing = seeds_missing(configurations, seeds)
        short = {c for c, n in zip(configurations, missing, strict=True) if n}
    whole = (with_trained - broken - short) or (with_trained - broken)
    return [c in whole for c in configurations]
