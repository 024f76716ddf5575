"""manifest.csv and localizations.csv as the data contract reads them: faults reported, not raised."""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError, get_filepath_str, get_protocol_and_path
from kedro_datasets._typing import TablePreview

from medclip_residuals.data.contract import empty_localizations, parse_csv

# pandas.CSVDataset arguments that only say what parse_csv always does (old catalogs keep working)
_IMPLIED_LOAD_ARGS = {"dtype": (str, "str"), "keep_default_na": (False,), "encoding": ("utf-8", "utf8", "utf-8-sig")}
_LOAD_ARGS = ("delimiter", "quotechar", "usecols")


class ContractCSVDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Load a contract CSV as a table of strings, with its line numbers and CSV-level faults.

    ```yaml
    manifest:
      type: medclip_residuals.datasets.ContractCSVDataset
      filepath: ${runtime_params:data_root,${globals:demo_root}}/manifest.csv
    ```

    Loading parses the bytes with `data.contract.parse_csv` (Python's csv module on the
    decoded text): a file that is not UTF-8, has ragged rows, an unterminated quote or a
    repeated header name still loads, and the frame's `attrs` carry `source_file`,
    `line_numbers` (each record's first line in the file), `header_line`, `blank_lines` and
    `csv_problems`, which `validate_dataset` reports as `file:row [column] reason`. Every
    cell is a string; empty cells stay "". `load_args` may set `delimiter`, `quotechar` and
    `usecols` (a list of column names). Saving writes a plain CSV without the index, as
    `pandas.CSVDataset` does. `exists()` is whether the file exists.
    """

    DEFAULT_SAVE_ARGS: dict[str, Any] = {"index": False}

    def __init__(
        self,
        filepath: str | os.PathLike,
        load_args: dict[str, Any] | None = None,
        save_args: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(os.fspath(filepath))
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **(deepcopy(credentials) or {}), **fs_args)
        self._load_args = self._checked_load_args(load_args or {})
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self.metadata = metadata

    def _checked_load_args(self, load_args: dict[str, Any]) -> dict[str, Any]:
        checked = {}
        for key, value in load_args.items():
            if key in _IMPLIED_LOAD_ARGS and value in _IMPLIED_LOAD_ARGS[key]:
                continue
            if key not in _LOAD_ARGS:
                raise DatasetError(
                    f"{self._filepath}: load_args {key}={value!r} is not supported: the data contract's CSVs are "
                    f"UTF-8 and read as strings; only {', '.join(_LOAD_ARGS)} may be set"
                )
            checked[key] = value
        return checked

    def _path(self) -> str:
        return get_filepath_str(self._filepath, self._protocol)

    def file_exists(self) -> bool:
        """Whether the CSV file itself exists."""
        return bool(self._fs.exists(self._path()))

    def _read_bytes(self) -> bytes:
        try:
            with self._fs.open(self._path(), mode="rb") as handle:
                return handle.read()
        except FileNotFoundError as error:
            raise DatasetError(f"{self._path()}: file not found (see docs/DATA_CONTRACT.md)") from error

    def _parse(self, data: bytes) -> pd.DataFrame:
        frame = parse_csv(
            data, self._filepath.name, source=self._path(),
            **{k: v for k, v in self._load_args.items() if k != "usecols"},
        )
        usecols = self._load_args.get("usecols")
        if usecols is not None:
            missing = [c for c in usecols if c not in frame.columns]
            if missing:
                raise DatasetError(f"{self._path()}: usecols names columns the header lacks: {missing}")
            frame = frame.loc[:, list(usecols)]
        return frame

    def load(self) -> pd.DataFrame:
        return self._parse(self._read_bytes())

    def save(self, data: pd.DataFrame) -> None:
        with self._fs.open(self._path(), mode="w", encoding="utf-8", newline="") as handle:
            data.to_csv(handle, **self._save_args)
        self._fs.invalidate_cache(self._path())

    def _exists(self) -> bool:
        return self.file_exists()

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "protocol": self._protocol,
            "load_args": self._load_args,
            "save_args": self._save_args,
        }

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first rows in pandas' split format, for kedro-viz's table preview."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))


class OptionalCSVDataset(ContractCSVDataset):
    """A `ContractCSVDataset` that may be absent: localizations.csv is optional in the contract.

    ```yaml
    localizations:
      type: medclip_residuals.datasets.OptionalCSVDataset
      filepath: ${runtime_params:data_root,${globals:demo_root}}/localizations.csv
    ```

    `exists()` is always True, so that a pipeline reading it never stops for its absence; a
    missing or zero-byte file loads as an empty table with the contract's localization columns.
    """

    def load(self) -> pd.DataFrame:
        if not self.file_exists():
            return empty_localizations()
        data = self._read_bytes()
        if not data.strip():
            return empty_localizations()  # a zero-byte file is as good as none
        return self._parse(data)

    def _exists(self) -> bool:
        return True
