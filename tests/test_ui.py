"""What a person meets in the MLflow UI after a sweep: the experiment's kind, run names that
say what varies, the parent's description, the printed link and, in Chromium, the pages it
opens."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import all_runs, child_runs, parent_run, run_cli, store_uri
from services import CHROMIUM, CHROMIUM_ARGS, mlflow_service
from sweeper.config import params_of_keys
from sweeper.ranking import SUMMARY_METRICS
from sweeper.store_setup import prepare_store
from sweeper.ui_links import (
    DEFAULT_UI_ADDRESS,
    EXPERIMENT_KIND_TAG,
    MODEL_DEVELOPMENT,
    NOTE_TAG,
    SHARED_VIEW_TAG_PREFIX,
    main,
    runs_link,
    share_key,
)

# seed=0 is an override that does not vary: run names leave it out.
SWEEP = ["-m", "activation=sigmoid,relu", "seed=0", "train.epochs=2", "train.patience=null"]
LINK = re.compile(r"then open (\S+)")


@dataclass
class Swept:
    workdir: Path
    stdout: str
    experiment_id: str
    parent: Run
    children: list[Run]

    @property
    def best(self) -> Run:
        return min(self.children, key=lambda run: run.data.metrics["best_val_loss"])


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    workdir = tmp_path_factory.mktemp("sweep")
    proc = run_cli(SWEEP, workdir)
    assert proc.returncode == 0, proc.stderr
    runs = all_runs(workdir)
    parent = parent_run(runs)
    return Swept(workdir, proc.stdout, parent.info.experiment_id, parent, child_runs(runs))


def test_experiment_is_marked_model_development(swept: Swept) -> None:
    experiment = MlflowClient(store_uri(swept.workdir)).get_experiment(swept.experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT


def test_a_kind_set_by_hand_is_kept_and_an_old_experiment_gets_one(tmp_path: Path) -> None:
    uri = store_uri(tmp_path)
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(uri)
    mine = client.create_experiment("mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    old = client.create_experiment("old")
    assert prepare_store(uri, "mine") == mine
    assert prepare_store(uri, "old") == old
    assert client.get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT


def test_run_names_say_what_varies(swept: Swept) -> None:
    assert sorted(run.info.run_name for run in swept.children) == [
        "activation=relu",
        "activation=sigmoid",
    ]
    sweep_id = swept.parent.data.tags["sweep_id"]
    assert swept.parent.info.run_name == f"sweep activation {sweep_id}"


def test_parent_description_gives_command_varied_keys_and_best_run(swept: Swept) -> None:
    note = swept.parent.data.tags[NOTE_TAG]
    assert "`python -m sweeper -m activation=sigmoid,relu seed=0 train.epochs=2" in note
    assert "**Varied:** `activation`" in note
    best = swept.best
    assert f"[{best.info.run_name}](#/experiments/{swept.experiment_id}/runs/" in note
    assert best.info.run_id in note
    assert "**Best run** (by lowest best_val_loss)" in note
    assert f"best_val_loss {best.data.metrics['best_val_loss']:.4f}" in note
    assert f"best_val_acc {best.data.metrics['best_val_acc']:.4f}" in note


def test_printed_link_opens_a_shared_view_of_the_sweeps_runs(swept: Swept) -> None:
    (link,) = LINK.findall(swept.stdout)
    key = share_key(swept.parent.info.run_id)
    assert link == (
        f"{DEFAULT_UI_ADDRESS}/#/experiments/{swept.experiment_id}/runs"
        f"?workflowType=machine_learning&viewStateShareKey={key}"
    )
    client = MlflowClient(store_uri(swept.workdir))
    tags = client.get_experiment(swept.experiment_id).tags
    view = json.loads(tags[SHARED_VIEW_TAG_PREFIX + key])
    listed = client.search_runs([swept.experiment_id], view["searchFilter"])
    assert {run.info.run_id for run in listed} == {run.info.run_id for run in swept.children}
    assert view["orderByKey"] == "metrics.`best_val_loss`" and view["orderByAsc"] is True
    # activation.name is the one param that differs between the runs.
    assert view["selectedColumns"] == [
        "params.`activation.name`",
        *(f"metrics.`{m}`" for m in SUMMARY_METRICS),
    ]


def test_a_searchs_view_shows_the_params_its_group_choice_varies_and_no_other(
    tmp_path: Path,
) -> None:
    # l2 and dropout set regularizer.input_p and max_norm alike: no column for them.
    search = ["-m", "+experiment=search", "hydra.sweeper.n_trials=1", "train.epochs=1",
              "topology.hidden=[16]", "hydra.sweeper.params={regularizer: 'choice(l2, dropout)'}",
              "regularizer.lam=0.0001", "regularizer.p=0.2", "optimizer.lr=0.01"]  # fmt: skip
    proc = run_cli(search, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parent = parent_run(all_runs(tmp_path))
    tags = MlflowClient(store_uri(tmp_path)).get_experiment(parent.info.experiment_id).tags
    view = json.loads(tags[SHARED_VIEW_TAG_PREFIX + share_key(parent.info.run_id)])
    assert view["selectedColumns"] == [
        "params.`regularizer.name`",
        *(f"metrics.`{m}`" for m in SUMMARY_METRICS),
    ]


def test_make_ui_prints_the_link_to_the_newest_sweep(
    swept: Swept, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--tracking-uri", store_uri(swept.workdir), "--address", "http://x:1"]) == 0
    (printed,) = LINK.findall(swept.stdout)
    assert capsys.readouterr().out.split()[-1] == printed.replace(DEFAULT_UI_ADDRESS, "http://x:1")
    assert main(["--tracking-uri", store_uri(swept.workdir / "nowhere")]) == 0
    assert "No sweep to link to yet" in capsys.readouterr().out


def test_an_optuna_group_key_names_every_param_of_its_group() -> None:
    params = {"regularizer.name": "l2", "regularizer.lam": 1e-4, "optimizer.lr": 0.01, "seed": 0}
    assert params_of_keys(params, {"regularizer", "optimizer.lr"}) == [
        "optimizer.lr",
        "regularizer.lam",
        "regularizer.name",
    ]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (make browser)"
)
def test_a_person_follows_the_link_to_the_best_runs_curves(swept: Swept, tmp_path: Path) -> None:
    """Opens the printed link, sees the runs ranked with their metrics, opens the best one and
    its curves; a screenshot of each step lands in the test's directory."""
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    (link,) = LINK.findall(swept.stdout)
    ranked = sorted(swept.children, key=lambda run: run.data.metrics["best_val_loss"])
    with (
        mlflow_service(
            ["ui", "--backend-store-uri", store_uri(swept.workdir)], tmp_path / "ui.log"
        ) as address,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 760})
        # The UI is slow to render on a loaded machine; nothing here is timed.
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)

        page.goto(link.replace(DEFAULT_UI_ADDRESS, address))
        for run in ranked:
            page.locator(f'a[href$="/runs/{run.info.run_id}"]').first.wait_for()
        # The assistant panel opens by itself on a first visit; a person closes it.
        page.get_by_role("button", name="Close").click()
        expect(page.get_by_role("button", name="Close")).to_have_count(0)
        names = page.locator('.ag-cell[col-id="attributes.`Run Name`"] a').all_inner_texts()
        assert names == [run.info.run_name for run in ranked]
        cells = page.locator('.ag-cell[col-id="metrics.`best_val_acc`"]').all_inner_texts()
        shown = [float(text.strip().rstrip("…")) for text in cells]
        assert shown == pytest.approx(
            [run.data.metrics["best_val_acc"] for run in ranked], abs=1e-6
        )
        activations = page.locator('.ag-cell[col-id="params.`activation.name`"]')
        assert activations.all_inner_texts() == [
            run.data.params["activation.name"] for run in ranked
        ]
        # GenAI mode would show its Overview and Traces entries in the side bar.
        expect(page.get_by_role("link", name="Training runs")).to_have_count(0)
        page.screenshot(path=shots / "1_sweep_runs.png")

        best = ranked[0]
        page.locator(f'a[href$="/runs/{best.info.run_id}"]').first.click()
        expect(page.get_by_role("heading", name=best.info.run_name)).to_be_visible()
        page.screenshot(path=shots / "2_best_run.png")

        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("plots", exact=True).click()
        page.get_by_text("accuracy.png", exact=True).click()
        page.get_by_text("plots/accuracy.png", exact=True).wait_for()
        image = page.locator('img[src^="blob:"]').first  # the artifact, fetched by the page
        image.wait_for()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0
        page.screenshot(path=shots / "3_best_run_curves_png.png")

        page.get_by_role("tab", name="Model metrics").click()
        page.get_by_placeholder("Search metric charts").fill("val_")
        for metric in ("val_acc", "val_loss"):
            page.get_by_text(metric, exact=True).first.wait_for()
        # Per-epoch metrics are drawn as lines (final ones as bars).
        page.locator(".js-plotly-plot .scatterlayer .trace").first.wait_for()
        page.screenshot(path=shots / "4_best_run_metric_charts.png")
        browser.close()


def test_a_sweep_without_a_shared_view_is_linked_with_its_filter_in_the_url() -> None:
    link = runs_link("http://127.0.0.1:5000", "7", "abc", shared_view=False)
    route, _, query = link.partition("?")
    assert route == "http://127.0.0.1:5000/#/experiments/7/runs"
    assert parse_qs(query) == {
        "workflowType": ["machine_learning"],
        "searchFilter": ["tags.mlflow.parentRunId = 'abc'"],
        "orderByKey": ["metrics.`best_val_loss`"],
        "orderByAsc": ["true"],
    }
