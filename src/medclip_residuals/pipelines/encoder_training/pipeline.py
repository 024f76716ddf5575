"""encoder_training: split patients -> train with the CLIP loss -> loss curve, held-out AUCs."""

from kedro.pipeline import Node, Pipeline

from .nodes import evaluate_encoder, plot_loss_curve, split_patients, train_encoder


def create_pipeline(**kwargs) -> Pipeline:
    """Train the encoder on the training patients and measure it on the held-out ones."""
    return Pipeline(
        [
            Node(
                split_patients,
                ["image_manifest", "params:encoder_training", "params:seed"],
                "encoder_split",
                name="split_encoder_patients",
            ),
            Node(
                train_encoder,
                ["image_manifest", "encoder_split", "params:encoder", "params:encoder_training", "params:seed", "params:device"],
                ["medclip_encoder", "encoder_training_history"],
                name="train_encoder",
            ),
            Node(plot_loss_curve, "encoder_training_history", "encoder_loss_curve", name="plot_encoder_loss_curve"),
            Node(
                evaluate_encoder,
                ["medclip_encoder", "image_manifest", "encoder_split", "encoder_training_history",
                 "params:encoder_training", "params:device"],
                "encoder_training_metrics",
                name="evaluate_encoder",
            ),
        ]
    )
