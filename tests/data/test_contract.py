"""Validation of manifest.csv and localizations.csv: every problem, reported at once."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medclip_residuals.data.contract import (
    CHEXPERT_FINDINGS,
    DataContractError,
    DecodedFile,
    Problem,
    decode_all,
    parse_csv,
    read_localizations,
    read_manifest,
    validate_dataset,
)
from medclip_residuals.data.images import ImageDecodeError, ImageInfo

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
    for value, name in enumerate(("a", "b", "e", "f")):
        _png(root, f"images/{name}.png", value=100 + value)  # distinct bytes: no copies
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
        "localizations_of_dropped_views": 0, "rescaled_16bit_png": 0, "exif_rotated": 0,
    }
    assert report["label_counts"]["Pneumonia"] == {"1": 1, "0": 1, "-1": 1, "empty": 1}
    assert report["skipped"] == []
    assert report["image_size"] == {"height_min": 24, "height_max": 24, "width_min": 32, "width_max": 32}


def test_optional_columns_default_and_extra_columns_are_kept(tmp_path: Path) -> None:
    _png(tmp_path, "x/a.png")
    _png(tmp_path, "x/b.png", value=7)
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
    manifest = pd.DataFrame({"image_id": [f"i{k}" for k in range(250)], "image_path": [f"x{k}.png" for k in range(250)],
                             "Edema": ["maybe"] * 250})
    with pytest.raises(DataContractError) as info:
        validate_dataset(manifest, None, tmp_path, decode=lambda path: (4, 4))
    assert len(info.value.problems) == 250
    assert "... and 50 more (all in DataContractError.problems):" in str(info.value)
    assert "manifest.csv [Edema]: 50" in str(info.value)
    with pytest.raises(ValueError, match="on_unreadable is 'ignore'"):
        validate_dataset(manifest, None, tmp_path, on_unreadable="ignore")
    assert str(Problem("manifest.csv", 3, "Edema", "bad")) == "manifest.csv:3 [Edema] bad"


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


# --- CSV-level faults: the file's own line numbers, never a traceback -------------------------


def _problems(root: Path, **kwargs) -> list[str]:
    with pytest.raises(DataContractError) as info:
        _validate(root, **kwargs)
    return [str(p) for p in info.value.problems]


def _images(root: Path, *names: str) -> None:
    for value, name in enumerate(names):
        _png(root, f"images/{name}.png", value=10 + value)  # distinct bytes: no copies


def test_non_utf8_byte_on_line_4_names_line_offset_and_column(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b", "c")
    (tmp_path / "manifest.csv").write_bytes(
        b"image_id,image_path,report\n"
        b"a,images/a.png,clear\n"
        b"b,images/b.png,clear\n"
        b"c,images/c.png,\xe9panchement\n"  # Latin-1 e-acute: not UTF-8
    )
    offset = len(b"image_id,image_path,report\na,images/a.png,clear\nb,images/b.png,clear\nc,images/c.png,")
    assert _problems(tmp_path) == [
        f"manifest.csv:4 [report] not UTF-8: byte 0xE9 at byte offset {offset} of the file "
        "(offset 15 within line 4); save the file as UTF-8"
    ]


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    _images(tmp_path, "a")
    (tmp_path / "manifest.csv").write_bytes(b"\xef\xbb\xbfimage_id,image_path\na,images/a.png\n")
    assert _validate(tmp_path).image_manifest["image_id"].tolist() == ["a"]
    # the offset counts the byte-order mark: it is the file's own
    (tmp_path / "manifest.csv").write_bytes(b"\xef\xbb\xbfimage_id,image_path\r\na,images/\xff.png\r\n")
    assert _problems(tmp_path) == [
        "manifest.csv:2 [image_path] not UTF-8: byte 0xFF at byte offset 33 of the file (offset 9 within line 2); "
        "save the file as UTF-8",
        f"manifest.csv:2 [image_path] {tmp_path / 'images'}/\ufffd.png: file not found",
    ]


def test_more_than_one_bad_line_and_utf16_and_nul(tmp_path: Path) -> None:
    latin = "image_id,image_path,report\na,a.png,café\nb,b.png,ok\nc,c.png,naïve\n".encode("latin-1")
    assert [str(p) for p in parse_csv(latin, "manifest.csv").attrs["csv_problems"]] == [
        "manifest.csv:2 [report] not UTF-8: byte 0xE9 at byte offset 38 of the file (offset 11 within line 2); "
        "2 lines in all have bytes that are not UTF-8; save the file as UTF-8"]
    utf16 = "image_id,image_path\na,a.png\n".encode("utf-16")
    frame = parse_csv(utf16, "manifest.csv")
    assert frame.values.tolist() == [["a", "a.png"]]
    assert [p.reason for p in frame.attrs["csv_problems"]] == [
        "file is UTF-16 (it starts with a UTF-16 byte-order mark), not UTF-8: save it as UTF-8"]
    no_bom = "image_id,image_path\na,a.png\n".encode("utf-16-le")  # valid UTF-8 bytes, with NULs
    assert [str(p) for p in parse_csv(no_bom, "manifest.csv").attrs["csv_problems"]] == [
        "manifest.csv:1 [*] contains NUL bytes: not a text CSV (UTF-16 without a byte-order mark?); save it as UTF-8"]


def test_ragged_rows_and_blank_lines_give_the_files_own_line(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b", "c")
    (tmp_path / "manifest.csv").write_text(
        "image_id,image_path,patient_id,Edema\n"   # 1
        "\n"                                        # 2 blank
        "a,images/a.png,p1,1\n"                     # 3
        "\n"                                        # 4 blank
        "\n"                                        # 5 blank
        "b,images/b.png,p2,maybe\n"                 # 6 bad label
        "c,images/c.png,p3,0,extra, cells\n"        # 7 too many fields
        "d,images/d.png\n",                         # 8 too few, and a missing file
        encoding="utf-8",
    )
    found = _problems(tmp_path)
    assert found == [
        "manifest.csv:6 [Edema] label value 'maybe' is not one of 1, 0, -1 or empty",
        "manifest.csv:7 [*] line 7 has 6 fields, header has 4 (a comma inside an unquoted field?)",
        "manifest.csv:8 [*] line 8 has 2 fields, header has 4",
        f"manifest.csv:8 [image_path] {tmp_path / 'images/d.png'}: file not found",
    ]


def test_a_quoted_multiline_record_is_at_the_line_it_starts_on(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    (tmp_path / "manifest.csv").write_text(
        'image_id,image_path,report,Edema\n'
        'a,images/a.png,"FINDINGS: clear.\n\nIMPRESSION: normal.",1\n'  # lines 2-4
        'b,images/b.png,"one line",2\n',  # line 5
        encoding="utf-8",
    )
    assert _problems(tmp_path) == ["manifest.csv:5 [Edema] label value '2' is not one of 1, 0, -1 or empty"]
    frame = read_manifest(tmp_path)
    assert frame.loc[0, "report"] == "FINDINGS: clear.\n\nIMPRESSION: normal."


def test_exact_duplicate_header_is_reported_not_renamed(tmp_path: Path) -> None:
    _images(tmp_path, "a")
    _csv(tmp_path / "manifest.csv", "image_id,image_path,Edema,Pneumonia,Edema", "a,images/a.png,1,0,0")
    _csv(tmp_path / "localizations.csv", "image_id,finding,finding,x,y,w,h", "a,Edema,Edema,1,1,2,2")
    assert _problems(tmp_path) == [
        "manifest.csv:1 [Edema] column 'Edema' appears more than once in the header (fields 3 and 5; "
        "pandas would silently read the second as 'Edema.1'): rename or remove the copies",
        "localizations.csv:1 [finding] column 'finding' appears more than once in the header (fields 2 and 3; "
        "pandas would silently read the second as 'finding.1'): rename or remove the copies",
    ]


def test_unterminated_quote_is_reported_and_later_lines_are_still_checked(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    (tmp_path / "manifest.csv").write_text(
        'image_id,image_path,report,Edema\n'
        'a,images/a.png,"never closed,1\n'  # 2: the quote swallows the rest of the file
        'b,images/b.png,fine,yes\n',  # 3: still checked
        encoding="utf-8",
    )
    assert _problems(tmp_path) == [
        "manifest.csv:2 [report] unterminated quote: a quoted field opened on this line is never closed "
        "(read up to the end of this line only)",
        "manifest.csv:2 [*] line 2 has 3 fields, header has 4",
        "manifest.csv:3 [Edema] label value 'yes' is not one of 1, 0, -1 or empty",
    ]


def test_a_quote_left_open_before_many_lines_stops_at_the_field_limit(tmp_path: Path) -> None:
    rows = "".join(f"b{k},images/b{k}.png,fine\n" for k in range(8000))  # > 131072 characters
    data = ('image_id,image_path,report\na,images/a.png,"left open\n' + rows).encode()
    frame = parse_csv(data, "manifest.csv")
    assert [str(p) for p in frame.attrs["csv_problems"]] == [
        "manifest.csv:2 [report] a field runs past 131072 characters from this line on: a quote opened here "
        "is probably never closed (read up to the end of this line only)"]
    assert len(frame) == 8001 and frame.attrs["line_numbers"][-1] == 8002
    assert frame.iloc[0].tolist() == ["a", "images/a.png", "left open"]
    malformed = parse_csv(b'image_id,report\na,"clear" today\nb,ok\n', "manifest.csv")
    assert malformed["report"].tolist() == ["clear today", "ok"]
    assert [str(p) for p in malformed.attrs["csv_problems"]] == [
        "manifest.csv:2 [report] malformed quoted field (',' expected after '\"'): text after a closing quote"]


def test_a_filtered_table_keeps_its_rows_file_line_numbers(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    _csv(tmp_path / "manifest.csv", "image_id,image_path,Edema", "", "a,images/a.png,1", "", "b,images/b.png,2")
    frame = read_manifest(tmp_path)
    assert frame.attrs["line_numbers"] == (3, 5) and frame.attrs["blank_lines"] == 2
    # a copy without the first row still reports line 5; a plain pandas table counts from line 2
    assert _problems_of(frame.iloc[1:], tmp_path) == [
        "manifest.csv:5 [Edema] label value '2' is not one of 1, 0, -1 or empty"]
    plain = pd.DataFrame({"image_id": ["b"], "image_path": ["images/b.png"], "Edema": ["2"]})
    assert _problems_of(plain, tmp_path) == ["manifest.csv:2 [Edema] label value '2' is not one of 1, 0, -1 or empty"]


def test_blank_lines_before_the_header_move_the_headers_row(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("\n\nimage_id,path\na,images/a.png\n", encoding="utf-8")
    assert _problems(tmp_path) == ["manifest.csv:3 [image_path] missing required column"]


def _problems_of(manifest: pd.DataFrame, root: Path) -> list[str]:
    with pytest.raises(DataContractError) as info:
        validate_dataset(manifest, None, root)
    return [str(p) for p in info.value.problems]


# --- masks: empty, not binary -------------------------------------------------------------------


def test_empty_and_grey_masks_are_problems_with_row_and_column(tmp_path: Path) -> None:
    _images(tmp_path, "a")
    _csv(tmp_path / "manifest.csv", "image_id,image_path", "a,images/a.png")
    ring = np.zeros(SHAPE, dtype=np.uint8)
    ring[4:12, 6:14] = 255
    Image.fromarray(ring).save(tmp_path / "good.png")
    Image.fromarray(np.zeros(SHAPE, dtype=np.uint8)).save(tmp_path / "empty.png")
    grey = ring.copy()
    grey[4, 6:14] = 128  # an anti-aliased edge
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.where(ring > 0, 200, 30).astype(np.uint8)).save(tmp_path / "no_background.png")
    _csv(tmp_path / "localizations.csv", "image_id,finding,mask_path",
         "a,Edema,good.png", "a,Edema,empty.png", "a,Edema,grey.png", "a,Edema,no_background.png")
    found = _problems(tmp_path)
    assert found == [
        f"localizations.csv:3 [mask_path] {tmp_path / 'empty.png'}: mask is empty (no non-zero pixel): "
        "it marks no region to score a heatmap against",
        f"localizations.csv:4 [mask_path] {tmp_path / 'grey.png'}: mask is not binary (more than two grey values, "
        "e.g. anti-aliased, resized or JPEG edges): save it as 0 outside and one value inside (e.g. 0/255 PNG)",
        f"localizations.csv:5 [mask_path] {tmp_path / 'no_background.png'}: mask has no zero pixel (its values are "
        "0.118 and above, on a 0-1 scale): every pixel would count as inside",
    ]


# --- the same image under several ids ------------------------------------------------------------


def test_symlink_and_dotdot_path_to_one_file_under_two_ids(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    (tmp_path / "images" / "link.png").symlink_to(tmp_path / "images" / "a.png")
    real = tmp_path / "images" / "a.png"
    _csv(tmp_path / "manifest.csv", "image_id,image_path,patient_id",
         "a,images/a.png,p1", "b,images/b.png,p1", "c,images/link.png,p1", "d,images/../images/b.png,p2")
    assert _problems(tmp_path) == [
        f"manifest.csv:4 [image_path] image_id 'c' (row 4, patient 'p1') is the same file as "
        f"image_id 'a' (row 2, patient 'p1'): {real}",
        f"manifest.csv:5 [image_path] image_id 'd' (row 5, patient 'p2') is the same file as "
        f"image_id 'b' (row 3, patient 'p1'): {tmp_path / 'images' / 'b.png'}; "
        "the patients differ, so the image could sit on both sides of a train/test split",
    ]


def test_byte_identical_copy_under_another_id_and_patient(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "a_again.png").write_bytes((tmp_path / "images" / "a.png").read_bytes())
    _csv(tmp_path / "manifest.csv", "image_id,image_path,patient_id",
         "a,images/a.png,p1", "b,images/b.png,p2", "z,copies/a_again.png,p9")
    assert _problems(tmp_path) == [
        f"manifest.csv:4 [image_path] image_id 'z' (row 4, patient 'p9') has the same bytes as "
        f"image_id 'a' (row 2, patient 'p1'): {tmp_path / 'copies' / 'a_again.png'}; "
        "the patients differ, so the image could sit on both sides of a train/test split",
    ]


def test_one_path_under_one_repeated_id_is_only_the_id_problem(tmp_path: Path) -> None:
    _images(tmp_path, "a")
    _csv(tmp_path / "manifest.csv", "image_id,image_path", "a,images/a.png", "a,images/a.png")
    assert _problems(tmp_path) == ["manifest.csv:3 [image_id] duplicate image_id 'a' (first at row 2)"]


# --- how images were decoded, in the report ----------------------------------------------------


def _dicom(path: Path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_report_counts_16bit_pngs_scaled_by_their_bit_depth_exif_and_dicom(tmp_path: Path) -> None:
    ramp = np.add.outer(np.arange(SHAPE[0]), np.arange(SHAPE[1])).astype(np.uint16)
    Image.fromarray(ramp * 70).save(tmp_path / "twelve.png")  # max 3710 < 4096: the 12-bit rule
    Image.fromarray(ramp * 1000).save(tmp_path / "full.png")  # max 54000: really 16 bits
    Image.fromarray((ramp * 5).astype(np.uint8)).save(tmp_path / "eight.png")
    phone = Image.fromarray((ramp * 3).astype(np.uint8))
    exif = phone.getexif()
    exif[0x0112] = 6  # EXIF Orientation: rotate 90 degrees clockwise to view
    phone.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    _dicom(tmp_path / "dx.dcm", ramp * 80)
    _csv(tmp_path / "manifest.csv", "image_id,image_path",
         "t,twelve.png", "f,full.png", "e,eight.png", "p,phone.jpg", "d,dx.dcm")
    result = _validate(tmp_path)
    counts, decoding = result.report["counts"], result.report["decoding"]
    assert (counts["rescaled_16bit_png"], counts["exif_rotated"]) == (1, 1)
    assert result.image_manifest.set_index("image_id").loc["p", ["height", "width"]].tolist() == [32, 24]
    assert decoding["bit_depth"] == [
        {"format": "dicom", "stored_bits": 16, "significant_bits": 12, "source": "DICOM BitsStored", "images": 1},
        {"format": "jpeg", "stored_bits": 8, "significant_bits": 8, "source": "container", "images": 1},
        {"format": "png", "stored_bits": 16, "significant_bits": 12, "source": "max-value rule", "images": 1},
        {"format": "png", "stored_bits": 16, "significant_bits": 16, "source": "max-value rule", "images": 1},
        {"format": "png", "stored_bits": 8, "significant_bits": 8, "source": "container", "images": 1},
    ]
    assert decoding["exif_orientation"] == {"6": 1}
    assert decoding["dicom_transfer_syntaxes"] == [
        {"uid": "1.2.840.10008.1.2.1", "name": "Explicit VR Little Endian", "images": 1}]


def test_stub_decoders_give_the_report_without_files(tmp_path: Path) -> None:
    info = ImageInfo(height=4, width=4, format="png", mode="I;16", stored_bits=16, significant_bits=10,
                     bit_depth_source="sBIT", exif_orientation=None, transfer_syntax=None)
    seen: list[str] = []

    def decode(path: str) -> DecodedFile:
        seen.append(Path(path).name)
        return DecodedFile(4, 4, digest=Path(path).name, info=info)

    manifest = pd.DataFrame({"image_id": ["a", "b"], "image_path": ["a.png", "b.png"]})
    localizations = pd.DataFrame({"image_id": ["a"], "finding": ["Edema"], "mask_path": ["m.png"]})
    result = validate_dataset(manifest, localizations, tmp_path, decode=decode,
                              decode_masks=lambda path: DecodedFile(4, 4, levels=2, low=0.0, nonzero=3))
    assert sorted(seen) == ["a.png", "b.png"]  # masks went to decode_masks
    assert result.report["counts"]["rescaled_16bit_png"] == 2
    assert result.report["decoding"]["bit_depth"] == [
        {"format": "png", "stored_bits": 16, "significant_bits": 10, "source": "sBIT", "images": 2}]
    with pytest.raises(DataContractError, match=r"localizations.csv:2 \[mask_path\] .*m.png: mask is empty"):
        validate_dataset(manifest, localizations, tmp_path, decode=decode,
                         decode_masks=lambda path: DecodedFile(4, 4, levels=1, low=0.0, nonzero=0))


def test_decode_all_keeps_no_pixels_and_resolves_real_paths(tmp_path: Path) -> None:
    _images(tmp_path, "a", "b")
    (tmp_path / "images" / "link.png").symlink_to(tmp_path / "images" / "a.png")
    paths = [str(tmp_path / "images" / n) for n in ("a.png", "link.png", "b.png", "missing.png")]
    results = decode_all(paths * 3, max_workers=4)  # repeated paths are decoded once
    assert list(results) == paths
    a, link, b, missing = (results[p] for p in paths)
    assert isinstance(missing, ImageDecodeError) and missing.reason == "file not found"
    assert a.realpath == link.realpath == str(tmp_path / "images" / "a.png") and a.digest == link.digest
    assert a.digest == hashlib.sha256((tmp_path / "images" / "a.png").read_bytes()).hexdigest() != b.digest
    assert a.shape == SHAPE and a.info.format == "png"
    assert not any(isinstance(v, np.ndarray) for r in (a, b) for v in vars(r).values())
