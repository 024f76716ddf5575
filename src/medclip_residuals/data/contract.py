"""The data contract (docs/DATA_CONTRACT.md) in code: reading and validating a dataset folder.

`parse_csv` reads manifest.csv and localizations.csv with Python's csv module, recording
(never raising) their CSV-level faults and each record's line number. `validate_dataset`
checks both once, before any model runs, decoding every image and mask once, and raises
one `DataContractError` that lists every problem as `<file>:<row> [<column>] <reason>`,
where row is the file's own line number (header = line 1, blank lines counted; a quoted
multi-line record is at the line it starts on) and column `*` means the whole line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medclip_residuals.data.images import ImageDecodeError, ImageInfo, read_image_with_info
from medclip_residuals.data.labels import (
    BOX_COLUMNS,
    CHEXPERT_FINDINGS,
    LOCALIZATION_COLUMNS,
    LOCALIZATION_EXTRA_COLUMNS,
    outcome_columns,
)

MANIFEST_FILE = "manifest.csv"
LOCALIZATIONS_FILE = "localizations.csv"
MANIFEST_REQUIRED_COLUMNS: tuple[str, ...] = ("image_id", "image_path")
MANIFEST_CORE_COLUMNS: tuple[str, ...] = (
    "image_id", "image_path", "patient_id", "report", "view", "height", "width",
)
FRONTAL_VIEWS = frozenset({"PA", "AP", "FRONTAL", ""})
ON_UNREADABLE_POLICIES: tuple[str, ...] = ("error", "skip")

# CheXpert CSVs write labels as floats ("1.0"); empty = not mentioned.
_LABEL_VALUES = {
    "1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "-1": -1.0, "-1.0": -1.0, "": math.nan,
}
# Outcomes from the hospital record (`outcome:<name>` columns): empty = unknown, left out.
_OUTCOME_VALUES = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": math.nan}
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
            "(file:row [column] reason; row is the file's own line number, the header's is 1 unless "
            "blank lines precede it; column * is the whole line). Fix them all, then run again:"
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
    """Line number of the record at 0-based `position` of a CSV without blank lines or
    multi-line records (the header is line 1); `parse_csv` records the real ones."""
    return int(position) + 2


# --- reading the CSVs: Python's csv module on the decoded text, never a traceback ------------

# DataFrame.attrs keys that `parse_csv` sets (`provenance` belongs to utils/provenance.py)
ATTR_SOURCE_FILE = "source_file"
ATTR_LINE_NUMBERS = "line_numbers"  # each record's first line in the file (header = its own line)
ATTR_HEADER_LINE = "header_line"
ATTR_CSV_PROBLEMS = "csv_problems"  # Problems found while parsing: encoding, quotes, ragged rows
ATTR_BLANK_LINES = "blank_lines"
WHOLE_ROW = "*"  # the column of a problem that concerns a whole line, not one cell


class FrozenTuple(tuple):
    """A tuple that pandas shares between frames instead of deep-copying it.

    pandas deep-copies `DataFrame.attrs` into every derived frame and column; the line
    numbers of a large manifest would be copied on every column access otherwise.
    """

    __slots__ = ()

    def __deepcopy__(self, memo: dict) -> FrozenTuple:
        return self


def _line_of_offset(data: bytes, offset: int) -> tuple[int, int]:
    """(1-based line, byte offset within that line) of byte `offset`, lines as csv counts them."""
    prefix = data[:offset]
    line = 1 + prefix.count(b"\n") + prefix.count(b"\r") - prefix.count(b"\r\n")
    start = max(prefix.rfind(b"\n"), prefix.rfind(b"\r")) + 1
    return line, offset - start


def _decode_utf8(data: bytes, file: str, delimiter: str, quotechar: str) -> tuple[str, Problem | None]:
    """The text of a CSV (a UTF-8 byte-order mark dropped) and the encoding problem, if any.

    Bytes that are not UTF-8 become U+FFFD so that the rest of the file can still be checked.
    The problem's column is `#field k`, the field of the first bad byte on its line.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace").lstrip("\ufeff")
        return text, Problem(file, 1, WHOLE_ROW, "file is UTF-16 (it starts with a UTF-16 byte-order mark), "
                             "not UTF-8: save it as UTF-8")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8"), None
    except UnicodeDecodeError as error:
        start = bom + error.start  # an offset in the file, byte-order mark included
        line, in_line = _line_of_offset(data, start)
        bad_lines = 0
        for raw in data.splitlines():  # UTF-8 never has a line break inside a character
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad_lines += 1
        more = f"; {bad_lines} lines in all have bytes that are not UTF-8" if bad_lines > 1 else ""
        reason = (f"not UTF-8: byte 0x{data[start]:02X} at byte offset {start} of the file "
                  f"(offset {in_line} within line {line}){more}; save the file as UTF-8")
        before = data[start - in_line:start].decode("utf-8", errors="replace").lstrip("\ufeff")
        fields = next(csv.reader([before], delimiter=delimiter, quotechar=quotechar), [""])
        return data[bom:].decode("utf-8", errors="replace"), Problem(file, line, f"#field {len(fields)}", reason)


