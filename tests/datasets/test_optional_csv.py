"""OptionalCSVDataset: localizations.csv may be absent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medclip_residuals.datasets import OptionalCSVDataset


def test_missing_file_loads_empty_with_contract_columns(tmp_path: Path) -> None:
    dataset = OptionalCSVDataset(filepath=str(tmp_path / "nowhere" / "localizations.csv"))
    assert dataset.exists() and not dataset.file_exists()
    frame = dataset.load()
    assert frame.empty and list(frame.columns) == ["image_id", "finding", "mask_path", "x", "y", "w", "h"]


def test_loads_strings_keeps_empty_cells_and_saves_without_index(tmp_path: Path) -> None:
    path = tmp_path / "localizations.csv"
    path.write_text("image_id,finding,mask_path,x,y,w,h\n007,Edema,,1,2.50,3,4\n", encoding="utf-8")
    dataset = OptionalCSVDataset(filepath=str(path), metadata={"kedro-viz": {"layer": "raw"}})
    frame = dataset.load()
    assert frame.loc[0, "image_id"] == "007" and frame.loc[0, "mask_path"] == "" and frame.loc[0, "y"] == "2.50"
    dataset.save(frame.assign(zone="lower"))
    assert path.read_text(encoding="utf-8").splitlines() == [
        "image_id,finding,mask_path,x,y,w,h,zone", "007,Edema,,1,2.50,3,4,lower"]
    assert dataset.preview(nrows=1)["data"] == [["007", "Edema", "", "1", "2.50", "3", "4", "lower"]]
    custom = OptionalCSVDataset(filepath=str(path), load_args={"usecols": ["image_id"]})
    assert list(custom.load().columns) == ["image_id"]
    assert isinstance(custom.load(), pd.DataFrame)
