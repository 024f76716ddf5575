"""One tiny demo run of the whole project, shared by the end-to-end, kedro-viz and notebook tests.

The project (conf, pyproject, notebooks, src) is copied to a temporary folder with an
extra Kedro environment `tiny` (conf/tiny/parameters.yml below) and run there with
`kedro run --pipelines demo --env tiny`, exactly as a user runs it, so the working tree's
data/ is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# scripts/viz_browser.py (the browser tooling shared with scripts/readme_pictures.py) is not
# part of the package: the browser and notebook tests import it from there.
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))

# Small enough for CI (a minute or two on 2 cores); every pipeline still does its real work.
TINY_PARAMETERS = """
demo_data:
  n_images: 150
  image_size: 64
  grid: {rows: 2, cols: 3}
encoder:
  demo:
    image_size: 64
    text_max_length: 24
    swin: {patch_size: 4, embed_dim: 8, depths: [1, 1], num_heads: [1, 2], window_size: 4, mlp_ratio: 2.0}
    bert: {hidden_size: 16, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32,
           max_position_embeddings: 32}
encoder_training:
  epochs: 2
  batch_size: 16
  cache_workers: 0
  evaluation: {batch_size: 32}
embedding:
  batch_size: 16
  num_workers: 0
study_design:
  # two of the demo's outcomes (the third, lung cancer, has too few patients this small)
  targets: ["outcome:heart_failure", "outcome:icu_admission"]
  min_positives: 2
  min_negatives: 2
  split:
    fractions: {encoder_train: 0.4, head_train: 0.3, validation: 0.1, test: 0.2}
    folds: 10
  bootstrap: {n_resamples: 50}
residual_1:
  sweep: {top_k: [1, 2]}
explainability:
  max_images: 12
  batch_size: 8
  grid: {sample_size: 2}
  scoring: {n_resamples: 50}
"""


def kedro_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # wide enough that rich does not break a long path inside a log message
    env["COLUMNS"] = "400"
    return env


def kedro(project: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the `kedro` CLI of this interpreter in `project`; fail the test with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=project,
        env=kedro_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"kedro {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project with the `tiny` environment; nothing run yet."""
    project = tmp_path_factory.mktemp("project")
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy2(PROJECT_ROOT / name, project / name)
    shutil.copytree(PROJECT_ROOT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    if (PROJECT_ROOT / "notebooks").exists():
        shutil.copytree(PROJECT_ROOT / "notebooks", project / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # a real copy: Kedro refuses a source folder that resolves outside the project
    shutil.copytree(PROJECT_ROOT / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for layer in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                  "07_model_output", "08_reporting"):
        (project / "data" / layer).mkdir(parents=True)
    (project / "conf" / "tiny").mkdir()
    (project / "conf" / "tiny" / "parameters.yml").write_text(TINY_PARAMETERS, encoding="utf-8")
    return project


@pytest.fixture(scope="session")
def demo_run(tiny_project: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny project after `kedro run --pipelines demo --env tiny` (the same run as `make run`)."""
    result = kedro(tiny_project, "run", "--pipelines", "demo", "--env", "tiny")
    return tiny_project, result