def _csv_records(
    lines: list[str], file: str, dialect: dict[str, Any], problems: list[Problem],
) -> Iterable[tuple[int, list[str]]]:
    """(first line, fields) of every record, blank lines included as empty lists.

    Parses strictly; a record with a quote fault is reported and read again leniently, one
    line only for a quote never closed, and parsing starts afresh after it.
    """
    begin = 0  # index in `lines` where the current reader starts
    while begin < len(lines):
        reader = csv.reader((lines[i] for i in range(begin, len(lines))), strict=True, **dialect)
        consumed = 0
        try:
            for fields in reader:
                yield begin + consumed + 1, fields
                consumed = reader.line_num
            return
        except csv.Error as error:
            first = begin + consumed + 1
            message = str(error)
            too_long = "field limit" in message
            never_closed = "end of data" in message or too_long
            last = first if never_closed else begin + reader.line_num
            text = "".join(lines[first - 1:last]).rstrip("\r\n")
            try:
                fields = next(csv.reader([text], **dialect), [])
            except csv.Error:  # one line longer than the field limit: plain split
                fields = text.split(dialect["delimiter"])
            if too_long:
                reason = (f"a field runs past {csv.field_size_limit()} characters from this line on: "
                          "a quote opened here is probably never closed (read up to the end of this line only)")
            elif never_closed:
                reason = ("unterminated quote: a quoted field opened on this line is never closed "
                          "(read up to the end of this line only)")
            else:
                reason = f"malformed quoted field ({message}): text after a closing quote"
            problems.append(Problem(file, first, f"#field {len(fields)}", reason))
            yield first, fields
            begin = last


def parse_csv(
    data: bytes,
    file: str,
    source: str | None = None,
    delimiter: str = ",",
    quotechar: str = '"',
) -> pd.DataFrame:
    """A contract CSV's bytes as a table of strings; content faults are recorded, never raised.

    The frame's `attrs` carry `source_file`, `header_line`, `line_numbers` (each record's first
    line in the file, blank lines counted), `blank_lines` and `csv_problems` (Problems: not
    UTF-8, NUL bytes, quote faults, rows with more or fewer fields than the header; a short
    row is padded with "", a long one cut). An exact duplicate header name is kept as it is
    (pandas would rename it `.1`): `validate_dataset` reports it.
    """
    problems: list[Problem] = []
    text, encoding_problem = _decode_utf8(data, file, delimiter, quotechar)
    if encoding_problem is not None:
        problems.append(encoding_problem)
    if "\x00" in text:
        line = 1 + text[: text.index("\x00")].count("\n")
        problems.append(Problem(file, line, WHOLE_ROW, "contains NUL bytes: not a text CSV (UTF-16 without a "
                                "byte-order mark?); save it as UTF-8"))
        text = text.replace("\x00", "")
    lines = io.StringIO(text, newline="").readlines()
    dialect = {"delimiter": delimiter, "quotechar": quotechar}
    header: list[str] | None = None
    header_line = 1
    records: list[list[str]] = []
    line_numbers: list[int] = []
    blank = 0
    for line, fields in _csv_records(lines, file, dialect, problems):
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            blank += 1  # skipped, but counted in every later line number
            continue
        if header is None:
            header, header_line = fields, line
            continue
        if len(fields) != len(header):
            spans = "record starting at line" if fields and "\n" in "".join(fields) else "line"
            hint = " (a comma inside an unquoted field?)" if len(fields) > len(header) else ""
            problems.append(Problem(file, line, WHOLE_ROW,
                                    f"{spans} {line} has {len(fields)} fields, header has {len(header)}{hint}"))
        records.append((fields + [""] * len(header))[: len(header)])  # a short row padded, a long one cut
        line_numbers.append(line)
    if header is None:
        problems.append(Problem(file, 1, WHOLE_ROW, "no header line: the file is empty or blank"))
    # a field number is only known once the header is; name the column where one exists
    starts = set(line_numbers)
    named = [_name_field(problem, header, starts) for problem in problems]
    frame = pd.DataFrame(records, columns=header or [], dtype=str)
    frame.attrs.update({
        ATTR_SOURCE_FILE: source or file,
        ATTR_HEADER_LINE: header_line,
        ATTR_LINE_NUMBERS: FrozenTuple(line_numbers),
        ATTR_BLANK_LINES: blank,
        ATTR_CSV_PROBLEMS: FrozenTuple(sorted(named, key=lambda p: p.row)),
    })
    return frame


def _name_field(problem: Problem, header: list[str] | None, starts: set[int]) -> Problem:
    """`problem` with its `#field k` column named after the header's k-th column (the whole
    line `*` where the header has no such column or the line starts no record)."""
    if not problem.column.startswith("#field "):
        return problem
    index = int(problem.column.split()[1]) - 1
    known = header is not None and 0 <= index < len(header) and problem.row in starts
    return Problem(problem.file, problem.row, header[index] if known else WHOLE_ROW, problem.reason)


def read_manifest(data_root: str | os.PathLike) -> pd.DataFrame:
    """Read `<data_root>/manifest.csv` as strings, as the catalog's `manifest` does."""
    path = Path(data_root) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the dataset has no {MANIFEST_FILE} (see docs/DATA_CONTRACT.md)")
    return parse_csv(path.read_bytes(), MANIFEST_FILE, source=str(path))


def read_localizations(data_root: str | os.PathLike) -> pd.DataFrame:
    """Read `<data_root>/localizations.csv` as strings; an empty table when it does not exist."""
    path = Path(data_root) / LOCALIZATIONS_FILE
    data = path.read_bytes() if path.is_file() else b""
    if not data.strip():
        return empty_localizations()  # absent or zero bytes: no localizations
    return parse_csv(data, LOCALIZATIONS_FILE, source=str(path))


def empty_localizations() -> pd.DataFrame:
    """A localization table with the contract's columns and no rows."""
    return pd.DataFrame({column: pd.Series([], dtype=str) for column in LOCALIZATION_COLUMNS})


