"""Nodes of the data_validation pipeline."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from medclip_residuals.data import contract
from medclip_residuals.models.report_text import report_length_summary

logger = logging.getLogger(__name__)

_PARAMETERS = {"on_unreadable": "error", "frontal_only": False}


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
    unknown = sorted(set(params or {}) - set(_PARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown data_validation parameters {unknown}: expected {sorted(_PARAMETERS)}"
        )
    settings = {**_PARAMETERS, **(params or {})}
    frontal_only = settings["frontal_only"]
    if not isinstance(frontal_only, bool):
        raise ValueError(f"data_validation.frontal_only must be true or false, got {frontal_only!r}")
    validated = contract.validate_dataset(
        manifest,
        localizations,
        data_root,
        on_unreadable=settings["on_unreadable"],
        frontal_only=frontal_only,
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
