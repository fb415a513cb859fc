"""What a person meets in the MLflow UI for a sweep: run names that say what varies, the
sweep's description, and a link that opens on its runs.

MLflow 3.17's UI opens an experiment in GenAI mode (traces, an empty "Overview") unless the
URL says ``workflowType=machine_learning``; the experiment tag ``mlflow.experimentKind``
no longer decides it there, but is still the experiment's recorded kind and the UI's own
"kind" selector writes it, so sweeper sets it too. The runs page takes its filter and sort
from the URL, and its columns only from a shared view: an experiment tag
``mlflow.sharedViewState.<key>`` that the link names with ``viewStateShareKey=<key>``, the
same record the UI's "Share" button writes. A shared view cannot expand a parent run (the UI
leaves ``runsExpanded`` out of it), so the view filters on the sweep's parent and sorts by a
metric, and the UI then lists the child runs flat.

``python -m sweeper.ui_links`` (what ``make ui`` runs first) prints the link to the newest
sweep of an experiment.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlparse

from sweeper.names import DEFAULT_EXPERIMENT, EPOCHS_RUN, PARENT_RUN_TAG
from sweeper.ranking import RANK_ASCENDING, RANKED_BY, SUMMARY_METRICS
from sweeper.store_uri import TRACKING_URI_OPTION, is_http, resolve_tracking_uri

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# The UI's name for classic training (its other choice is "genai_development").
MODEL_DEVELOPMENT = "custom_model_development"
SHARED_VIEW_TAG_PREFIX = "mlflow.sharedViewState."
NOTE_TAG = "mlflow.note.content"
# Where `mlflow ui` and `make ui` listen unless told otherwise.
DEFAULT_UI_ADDRESS = "http://127.0.0.1:5000"
# Wide enough for a name such as "activation=leaky_relu optimizer.lr=0.005".
RUN_NAME_WIDTH = 320
# The runs table's own columns (ag-grid ids), which a view must list to set a width.
_TABLE_COLUMNS = ("0", "attributes.`Run Name`", "runDateAndNestInfo", "duration")
# A number written with more significant digits was drawn by a sampler, not typed.
DRAWN_DIGITS = 8


def run_label(overrides: Sequence[str], keys: Collection[str] | None) -> str:
    """A run named by its overrides of the keys that vary (all of them if not known), a number
    a search drew written as ``short_number`` writes it."""
    shown = [_short(o) for o in overrides if keys is None or o.partition("=")[0] in keys]
    return " ".join(shown) or "(defaults)"


def _short(override: str) -> str:
    key, equals, value = override.partition("=")
    drawn = sum(c.isdigit() for c in value.partition("e")[0]) > DRAWN_DIGITS
    return f"{key}={short_number(value)}" if equals and drawn else override


def short_number(value: str) -> str:
    """A float with more than 4 significant digits (as an Optuna search draws them:
    0.09092050849502302) to 4, anything else as written; the params keep every digit."""
    try:
        number = float(value)
    except ValueError:
        return value
    short = f"{number:.4g}"
    return value if float(short) == number else short


def child_run_name(overrides: Sequence[str], varied_keys: Collection[str] | None) -> str:
    """A sweep's run named by what varies, as the summary table labels it."""
    return run_label(overrides, set(varied_keys) if varied_keys is not None else None)[:250]


def sweep_run_name(varied_keys: Collection[str] | None, sweep_id: str) -> str:
    what = " ".join(sorted(varied_keys)) if varied_keys else "(no varied keys)"
    return f"sweep {what} {sweep_id}"[:250]


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"


def sweep_view(parent_run_id: str, param_keys: Sequence[str]) -> dict[str, Any]:
    """The runs page's shared view of one sweep: its child runs, best first, with the varied
    parameters and the results (the summary table's) as columns."""
    params = [_column("params", key) for key in param_keys]
    metrics = [_column("metrics", key) for key in SUMMARY_METRICS]
    return {
        "searchFilter": f"tags.{PARENT_RUN_TAG} = '{parent_run_id}'",
        "orderByKey": _column("metrics", RANKED_BY),
        "orderByAsc": RANK_ASCENDING,
        "selectedColumns": params + metrics,
        "columnOrder": [*_TABLE_COLUMNS, *params, *metrics],
        "columnWidths": {_column("attributes", "Run Name"): RUN_NAME_WIDTH},
    }