def resolve_path(data_root: str | os.PathLike, path: str) -> str:
    """Absolute path of `path`, taken relative to `data_root` unless it is absolute."""
    root = os.path.expanduser(os.fspath(data_root))
    return os.path.abspath(os.path.join(root, os.path.expanduser(path)))


@dataclass(frozen=True)
class DecodedFile:
    """What validation keeps of one decoded file: never its pixels.

    `info` says how an image was decoded (bit depth, EXIF orientation, DICOM transfer
    syntax); `digest` is the SHA-256 of its bytes; `levels` (number of distinct grey
    values, 3 meaning "3 or more"), `low` and `nonzero` describe a mask.
    """

    height: int
    width: int
    realpath: str = ""
    digest: str | None = None
    info: ImageInfo | None = None
    levels: int | None = None
    low: float | None = None
    nonzero: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def _file_digest(path: str) -> str:
    # right after decoding, so the bytes come from the page cache, not the disk again;
    # SHA-256: hardware-accelerated in OpenSSL, faster than BLAKE2b here
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def decode_image(path: str) -> DecodedFile:
    """Decode an image once: its size, how it was decoded, and the hash of its bytes."""
    grey, info = read_image_with_info(path)
    del grey  # only the facts are kept: memory stays flat however many images there are
    return DecodedFile(info.height, info.width, digest=_file_digest(path), info=info)


def decode_mask(path: str) -> DecodedFile:
    """Decode a mask once (as `read_mask` does): its size and whether it is empty or binary."""
    grey, info = read_image_with_info(path)
    low, high = float(grey.min()), float(grey.max())
    levels = 1 if low == high else 2
    if levels == 2 and np.any((grey != low) & (grey != high)):
        levels = 3  # grey between background and foreground: anti-aliased, resized or JPEG
    return DecodedFile(info.height, info.width, info=info, levels=levels, low=low,
                       nonzero=int(np.count_nonzero(grey > 0)))


def decode_all(
    paths: Iterable[str],
    decode: Callable[[str], tuple[int, int] | DecodedFile] = decode_image,
    max_workers: int | None = None,
) -> dict[str, DecodedFile | ImageDecodeError]:
    """Decode each distinct path once, in threads (Pillow and zlib release the GIL).

    `decode` returns a `DecodedFile` or just (height, width). Returns path -> DecodedFile
    (with the file's `os.path.realpath`), or the ImageDecodeError that says why it failed.
    """
    unique = list(dict.fromkeys(paths))

    def _one(path: str) -> DecodedFile | ImageDecodeError:
        try:
            result = decode(path)
        except ImageDecodeError as error:
            return error
        except Exception as error:  # noqa: BLE001 - any failure to decode is reported, never raised
            return ImageDecodeError(path, f"cannot be decoded ({type(error).__name__}: {error})")
        if not isinstance(result, DecodedFile):
            height, width = result
            result = DecodedFile(int(height), int(width))
        return replace(result, realpath=os.path.realpath(path))

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


@dataclass(frozen=True)
class _Lines:
    """Where the records of one CSV sit in its file (from `parse_csv`'s attrs, if present)."""

    rows: tuple[int, ...]
    header: int = 1
    problems: tuple[Problem, ...] = ()
    blank_lines: int = 0

    def row(self, position: int | None) -> int:
        """The file's line number of the record at `position`; None is the header."""
        if position is None:
            return self.header
        return self.rows[position] if position < len(self.rows) else self.header + 1 + int(position)


def _lines_of(frame: pd.DataFrame, file: str) -> _Lines:
    """Line numbers of `frame`'s records, trusted only while they still match its rows."""
    attrs = frame.attrs
    header = int(attrs.get(ATTR_HEADER_LINE, 1))
    numbers = attrs.get(ATTR_LINE_NUMBERS)
    rows: tuple[int, ...] = tuple(header + 1 + p for p in range(len(frame)))
    if numbers is not None:
        index = frame.index
        if len(numbers) == len(frame) and index.equals(pd.RangeIndex(len(frame))):
            rows = tuple(numbers)
        elif pd.api.types.is_integer_dtype(index) and len(index) and 0 <= index.min() and index.max() < len(numbers):
            rows = tuple(numbers[i] for i in index)  # a filtered copy keeps its original labels
    problems = tuple(Problem(file, p.row, p.column, p.reason) for p in attrs.get(ATTR_CSV_PROBLEMS, ()))
    return _Lines(rows, header, problems, int(attrs.get(ATTR_BLANK_LINES, 0)))


