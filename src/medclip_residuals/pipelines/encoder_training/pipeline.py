"""encoder_training: split patients -> train with the CLIP loss -> loss curve, held-out AUCs."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_encoder, plot_loss_curve, split_patients, train_encoder


def create_pipeline(**kwargs) -> Pipeline:
    """Train the encoder on the training patients and measure it on the held-out ones."""
    return Pipeline(
        [
            Node(
                func=split_patients,
                inputs={"image_manifest": "image_manifest", "params": "params:encoder_training", "seed": "params:seed"},
                outputs="encoder_split",  # read by name by hooks.RunProvenanceHook
                name="split_encoder_patients",
            ),
            Node(
                func=train_encoder,
                inputs={
                    "image_manifest": "image_manifest",
                    "encoder_split": "encoder_split",
                    "encoder_params": "params:encoder",
                    "params": "params:encoder_training",
                    "seed": "params:seed",
                    "device": "params:device",
                },
                outputs=["medclip_encoder", "encoder_training_history"],
                name="train_encoder",
            ),
            Node(
                func=plot_loss_curve,
                inputs={"history": "encoder_training_history"},
                outputs="encoder_loss_curve",
                name="plot_encoder_loss_curve",
            ),
            Node(
                func=evaluate_encoder,
                inputs={
                    "medclip_encoder": "medclip_encoder",
                    "image_manifest": "image_manifest",
                    "encoder_split": "encoder_split",
                    "history": "encoder_training_history",
                    "params": "params:encoder_training",
                    "device": "params:device",
                },
                outputs="encoder_training_metrics",
                name="evaluate_encoder",
            ),
        ],
        namespace="encoder_training",
        prefix_datasets_with_namespace=False,
    )
