"""Nodes of the data_validation pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from medclip_residuals.data import contract
from medclip_residuals.data.report_labels import fill_empty_labels, label_manifest_reports, load_label_rules
from medclip_residuals.models.report_text import report_length_summary
from medclip_residuals.pipelines.data_validation.params import DataValidationParams

logger = logging.getLogger(__name__)


def validate_dataset(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame,
    data_root: str,
    params: dict[str, Any],
    encoder_params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Check the dataset against the data contract; return the validated tables and a report.

    Raises one `DataContractError` listing every problem (file:row [column] reason, row the
    file's own line): CSV-level faults the catalog's datasets recorded at load time, then
    every contract check, e.g. empty or non-binary masks and one image file under two ids.
    `image_manifest` has absolute image paths, patient ids, image sizes and float labels
    (1, 0, -1, NaN); `image_localizations` has absolute mask paths and float boxes. The
    report's `reports` entry counts the reports longer than the configured encoder's token
    limit (`encoder_params`), which the text encoder would truncate.

    I/O exception to the house rule: this node decodes every image and mask file that the
    manifest and localizations name, once, since only decoding tells whether a file is
    readable and how large it is.
    """
    p = DataValidationParams.parse(params, "data_validation")
    validated = contract.validate_dataset(
        manifest, localizations, data_root, on_unreadable=p.on_unreadable, frontal_only=p.frontal_only
    )
    lengths = report_length_summary(validated.image_manifest["report"], encoder_params)
    validated.report["reports"] = lengths
    if lengths["whole"] and lengths["whole"]["n_over_limit"]:
        logger.warning(
            "data_validation: %d of %d reports exceed the encoder's %d-token limit and would be truncated "
            "(%d as IMPRESSION sections: embedding.report_text: impression embeds those)",
            lengths["whole"]["n_over_limit"], lengths["n_reports"], lengths["limit"],
            lengths["impression"]["n_over_limit"],
        )
    counts = validated.report["counts"]
    if counts["rescaled_16bit_png"] or counts["exif_rotated"]:
        logger.info(
            "data_validation: %d 16-bit PNGs scaled by their real bit depth (sBIT or the max-value rule), "
            "%d images rotated by their EXIF orientation; validation_report['decoding'] has the details",
            counts["rescaled_16bit_png"],
            counts["exif_rotated"],
        )
    if counts["skipped_images"] or counts["skipped_localizations"]:
        logger.warning(
            "data_validation skipped %d unreadable images and %d localizations; "
            "each is listed with its row and reason in validation_report",
            counts["skipped_images"],
            counts["skipped_localizations"],
        )
    return validated.image_manifest, validated.image_localizations, validated.report


def label_reports(image_manifest: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CheXpert labels of every image's report (1 affirmed, 0 negated, -1 uncertain, NaN not
    mentioned), and one row per finding mention with its sentence and location.

    The rules (mention phrases, negation and uncertainty cues, locations) are read from
    `report_rules` before any report is read; see data/report_labels.py.
    """
    p = DataValidationParams.parse(params, "data_validation")
    labels, mentions = label_manifest_reports(image_manifest, load_label_rules(p.report_rules))
    logger.info(
        "report_labels: %d reports (%s); %d finding mentions",
        len(labels), ", ".join(f"{n} {status}" for status, n in labels["report_status"].value_counts().sort_index().items()),
        len(mentions),
    )
    return labels, mentions


def fill_labels_from_reports(
    image_manifest: pd.DataFrame, report_labels: pd.DataFrame, validation_report: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """With `labels_from_reports: fill`, give every CheXpert label the manifest leaves empty
    (a missing column, or an empty cell) the label its report gives; the manifest's own labels
    are never overwritten. `labels_from_report` names, per image, the labels that came from its
    report; the validation report counts them per finding. With `off`, the tables pass through.
    """
    p = DataValidationParams.parse(params, "data_validation")
    report = {**validation_report, "labels_from_reports": {"mode": p.labels_from_reports, "filled": {}}}
    if p.labels_from_reports == "off":
        return image_manifest.copy(), report
    manifest, filled = fill_empty_labels(image_manifest, report_labels)
    report["labels_from_reports"]["filled"] = filled
    logger.info(
        "data_validation: labels_from_reports fill: %d labels of %d images taken from their reports "
        "(the manifest's own labels kept)",
        sum(sum(counts.values()) for counts in filled.values()), int((manifest["labels_from_report"] != "").sum()),
    )
    return manifest, report