def _without_duplicate_columns(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """`frame` with only the first of each repeated column, and name -> 1-based field numbers."""
    positions: dict[str, list[int]] = {}
    for number, column in enumerate(frame.columns, start=1):
        positions.setdefault(str(column), []).append(number)
    repeated = {name: fields for name, fields in positions.items() if len(fields) > 1}
    if repeated:
        frame = frame.loc[:, ~frame.columns.duplicated()]
    return frame, repeated


def _duplicate_header_reason(name: str, fields: list[int]) -> str:
    numbers = ", ".join(str(n) for n in fields[:-1]) + f" and {fields[-1]}"
    return (f"column {name!r} appears more than once in the header (fields {numbers}; pandas would "
            f"silently read the second as '{name}.1'): rename or remove the copies")


def _who(image_id: str, row: int, patient: str) -> str:
    return f"image_id {image_id!r} (row {row}, {f'patient {patient!r}' if patient else 'no patient_id'})"


def _same_file_problems(
    ids: list[str], patients: list[str], rows: list[int], absolute: list[str],
    results: dict[str, DecodedFile | ImageDecodeError], keep: list[bool],
) -> list[tuple[int, str]]:
    """(position, reason) for each row whose image file is also under an earlier image_id.

    The same file is the same `os.path.realpath` (symlinks, `a/../b`); a copy is a file with
    identical bytes. Either puts one image twice in the data, maybe on both sides of a split.
    """
    found: list[tuple[int, str]] = []
    first_by_real: dict[str, int] = {}
    first_by_digest: dict[str, int] = {}
    for position, (image_id, path, kept) in enumerate(zip(ids, absolute, keep)):
        result = results.get(path) if kept and path and image_id else None
        if not isinstance(result, DecodedFile):
            continue
        earlier, how = first_by_real.get(result.realpath), "is the same file as"
        if earlier is None:
            first_by_real[result.realpath] = position
            if result.digest is None:
                continue
            earlier, how = first_by_digest.get(result.digest), "has the same bytes as"
            if earlier is None:
                first_by_digest[result.digest] = position
                continue
        if ids[earlier] == image_id:
            continue  # a repeated image_id is reported as such
        patient, other = patients[position], patients[earlier]
        # no patient_id: each image is its own patient, so the two differ too
        split = ("; the patients differ, so the image could sit on both sides of a train/test split"
                 if (patient or image_id) != (other or ids[earlier]) else "")
        found.append((position, f"{_who(image_id, rows[position], patient)} {how} "
                                f"{_who(ids[earlier], rows[earlier], other)}: {result.realpath}{split}"))
    return found


def _mask_reason(result: DecodedFile) -> str | None:
    """Why a decoded mask cannot be a region (empty, not binary, no background), or None."""
    if result.nonzero == 0:
        return "mask is empty (no non-zero pixel): it marks no region to score a heatmap against"
    if result.levels is not None and result.levels > 2:
        return ("mask is not binary (more than two grey values, e.g. anti-aliased, resized or JPEG edges): "
                "save it as 0 outside and one value inside (e.g. 0/255 PNG)")
    if result.levels == 2 and result.low is not None and result.low > 0:
        return (f"mask has no zero pixel (its values are {result.low:.3g} and above, on a 0-1 scale): "
                "every pixel would count as inside")
    return None


@dataclass
class _Ledger:
    """What validation has found so far: problems, skipped rows, and each CSV's line numbers."""

    lines: dict[str, _Lines]
    problems: list[Problem] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, manifest: pd.DataFrame, localizations: pd.DataFrame) -> _Ledger:
        """A ledger that starts with both files' CSV-level faults: on the same line they explain
        the cell problems found after them."""
        lines = {
            MANIFEST_FILE: _lines_of(manifest, MANIFEST_FILE),
            LOCALIZATIONS_FILE: _lines_of(localizations, LOCALIZATIONS_FILE),
        }
        return cls(lines, [*lines[MANIFEST_FILE].problems, *lines[LOCALIZATIONS_FILE].problems])

    def row(self, file: str, position: int | None) -> int:
        """The file's own line number of the record at `position` (None: the header)."""
        return self.lines[file].row(position)

    def add(self, file: str, position: int | None, column: str, reason: str) -> None:
        """Record a problem of the record at `position` (None: the header)."""
        self.problems.append(Problem(file, self.row(file, position), column, reason))

    def skip(self, file: str, position: int, column: str, image_id: str, path: str, reason: str) -> None:
        """Record a row left out under `on_unreadable: skip`, for the report."""
        self.skipped.append({"file": file, "row": self.row(file, position), "column": column,
                             "image_id": image_id, "path": path, "reason": reason})

    def raise_if_any(self, data_root: str | os.PathLike) -> None:
        """Raise every problem at once, the manifest's first, each file's in line order."""
        if self.problems:
            file_order = {MANIFEST_FILE: 0, LOCALIZATIONS_FILE: 1}
            self.problems.sort(key=lambda p: (file_order.get(p.file, 2), p.row))  # stable: column order kept
            raise DataContractError(self.problems, data_root)


