"""ContractCSVDataset / OptionalCSVDataset: faulty CSVs load with their faults, saving is plain CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.io.core import DatasetError
from kedro_datasets.pandas import CSVDataset

from medclip_residuals.data.contract import Problem
from medclip_residuals.datasets import ContractCSVDataset, OptionalCSVDataset

FAULTY = (
    b"image_id,image_path,Edema,Edema\n"  # 1: Edema twice
    b"a,images/a.png,1,0\n"  # 2
    b"\n"  # 3: blank
    b"b,images/b.png,1\n"  # 4: ragged
    b"c,images/c\xe9.png,0,0\n"  # 5: not UTF-8
    b'd,images/d.png,"1,0\n'  # 6: quote never closed
)


def test_a_faulty_csv_loads_with_its_line_numbers_and_faults(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_bytes(FAULTY)
    frame = ContractCSVDataset(filepath=str(tmp_path / "manifest.csv")).load()
    assert list(frame.columns) == ["image_id", "image_path", "Edema", "Edema"]  # not renamed Edema.1
    assert frame["image_id"].tolist() == ["a", "b", "c", "d"]
    assert frame.iloc[1].tolist() == ["b", "images/b.png", "1", ""]  # a short row is padded
    assert frame.attrs["line_numbers"] == (2, 4, 5, 6)
    assert frame.attrs["source_file"] == str(tmp_path / "manifest.csv")
    assert (frame.attrs["header_line"], frame.attrs["blank_lines"]) == (1, 1)
    assert frame.attrs["csv_problems"] == (
        Problem("manifest.csv", 4, "*", "line 4 has 3 fields, header has 4"),
        Problem("manifest.csv", 5, "image_path", "not UTF-8: byte 0xE9 at byte offset 79 of the file "
                "(offset 10 within line 5); save the file as UTF-8"),
        Problem("manifest.csv", 6, "Edema", "unterminated quote: a quoted field opened on this line is never "
                "closed (read up to the end of this line only)"),
        Problem("manifest.csv", 6, "*", "line 6 has 3 fields, header has 4"),
    )
    assert FAULTY.index(b"\xe9") == 79  # the offset named above
    assert "provenance" not in frame.attrs  # utils/provenance.py owns that key


def test_saving_writes_the_same_plain_csv_as_pandas_csvdataset(tmp_path: Path) -> None:
    frame = pd.DataFrame({"image_id": ["007", "b"], "report": ['says "clear", twice\nthen more', ""],
                          "Edema": ["1.0", ""]})
    ContractCSVDataset(filepath=str(tmp_path / "ours" / "manifest.csv"), save_args={"index": False}).save(frame)
    CSVDataset(filepath=str(tmp_path / "pandas" / "manifest.csv"), save_args={"index": False}).save(frame)
    written = (tmp_path / "ours" / "manifest.csv").read_bytes()
    assert written == (tmp_path / "pandas" / "manifest.csv").read_bytes()
    assert written.startswith(b'image_id,report,Edema\n007,"says ""clear"", twice\nthen more",1.0\n')
    loaded = ContractCSVDataset(filepath=str(tmp_path / "ours" / "manifest.csv")).load()
    pd.testing.assert_frame_equal(loaded, frame, check_dtype=False)
    assert loaded.attrs["line_numbers"] == (2, 4) and loaded.attrs["csv_problems"] == ()


def test_exists_is_the_file_for_manifest_and_always_for_localizations(tmp_path: Path) -> None:
    manifest = ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"))
    localizations = OptionalCSVDataset(filepath=str(tmp_path / "localizations.csv"))
    assert not manifest.exists() and localizations.exists() and not localizations.file_exists()
    with pytest.raises(DatasetError, match="manifest.csv: file not found"):
        manifest.load()
    assert list(localizations.load().columns) == ["image_id", "finding", "mask_path", "x", "y", "w", "h"]
    (tmp_path / "localizations.csv").write_bytes(b"")
    assert localizations.load().empty  # zero bytes: as good as no file
    (tmp_path / "manifest.csv").write_bytes(b"")
    assert manifest.exists()
    assert [str(p) for p in manifest.load().attrs["csv_problems"]] == [
        "manifest.csv:1 [*] no header line: the file is empty or blank"]


def test_preview_load_args_and_describe(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("image_id;image_path;view\na;a.png;PA\nb;b.png;AP\n", encoding="utf-8")
    dataset = ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"), load_args={"delimiter": ";"})
    preview = dataset.preview(nrows=1)
    assert preview == {"index": [0], "columns": ["image_id", "image_path", "view"], "data": [["a", "a.png", "PA"]]}
    chosen = ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"),
                                load_args={"delimiter": ";", "usecols": ["view", "image_id"]}).load()
    assert chosen.values.tolist() == [["PA", "a"], ["AP", "b"]]
    # pandas.CSVDataset's old arguments are accepted where they say what parsing does anyway
    legacy = ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"),
                                load_args={"dtype": str, "keep_default_na": False, "encoding": "utf-8"})
    assert legacy._describe()["load_args"] == {}
    with pytest.raises(DatasetError, match="load_args encoding='latin-1' is not supported"):
        ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"), load_args={"encoding": "latin-1"})
    with pytest.raises(DatasetError, match=r"usecols names columns the header lacks: \['Edema'\]"):
        ContractCSVDataset(filepath=str(tmp_path / "manifest.csv"), load_args={"usecols": ["Edema"]}).load()


def test_the_project_catalog_uses_these_datasets(tmp_path: Path) -> None:
    from kedro.config import OmegaConfigLoader

    project = Path(__file__).resolve().parents[2]
    config = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base", default_run_env="local",
                               runtime_params={"data_root": str(tmp_path)})["catalog"]
    catalog = DataCatalog.from_config({name: config[name] for name in ("manifest", "localizations")})
    assert type(catalog.get("manifest")) is ContractCSVDataset
    assert type(catalog.get("localizations")) is OptionalCSVDataset
    assert catalog.get("manifest")._filepath == Path(tmp_path / "manifest.csv")  # hooks.py reads _filepath
    assert not catalog.exists("manifest") and catalog.exists("localizations")  # the missing-inputs hint
