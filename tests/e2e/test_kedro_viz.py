"""kedro-viz in a real headless browser, on the tiny demo run.

`kedro viz build --include-previews` writes the static site; it is served on 127.0.0.1 and
Debian's chromium (driven by Playwright) opens it like a user: the onboarding dialog is
dismissed, the flowchart must draw each pipeline as a group (a namespace) that opens onto its
own nodes, and selecting a metrics dataset must show the real JSON in the side panel.
Screenshots stay with the tiny run; the README's come from `make pictures`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from medclip_residuals.pipeline_registry import PIPELINE_ORDER

from viz_browser import (
    CHROMIUM,
    FLOWCHART_VIEWPORT,
    VIEWPORT,
    build_viz_site,
    expand_group,
    flowchart_labels,
    frame_whole_graph,
    group_labels,
    latest_version_path,
    missing_labels,
    open_dataset_preview,
    open_flowchart,
    previews_in_build,
    serve_directory,
    task_nodes_by_pipeline,
    viz_page,
)

PIPELINES = PIPELINE_ORDER
# datasets whose preview helps a reader of the graph (issue 6), with the preview they need
WANTED_PREVIEWS = {
    "encoder_training_metrics": "JSONPreview",
    "phenotyping_metrics": "JSONPreview",
    "residual_1_metrics": "JSONPreview",
    "residual_2_metrics": "JSONPreview",
    "explainability_metrics": "JSONPreview",
    "phenotype_table": "TablePreview",
    "report_labels": "TablePreview",
    "report_mentions": "TablePreview",
    "study_split": "TablePreview",
    "residual_1_sweep": "TablePreview",
    "residual_1_roc_plot": "ImagePreview",
    "residual_2_accuracy_plot": "ImagePreview",
    "caption_heatmap_grid": "ImagePreview",
    "demo_image_grid": "ImagePreview",
}
METRICS_DATASET = "encoder_training_metrics"


def _need_browser() -> None:
    """Without chromium or Playwright, skip locally but fail in CI, where `make test` installs them."""
    problem = None
    if shutil.which(CHROMIUM) is None:
        problem = f"{CHROMIUM} is missing (run `make browser`)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def viz_site(demo_run) -> tuple[Path, Path]:
    """(project, build folder) after `kedro viz build --include-previews` in the demo run."""
    project, _ = demo_run
    return project, build_viz_site(project)


def shown_scalars(document: dict, count: int = 6) -> list[tuple[str, str]]:
    """Top-level (key, value) pairs as the JSON viewer writes them: strings quoted, numbers
    as JavaScript prints them (floats that Python would print in exponent form left out)."""
    pairs = []
    for key, value in document.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, str):
            pairs.append((key, json.dumps(value)))
        elif isinstance(value, int) or (isinstance(value, float) and value.is_integer() and math.isfinite(value)):
            pairs.append((key, str(int(value))))
        elif isinstance(value, float) and "e" not in repr(value) and math.isfinite(value):
            pairs.append((key, repr(value)))
        if len(pairs) == count:
            break
    return pairs


def test_serve_directory_serves_on_loopback_and_stops(tmp_path):
    import urllib.request

    (tmp_path / "index.html").write_text("<p>kedro-viz</p>", encoding="utf-8")
    with serve_directory(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the loopback URL just served
            assert response.read() == b"<p>kedro-viz</p>"
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)  # noqa: S310 - the same loopback URL, now closed


def test_latest_version_path_takes_the_newest_version(tmp_path):
    (tmp_path / "conf" / "base").mkdir(parents=True)
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "conf" / "base" / "catalog.yml").write_text(
        "metrics:\n  type: json.JSONDataset\n  filepath: data/metrics.json\n  versioned: true\n"
        "raw:\n  type: pandas.CSVDataset\n  filepath: data/raw.csv\n",
        encoding="utf-8",
    )
    for stamp in ("2026-01-02T10.00.00.000Z", "2026-01-10T09.00.00.000Z", "2026-01-03T23.00.00.000Z"):
        (tmp_path / "data" / "metrics.json" / stamp).mkdir(parents=True)
    newest = tmp_path / "data" / "metrics.json" / "2026-01-10T09.00.00.000Z" / "metrics.json"
    assert latest_version_path(tmp_path, "metrics") == newest
    assert latest_version_path(tmp_path, "raw") == tmp_path / "data" / "raw.csv"
    with pytest.raises(KeyError, match="nope"):
        latest_version_path(tmp_path, "nope")


@pytest.mark.slow
def test_viz_build_previews_the_outputs_a_reader_needs(viz_site):
    _, build = viz_site
    previews = previews_in_build(build, "demo")
    wrong = {name: previews.get(name, "not in the graph") for name, kind in WANTED_PREVIEWS.items() if previews.get(name) != kind}
    assert not wrong, f"datasets without the preview they need (wanted {WANTED_PREVIEWS}): {wrong}"
    by_pipeline = task_nodes_by_pipeline(build, "demo")
    assert set(PIPELINES) <= set(by_pipeline), f"pipelines missing from viz: {set(PIPELINES) - set(by_pipeline)}"


@pytest.mark.slow
@pytest.mark.browser
def test_flowchart_and_metrics_preview_in_chromium(viz_site):
    _need_browser()
    project, build = viz_site
    expected_nodes = sorted({name for p in PIPELINES for name in task_nodes_by_pipeline(build, "demo").get(p, [])})
    assert "embed_images" in expected_nodes
    metrics = json.loads(latest_version_path(project, METRICS_DATASET).read_text(encoding="utf-8"))
    expected_values = shown_scalars(metrics)
    assert expected_values, f"{METRICS_DATASET} has no top-level value to look for: {metrics}"

    # screenshots of the tiny run stay with it; the README's come from `make pictures`
    shots = project / "screenshots"
    shots.mkdir(exist_ok=True)
    with serve_directory(build) as url, viz_page(viewport=FLOWCHART_VIEWPORT) as page:
        assert url.startswith("http://127.0.0.1:")
        open_flowchart(page, url, pipeline="demo")
        # every pipeline is a namespace: drawn as one collapsed group, its datasets between groups
        assert sorted(group_labels(page)) == sorted(PIPELINES), f"groups drawn: {group_labels(page)}"
        assert not missing_labels(page, ["image_embeddings", "study_split", METRICS_DATASET])
        assert missing_labels(page, ["embed_images"]) == ["embed_images"], "a task node drawn outside its group"
        frame_whole_graph(page)
        page.screenshot(path=str(shots / "kedro_viz.png"))
        # each group opens onto its own nodes
        by_pipeline = task_nodes_by_pipeline(build, "demo")
        for pipeline in PIPELINES:
            expand_group(page, pipeline)
            assert not missing_labels(page, by_pipeline[pipeline]), (
                f"{pipeline} opened without {missing_labels(page, by_pipeline[pipeline])}"
            )
        labels = flowchart_labels(page)
        assert not missing_labels(page, expected_nodes), (
            f"the flowchart does not draw {missing_labels(page, expected_nodes)}; it draws {labels}"
        )
        assert not group_labels(page), f"groups still closed: {group_labels(page)}"

        page.set_viewport_size({"width": VIEWPORT[0], "height": VIEWPORT[1]})
        preview = open_dataset_preview(page, METRICS_DATASET, "JSONPreview")
        shown = preview.text_content() or ""
        for key, value in expected_values:
            assert f'"{key}"' in shown and value in shown, (
                f"{METRICS_DATASET} preview lacks {key}: {value}; it shows {shown[:800]!r}"
            )
        page.screenshot(path=str(shots / "kedro_viz_metrics_preview.png"))
    assert (shots / "kedro_viz.png").stat().st_size > 20_000
