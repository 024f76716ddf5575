"""The data contract (docs/DATA_CONTRACT.md) in code: reading and validating a dataset folder.

`validate_dataset` checks manifest.csv and localizations.csv once, before any model runs,
and raises one `DataContractError` that lists every problem as
`<file>:<row> [<column>] <reason>`, where row is the CSV record's line number with the
header as line 1 (the file's line number whenever no quoted field spans several lines).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclip_residuals.data.images import ImageDecodeError, read_image

CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

MANIFEST_FILE = "manifest.csv"
LOCALIZATIONS_FILE = "localizations.csv"
MANIFEST_REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "image_path")
MANIFEST_CORE_COLUMNS: tuple[str, ...] = (
    "image_id", "image_path", "patient_id", "report", "view", "height", "width",
)
BOX_COLUMNS: tuple[str, ...] = ("x", "y", "w", "h")
LOCALIZATION_COLUMNS: tuple[str, ...] = ("image_id", "finding", "mask_path", *BOX_COLUMNS)
# Known to the demo data; present (possibly empty) in every validated localization table.
LOCALIZATION_EXTRA_COLUMNS: tuple[str, ...] = ("side", "zone")
FRONTAL_VIEWS = frozenset({"PA", "AP", "FRONTAL", ""})
UNCERTAINTY_POLICIES: tuple[str, ...] = ("u_ones", "u_zeros", "ignore")
ON_UNREADABLE_POLICIES: tuple[str, ...] = ("error", "skip")

# CheXpert CSVs write labels as floats ("1.0"); empty = not mentioned.
_LABEL_VALUES = {
    "1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0, "": math.nan,
}
_MESSAGE_LIMIT = 200  # problems spelled out in the message; all of them stay in `.problems`


@dataclass(frozen=True)
class Problem:
    """One violation of the contract: where it is and what is wrong."""

    file: str
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.row} [{self.column}] {self.reason}"


class DataContractError(ValueError):
    """A dataset breaks the data contract; `problems` lists every violation found."""

    def __init__(self, problems: Iterable[Problem], data_root: str | os.PathLike | None = None) -> None:
        self.problems: list[Problem] = list(problems)
        self.data_root = None if data_root is None else str(data_root)
        where = f" in the dataset at {self.data_root}" if self.data_root else ""
        count = len(self.problems)
        lines = [
            f"{count} problem{'s' if count != 1 else ''}{where} "
            "(file:row [column] reason; row 1 is the CSV header). Fix them all, then run again:"
        ]
        lines += [f"  {problem}" for problem in self.problems[:_MESSAGE_LIMIT]]
        if count > _MESSAGE_LIMIT:
            rest = Counter((p.file, p.column) for p in self.problems[_MESSAGE_LIMIT:])
            lines.append(f"  ... and {count - _MESSAGE_LIMIT} more (all in DataContractError.problems):")
            lines += [f"    {file} [{column}]: {n}" for (file, column), n in rest.most_common()]
        super().__init__("\n".join(lines))


@dataclass
class ValidatedDataset:
    """What `validate_dataset` returns: the two typed tables and the validation report."""

    image_manifest: pd.DataFrame
    image_localizations: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def csv_row(position: int) -> int:
    """Line number in the CSV of the record at 0-based `position` (the header is line 1)."""
    return int(position) + 2


def _read_csv(path: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def read_manifest(data_root: str | os.PathLike) -> pd.DataFrame:
    """Read `<data_root>/manifest.csv` as strings, as the catalog's `manifest` does."""
    path = Path(data_root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the dataset has no {MANIFEST_FILE} (see docs/DATA_CONTRACT.md)")
    return _read_csv(path)


def read_localizations(data_root: str | os.PathLike) -> pd.DataFrame:
    """Read `<data_root>/localizations.csv` as strings; an empty table when it does not exist."""
    path = Path(data_root) / LOCALIZATIONS_FILE
    if not path.is_file():
        return empty_localizations()
    return _read_csv(path)


def empty_localizations() -> pd.DataFrame:
    """A localization table with the contract's columns and no rows."""
    return pd.DataFrame({column: pd.Series([], dtype=str) for column in LOCALIZATION_COLUMNS})


def apply_uncertainty(labels: pd.DataFrame | pd.Series, policy: str) -> pd.DataFrame | pd.Series:
    """Map uncertain labels (-1) by policy: `u_ones` -> 1, `u_zeros` -> 0, `ignore` -> NaN.

    A DataFrame has its CheXpert-named columns mapped (all columns when it has none); other
    values, NaN (not mentioned) included, are left as they are.
    """
    replacement = {"u_ones": 1.0, "u_zeros": 0.0, "ignore": np.nan}
    if policy not in replacement:
        raise ValueError(
            f"unknown uncertainty policy {policy!r}: choose one of {', '.join(UNCERTAINTY_POLICIES)}"
        )
    value = replacement[policy]

    def _map(series: pd.Series) -> pd.Series:
        numbers = pd.to_numeric(series, errors="raise").astype(float)
        return numbers.mask(numbers == -1.0, value)

    if isinstance(labels, pd.Series):
        return _map(labels)
    if not isinstance(labels, pd.DataFrame):
        raise TypeError(f"apply_uncertainty expects a pandas DataFrame or Series, got {type(labels).__name__}")
    columns = [c for c in labels.columns if c in CHEXPERT_FINDINGS] or list(labels.columns)
    mapped = labels.copy()
    for column in columns:
        mapped[column] = _map(labels[column])
    return mapped


def resolve_path(data_root: str | os.PathLike, path: str) -> str:
    """Absolute path of `path`, taken relative to `data_root` unless it is absolute."""
    root = os.path.expanduser(os.fspath(data_root))
    return os.path.abspath(os.path.join(root, os.path.expanduser(path)))


def _decoded_shape(path: str) -> tuple[int, int]:
    return read_image(path).shape  # type: ignore[return-value]


def decode_all(
    paths: Iterable[str],
    decode: Callable[[str], tuple[int, int]] = _decoded_shape,
    max_workers: int | None = None,
) -> dict[str, tuple[int, int] | ImageDecodeError]:
    """Decode each distinct path once, in threads (Pillow and zlib release the GIL).

    Returns path -> (height, width), or the ImageDecodeError that says why it failed.
    """
    unique = list(dict.fromkeys(paths))

    def _one(path: str) -> tuple[int, int] | ImageDecodeError:
        try:
            height, width = decode(path)
            return int(height), int(width)
        except ImageDecodeError as error:
            return error
        except Exception as error:  # noqa: BLE001 - any failure to decode is reported, never raised
            return ImageDecodeError(path, f"cannot be decoded ({type(error).__name__}: {error})")

    workers = max_workers or min(8, (os.cpu_count() or 1) + 2)
    if workers <= 1 or len(unique) < 8:
        return {path: _one(path) for path in unique}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(_one, unique)))


