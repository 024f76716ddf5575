"""kedro-viz in a real headless browser: build the static site, serve it on loopback, drive it.

Development tooling, not part of the package: scripts import it from this folder, and the
tests through tests/e2e/conftest.py, which puts scripts/ on sys.path.

Shared by the browser test (tests/e2e/test_kedro_viz.py) and the README pictures
(scripts/readme_pictures.py). Playwright's Python package drives Debian's chromium
(`/usr/bin/chromium`, `make browser`), because Playwright cannot download its own browser
here. The page may only talk to the loopback server: every other request (web fonts,
analytics) is aborted, so nothing leaves the machine and nothing waits on the network.

    build = build_viz_site(project)                      # kedro viz build --include-previews
    with serve_directory(build) as url, viz_page() as page:
        open_flowchart(page, url, pipeline="demo")       # onboarding dismissed, graph drawn
        labels = flowchart_labels(page)                  # node names as drawn
        preview = open_dataset_preview(page, "residual_1_metrics")
        page.screenshot(path="kedro_viz.png")

Playwright is a development dependency: it is imported only when a page is opened.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 30_000
VIEWPORT = (1600, 1000)  # the side panel with a preview
FLOWCHART_VIEWPORT = (1500, 1900)  # tall: the demo graph fits at a readable zoom

# kedro-viz 12.5's DOM, in one place for when a release renames something.
ONBOARDING_CLOSE = ".feature-hints__close"
ONBOARDING_REOPEN_MESSAGE = ".feature-hints__reopen-message"
NODE_LABEL = "text.pipeline-node__text"
GROUP_NODE = "g.pipeline-node--modularPipeline"  # a namespaced pipeline, drawn as one node
SEARCH = "#search-bar"
SIDEBAR_ROW = "button.row-text"
METADATA_PANEL = ".pipeline-metadata"
METADATA_TITLE = ".pipeline-metadata__title"
PREVIEW = {  # preview type -> where the side panel shows it
    "JSONPreview": ".pipeline-metadata__preview-json",
    "TablePreview": ".pipeline-metadata__preview table",
    "ImagePreview": ".pipeline-metadata__plot-image",
    "PlotlyPreview": ".pipeline-metadata__plot",
}


class VizBuildError(RuntimeError):
    """`kedro viz build` did not write a complete site."""


def _quiet_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def build_viz_site(project: Path | str, include_previews: bool = True, timeout_s: int = 600) -> Path:
    """Run `kedro viz build` in `project` and return its `build/` folder.

    kedro-viz 12.5 exits 0 even when it stops half way (a preview it cannot serialise),
    so success is judged by its own "Success!" line and the site's files, not the exit code.
    """
    project = Path(project)
    build = project / "build"
    shutil.rmtree(build, ignore_errors=True)  # a stale site must not pass for a new one
    command = [sys.executable, "-m", "kedro", "viz", "build"] + (["--include-previews"] if include_previews else [])
    result = subprocess.run(
        command, cwd=project, env=_quiet_env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    output = result.stdout + result.stderr
    failed = result.returncode != 0 or "Success!" not in output or "Failed to" in output
    if failed or not (build / "index.html").is_file() or not (build / "api" / "main").is_file():
        raise VizBuildError(
            f"`{' '.join(command[2:])}` in {project} failed (exit {result.returncode}):\n{output[-6000:]}"
        )
    return build


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve_directory(root: Path | str, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `root` over HTTP on `host` at a free port, in a thread; yield the base URL.

    The server is shut down and its socket closed when the block ends.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"nothing to serve: {root} is not a folder")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"serve {root.name}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def viz_page(
    chromium: str = CHROMIUM,
    viewport: tuple[int, int] = VIEWPORT,
    scale: float = 1.0,
    timeout_ms: int = TIMEOUT_MS,
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Iterator[Page]:
    """A fresh headless chromium page that may only reach `allowed_hosts`; closed afterwards."""
    from playwright.sync_api import sync_playwright

    if not Path(chromium).is_file():
        raise FileNotFoundError(f"{chromium} is missing: install Debian's chromium (`make browser`)")

    def loopback_only(route: Any) -> None:
        if urlsplit(route.request.url).hostname in allowed_hosts:
            route.continue_()
        else:
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS), timeout=timeout_ms)
        try:
            context = browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]}, device_scale_factor=scale
            )
            context.route("**/*", loopback_only)
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()


def dismiss_onboarding(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Close the feature-hints dialog kedro-viz shows on its first screen, and its toast."""
    close = page.locator(ONBOARDING_CLOSE)
    close.wait_for(state="visible", timeout=timeout_ms)
    close.click()
    close.wait_for(state="hidden", timeout=timeout_ms)
    # "You can revisit these hints..." fades out by itself; wait so screenshots are clean
    page.locator(ONBOARDING_REOPEN_MESSAGE).wait_for(state="hidden", timeout=timeout_ms)


