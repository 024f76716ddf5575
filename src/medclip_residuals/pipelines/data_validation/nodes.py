"""Nodes of the data_validation pipeline."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from medclip_residuals.data import contract
from medclip_residuals.data.report_labels import ReportLabeller, load_label_rules
from medclip_residuals.models.report_text import report_length_summary

logger = logging.getLogger(__name__)

_PARAMETERS = {"on_unreadable": "error", "frontal_only": False, "labels_from_reports": "off", "report_rules": None}
LABELS_FROM_REPORTS = ("off", "fill")


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
    settings = _settings(params)
    frontal_only = settings["frontal_only"]
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


def _settings(params: dict[str, Any] | None) -> dict[str, Any]:
    """`params:data_validation` checked: known keys only, valid values."""
    unknown = sorted(set(params or {}) - set(_PARAMETERS))
    if unknown:
        raise ValueError(
            f"unknown data_validation parameters {unknown}: expected {sorted(_PARAMETERS)}"
        )
    settings = {**_PARAMETERS, **(params or {})}
    if settings["labels_from_reports"] is False:
        settings["labels_from_reports"] = "off"  # YAML reads a bare `off` as false
    if not isinstance(settings["frontal_only"], bool):
        raise ValueError(f"data_validation.frontal_only must be true or false, got {settings['frontal_only']!r}")
    if settings["labels_from_reports"] not in LABELS_FROM_REPORTS:
        raise ValueError(
            f"data_validation.labels_from_reports must be one of {list(LABELS_FROM_REPORTS)}, "
            f"got {settings['labels_from_reports']!r}"
        )
    return settings


def label_reports(image_manifest: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CheXpert labels of every image's report (1 affirmed, 0 negated, -1 uncertain, NaN not
    mentioned), and one row per finding mention with its sentence and location.

    The rules (mention phrases, negation and uncertainty cues, locations) are read from
    `params["report_rules"]` before any report is read; see data/report_labels.py.
    """
    settings = _settings(params)
    if not settings["report_rules"]:
        raise ValueError("data_validation.report_rules must name the rules file (conf/base/report_label_rules.yml)")
    rules = load_label_rules(settings["report_rules"])
    ids = image_manifest["image_id"].astype(str).to_numpy()
    reports = image_manifest["report"].tolist() if "report" in image_manifest.columns else [""] * len(ids)
    labelled = ReportLabeller(rules).label(reports)
    labels = labelled.labels.copy()
    labels.insert(0, "image_id", ids)
    mentions = labelled.mentions.copy()
    mentions.insert(0, "image_id", ids[mentions["report"].to_numpy(dtype=int)] if len(mentions) else pd.Series([], dtype=str))
    mentions = mentions.drop(columns="report")
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
    settings = _settings(params)
    manifest = image_manifest.copy()
    report = {**validation_report, "labels_from_reports": {"mode": settings["labels_from_reports"], "filled": {}}}
    if settings["labels_from_reports"] == "off":
        return manifest, report
    if manifest["image_id"].astype(str).tolist() != report_labels["image_id"].astype(str).tolist():
        raise ValueError("report_labels and image_manifest list different images: rerun the data_validation pipeline")
    filled_by_image: list[list[str]] = [[] for _ in range(len(manifest))]
    for finding in contract.CHEXPERT_FINDINGS:
        from_report = report_labels[finding].to_numpy(dtype=float)
        own = manifest[finding].to_numpy(dtype=float) if finding in manifest.columns else np.full(len(manifest), np.nan)
        take = np.isnan(own) & ~np.isnan(from_report)
        if finding not in manifest.columns and not take.any():
            continue  # no column where neither the manifest nor any report has a label
        manifest[finding] = np.where(take, from_report, own)
        for row in np.flatnonzero(take):
            filled_by_image[row].append(finding)
        if take.any():
            values = from_report[take]
            report["labels_from_reports"]["filled"][finding] = {
                "1": int((values == 1).sum()), "0": int((values == 0).sum()), "-1": int((values == -1).sum()),
            }
    manifest["labels_from_report"] = pd.Series([", ".join(names) for names in filled_by_image], dtype=str)
    total = sum(len(names) for names in filled_by_image)
    logger.info(
        "data_validation: labels_from_reports fill: %d labels of %d images taken from their reports "
        "(the manifest's own labels kept)", total, sum(bool(names) for names in filled_by_image),
    )
    return manifest, report