def validate_dataset(
    manifest: pd.DataFrame,
    localizations: pd.DataFrame | None,
    data_root: str | os.PathLike,
    on_unreadable: str = "error",
    frontal_only: bool = False,
    decode: Callable[[str], tuple[int, int] | DecodedFile] = decode_image,
    max_workers: int | None = None,
    decode_masks: Callable[[str], tuple[int, int] | DecodedFile] | None = None,
) -> ValidatedDataset:
    """Check a dataset against the contract and return its typed tables and a report.

    `manifest` and `localizations` are the CSVs read as strings, best by `parse_csv` (the
    catalog's datasets): then row numbers are the files' own lines and the CSV-level faults
    it recorded are reported too. Every image of the kept rows is decoded once by `decode`
    (path -> `DecodedFile` or (height, width)), every mask by `decode_masks` (`decode_mask`
    by default; `decode` itself when only `decode` is given). The same image file (or a
    byte-identical copy) under two image_ids, and empty or non-binary masks, are problems. With
    `on_unreadable="skip"`, images that are missing or cannot be decoded, their
    localizations, and unreadable masks are left out and listed in the report; every other
    problem, and every unreadable file under "error", is raised together as one
    `DataContractError`. `frontal_only` keeps views PA, AP, FRONTAL and empty.
    """
    _check_policy(on_unreadable)
    skip_unreadable = on_unreadable == "skip"
    if decode_masks is None:
        decode_masks = decode_mask if decode is decode_image else decode
    localizations = localizations if localizations is not None else empty_localizations()
    ledger = _Ledger.of(manifest, localizations)
    manifest = _clean_header(ledger, manifest, MANIFEST_FILE)
    localizations = _clean_header(ledger, localizations, LOCALIZATIONS_FILE)

    # the manifest: columns, ids, labels, views, then each kept image decoded once
    _check_required_columns(ledger, manifest)
    ids, paths, views = (_strings(manifest, c) for c in ("image_id", "image_path", "view"))
    first_row = _check_image_ids(ledger, manifest, ids)
    _check_image_paths(ledger, manifest, paths)
    labels = _parse_labels(ledger, manifest)
    keep, dropped_views = _frontal_rows(views, frontal_only)
    absolute = [resolve_path(data_root, p) if p else "" for p in paths]
    to_decode = [a for a, kept in zip(absolute, keep) if kept and a]
    decoded = decode_all(to_decode, decode, max_workers) if "image_path" in manifest.columns else {}
    skipped_ids = _unreadable_images(ledger, ids, absolute, keep, decoded, skip_unreadable)
    patients = _strings(manifest, "patient_id")
    _check_same_files(ledger, ids, patients, absolute, decoded, keep)
    shape_by_id = _image_shapes(ids, absolute, keep, decoded)

    # the localizations: columns, image ids, findings, then each kept mask and box
    regions_checkable = _check_localization_columns(ledger, localizations)
    loc_ids, findings = _strings(localizations, "image_id"), _strings(localizations, "finding")
    dropped_ids = {image_id for image_id, kept in zip(ids, keep) if not kept}
    loc_keep, loc_dropped_by_view = _localizations_of_kept_images(
        ledger, localizations, loc_ids, first_row, skipped_ids, dropped_ids, shape_by_id)
    _check_findings(ledger, localizations, findings, loc_keep)
    absolute_masks = [resolve_path(data_root, m) if m else "" for m in _strings(localizations, "mask_path")]
    masks = decode_all([m for m, kept in zip(absolute_masks, loc_keep) if kept and m], decode_masks, max_workers)
    boxes = _empty_boxes(len(localizations))
    if regions_checkable:  # else the header problem says it all: no per-row noise
        boxes = _check_regions(ledger, localizations, loc_ids, absolute_masks, masks, loc_keep, shape_by_id,
                               skip_unreadable)

    keep_image = [kept and image_id not in skipped_ids for image_id, kept in zip(ids, keep)]
    _check_images_left(ledger, len(manifest), keep_image, dropped_views, skipped_ids)
    ledger.raise_if_any(data_root)

    image_manifest, extra_columns = _image_manifest_table(
        manifest, keep_image, ids, absolute, patients, views, shape_by_id, labels)
    image_localizations = _localization_table(localizations, loc_keep, loc_ids, findings, absolute_masks, boxes)
    report = _report(
        data_root=data_root, on_unreadable=on_unreadable, frontal_only=frontal_only,
        manifest_rows=len(manifest), image_manifest=image_manifest, label_columns=list(labels),
        extra_columns=extra_columns, near_miss=_near_miss_labels(manifest.columns),
        skipped=ledger.skipped, dropped_views=dropped_views, localization_rows=len(localizations),
        localizations_kept=len(image_localizations), localizations_dropped_by_view=loc_dropped_by_view,
        decoded=[decoded.get(path) for path in image_manifest["image_path"]],
        blank_lines={file: lines.blank_lines for file, lines in ledger.lines.items()},
    )
    return ValidatedDataset(image_manifest, image_localizations, report)


# --- the steps of validate_dataset, in the order it takes them -----------------------------


def _check_policy(on_unreadable: str) -> None:
    """Refuse an `on_unreadable` that is neither "error" nor "skip"."""
    if on_unreadable not in ON_UNREADABLE_POLICIES:
        raise ValueError(
            f"data_validation.on_unreadable is {on_unreadable!r}: choose one of {', '.join(ON_UNREADABLE_POLICIES)}"
        )


def _clean_header(ledger: _Ledger, frame: pd.DataFrame, file: str) -> pd.DataFrame:
    """`frame` with its column names stripped (a byte-order mark, spaces) and only the first
    copy of a repeated column; each repeated name is a problem of the header."""
    frame, repeats = _without_duplicate_columns(_normalise_header(frame))
    for column, fields in repeats.items():
        ledger.add(file, None, column, _duplicate_header_reason(column, fields))
    return frame


def _check_required_columns(ledger: _Ledger, manifest: pd.DataFrame) -> None:
    """A manifest without image_id or image_path is a problem of its header."""
    for column in MANIFEST_REQUIRED_COLUMNS:
        if column not in manifest.columns:
            ledger.add(MANIFEST_FILE, None, column, "missing required column")


def _check_image_ids(ledger: _Ledger, manifest: pd.DataFrame, ids: list[str]) -> dict[str, int]:
    """Report empty and repeated image_ids; return each id's first position."""
    first_row: dict[str, int] = {}
    if "image_id" not in manifest.columns:
        return first_row
    for position, image_id in enumerate(ids):
        if not image_id:
            ledger.add(MANIFEST_FILE, position, "image_id", "empty image_id")
        elif image_id in first_row:
            ledger.add(MANIFEST_FILE, position, "image_id",
                       f"duplicate image_id {image_id!r} (first at row {ledger.row(MANIFEST_FILE, first_row[image_id])})")
        else:
            first_row[image_id] = position
    return first_row


def _check_image_paths(ledger: _Ledger, manifest: pd.DataFrame, paths: list[str]) -> None:
    """Report empty image_paths."""
    if "image_path" not in manifest.columns:
        return
    for position, path in enumerate(paths):
        if not path:
            ledger.add(MANIFEST_FILE, position, "image_path", "empty image_path")


