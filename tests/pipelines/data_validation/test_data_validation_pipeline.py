"""The data_validation pipeline, run with SequentialRunner on tiny datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from PIL import Image

from medclip_residuals.data.contract import DataContractError
from medclip_residuals.pipelines.data_validation import create_pipeline
from medclip_residuals.pipelines.data_validation.nodes import validate_dataset
from medclip_residuals.pipelines.data_validation.params import DataValidationParams

PROJECT = Path(__file__).resolve().parents[3]
OUTPUTS = ("image_manifest", "image_localizations", "validation_report", "report_labels", "report_mentions")
RULES = str(PROJECT / "conf/base/report_label_rules.yml")
PARAMS = {"on_unreadable": "error", "frontal_only": False, "labels_from_reports": "off", "report_rules": RULES}


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so that a test can read an intermediate."""

    def _release(self) -> None:
        pass


def _project_catalog_config(data_root: Path) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT / "conf"), base_env="base", default_run_env="local",
        runtime_params={"data_root": str(data_root)},
    )
    return loader["catalog"]


def _catalog(data_root: Path, params: dict | None = None) -> DataCatalog:
    """The project's own raw entries (with --params data_root=...), outputs in memory."""
    config = _project_catalog_config(data_root)
    catalog = DataCatalog.from_config({name: config[name] for name in ("manifest", "localizations")})
    catalog["params:data_root"] = str(data_root)
    catalog["params:data_validation"] = {**PARAMS, **(params or {})}
    encoder = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), base_env="base", default_run_env="base")["parameters"]["encoder"]
    catalog["params:encoder"] = {**encoder, "demo": {**encoder["demo"], "text_max_length": 8}}
    for name in OUTPUTS:
        catalog[name] = KeptMemoryDataset()
    return catalog


def _run(catalog: DataCatalog) -> dict:
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


def test_pipeline_validates_a_tiny_dataset_through_the_project_catalog(tiny_data_root) -> None:
    root = tiny_data_root(n_images=6)
    out = _run(_catalog(root))
    manifest, localizations, report = (out[name] for name in OUTPUTS[:3])
    assert manifest["image_id"].tolist() == [f"img{i:03d}" for i in range(6)]
    assert manifest["image_path"].tolist() == [str(root / f"images/img{i:03d}.png") for i in range(6)]
    assert manifest[["height", "width"]].drop_duplicates().values.tolist() == [[24, 32]]
    np.testing.assert_array_equal(manifest["Pneumonia"], [1.0, 0.0, -1.0, np.nan, 1.0, 0.0])
    assert localizations["finding"].tolist() == ["Pneumonia", "Pleural Effusion"]
    assert report["counts"]["images"] == 6 and report["counts"]["patients"] == 3
    assert report["label_counts"]["Pleural Effusion"] == {"1": 1, "0": 2, "-1": 2, "empty": 1}


def test_missing_localizations_file_is_an_empty_table(tiny_data_root) -> None:
    root = tiny_data_root(n_images=3, localizations=False)
    catalog = _catalog(root)
    assert catalog.exists("localizations")  # so the missing-inputs hook lets the run start
    out = _run(catalog)
    assert out["image_localizations"].empty and len(out["image_manifest"]) == 3


def test_pipeline_stops_with_every_problem_by_default_and_skips_when_asked(tiny_data_root) -> None:
    root = tiny_data_root(n_images=4)
    (root / "images/img003.png").write_bytes(b"garbage")
    (root / "images/img002.png").unlink()
    with pytest.raises(DataContractError) as info:
        _run(_catalog(root))
    assert [p.row for p in info.value.problems] == [4, 5]
    out = _run(_catalog(root, {"on_unreadable": "skip", "frontal_only": False}))
    assert out["image_manifest"]["image_id"].tolist() == ["img000", "img001"]
    assert [(s["row"], s["image_id"]) for s in out["validation_report"]["skipped"]] == [(4, "img002"), (5, "img003")]


def test_outputs_round_trip_through_the_catalogs_file_datasets(tiny_data_root, tmp_path: Path) -> None:
    root = tiny_data_root(n_images=4)
    out = _run(_catalog(root))
    config = _project_catalog_config(root)
    entries = {}
    for name in OUTPUTS:
        entry = dict(config[name])
        assert entry.get("versioned") is True
        entry["filepath"] = str(tmp_path / "out" / Path(entry["filepath"]).name)
        entries[name] = entry
    files = DataCatalog.from_config(entries)
    for name in OUTPUTS:
        files.save(name, out[name])
    manifest = files.load("image_manifest")
    pd.testing.assert_frame_equal(manifest, out["image_manifest"], check_dtype=False)
    assert manifest["height"].dtype == np.int64 and manifest["Pneumonia"].dtype == np.float64
    assert files.load("validation_report") == out["validation_report"]
    assert len(files.load("image_localizations")) == 2