def open_flowchart(page: Page, url: str, pipeline: str = "__default__", timeout_ms: int = TIMEOUT_MS) -> None:
    """Load the site with `pipeline` selected, dismiss the onboarding, wait for the graph."""
    page.goto(f"{url}?{urlencode({'pid': pipeline})}", timeout=timeout_ms)
    dismiss_onboarding(page, timeout_ms)
    page.locator(NODE_LABEL).first.wait_for(state="visible", timeout=timeout_ms)
    page.wait_for_load_state("networkidle", timeout=timeout_ms)


def _label_key(text: str) -> str:
    """Raw and pretty node names compare equal ("embed_images" ~ "Embed Images")."""
    return re.sub(r"[\s_]+", "_", text.strip().lower())


def flowchart_labels(page: Page) -> list[str]:
    """The node labels the flowchart draws, in DOM order."""
    return [text.strip() for text in page.locator(NODE_LABEL).all_text_contents()]


def missing_labels(page: Page, names: list[str] | set[str]) -> list[str]:
    """Which of `names` the flowchart does not draw (raw or pretty names both count)."""
    drawn = {_label_key(label) for label in flowchart_labels(page)}
    return sorted(name for name in names if _label_key(name) not in drawn)


def group_labels(page: Page) -> list[str]:
    """The namespaced pipelines the flowchart draws as collapsed groups, in DOM order."""
    groups = page.locator(GROUP_NODE)
    return [(groups.nth(i).text_content() or "").strip() for i in range(groups.count())]


def expand_group(page: Page, name: str, timeout_ms: int = TIMEOUT_MS) -> None:
    """Open a collapsed group (a click on its node), waiting until it is no longer drawn as one."""
    key = _label_key(name)
    groups = page.locator(GROUP_NODE)
    for i in range(groups.count()):
        if _label_key(groups.nth(i).text_content() or "") == key:
            groups.nth(i).click(timeout=timeout_ms)
            break
    else:
        raise LookupError(f"no collapsed group {name!r}; groups drawn: {group_labels(page)}")
    page.wait_for_function(
        "([selector, key]) => ![...document.querySelectorAll(selector)].some("
        "g => g.textContent.trim().toLowerCase().replace(/[\\s_]+/g, '_') === key)",
        arg=[GROUP_NODE, key], timeout=timeout_ms,
    )


def select_node(page: Page, name: str, timeout_ms: int = TIMEOUT_MS) -> Locator:
    """Select node `name` as a user does (search it in the sidebar, click it); return the
    side panel once it shows that node.

    The sidebar rather than the flowchart: selecting a node pans the graph, and the next
    node may then lie outside the window.
    """
    search = page.locator(SEARCH)
    search.fill(name, timeout=timeout_ms)
    row = page.locator(f'{SIDEBAR_ROW}[title="{name}"]').first
    row.wait_for(state="visible", timeout=timeout_ms)
    row.click()
    panel = page.locator(METADATA_PANEL)
    panel.locator(METADATA_TITLE, has_text=re.compile(rf"^\s*{re.escape(name)}\s*$", re.I)).wait_for(
        timeout=timeout_ms
    )
    return panel


