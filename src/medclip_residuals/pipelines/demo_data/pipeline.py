"""Generate the demo dataset (manifest, localizations, images, masks) and a grid to judge it."""

from kedro.pipeline import Node, Pipeline

from medclip_residuals.pipelines.demo_data.nodes import generate_demo_data, plot_demo_image_grid


def create_pipeline(**kwargs) -> Pipeline:
    """The `demo_data` pipeline; run it with `kedro run --pipelines demo_data`."""
    return Pipeline(
        [
            Node(
                func=generate_demo_data,
                inputs={"params": "params:demo_data"},
                outputs=["demo_marker", "manifest", "localizations", "demo_images", "demo_masks"],
                name="generate_demo_data",
            ),
            Node(
                func=plot_demo_image_grid,
                inputs={
                    "manifest": "manifest",
                    "localizations": "localizations",
                    "demo_images": "demo_images",
                    "demo_masks": "demo_masks",
                    "params": "params:demo_data",
                },
                outputs="demo_image_grid",
                name="plot_demo_image_grid",
            ),
        ],
        namespace="demo_data",
        prefix_datasets_with_namespace=False,
    )