def test_parameters_file_and_unknown_keys() -> None:
    params = yaml.safe_load((PROJECT / "conf/base/parameters_data_validation.yml").read_text())
    assert params == {"data_validation": {
        "on_unreadable": "error", "frontal_only": False, "labels_from_reports": "off",
        "report_rules": "conf/base/report_label_rules.yml",
    }}
    empty = pd.DataFrame({"image_id": pd.Series([], dtype=str), "image_path": pd.Series([], dtype=str)})
    with pytest.raises(ValueError, match=r"data_validation: unknown key 'frontal' \(known: frontal_only, "):
        validate_dataset(empty, None, ".", {**PARAMS, "frontal": True}, {})
    with pytest.raises(ValueError, match=r"data_validation\.frontal_only: expected bool, got 'yes'"):
        validate_dataset(empty, None, ".", {**PARAMS, "frontal_only": "yes"}, {})
    with pytest.raises(ValueError, match=r"data_validation\.labels_from_reports: 'always' is not one of 'off', 'fill'"):
        validate_dataset(empty, None, ".", {**PARAMS, "labels_from_reports": "always"}, {})
    with pytest.raises(ValueError, match=r"data_validation\.report_rules must name the rules file"):
        validate_dataset(empty, None, ".", {**PARAMS, "report_rules": ""}, {})
    # YAML reads a bare `off` as false
    assert DataValidationParams.parse({**PARAMS, "labels_from_reports": False}, "data_validation").labels_from_reports == "off"
    assert validate_dataset.__doc__ and "I/O exception" in validate_dataset.__doc__


def test_faulty_csvs_through_the_catalog_give_file_row_column_reason(tiny_data_root) -> None:
    """A CSV pandas cannot read, through the project's datasets and the node: one error, no traceback."""
    root = tiny_data_root(n_images=4)
    manifest = (root / "manifest.csv").read_bytes().splitlines(keepends=True)
    manifest[2] = manifest[2].replace(b"study 1", b"\xe9tude 1")  # line 3: Latin-1, not UTF-8
    manifest.insert(3, b"\n")  # a blank line 4: the rows after it keep their own line numbers
    manifest[4] = manifest[4].rstrip(b"\n") + b",surplus\n"  # line 5 (img002): one field too many
    (root / "manifest.csv").write_bytes(b"".join(manifest))
    Image.new("L", (32, 24), 0).save(root / "masks/empty.png")
    with (root / "localizations.csv").open("a", encoding="utf-8") as handle:
        handle.write("img002,Pneumonia,masks/empty.png,,,,,,\n")  # line 4: empty mask
        handle.write("img003,Edema,masks/img000_pneumonia.png,,,,,,,\n")  # line 5: ragged
    catalog = _catalog(root)
    assert catalog.load("manifest").attrs["line_numbers"] == (2, 3, 5, 6)
    with pytest.raises(DataContractError) as info:
        _run(catalog)
    offset = b"".join(manifest).index(b"\xe9")
    assert [str(p) for p in info.value.problems] == [
        f"manifest.csv:3 [report] not UTF-8: byte 0xE9 at byte offset {offset} of the file "
        f"(offset {len(b'img001,images/img001.png,p0,')} within line 3); save the file as UTF-8",
        "manifest.csv:5 [*] line 5 has 8 fields, header has 7 (a comma inside an unquoted field?)",
        f"localizations.csv:4 [mask_path] {root / 'masks/empty.png'}: mask is empty (no non-zero pixel): "
        "it marks no region to score a heatmap against",
        "localizations.csv:5 [*] line 5 has 10 fields, header has 9 (a comma inside an unquoted field?)",
    ]
    assert str(info.value).startswith(f"4 problems in the dataset at {root}")


def test_16bit_pngs_scaled_by_their_bit_depth_are_counted_and_logged(tiny_data_root, caplog) -> None:
    root = tiny_data_root(n_images=3)
    twelve_bit = (np.add.outer(np.arange(24), np.arange(32)) * 60).astype(np.uint16)  # max 3300: 12 bits
    Image.fromarray(twelve_bit).save(root / "images/img001.png")
    with caplog.at_level("INFO", logger="medclip_residuals.pipelines.data_validation.nodes"):
        report = _run(_catalog(root))["validation_report"]
    assert report["counts"]["rescaled_16bit_png"] == 1 and report["counts"]["images"] == 3
    assert {"format": "png", "stored_bits": 16, "significant_bits": 12, "source": "max-value rule",
            "images": 1} in report["decoding"]["bit_depth"]
    assert "1 16-bit PNGs scaled by their real bit depth" in caplog.text