def open_dataset_preview(
    page: Page, name: str, preview_type: str = "JSONPreview", timeout_ms: int = TIMEOUT_MS
) -> Locator:
    """Select dataset `name` and return its preview in the side panel, once visible."""
    if preview_type not in PREVIEW:
        raise ValueError(f"unknown preview type {preview_type!r}; one of {sorted(PREVIEW)}")
    panel = select_node(page, name, timeout_ms)
    preview = panel.locator(PREVIEW[preview_type]).first
    preview.wait_for(state="visible", timeout=timeout_ms)
    return preview


def latest_version_path(project: Path | str, dataset: str, env: str | None = None) -> Path:
    """The file a catalog dataset of `project` loads: its newest version when versioned.

    Reads the catalog configuration only (no session, no hooks): `conf/base` plus `env`.
    """
    from kedro.config import OmegaConfigLoader

    project = Path(project)
    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"), base_env="base", default_run_env=env or "local"
    )
    catalog = loader["catalog"]
    if dataset not in catalog or "filepath" not in catalog[dataset]:
        raise KeyError(f"{dataset!r} is not a file dataset of {project / 'conf'}")
    path = project / catalog[dataset]["filepath"]
    if not catalog[dataset].get("versioned"):
        return path
    versions = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{dataset}: no version under {path}; run the pipeline that writes it")
    return versions[-1] / path.name


def previews_in_build(build: Path | str, pipeline: str = "demo") -> dict[str, str | None]:
    """Each dataset of `pipeline` in a built site -> its preview type (None: no preview)."""
    api = Path(build) / "api"
    graph = json.loads((api / "pipelines" / pipeline).read_text(encoding="utf-8"))
    out: dict[str, str | None] = {}
    for node in graph["nodes"]:
        if node.get("type") != "data":
            continue
        path = api / "nodes" / node["id"]
        details = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        out[node["name"]] = details.get("preview_type") if details.get("preview") else None
    return out


def task_nodes_by_pipeline(build: Path | str, pipeline: str = "demo") -> dict[str, list[str]]:
    """Registered pipeline name -> names of the task nodes of `pipeline` that belong to it."""
    graph = json.loads((Path(build) / "api" / "pipelines" / pipeline).read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for node in graph["nodes"]:
        if node.get("type") == "task":
            for member in node.get("pipelines", []):
                out.setdefault(member, []).append(node["name"])
    return out


def frame_whole_graph(page: Page, timeout_ms: int = TIMEOUT_MS) -> None:
    """Fit the whole graph in the window for a picture: minimap off, zoom reset, no tooltip."""
    minimap_off = page.get_by_role("button", name="Turn minimap off")
    if minimap_off.count():
        minimap_off.click(timeout=timeout_ms)
    page.get_by_role("button", name="Reset zoom").click(timeout=timeout_ms)
    size = page.viewport_size or {"width": VIEWPORT[0], "height": VIEWPORT[1]}
    page.mouse.move(size["width"] - 10, 5)  # away from the toolbar's tooltips
    page.wait_for_timeout(1000)  # the zoom animates; there is no element to wait for


def viz_screenshots(
    build: Path | str,
    flowchart_png: Path | str,
    preview_png: Path | str | None = None,
    pipeline: str = "demo",
    dataset: str = "encoder_training_metrics",
) -> dict[str, Path]:
    """Screenshots of a built site: the whole `pipeline` flowchart, then `dataset`'s JSON preview."""
    shots = {"flowchart": Path(flowchart_png)}
    if preview_png is not None:
        shots["preview"] = Path(preview_png)
    for path in shots.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    with serve_directory(build) as url, viz_page(viewport=FLOWCHART_VIEWPORT) as page:
        open_flowchart(page, url, pipeline)
        frame_whole_graph(page)
        page.screenshot(path=str(shots["flowchart"]))
        if preview_png is not None:
            page.set_viewport_size({"width": VIEWPORT[0], "height": VIEWPORT[1]})
            open_dataset_preview(page, dataset)
            page.screenshot(path=str(shots["preview"]))
    return shots