def _parse_labels(ledger: _Ledger, manifest: pd.DataFrame) -> dict[str, list[float]]:
    """The manifest's CheXpert label columns as floats (1, 0, -1, NaN), in CheXpert's order,
    then its outcome columns (`outcome:<name>`: 1, 0, NaN = unknown) in the file's order; a
    value outside those is a problem (and NaN)."""
    labels: dict[str, list[float]] = {}
    for name in (name for name in CHEXPERT_FINDINGS if name in manifest.columns):
        values = _strings(manifest, name)
        for position, text in enumerate(values):
            if text not in _LABEL_VALUES:
                ledger.add(MANIFEST_FILE, position, name, f"label value {text!r} is not one of 1, 0, -1 or empty")
        labels[name] = [_LABEL_VALUES.get(text, math.nan) for text in values]
    for name in outcome_columns(list(manifest.columns)):
        values = _strings(manifest, name)
        for position, text in enumerate(values):
            if text not in _OUTCOME_VALUES:
                ledger.add(MANIFEST_FILE, position, name, f"outcome value {text!r} is not one of 1, 0 or empty (unknown)")
        labels[name] = [_OUTCOME_VALUES.get(text, math.nan) for text in values]
    return labels


def _frontal_rows(views: list[str], frontal_only: bool) -> tuple[list[bool], Counter]:
    """Which rows are kept (all, or the frontal views only) and the dropped rows per view."""
    keep = [not frontal_only or view.upper() in FRONTAL_VIEWS for view in views]
    return keep, Counter(view for view, kept in zip(views, keep) if not kept)


def _unreadable_images(
    ledger: _Ledger, ids: list[str], absolute: list[str], keep: list[bool],
    decoded: dict[str, DecodedFile | ImageDecodeError], skip_unreadable: bool,
) -> dict[str, str]:
    """Report each kept image that cannot be decoded, or skip it; return skipped image_id ->
    where it is and why."""
    skipped_ids: dict[str, str] = {}
    for position, (image_id, path, kept) in enumerate(zip(ids, absolute, keep)):
        result = decoded.get(path) if kept and path else None
        if not isinstance(result, ImageDecodeError):
            continue
        if skip_unreadable:
            ledger.skip(MANIFEST_FILE, position, "image_path", image_id, path, result.reason)
            skipped_ids[image_id] = f"{MANIFEST_FILE}:{ledger.row(MANIFEST_FILE, position)} {result.reason}"
        else:
            ledger.add(MANIFEST_FILE, position, "image_path", f"{path}: {result.reason}")
    return skipped_ids


def _check_same_files(
    ledger: _Ledger, ids: list[str], patients: list[str], absolute: list[str],
    decoded: dict[str, DecodedFile | ImageDecodeError], keep: list[bool],
) -> None:
    """Report each image file (or byte-identical copy) that an earlier image_id already names."""
    rows = [ledger.row(MANIFEST_FILE, p) for p in range(len(ids))]
    for position, reason in _same_file_problems(ids, patients, rows, absolute, decoded, keep):
        ledger.add(MANIFEST_FILE, position, "image_path", reason)


def _image_shapes(
    ids: list[str], absolute: list[str], keep: list[bool], decoded: dict[str, DecodedFile | ImageDecodeError],
) -> dict[str, tuple[int, int]]:
    """(height, width) of each kept, decoded image, by its first row's image_id."""
    shape_by_id: dict[str, tuple[int, int]] = {}
    for image_id, path, kept in zip(ids, absolute, keep):
        result = decoded.get(path) if kept and path else None
        if isinstance(result, DecodedFile) and image_id and image_id not in shape_by_id:
            shape_by_id[image_id] = result.shape
    return shape_by_id


def _check_localization_columns(ledger: _Ledger, localizations: pd.DataFrame) -> bool:
    """Report missing columns of localizations.csv; return whether its rows can be checked
    for a mask or a box (a mask_path column, or all four box columns)."""
    columns = set(localizations.columns)
    for column in ("image_id", "finding"):
        if column not in columns:
            ledger.add(LOCALIZATIONS_FILE, None, column, "missing required column")
    has_mask_column = "mask_path" in columns
    present_box = [c for c in BOX_COLUMNS if c in columns]
    if not has_mask_column and len(present_box) < len(BOX_COLUMNS):
        missing = [c for c in BOX_COLUMNS if c not in columns]
        for column in (["mask_path"] if not present_box else []) + missing:
            ledger.add(LOCALIZATIONS_FILE, None, column,
                       "missing column: a localization needs mask_path or the four box columns x, y, w, h")
    return has_mask_column or len(present_box) == len(BOX_COLUMNS)


def _localizations_of_kept_images(
    ledger: _Ledger, localizations: pd.DataFrame, loc_ids: list[str], first_row: dict[str, int],
    skipped_ids: dict[str, str], dropped_ids: set[str], shape_by_id: dict[str, tuple[int, int]],
) -> tuple[list[bool], int]:
    """Which localization rows are kept, and how many belong to dropped views.

    An empty or unknown image_id is a problem; a row of a skipped image is listed as skipped;
    a row of a view that `frontal_only` dropped is counted.
    """
    loc_keep = [True] * len(localizations)
    dropped_by_view = 0
    if "image_id" not in localizations.columns:
        return loc_keep, dropped_by_view
    for position, image_id in enumerate(loc_ids):
        if not image_id:
            ledger.add(LOCALIZATIONS_FILE, position, "image_id", "empty image_id")
            loc_keep[position] = False
        elif image_id in skipped_ids:
            ledger.skip(LOCALIZATIONS_FILE, position, "image_id", image_id, "",
                        f"its image was skipped ({skipped_ids[image_id]})")
            loc_keep[position] = False
        elif image_id in dropped_ids and image_id not in shape_by_id:
            dropped_by_view += 1
            loc_keep[position] = False
        elif image_id not in first_row:
            ledger.add(LOCALIZATIONS_FILE, position, "image_id", f"unknown image_id {image_id!r}: not in {MANIFEST_FILE}")
            loc_keep[position] = False
    return loc_keep, dropped_by_view