def test_reports_over_the_encoders_token_limit_are_counted(tiny_data_root, caplog) -> None:
    """The demo tokenizer is word-level: tokens = words + [CLS] + [SEP]; the limit here is 8."""
    import logging

    root = tiny_data_root(n_images=3, localizations=False)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest["report"] = [
        "FINDINGS: the heart is enlarged and there is a small left pleural effusion. IMPRESSION: cardiomegaly.",
        "no acute disease",  # 3 words + 2 = 5 tokens
        "",  # empty reports are not counted
    ]
    manifest.to_csv(root / "manifest.csv", index=False)
    with caplog.at_level(logging.WARNING):
        report = _run(_catalog(root))["validation_report"]
    lengths = report["reports"]
    assert lengths["limit"] == 8 and lengths["n_reports"] == 2
    # BERT's basic split: 15 words and 4 punctuation marks ("FINDINGS", ":", ..., "."), + 2
    assert lengths["whole"] == {"n_texts": 2, "n_over_limit": 1, "max_tokens": 21, "limit": 8}
    # the impression ("cardiomegaly.") is 2 words + 2: under the limit
    assert lengths["impression"] == {"n_with_impression": 1, "n_texts": 2, "n_over_limit": 0, "max_tokens": 5, "limit": 8}
    assert "1 of 2 reports exceed the encoder's 8-token limit" in caplog.text


def test_labels_from_reports_fill_the_empty_labels_and_never_overwrite(tiny_data_root, base_params) -> None:
    """The fill path end to end: a manifest with one label column and reports; the labeller
    fills what the manifest leaves empty, and residual target selection then sees the labels."""
    root = tiny_data_root(n_images=4, localizations=False)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str, keep_default_na=False)
    manifest = manifest.drop(columns=["Pleural Effusion"]).assign(
        Pneumonia=["1", "", "0", ""],
        report=[
            "No pneumonia. Small left pleural effusion.",  # manifest says Pneumonia 1: kept
            "There is pneumonia in the right lower lobe. No pleural effusion.",
            "Possible pleural effusion.",
            "",
        ],
    )
    manifest.to_csv(root / "manifest.csv", index=False)
    kept = _run(_catalog(root))
    assert "Pleural Effusion" not in kept["image_manifest"] and "labels_from_report" not in kept["image_manifest"]
    assert kept["validation_report"]["labels_from_reports"] == {"mode": "off", "filled": {}}
    labels = kept["report_labels"].set_index("image_id")
    np.testing.assert_array_equal(labels["Pneumonia"], [0.0, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(labels["Pleural Effusion"], [1.0, 0.0, -1.0, np.nan])
    assert labels.loc["img003", "report_status"] == "empty"

    out = _run(_catalog(root, {"labels_from_reports": "fill"}))
    filled = out["image_manifest"].set_index("image_id")
    np.testing.assert_array_equal(filled["Pneumonia"], [1.0, 1.0, 0.0, np.nan])  # rows 1, 3 of the manifest kept
    np.testing.assert_array_equal(filled["Pleural Effusion"], [1.0, 0.0, -1.0, np.nan])
    assert filled["labels_from_report"].tolist() == ["Pleural Effusion", "Pneumonia, Pleural Effusion", "Pleural Effusion", ""]
    assert out["validation_report"]["labels_from_reports"]["filled"] == {
        "Pneumonia": {"1": 1, "0": 0, "-1": 0}, "Pleural Effusion": {"1": 1, "0": 1, "-1": 1},
    }
    mentions = out["report_mentions"]
    effusion = mentions[(mentions["image_id"] == "img000") & (mentions["finding"] == "Pleural Effusion")]
    assert effusion["status"].tolist() == ["affirmed"] and effusion["side"].tolist() == ["left"]

    from medclip_residuals.pipelines.study_design.nodes import select_targets

    # u_ones: effusion 1, 0, 1, 0 (not mentioned counts as negative): both classes in each role
    split = pd.DataFrame({"image_id": filled.index, "patient_id": filled.index,
                          "role": ["head_train", "head_train", "test", "test"]})
    targets = select_targets(
        out["image_manifest"], split, base_params("study_design", targets=["Pleural Effusion"], uncertainty_policy="u_ones")
    )
    assert targets["targets"] == ["Pleural Effusion"]
    assert targets["counts"]["Pleural Effusion"]["test"]["positive"] == 1