def share_key(parent_run_id: str) -> str:
    """The shared view's name: one per sweep, and a run id needs no escaping."""
    return f"sweep-{parent_run_id}"


def ui_address(tracking_uri: str) -> str | None:
    """Where the UI of this store is browsed: the tracking server itself, or the address
    `mlflow ui` / `make ui` listens on for a local store; None for stores with no UI here
    (Databricks, say)."""
    if is_http(tracking_uri):
        return tracking_uri.rstrip("/")
    if urlparse(tracking_uri).scheme in ("sqlite", "postgresql", "mysql", "mssql", "file", ""):
        return DEFAULT_UI_ADDRESS
    return None


def runs_link(
    address: str, experiment_id: str, parent_run_id: str, shared_view: bool = True
) -> str:
    """The runs page of one sweep: through its shared view, or, for a sweep recorded before
    sweeper wrote one, with the filter and sort in the URL (and the UI's default columns)."""
    query: dict[str, str] = {"workflowType": "machine_learning"}
    if shared_view:
        query["viewStateShareKey"] = share_key(parent_run_id)
    else:
        view = sweep_view(parent_run_id, [])
        query |= {
            "searchFilter": view["searchFilter"],
            "orderByKey": view["orderByKey"],
            "orderByAsc": str(view["orderByAsc"]).lower(),
        }
    return f"{address}/#/experiments/{experiment_id}/runs?{urlencode(query)}"


def run_link(experiment_id: str, run_id: str) -> str:
    """A run's page, relative to the UI's address (as links inside the UI are)."""
    return f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def sweep_command(overrides: Sequence[str], python: str = "python") -> str:
    """The shell command that runs a sweep of ``overrides``, as its description gives it;
    printed for this machine's shell, with ``python`` from ``shell.this_python``."""
    return f"{python} {shlex.join(['-m', 'sweeper', '-m', *overrides])}"


def sweep_note(
    command: str,
    varied_keys: Collection[str] | None,
    best: tuple[str, str, Mapping[str, float]] | None = None,
    experiment_id: str = "",
) -> str:
    """The parent run's description (Markdown): the command, what varies and, once runs have
    finished, the best one (``best``: name, run id, metrics)."""
    varied = ", ".join(f"`{key}`" for key in sorted(varied_keys)) if varied_keys else "unknown"
    lines = [f"**Command:** `{command}`", "", f"**Varied:** {varied}"]
    if best is not None:
        name, run_id, metrics = best
        # The scores: epochs_run, a count, is the summary's alone.
        scores = [key for key in SUMMARY_METRICS if key != EPOCHS_RUN]
        results = ", ".join(f"{key} {metrics[key]:.4f}" for key in scores)
        ranking = f"{'lowest' if RANK_ASCENDING else 'highest'} {RANKED_BY}"
        lines += [
            "",
            f"**Best run** (by {ranking}): [{name}]({run_link(experiment_id, run_id)}): {results}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the link to the newest sweep of an experiment (``make ui``)."""
    from sweeper.report.runs import ReportError, find_sweep, open_client

    parser = argparse.ArgumentParser(
        prog="python -m sweeper.ui_links",
        description="Print the MLflow UI link that opens on the newest sweep's runs.",
    )
    parser.add_argument(TRACKING_URI_OPTION, required=True)
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--address", default=DEFAULT_UI_ADDRESS, help="where the UI listens")
    args = parser.parse_args(argv)
    try:
        client = open_client(resolve_tracking_uri(args.tracking_uri))
        sweep = find_sweep(client, args.experiment, None)
    except ReportError as err:
        print(f"No sweep to link to yet ({err}).")
        return 0
    tags = client.get_experiment(sweep.experiment_id).tags
    shared = f"{SHARED_VIEW_TAG_PREFIX}{share_key(sweep.parent_run_id)}" in tags
    link = runs_link(args.address, sweep.experiment_id, sweep.parent_run_id, shared)
    print(f"Newest sweep ({sweep.sweep_id}): {link}")
    return 0


def view_json(view: Mapping[str, Any]) -> str:
    return json.dumps(view, separators=(",", ":"))


if __name__ == "__main__":
    sys.exit(main())
