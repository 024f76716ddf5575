"""encoder_training: train with the CLIP loss on the encoder_train role -> loss curve,
zero-shot AUCs on the validation and test roles."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_encoder, plot_loss_curve, train_encoder


def create_pipeline(**kwargs) -> Pipeline:
    """Train the encoder on the study's encoder_train patients and measure it on the others."""
    return Pipeline(
        [
            Node(
                func=train_encoder,
                inputs={
                    "image_manifest": "image_manifest",
                    "study_split": "study_split",
                    "encoder_params": "params:encoder",
                    "params": "params:encoder_training",
                    "seed": "params:seed",
                    "device": "params:device",
                },
                # encoder_training_images is read by name by hooks.RunProvenanceHook
                outputs=["medclip_encoder", "encoder_training_history", "encoder_training_images"],
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
                    "study_split": "study_split",
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