def _check_findings(ledger: _Ledger, localizations: pd.DataFrame, findings: list[str], loc_keep: list[bool]) -> None:
    """Report each kept row whose finding is not one of the 14 CheXpert names."""
    if "finding" not in localizations.columns:
        return
    for position, finding in enumerate(findings):
        if loc_keep[position] and finding not in CHEXPERT_FINDINGS:
            ledger.add(LOCALIZATIONS_FILE, position, "finding",
                       f"finding {finding!r} is not one of the 14 CheXpert names" if finding else "empty finding")


def _empty_boxes(rows: int) -> dict[str, list[float]]:
    """Box columns x, y, w, h of `rows` rows, all NaN (no box)."""
    return {c: [math.nan] * rows for c in BOX_COLUMNS}


def _check_regions(
    ledger: _Ledger, localizations: pd.DataFrame, loc_ids: list[str], absolute_masks: list[str],
    masks: dict[str, DecodedFile | ImageDecodeError], loc_keep: list[bool],
    shape_by_id: dict[str, tuple[int, int]], skip_unreadable: bool,
) -> dict[str, list[float]]:
    """Check each kept row's region, its mask then its box; return the boxes (NaN where none).

    A row whose mask is unreadable is skipped (`loc_keep` set to False) under "skip".
    """
    boxes = _empty_boxes(len(localizations))
    box_text = {c: _strings(localizations, c) for c in BOX_COLUMNS}
    for position in range(len(localizations)):
        if not loc_keep[position]:
            continue
        image_id, mask_path = loc_ids[position], absolute_masks[position]
        image_shape = shape_by_id.get(image_id)
        if mask_path and not _check_mask(ledger, position, image_id, mask_path, masks[mask_path], image_shape,
                                         skip_unreadable):
            loc_keep[position] = False
            continue
        values = _check_box(ledger, position, mask_path, [box_text[c][position] for c in BOX_COLUMNS], image_shape)
        for column, value in zip(BOX_COLUMNS, values or ()):
            boxes[column][position] = value
    return boxes


def _check_mask(
    ledger: _Ledger, position: int, image_id: str, mask_path: str, result: DecodedFile | ImageDecodeError,
    image_shape: tuple[int, int] | None, skip_unreadable: bool,
) -> bool:
    """Report a mask that cannot be decoded, is not its image's size, or marks no region;
    return False when it is unreadable and skipped instead."""
    if isinstance(result, ImageDecodeError):
        if skip_unreadable:
            ledger.skip(LOCALIZATIONS_FILE, position, "mask_path", image_id, mask_path, result.reason)
            return False
        ledger.add(LOCALIZATIONS_FILE, position, "mask_path", f"{mask_path}: {result.reason}")
    elif image_shape is not None and result.shape != image_shape:
        ledger.add(LOCALIZATIONS_FILE, position, "mask_path",
                   f"mask is {result.width}x{result.height} (WxH) but its image is {image_shape[1]}x{image_shape[0]}")
    elif (why := _mask_reason(result)) is not None:
        ledger.add(LOCALIZATIONS_FILE, position, "mask_path", f"{mask_path}: {why}")
    return True


def _check_box(
    ledger: _Ledger, position: int, mask_path: str, texts: list[str], image_shape: tuple[int, int] | None,
) -> list[float] | None:
    """The row's box (x, y, w, h) when it gives a valid one, else None; a row with neither a
    mask nor a box, an incomplete box, a value that is not a number, a non-positive size or a
    box outside its image is a problem."""
    filled = [c for c, t in zip(BOX_COLUMNS, texts) if t]
    if not filled:
        if not mask_path:
            ledger.add(LOCALIZATIONS_FILE, position, "mask_path",
                       "neither mask_path nor the four box columns x, y, w, h are given")
        return None
    if len(filled) < len(BOX_COLUMNS):
        empty = [c for c in BOX_COLUMNS if c not in filled]
        ledger.add(LOCALIZATIONS_FILE, position, ",".join(empty),
                   f"incomplete box: {', '.join(empty)} empty while {', '.join(filled)} given")
        return None
    values = [_parse_float(t) for t in texts]
    bad = [(c, t) for c, t, v in zip(BOX_COLUMNS, texts, values) if v is None]
    for column, text in bad:
        ledger.add(LOCALIZATIONS_FILE, position, column, f"box value {text!r} is not a finite number")
    if bad:
        return None
    x, y, w, h = values
    if w <= 0 or h <= 0:
        ledger.add(LOCALIZATIONS_FILE, position, "w,h", f"box has non-positive size w={w:g}, h={h:g}")
        return None
    if image_shape is not None:
        height, width = image_shape
        if x < 0 or y < 0 or x + w > width or y + h > height:
            ledger.add(LOCALIZATIONS_FILE, position, "x,y,w,h",
                       f"box x={x:g}, y={y:g}, w={w:g}, h={h:g} lies outside the image ({width}x{height}, WxH)")
            return None
    return values


