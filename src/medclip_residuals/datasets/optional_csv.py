"""A CSV that may be absent: localizations.csv is optional in the data contract."""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError, get_filepath_str, get_protocol_and_path
from kedro_datasets._typing import TablePreview

from medclip_residuals.data.contract import empty_localizations


class OptionalCSVDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Load a CSV as strings, or an empty localization table when the file does not exist.

    ```yaml
    localizations:
      type: medclip_residuals.datasets.OptionalCSVDataset
      filepath: ${runtime_params:data_root,${globals:demo_root}}/localizations.csv
    ```

    `exists()` is always True, so that a pipeline reading it never stops for its absence.
    Loading reads every cell as a string (`dtype=str`, `keep_default_na=False`: empty cells
    stay ""); saving writes the CSV without the index.
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {"dtype": str, "keep_default_na": False, "encoding": "utf-8"}
    DEFAULT_SAVE_ARGS: dict[str, Any] = {"index": False}

    def __init__(  # noqa: PLR0913
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
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **(load_args or {})}
        self._save_args = {**self.DEFAULT_SAVE_ARGS, **(save_args or {})}
        self.metadata = metadata

    def _path(self) -> str:
        return get_filepath_str(self._filepath, self._protocol)

    def file_exists(self) -> bool:
        """Whether the CSV file itself exists (`exists()` is True either way)."""
        return bool(self._fs.exists(self._path()))

    def load(self) -> pd.DataFrame:
        if not self.file_exists():
            return empty_localizations()
        try:
            with self._fs.open(self._path(), mode="rb") as handle:
                return pd.read_csv(handle, **self._load_args)
        except pd.errors.EmptyDataError:
            return empty_localizations()  # a zero-byte file is as good as none
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise DatasetError(f"{self._path()}: cannot be read as a UTF-8 CSV ({error})") from error

    def save(self, data: pd.DataFrame) -> None:
        with self._fs.open(self._path(), mode="w", encoding="utf-8", newline="") as handle:
            data.to_csv(handle, **self._save_args)
        self._fs.invalidate_cache(self._path())

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "protocol": self._protocol,
            "load_args": {k: (v.__name__ if isinstance(v, type) else v) for k, v in self._load_args.items()},
            "save_args": self._save_args,
        }

    def preview(self, nrows: int = 5) -> TablePreview:
        """The first rows in pandas' split format, for kedro-viz's table preview."""
        return TablePreview(self.load().head(nrows).to_dict(orient="split"))
