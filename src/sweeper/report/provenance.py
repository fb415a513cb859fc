"""Whether the runs of a sweep ran on one commit, one environment and one set of data files.

A sweep compares configurations; that comparison holds only if everything else was the same.
Runs resumed later, or trained on several machines, may not share it: this says so, from the
tags each run recorded (``sweeper.provenance``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence

from sweeper.provenance import (
    BLAS_TAG,
    BLAS_THREADS_TAG,
    DATA_TAG,
    ENVIRONMENT_TAGS,
    GIT_COMMIT_TAG,
    GIT_DIFF_TAG,
    GIT_DIRTY_TAG,
    PACKAGES_TAG,
    PYTHON_TAG,
    VERSION_TAGS,
)
from sweeper.words import plural

NOT_RECORDED = "not recorded"


def _commit(tags: Mapping[str, str]) -> str:
    commit = tags.get(GIT_COMMIT_TAG, NOT_RECORDED)[:12]
    if tags.get(GIT_DIRTY_TAG) == "true":
        return f"{commit} + changes {tags.get(GIT_DIFF_TAG, '?')}"
    return commit


def _environment(tags: Mapping[str, str]) -> str:
    if not any(key in tags for key in ENVIRONMENT_TAGS):
        return NOT_RECORDED
    python = tags.get(PYTHON_TAG, "?").split()[-1]
    return (
        f"Python {python}, numpy {tags.get(VERSION_TAGS['numpy'], '?')}, "
        f"{tags.get(BLAS_TAG, '?')}, {plural(tags.get(BLAS_THREADS_TAG, '?'), 'BLAS thread')}, "
        f"packages {tags.get(PACKAGES_TAG, '?')}"
    )


def _data(tags: Mapping[str, str]) -> str:
    if DATA_TAG not in tags:
        return NOT_RECORDED
    files = json.loads(tags[DATA_TAG])
    digest = ", ".join(f"{path.rsplit('/', 1)[-1]} {sha[:8]}" for path, sha in files.items())
    return f"{len(files)} file(s): {digest}"


# What runs share, what they differ in, how a run's tags say it.
ASPECTS = (
    ("one commit", "commit", _commit),
    ("one environment", "environment", _environment),
    ("one set of data hashes", "data hashes", _data),
)


def provenance_summary(runs_tags: Sequence[Mapping[str, str]]) -> tuple[str, bool]:
    """A sentence on what the runs (their tags) share, and whether they share everything."""
    shared, split = [], []
    for one, aspect, describe in ASPECTS:
        counts = Counter(describe(tags) for tags in runs_tags)
        if len(counts) == 1:
            shared.append(f"{one} ({next(iter(counts))})")
        else:
            ways = "; ".join(f"`{value}` ({plural(n, 'run')})" for value, n in counts.most_common())
            split.append(f"{aspect}: {ways}")
    if not split:
        return f"Provenance: every run shares {', '.join(shared)}.", True
    return (
        f"**Provenance differs between the runs of this sweep**, so their differences are not "
        f"only their configurations'. {' '.join(f'Runs differ in {s}.' for s in split)}"
        + (f" They share {', '.join(shared)}." if shared else ""),
        False,
    )