def _check_images_left(
    ledger: _Ledger, manifest_rows: int, keep_image: list[bool], dropped_views: Counter, skipped_ids: dict[str, str],
) -> None:
    """A dataset with no problem and no image left is a problem: every later pipeline would
    fail on an empty table, so say why here instead."""
    if ledger.problems or any(keep_image):
        return
    why = "manifest.csv has no data rows" if manifest_rows == 0 else (
        f"no image is left after dropping {sum(dropped_views.values())} non-frontal views "
        f"and skipping {len(skipped_ids)} unreadable images"
    )
    ledger.add(MANIFEST_FILE, None, "image_id", why)


def _image_manifest_table(
    manifest: pd.DataFrame, keep_image: list[bool], ids: list[str], absolute: list[str], patients: list[str],
    views: list[str], shape_by_id: dict[str, tuple[int, int]], labels: dict[str, list[float]],
) -> tuple[pd.DataFrame, list[str]]:
    """`image_manifest`: the kept rows with absolute paths, patient ids (an image without one
    is its own patient), sizes and float labels, then the extra columns as strings; and the
    names of those extra columns."""
    rows = np.flatnonzero(keep_image)
    reports = manifest["report"].astype(str).tolist() if "report" in manifest.columns else [""] * len(manifest)
    table = pd.DataFrame({
        "image_id": pd.Series([ids[i] for i in rows], dtype=str),
        "image_path": pd.Series([absolute[i] for i in rows], dtype=str),
        "patient_id": pd.Series([patients[i] or ids[i] for i in rows], dtype=str),
        "report": pd.Series([reports[i] for i in rows], dtype=str),
        "view": pd.Series([views[i] for i in rows], dtype=str),
        "height": pd.Series([shape_by_id[ids[i]][0] for i in rows], dtype="int64"),
        "width": pd.Series([shape_by_id[ids[i]][1] for i in rows], dtype="int64"),
    })
    for name, values in labels.items():
        table[name] = pd.Series([values[i] for i in rows], dtype="float64")
    extra_columns = [c for c in manifest.columns if c not in MANIFEST_CORE_COLUMNS and c not in labels]
    for column in extra_columns:
        table[column] = pd.Series(manifest[column].iloc[rows].to_numpy(), dtype=str)
    return table, extra_columns


def _localization_table(
    localizations: pd.DataFrame, loc_keep: list[bool], loc_ids: list[str], findings: list[str],
    absolute_masks: list[str], boxes: dict[str, list[float]],
) -> pd.DataFrame:
    """`image_localizations`: the kept rows with absolute mask paths and float boxes, then
    side and zone, then any other column, as strings."""
    rows = np.flatnonzero(loc_keep) if len(localizations) else np.array([], dtype=int)
    table = pd.DataFrame({
        "image_id": pd.Series([loc_ids[i] for i in rows], dtype=str),
        "finding": pd.Series([findings[i] for i in rows], dtype=str),
        "mask_path": pd.Series([absolute_masks[i] for i in rows], dtype=str),
        **{c: pd.Series([boxes[c][i] for i in rows], dtype="float64") for c in BOX_COLUMNS},
    })
    for column in LOCALIZATION_EXTRA_COLUMNS:
        values = _strings(localizations, column)
        table[column] = pd.Series([values[i] for i in rows], dtype=str)
    for column in [c for c in localizations.columns if c not in LOCALIZATION_COLUMNS + LOCALIZATION_EXTRA_COLUMNS]:
        table[column] = pd.Series(localizations[column].iloc[rows].to_numpy(), dtype=str)
    return table


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
    decoded: list[DecodedFile | ImageDecodeError | None] | None = None,
    blank_lines: dict[str, int] | None = None,
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
    decoding = _decoding_summary([d.info for d in decoded or [] if isinstance(d, DecodedFile)])
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
            "rescaled_16bit_png": decoding["rescaled_16bit_png"],
            "exif_rotated": decoding["exif_rotated"],
        },
        "decoding": decoding,
        # blank lines are skipped (row numbers still count them)
        "csv": {file: {"blank_lines": int(n)} for file, n in (blank_lines or {}).items()},
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


def _decoding_summary(infos: list[ImageInfo | None]) -> dict[str, Any]:
    """How the validated images were decoded, one count per image row.

    `rescaled_16bit_png`: 16-bit PNGs divided by 2**bits - 1 for bits < 16 (from sBIT or the
    max-value rule, `data/images.py`) instead of 65535; `bit_depth`: images per format,
    stored bits, significant bits and where that number came from.
    """
    known = [info for info in infos if info is not None]
    depth = Counter((i.format, i.stored_bits, i.significant_bits, i.bit_depth_source) for i in known)
    orientations = Counter(i.exif_orientation for i in known if i.exif_orientation not in (None, 1))
    syntaxes = Counter(i.transfer_syntax for i in known if i.format == "dicom")
    return {
        "images_with_info": len(known),
        "rescaled_16bit_png": sum(1 for i in known if i.format == "png" and i.stored_bits == 16
                                  and i.significant_bits < 16),
        "exif_rotated": int(sum(orientations.values())),
        "bit_depth": [
            {"format": fmt, "stored_bits": int(stored), "significant_bits": int(bits), "source": source,
             "images": int(n)}
            for (fmt, stored, bits, source), n in sorted(depth.items(), key=lambda item: tuple(map(str, item[0])))
        ],
        "exif_orientation": {str(tag): int(n) for tag, n in sorted(orientations.items())},
        "dicom_transfer_syntaxes": [
            {"uid": uid or "(none: implicit, uncompressed)", "name": _uid_name(uid), "images": int(n)}
            for uid, n in sorted(syntaxes.items(), key=lambda item: str(item[0]))
        ],
    }


def _uid_name(uid: str | None) -> str:
    if not uid:
        return "uncompressed (no transfer syntax in the file meta)"
    from pydicom.uid import UID

    return str(UID(uid).name)
