"""Regenerate the README's pictures from a project folder that has run the demo.

    python scripts/readme_pictures.py                       # the repo itself, after `make run`
    python scripts/readme_pictures.py --project /some/copy  # another run of the demo
    python scripts/readme_pictures.py --no-viz              # only copy the figures

Copies the newest version of each figure the pipelines draw into docs/images/<dataset>.png,
then builds kedro-viz's static site (`kedro viz build --include-previews`, into
<project>/build/) and screenshots it in headless chromium: docs/images/kedro_viz.png (the
whole demo flowchart) and docs/images/kedro_viz_metrics_preview.png (a metrics dataset's
preview). Needs Debian's chromium (`make browser`) and Playwright (the dev extras).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from viz_browser import build_viz_site, latest_version_path, viz_screenshots  # beside this script

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("demo_image_grid", "residual_1_roc_plot", "residual_2_accuracy_plot", "caption_heatmap_grid")


def copy_figures(project: Path, out_dir: Path, env: str | None = None) -> list[Path]:
    """Copy the newest PNG of each of FIGURES to out_dir/<dataset>.png; return the copies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copies = []
    for dataset in FIGURES:
        source = latest_version_path(project, dataset, env)
        if not source.is_file():
            raise FileNotFoundError(f"{dataset}: {source} is missing; run the demo first (`make run`)")
        target = out_dir / f"{dataset}.png"
        shutil.copyfile(source, target)
        copies.append(target)
    return copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=REPO, help="a Kedro project folder that has run the demo")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the pictures go")
    parser.add_argument("--env", default=None, help="the Kedro environment the demo ran with (catalog paths)")
    parser.add_argument("--no-viz", action="store_true", help="skip the kedro-viz screenshots")
    parser.add_argument("--metrics-dataset", default="encoder_training_metrics", help="whose preview to screenshot")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    for path in copy_figures(project, args.out, args.env):
        print(f"copied {path}")
    if not args.no_viz:
        build = build_viz_site(project)
        shots = viz_screenshots(
            build,
            args.out / "kedro_viz.png",
            args.out / "kedro_viz_metrics_preview.png",
            pipeline="demo",
            dataset=args.metrics_dataset,
        )
        for path in shots.values():
            print(f"screenshot {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
