"""Validation of manifest.csv and localizations.csv: every problem, reported at once."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip_residuals.data.contract import (
    CHEXPERT_FINDINGS,
    DataContractError,
    Problem,
    apply_uncertainty,
    read_localizations,
    read_manifest,
    validate_dataset,
)

SHAPE = (24, 32)  # (H, W) of every image below


def _csv(path: Path, header: str, *lines: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def _png(root: Path, name: str, shape=SHAPE, value: int = 100) -> None:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(root / name)


def _validate(root: Path, **kwargs):
    return validate_dataset(read_manifest(root), read_localizations(root), root, **kwargs)


def _broken_dataset(root: Path) -> list[str]:
    """A dataset with one of each problem; returns the lines the error must list."""
    for name in ("a", "b", "e", "f"):
        _png(root, f"images/{name}.png")
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _png(root, "masks/a.png")
    _png(root, "masks/small.png", shape=(12, 16))
    (root / "masks" / "corrupt.png").write_bytes(b"not an image at all")
    _csv(
        root / "manifest.csv",
        "image_id,image_path,patient_id,view,Pneumonia,Edema,extra",
        "a,images/a.png,p1,PA,1,0.0,x",  # 2 fine
        "b,images/b.png,p1,PA,-1.0,,x",  # 3 fine: CheXpert's float spelling
        ",images/a.png,p2,PA,1,0,x",  # 4 empty id
        "a,images/a.png,p2,PA,1,0,x",  # 5 duplicate id
        "c,images/missing.png,p3,PA,1,0,x",  # 6 missing file
        "d,images/corrupt.png,p3,PA,1,0,x",  # 7 undecodable file
        "e,images/e.png,p4,PA,2,0,x",  # 8 label outside {1, 0, -1, empty}
        "f,images/f.png,p4,PA,1,yes,x",  # 9 label outside
        "g,,p5,PA,1,0,x",  # 10 empty path
    )
    _csv(
        root / "localizations.csv",
        "image_id,finding,mask_path,x,y,w,h",
        "a,Pneumonia,masks/a.png,,,,",  # 2 fine
        "zz,Pneumonia,,1,1,2,2",  # 3 unknown image
        "b,Pneumonia,,,,,",  # 4 neither mask nor box
        "b,Edema,,1,2,,",  # 5 incomplete box
        "b,Edema,,30,2,10,5",  # 6 box outside the image (30 + 10 > 32)
        "b,Edema,,1,2,0,5",  # 7 empty box
        "b,Edema,,one,2,3,4",  # 8 not a number
        "b,Edema,masks/missing.png,,,,",  # 9 mask missing
        "b,Edema,masks/corrupt.png,,,,",  # 10 mask undecodable
        "b,Edema,masks/small.png,,,,",  # 11 mask of another size
        "b,Nodule,masks/a.png,,,,",  # 12 not a CheXpert name
        ",Edema,masks/a.png,,,,",  # 13 empty id
    )
    return [
        "manifest.csv:4 [image_id] empty image_id",
        "manifest.csv:5 [image_id] duplicate image_id 'a' (first at row 2)",
        f"manifest.csv:6 [image_path] {root / 'images/missing.png'}: file not found",
        f"manifest.csv:7 [image_path] {root / 'images/corrupt.png'}: cannot be decoded",
        "manifest.csv:8 [Pneumonia] label value '2' is not one of 1, 0, -1 or empty",
        "manifest.csv:9 [Edema] label value 'yes' is not one of 1, 0, -1 or empty",
        "manifest.csv:10 [image_path] empty image_path",
        "localizations.csv:3 [image_id] unknown image_id 'zz': not in manifest.csv",
        "localizations.csv:4 [mask_path] neither mask_path nor the four box columns x, y, w, h are given",
        "localizations.csv:5 [w,h] incomplete box: w, h empty while x, y given",
        "localizations.csv:6 [x,y,w,h] box x=30, y=2, w=10, h=5 lies outside the image (32x24, WxH)",
        "localizations.csv:7 [w,h] box has non-positive size w=0, h=5",
        "localizations.csv:8 [x] box value 'one' is not a finite number",
        f"localizations.csv:9 [mask_path] {root / 'masks/missing.png'}: file not found",
        f"localizations.csv:10 [mask_path] {root / 'masks/corrupt.png'}: unsupported image format",
        "localizations.csv:11 [mask_path] mask is 16x12 (WxH) but its image is 32x24",
        "localizations.csv:12 [finding] finding 'Nodule' is not one of the 14 CheXpert names",
        "localizations.csv:13 [image_id] empty image_id",
    ]


def test_every_problem_is_reported_at_once_with_file_row_column_reason(tmp_path: Path) -> None:
    expected = _broken_dataset(tmp_path)
    with pytest.raises(DataContractError) as info:
        _validate(tmp_path)
    error = info.value
    assert isinstance(error, ValueError)
    found = [str(p) for p in error.problems]
    assert len(found) == len(expected), "\n".join(found)
    for line, want in zip(found, expected):
        assert line.startswith(want), f"{line!r} should start with {want!r}"
        assert line in str(error)  # each problem is in the message itself
    assert str(error).startswith(f"18 problems in the dataset at {tmp_path}")


def test_missing_required_columns_of_both_files(tmp_path: Path) -> None:
    _csv(tmp_path / "manifest.csv", "\ufeffimage_id,path", "a,images/a.png")
    _csv(tmp_path / "localizations.csv", "image_id,label,x,y", "a,Pneumonia,1,2")
    with pytest.raises(DataContractError) as info:
        _validate(tmp_path)
    assert [str(p) for p in info.value.problems] == [
        "manifest.csv:1 [image_path] missing required column",
        "localizations.csv:1 [finding] missing required column",
        "localizations.csv:1 [w] missing column: a localization needs mask_path or the four box columns x, y, w, h",
        "localizations.csv:1 [h] missing column: a localization needs mask_path or the four box columns x, y, w, h",
    ]


def test_localizations_with_neither_mask_nor_box_columns(tmp_path: Path) -> None:
    _png(tmp_path, "a.png")
    _csv(tmp_path / "manifest.csv", "image_id,image_path", "a,a.png")
    _csv(tmp_path / "localizations.csv", "image_id,finding", "a,Edema")
    with pytest.raises(DataContractError, match=r"localizations.csv:1 \[mask_path\] missing column"):
        _validate(tmp_path)


def test_valid_dataset_gives_typed_tables_and_report(tiny_data_root) -> None:
    root = tiny_data_root(n_images=4)
    result = _validate(root)
    manifest, localizations, report = result.image_manifest, result.image_localizations, result.report
    assert list(manifest.columns[:7]) == ["image_id", "image_path", "patient_id", "report", "view", "height", "width"]
    assert manifest["image_id"].tolist() == ["img000", "img001", "img002", "img003"]
    assert manifest["image_path"].tolist() == [str(root / f"images/img{i:03d}.png") for i in range(4)]
    assert manifest["patient_id"].tolist() == ["p0", "p0", "p1", "p1"]
    assert (manifest["height"] == 24).all() and (manifest["width"] == 32).all()
    assert manifest["height"].dtype == np.int64
    np.testing.assert_array_equal(manifest["Pneumonia"].to_numpy(), [1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(manifest["Pleural Effusion"].to_numpy(), [0.0, -1.0, np.nan, 1.0])
    assert manifest["Pneumonia"].dtype == np.float64

    assert localizations["mask_path"].tolist() == [str(root / "masks/img000_pneumonia.png"), ""]
    assert math.isnan(localizations["x"][0])
    assert localizations.loc[1, ["x", "y", "w", "h"]].tolist() == [2.0, 3.0, 5.0, 4.0]
    assert localizations["side"].tolist() == ["left", ""] and localizations["zone"].tolist() == ["lower", ""]

    assert report["counts"] == {
        "manifest_rows": 4, "images": 4, "patients": 2, "skipped_images": 0, "dropped_views": 0,
        "localization_rows": 2, "localizations": 2, "skipped_localizations": 0,
        "localizations_of_dropped_views": 0,
    }
    assert report["label_counts"]["Pneumonia"] == {"1": 1, "0": 1, "-1": 1, "empty": 1}
    assert report["skipped"] == []
    assert report["image_size"] == {"height_min": 24, "height_max": 24, "width_min": 32, "width_max": 32}


def test_optional_columns_default_and_extra_columns_are_kept(tmp_path: Path) -> None:
    _png(tmp_path, "x/a.png")
    _png(tmp_path, "x/b.png")
    absolute = tmp_path / "x" / "b.png"
    _csv(tmp_path / "manifest.csv", "image_id,image_path,patient_id,pneumonia,site",
         "a,x/a.png,,1,north", f"b,{absolute},P7,0,south")
    result = validate_dataset(read_manifest(tmp_path), None, tmp_path)
    manifest = result.image_manifest
    assert manifest["patient_id"].tolist() == ["a", "P7"]  # no patient: its own patient
    assert manifest["report"].tolist() == ["", ""] and manifest["view"].tolist() == ["", ""]
    assert manifest["image_path"].tolist() == [str(tmp_path / "x/a.png"), str(absolute)]
    assert manifest["site"].tolist() == ["north", "south"]
    assert manifest["pneumonia"].tolist() == ["1", "0"]  # not a CheXpert spelling: kept, not a label
    assert result.report["columns"]["look_like_labels_but_ignored"] == {"pneumonia": "Pneumonia"}
    assert result.image_localizations.empty
    assert list(result.image_localizations.columns[:7]) == ["image_id", "finding", "mask_path", "x", "y", "w", "h"]


def _dataset_with_unreadable_images(tiny_data_root) -> Path:
    root = tiny_data_root(n_images=4)
    (root / "images/img001.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # has a box localization
    (root / "images/img002.png").unlink()
    return root


def test_unreadable_images_stop_the_run_by_default(tiny_data_root) -> None:
    root = _dataset_with_unreadable_images(tiny_data_root)
    with pytest.raises(DataContractError) as info:
        _validate(root)
    lines = [str(p) for p in info.value.problems]
    assert len(lines) == 2
    assert lines[0].startswith("manifest.csv:3 [image_path]") and "cannot be decoded" in lines[0]
    assert lines[1] == f"manifest.csv:4 [image_path] {root / 'images/img002.png'}: file not found"


def test_skip_policy_lists_every_skipped_image_and_localization(tiny_data_root) -> None:
    root = _dataset_with_unreadable_images(tiny_data_root)
    result = _validate(root, on_unreadable="skip")
    assert result.image_manifest["image_id"].tolist() == ["img000", "img003"]
    assert result.image_localizations["image_id"].tolist() == ["img000"]
    skipped = result.report["skipped"]
    assert [(s["file"], s["row"], s["column"], s["image_id"]) for s in skipped] == [
        ("manifest.csv", 3, "image_path", "img001"),
        ("manifest.csv", 4, "image_path", "img002"),
        ("localizations.csv", 3, "image_id", "img001"),
    ]
    assert "cannot be decoded" in skipped[0]["reason"] and skipped[1]["reason"] == "file not found"
    assert skipped[2]["reason"].startswith("its image was skipped (manifest.csv:3 cannot be decoded")
    counts = result.report["counts"]
    assert (counts["images"], counts["skipped_images"], counts["skipped_localizations"]) == (2, 2, 1)
    assert result.report["parameters"] == {"on_unreadable": "skip", "frontal_only": False}
    assert result.report["label_counts"]["Pneumonia"] == {"1": 1, "0": 0, "-1": 0, "empty": 1}


def test_skip_policy_skips_unreadable_masks_but_not_other_problems(tiny_data_root) -> None:
    root = tiny_data_root(n_images=2)
    (root / "masks/img000_pneumonia.png").unlink()
    result = _validate(root, on_unreadable="skip")
    assert result.image_localizations["image_id"].tolist() == ["img001"]
    assert [(s["file"], s["row"], s["column"]) for s in result.report["skipped"]] == [
        ("localizations.csv", 2, "mask_path")]
    # a box outside the image is a data error, not an unreadable file: it still stops the run
    frame = read_localizations(root)
    frame.loc[1, "x"] = "31"
    with pytest.raises(DataContractError, match=r"localizations.csv:3 \[x,y,w,h\] box x=31"):
        validate_dataset(read_manifest(root), frame, root, on_unreadable="skip")


def test_frontal_only_drops_other_views_and_counts_them(tiny_data_root) -> None:
    root = tiny_data_root(n_images=4)
    manifest = read_manifest(root)
    manifest["view"] = ["PA", "LATERAL", "ap", ""]
    (root / "images/img001.png").unlink()  # a dropped view is not decoded, so it cannot stop the run
    result = validate_dataset(manifest, read_localizations(root), root, frontal_only=True)
    assert result.image_manifest["image_id"].tolist() == ["img000", "img002", "img003"]
    assert result.image_localizations["image_id"].tolist() == ["img000"]
    assert result.report["dropped_views"] == {"count": 1, "by_view": {"LATERAL": 1}}
    assert result.report["counts"]["localizations_of_dropped_views"] == 1
    assert result.report["counts"]["dropped_views"] == 1
    kept_all = validate_dataset(manifest, read_localizations(root), root, frontal_only=False,
                                on_unreadable="skip")
    assert kept_all.report["counts"]["skipped_images"] == 1  # without the filter it is decoded


def test_bad_parameters_and_long_error_lists(tmp_path: Path) -> None:
    manifest = pd.DataFrame({"image_id": [f"i{k}" for k in range(250)], "image_path": ["x.png"] * 250,
                             "Edema": ["maybe"] * 250})
    with pytest.raises(DataContractError) as info:
        validate_dataset(manifest, None, tmp_path, decode=lambda path: (4, 4))
    assert len(info.value.problems) == 250
    assert "... and 50 more (all in DataContractError.problems):" in str(info.value)
    assert "manifest.csv [Edema]: 50" in str(info.value)
    with pytest.raises(ValueError, match="on_unreadable is 'ignore'"):
        validate_dataset(manifest, None, tmp_path, on_unreadable="ignore")
    assert str(Problem("manifest.csv", 3, "Edema", "bad")) == "manifest.csv:3 [Edema] bad"


def test_apply_uncertainty_policies() -> None:
    series = pd.Series([1.0, 0.0, -1.0, np.nan])
    np.testing.assert_array_equal(apply_uncertainty(series, "u_ones"), [1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(apply_uncertainty(series, "u_zeros"), [1.0, 0.0, 0.0, np.nan])
    np.testing.assert_array_equal(apply_uncertainty(series, "ignore"), [1.0, 0.0, np.nan, np.nan])
    frame = pd.DataFrame({"image_id": ["a", "b"], "Edema": [-1.0, 1.0], "Pneumonia": [0.0, -1.0]})
    mapped = apply_uncertainty(frame, "u_zeros")
    assert isinstance(mapped, pd.DataFrame)
    assert mapped["Edema"].tolist() == [0.0, 1.0] and mapped["Pneumonia"].tolist() == [0.0, 0.0]
    assert mapped["image_id"].tolist() == ["a", "b"] and frame["Edema"].tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="unknown uncertainty policy 'u_maybe'.*u_ones, u_zeros, ignore"):
        apply_uncertainty(series, "u_maybe")


def test_chexpert_findings_are_the_14_names() -> None:
    assert len(CHEXPERT_FINDINGS) == 14 and len(set(CHEXPERT_FINDINGS)) == 14
    assert CHEXPERT_FINDINGS[0] == "No Finding" and "Pleural Effusion" in CHEXPERT_FINDINGS


def test_missing_localizations_file_reads_as_empty(tiny_data_root) -> None:
    root = tiny_data_root(n_images=2, localizations=False)
    frame = read_localizations(root)
    assert frame.empty and list(frame.columns) == ["image_id", "finding", "mask_path", "x", "y", "w", "h"]
    with pytest.raises(FileNotFoundError, match="no manifest.csv"):
        read_manifest(root / "nowhere")


def test_a_dataset_with_no_image_left_is_an_error(tmp_path: Path) -> None:
    _csv(tmp_path / "manifest.csv", "image_id,image_path,view")
    with pytest.raises(DataContractError, match=r"manifest.csv:1 \[image_id\] manifest.csv has no data rows"):
        _validate(tmp_path)
    _png(tmp_path, "a.png")
    _csv(tmp_path / "manifest.csv", "image_id,image_path,view", "a,a.png,LATERAL", "b,b.png,PA")
    with pytest.raises(DataContractError, match="no image is left after dropping 1 non-frontal views and skipping 1"):
        _validate(tmp_path, frontal_only=True, on_unreadable="skip")
