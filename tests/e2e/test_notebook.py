"""The exploration notebook runs top to bottom against the tiny demo run.

nbclient executes notebooks/explore_medclip_residuals.ipynb from <project>/notebooks, so
`%load_ext kedro.ipython` finds the demo-run project, in a kernel of THIS interpreter (a
kernelspec written to a temporary folder: no other Python's ipykernel can answer), with
KEDRO_ENV=tiny so that the notebook sees the parameters the demo ran with.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from viz_browser import latest_version_path

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = PROJECT_ROOT / "notebooks" / "explore_medclip_residuals.ipynb"
KERNEL = "medclip-residuals-test"


def execute_notebook(path: Path, env: dict[str, str], timeout_s: int = 300):
    """Run every cell of `path` (cwd: its folder) in a kernel of sys.executable; return the
    executed notebook. Fails with the cell and its traceback on the first error."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    spec_root = Path(tempfile.mkdtemp(prefix="kernels-"))
    spec_dir = spec_root / KERNEL
    spec_dir.mkdir()
    (spec_dir / "kernel.json").write_text(
        json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "medclip-residuals (test)",
            "language": "python",
            "env": env,
        }),
        encoding="utf-8",
    )
    try:
        manager = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_root)]))
        client = NotebookClient(
            notebook,
            km=manager,
            timeout=timeout_s,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute(cleanup_kc=True)  # a kernel manager we pass in is not stopped by default
    finally:
        shutil.rmtree(spec_root, ignore_errors=True)
    return notebook


def cell_with(notebook, fragment: str):
    cells = [c for c in notebook.cells if c.cell_type == "code" and fragment in c.source]
    assert len(cells) == 1, f"expected one code cell containing {fragment!r}, found {len(cells)}"
    return cells[0]


def stdout_of(cell) -> str:
    """What the cell printed (Kedro's log records go elsewhere: rich display outputs)."""
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout")


def html_of(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


def has_image(cell) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def executed(demo_run):
    """(project, executed notebook) for the notebook copied into the demo-run project."""
    project, _ = demo_run
    target = project / "notebooks" / NOTEBOOK.name
    target.parent.mkdir(exist_ok=True)
    shutil.copy2(NOTEBOOK, target)
    env = {
        "KEDRO_ENV": "tiny",
        "KEDRO_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    notebook = execute_notebook(target, env)
    import nbformat

    nbformat.write(notebook, target.with_suffix(".executed.ipynb"))  # to look at after a failure
    return project, notebook


def test_notebook_is_stored_without_outputs():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].cell_type == "markdown"
    assert "%load_ext kedro.ipython" in notebook.cells[1].source
    stale = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not stale, f"cells {stale} were committed with outputs; clear them"


def test_notebook_runs_and_shows_the_demo_results(executed):
    project, notebook = executed

    intro = cell_with(notebook, "import textwrap")
    assert "encoder_training" in stdout_of(intro) and "explainability" in stdout_of(intro)

    # the top-k phenotypes printed are those of the phenotype_table the demo wrote
    table = pd.read_parquet(latest_version_path(project, "phenotype_table"))
    printed = stdout_of(cell_with(notebook, 'catalog.load("phenotype_table")'))
    lines = [line.split() for line in printed.splitlines()[1:] if line.strip()]
    assert len(lines) >= 4, f"expected the top-k rows of a few images, got:\n{printed}"
    for words in lines:
        image_id, rank = words[0], int(words[1])
        row = table[(table["image_id"] == image_id) & (table["rank"] == rank)]
        assert len(row) == 1, f"printed row {words} is not in phenotype_table"
        assert str(row["phenotype"].iloc[0]).split()[0] in words
    assert has_image(cell_with(notebook, 'catalog.load("phenotype_table")'))

    # the metrics table has every residual_1 target with its AUC estimate
    metrics = json.loads(latest_version_path(project, "residual_1_metrics").read_text(encoding="utf-8"))
    shown = html_of(cell_with(notebook, "residual_metrics_table = "))
    for target, result in metrics["targets"].items():
        assert target in shown and f"{result['auc']['residual_1']['estimate']:.3f}" in shown

    for fragment in ('n_show = 6', "PCA(n_components=2", "plot_residual_1_roc(", 'phrase = "'):
        assert has_image(cell_with(notebook, fragment)), f"the cell with {fragment!r} drew no figure"
    heatmaps = stdout_of(cell_with(notebook, 'phrase = "'))
    assert "4 heatmaps for 'there is some pneumonia near the heart'" in heatmaps
    assert "Pneumonia" in heatmaps
