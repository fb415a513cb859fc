"""How sweeper ranks a sweep's runs wherever it ranks them (a search's objective, the sweep's
best run, its summary, the UI's view of a sweep, the report): by which metric, in which
direction, which runs may be ranked, and the results shown beside the ranking metric.

Plain names and one pure function: the run's process, the sweep and the report import this.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

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


def complete_configurations(
    configurations: Sequence[Hashable],
    trained: Sequence[bool],
    short: Collection[Hashable] = frozenset(),
) -> list[bool]:
    """For each run, of configuration ``configurations[i]`` (its settings but the seed),
    whether that configuration is complete: each of its runs ``trained`` (finished, or
    stopped by a pruner) or was run again to its end, and it is not one of ``short`` (those
    without a run of every seed the others have: a sweep stopped before their seeds). Only a
    complete configuration's runs are ranked: a mean over fewer seeds is another statistic,
    and a configuration that failed or diverged on a seed is not one to choose. Where none is
    complete there is no better one to choose: the configurations without a failure count as
    complete (a sweep stopped before any had every seed), or where every one failed a seed (a
    sweep of seeds alone, one of which diverged), each with a trained run."""
    pairs = list(zip(configurations, trained, strict=True))
    broken = {c for c, ok in pairs if not ok}
    with_trained = {c for c, ok in pairs if ok}
    if with_trained <= broken:
        return [c in with_trained for c in configurations]
    whole = (with_trained - broken - set(short)) or (with_trained - broken)
    return [c in whole for c in configurations]