def _normalise_header(frame: pd.DataFrame) -> pd.DataFrame:
    # A UTF-8 byte-order mark or stray spaces would otherwise hide `image_id`.
    renamed = {c: str(c).lstrip("\ufeff").strip() for c in frame.columns}
    return frame.rename(columns=renamed).reset_index(drop=True)


def _strings(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return [""] * len(frame)
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v).strip() for v in frame[column]]


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _near_miss_labels(columns: Iterable[str]) -> dict[str, str]:
    """Columns that look like a CheXpert name but are spelled differently (ignored, reported)."""
    by_key = {name.lower().replace("_", " "): name for name in CHEXPERT_FINDINGS}
    misses = {}
    for column in columns:
        key = str(column).lower().replace("_", " ").strip()
        if column not in CHEXPERT_FINDINGS and key in by_key:
            misses[str(column)] = by_key[key]
    return misses


def validate_dataset(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame | None,
    data_root: str | os.PathLike,
    on_unreadable: str = "error",
    frontal_only: bool = False,
    decode: Callable[[str], tuple[int, int]] = _decoded_shape,
    max_workers: int | None = None,
) -> ValidatedDataset:
    """Check a dataset against the contract and return its typed tables and a report.

    `manifest` and `localizations` are the CSVs read as strings. Every image (and mask) of
    the kept rows is decoded once by `decode` (path -> (height, width)). With
    `on_unreadable="skip"`, images that are missing or cannot be decoded, their
    localizations, and unreadable masks are left out and listed in the report; every other
    problem, and every unreadable file under "error", is raised together as one
    `DataContractError`. `frontal_only` keeps views PA, AP, FRONTAL and empty.
    """
    if on_unreadable not in ON_UNREADABLE_POLICIES:
        raise ValueError(
            f"data_validation.on_unreadable is {on_unreadable!r}: choose one of {', '.join(ON_UNREADABLE_POLICIES)}"
        )
    skip_unreadable = on_unreadable == "skip"
    manifest = _normalise_header(manifest)
    localizations = _normalise_header(localizations if localizations is not None else empty_localizations())
    problems: list[Problem] = []
    skipped: list[dict[str, Any]] = []

    def problem(file: str, position: int | None, column: str, reason: str) -> None:
        problems.append(Problem(file, 1 if position is None else csv_row(position), column, reason))

    # --- manifest: columns, ids, labels -------------------------------------------------
    for column in MANIFEST_REQUIRED_COLUMNS:
        if column not in manifest.columns:
            problem(MANIFEST_FILE, None, column, "missing required column")
    duplicated_columns = manifest.columns[manifest.columns.duplicated()].unique().tolist()
    for column in duplicated_columns:
        problem(MANIFEST_FILE, None, column, "column appears more than once in the header")
    ids = _strings(manifest, "image_id")
    paths = _strings(manifest, "image_path")
    views = _strings(manifest, "view")
    first_row: dict[str, int] = {}
    if "image_id" in manifest.columns:
        for position, image_id in enumerate(ids):
            if not image_id:
                problem(MANIFEST_FILE, position, "image_id", "empty image_id")
            elif image_id in first_row:
                problem(MANIFEST_FILE, position, "image_id",
                        f"duplicate image_id {image_id!r} (first at row {csv_row(first_row[image_id])})")
            else:
                first_row[image_id] = position
    if "image_path" in manifest.columns:
        for position, path in enumerate(paths):
            if not path:
                problem(MANIFEST_FILE, position, "image_path", "empty image_path")

    label_columns = [name for name in CHEXPERT_FINDINGS if name in manifest.columns]
    labels: dict[str, list[float]] = {}
    for name in label_columns:
        values = _strings(manifest, name)
        for position, text in enumerate(values):
            if text not in _LABEL_VALUES:
                problem(MANIFEST_FILE, position, name,
                        f"label value {text!r} is not one of 1, 0, -1 or empty")
        labels[name] = [_LABEL_VALUES.get(text, math.nan) for text in values]

    # --- views: which rows are kept ------------------------------------------------------
    keep = [not frontal_only or view.upper() in FRONTAL_VIEWS for view in views]
    dropped_views = Counter(view for view, kept in zip(views, keep) if not kept)

    # --- images: decode the kept rows once -----------------------------------------------
    absolute = [resolve_path(data_root, p) if p else "" for p in paths]
    to_decode = [a for a, kept in zip(absolute, keep) if kept and a]
    shapes = decode_all(to_decode, decode, max_workers) if "image_path" in manifest.columns else {}
    skipped_ids: dict[str, str] = {}
    for position, (image_id, path, kept) in enumerate(zip(ids, absolute, keep)):
        result = shapes.get(path) if kept and path else None
        if not isinstance(result, ImageDecodeError):
            continue
        if skip_unreadable:
            skipped.append({"file": MANIFEST_FILE, "row": csv_row(position), "column": "image_path",
                            "image_id": image_id, "path": path, "reason": result.reason})
            skipped_ids[image_id] = f"{MANIFEST_FILE}:{csv_row(position)} {result.reason}"
        else:
            problem(MANIFEST_FILE, position, "image_path", f"{path}: {result.reason}")

    image_shape_by_id: dict[str, tuple[int, int]] = {}
    for image_id, path, kept in zip(ids, absolute, keep):
        result = shapes.get(path) if kept and path else None
        if isinstance(result, tuple) and image_id and image_id not in image_shape_by_id:
            image_shape_by_id[image_id] = result
    dropped_ids = {image_id for image_id, kept in zip(ids, keep) if not kept}

    # --- localizations -------------------------------------------------------------------
    loc_columns = set(localizations.columns)
    for column in ("image_id", "finding"):
        if column not in loc_columns:
            problem(LOCALIZATIONS_FILE, None, column, "missing required column")
    has_mask_column = "mask_path" in loc_columns
    present_box = [c for c in BOX_COLUMNS if c in loc_columns]
    if not has_mask_column and len(present_box) < len(BOX_COLUMNS):
        missing = [c for c in BOX_COLUMNS if c not in loc_columns]
        for column in (["mask_path"] if not present_box else []) + missing:
            problem(LOCALIZATIONS_FILE, None, column,
                    "missing column: a localization needs mask_path or the four box columns x, y, w, h")
    loc_ids = _strings(localizations, "image_id")
    findings = _strings(localizations, "finding")
    mask_paths = _strings(localizations, "mask_path")
    box_text = {c: _strings(localizations, c) for c in BOX_COLUMNS}

    loc_keep = [True] * len(localizations)
    loc_dropped_by_view = 0
    for position, image_id in enumerate(loc_ids):
        if "image_id" not in loc_columns:
            break
        if not image_id:
            problem(LOCALIZATIONS_FILE, position, "image_id", "empty image_id")
            loc_keep[position] = False
        elif image_id in skipped_ids:
            skipped.append({"file": LOCALIZATIONS_FILE, "row": csv_row(position), "column": "image_id",
                            "image_id": image_id, "path": "",
                            "reason": f"its image was skipped ({skipped_ids[image_id]})"})
            loc_keep[position] = False
        elif image_id in dropped_ids and image_id not in image_shape_by_id:
            loc_dropped_by_view += 1
            loc_keep[position] = False
        elif image_id not in first_row:
            problem(LOCALIZATIONS_FILE, position, "image_id", f"unknown image_id {image_id!r}: not in {MANIFEST_FILE}")
            loc_keep[position] = False
    if "finding" in loc_columns:
        for position, finding in enumerate(findings):
            if not loc_keep[position]:
                continue
            if finding not in CHEXPERT_FINDINGS:
                problem(LOCALIZATIONS_FILE, position, "finding",
                        f"finding {finding!r} is not one of the 14 CheXpert names" if finding else "empty finding")

    absolute_masks = [resolve_path(data_root, m) if m else "" for m in mask_paths]
    mask_shapes = decode_all([m for m, kept in zip(absolute_masks, loc_keep) if kept and m], decode, max_workers)
    boxes: dict[str, list[float]] = {c: [math.nan] * len(localizations) for c in BOX_COLUMNS}
    # with no usable mask or box columns the header problem says it all: no per-row noise
    per_row_checks = has_mask_column or len(present_box) == len(BOX_COLUMNS)
    for position in range(len(localizations) if per_row_checks else 0):
        if not loc_keep[position]:
            continue
        image_id = loc_ids[position]
        image_shape = image_shape_by_id.get(image_id)
        mask_path = absolute_masks[position]
        if mask_path:
            result = mask_shapes[mask_path]
            if isinstance(result, ImageDecodeError):
                if skip_unreadable:
                    skipped.append({"file": LOCALIZATIONS_FILE, "row": csv_row(position), "column": "mask_path",
                                    "image_id": image_id, "path": mask_path, "reason": result.reason})
                    loc_keep[position] = False
                    continue
                problem(LOCALIZATIONS_FILE, position, "mask_path", f"{mask_path}: {result.reason}")
            elif image_shape is not None and result != image_shape:
                problem(LOCALIZATIONS_FILE, position, "mask_path",
                        f"mask is {result[1]}x{result[0]} (WxH) but its image is {image_shape[1]}x{image_shape[0]}")
        texts = [box_text[c][position] for c in BOX_COLUMNS]
        filled = [c for c, t in zip(BOX_COLUMNS, texts) if t]
        if not filled:
            if not mask_path:
                problem(LOCALIZATIONS_FILE, position, "mask_path",
                        "neither mask_path nor the four box columns x, y, w, h are given")
            continue
        if len(filled) < len(BOX_COLUMNS):
            empty = [c for c in BOX_COLUMNS if c not in filled]
            problem(LOCALIZATIONS_FILE, position, ",".join(empty),
                    f"incomplete box: {', '.join(empty)} empty while {', '.join(filled)} given")
            continue
        values = [_parse_float(t) for t in texts]
        bad = [(c, t) for c, t, v in zip(BOX_COLUMNS, texts, values) if v is None]
        for column, text in bad:
            problem(LOCALIZATIONS_FILE, position, column, f"box value {text!r} is not a finite number")
        if bad:
            continue
        x, y, w, h = values
        if w <= 0 or h <= 0:
            problem(LOCALIZATIONS_FILE, position, "w,h", f"box has non-positive size w={w:g}, h={h:g}")
            continue
        if image_shape is not None:
            height, width = image_shape
            if x < 0 or y < 0 or x + w > width or y + h > height:
                problem(LOCALIZATIONS_FILE, position, "x,y,w,h",
                        f"box x={x:g}, y={y:g}, w={w:g}, h={h:g} lies outside the image ({width}x{height}, WxH)")
                continue
        for column, value in zip(BOX_COLUMNS, values):
            boxes[column][position] = value

    keep_image = [kept and image_id not in skipped_ids for image_id, kept in zip(ids, keep)]
    if not problems and not any(keep_image):
        # every later pipeline would fail on an empty table; say why here instead
        why = "manifest.csv has no data rows" if len(manifest) == 0 else (
            f"no image is left after dropping {sum(dropped_views.values())} non-frontal views "
            f"and skipping {len(skipped_ids)} unreadable images"
        )
        problem(MANIFEST_FILE, None, "image_id", why)
    if problems:
        file_order = {MANIFEST_FILE: 0, LOCALIZATIONS_FILE: 1}
        problems.sort(key=lambda p: (file_order.get(p.file, 2), p.row))  # stable: column order kept
        raise DataContractError(problems, data_root)

    # --- the validated tables ------------------------------------------------------------
    rows = np.flatnonzero(keep_image)
    patients = _strings(manifest, "patient_id")
    reports = manifest["report"].astype(str).tolist() if "report" in manifest.columns else [""] * len(manifest)
    image_manifest = pd.DataFrame({
        "image_id": pd.Series([ids[i] for i in rows], dtype=str),
        "image_path": pd.Series([absolute[i] for i in rows], dtype=str),
        # no patient given: each image is its own patient
        "patient_id": pd.Series([patients[i] or ids[i] for i in rows], dtype=str),
        "report": pd.Series([reports[i] for i in rows], dtype=str),
        "view": pd.Series([views[i] for i in rows], dtype=str),
        "height": pd.Series([image_shape_by_id[ids[i]][0] for i in rows], dtype="int64"),
        "width": pd.Series([image_shape_by_id[ids[i]][1] for i in rows], dtype="int64"),
    })
    for name in label_columns:
        image_manifest[name] = pd.Series([labels[name][i] for i in rows], dtype="float64")
    extra_columns = [c for c in manifest.columns if c not in MANIFEST_CORE_COLUMNS and c not in label_columns]
    for column in extra_columns:
        image_manifest[column] = pd.Series(manifest[column].iloc[rows].to_numpy(), dtype=str)

    loc_rows = np.flatnonzero(loc_keep) if len(localizations) else np.array([], dtype=int)
    image_localizations = pd.DataFrame({
        "image_id": pd.Series([loc_ids[i] for i in loc_rows], dtype=str),
        "finding": pd.Series([findings[i] for i in loc_rows], dtype=str),
        "mask_path": pd.Series([absolute_masks[i] for i in loc_rows], dtype=str),
        **{c: pd.Series([boxes[c][i] for i in loc_rows], dtype="float64") for c in BOX_COLUMNS},
    })
    for column in LOCALIZATION_EXTRA_COLUMNS:
        values = _strings(localizations, column)
        image_localizations[column] = pd.Series([values[i] for i in loc_rows], dtype=str)
    for column in [c for c in localizations.columns if c not in LOCALIZATION_COLUMNS + LOCALIZATION_EXTRA_COLUMNS]:
        image_localizations[column] = pd.Series(localizations[column].iloc[loc_rows].to_numpy(), dtype=str)

    report = _report(
        data_root=data_root, on_unreadable=on_unreadable, frontal_only=frontal_only,
        manifest_rows=len(manifest), image_manifest=image_manifest, label_columns=label_columns,
        extra_columns=extra_columns, near_miss=_near_miss_labels(manifest.columns),
        skipped=skipped, dropped_views=dropped_views, localization_rows=len(localizations),
        localizations_kept=len(image_localizations), localizations_dropped_by_view=loc_dropped_by_view,
    )
    return ValidatedDataset(image_manifest, image_localizations, report)


def _report(
    *,
    data_root: str | os.PathLike,
    on_unreadable: str,
    frontal_only: bool,
    manifest_rows: int,
    image_manifest: pd.DataFrame,
    label_columns: list[str],
    extra_columns: list[str],
    near_miss: dict[str, str],
    skipped: list[dict[str, Any]],
    dropped_views: Counter,
    localization_rows: int,
    localizations_kept: int,
    localizations_dropped_by_view: int,
) -> dict[str, Any]:
    """A JSON-ready summary: counts, what was left out and why, and label counts."""
    label_counts = {}
    for name in label_columns:
        values = image_manifest[name]
        label_counts[name] = {
            "1": int((values == 1.0).sum()),
            "0": int((values == 0.0).sum()),
            "-1": int((values == -1.0).sum()),
            "empty": int(values.isna().sum()),
        }
    skipped_images = [s for s in skipped if s["file"] == MANIFEST_FILE]
    heights, widths = image_manifest["height"], image_manifest["width"]
    return {
        "data_root": os.path.abspath(os.path.expanduser(os.fspath(data_root))),
        "parameters": {"on_unreadable": on_unreadable, "frontal_only": bool(frontal_only)},
        "counts": {
            "manifest_rows": int(manifest_rows),
            "images": int(len(image_manifest)),
            "patients": int(image_manifest["patient_id"].nunique()),
            "skipped_images": len(skipped_images),
            "dropped_views": int(sum(dropped_views.values())),
            "localization_rows": int(localization_rows),
            "localizations": int(localizations_kept),
            "skipped_localizations": len(skipped) - len(skipped_images),
            "localizations_of_dropped_views": int(localizations_dropped_by_view),
        },
        "skipped": skipped,
        "dropped_views": {
            "count": int(sum(dropped_views.values())),
            "by_view": {view: int(n) for view, n in sorted(dropped_views.items())},
        },
        "label_counts": label_counts,
        "columns": {
            "labels": list(label_columns),
            "extra": [str(c) for c in extra_columns],
            "look_like_labels_but_ignored": near_miss,
        },
        "image_size": {
            "height_min": int(heights.min()) if len(heights) else None,
            "height_max": int(heights.max()) if len(heights) else None,
            "width_min": int(widths.min()) if len(widths) else None,
            "width_max": int(widths.max()) if len(widths) else None,
        },
    }
