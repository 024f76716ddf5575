"""What of a report is embedded, and how many reports exceed the tokenizer's limit.

MedCLIP's text model reads at most `text_max_length` tokens (77 for the published weights,
the demo's `encoder.demo.text_max_length`); longer texts are cut at the end. Radiology reports
put the IMPRESSION last (MIMIC-CXR, Open-i), so a silent cut drops exactly the conclusion.

- `impression_section(report)`: the IMPRESSION section's text, or None where there is none.
- `select_report_text(report, mode)` / `select_report_texts(reports, mode)`: the text to
  embed under `report_text: whole | impression` (impression where one exists, else whole).
- `token_lengths(tokenizer, texts)`: tokens per text, special tokens included, uncut.
- `count_over_limit(lengths, max_length)` and `over_limit_summary(...)`: how many are cut.
- `report_token_counter(encoder_params)`: a token counter for the configured encoder profile
  that needs no encoder (for data validation, which runs before any model exists).
- `caption_texts(image_manifest, mode)` and `log_over_limit(encoder, texts, what)`: the
  embedding pipeline's captions, and the log line that says how many of them are cut.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from medclip_residuals.models.medclip_loader import EncoderParams

logger = logging.getLogger(__name__)

REPORT_TEXT_MODES = ("whole", "impression")
_SPECIAL_TOKENS_ADDED = 2  # [CLS] and [SEP]
_TOKENIZE_CHUNK = 1024  # texts per tokenizer call: bounds the memory of the id lists

# An IMPRESSION heading: "IMPRESSION:", "IMPRESSIONS:", "FINAL IMPRESSION:" in capitals
# anywhere (Open-i's sections run on in one line), or "Impression:" in any case at the start
# of a line or right after a sentence ends. A capitals heading alone on its line needs no colon.
_IMPRESSION_HEADING = re.compile(
    r"(?:\b(?:FINAL[ \t]+)?IMPRESSIONS?[ \t]*:"
    r"|(?:^|(?<=[.;!?]))[ \t]*(?i:(?:final[ \t]+)?impressions?)[ \t]*:"
    r"|^[ \t]*(?:FINAL[ \t]+)?IMPRESSIONS?[ \t]*$)",
    re.MULTILINE,
)
# The heading that ends a section: words in capitals (at least 4 characters in all) and a
# colon, e.g. "RECOMMENDATION(S):", "NOTIFICATION:", "FINDINGS:".
_CAPS_HEADING = re.compile(r"(?<![A-Za-z0-9])(?=[A-Z()/&\- \t]{4,}:)[A-Z][A-Z()]*(?:[ \t/&\-]+[A-Z()]+)*[ \t]*:")


def check_report_text_mode(mode: object, parameter: str = "report_text") -> str:
    """`mode` if it is one of REPORT_TEXT_MODES; else a ValueError naming `parameter`."""
    if mode not in REPORT_TEXT_MODES:
        raise ValueError(f"{parameter} must be one of {list(REPORT_TEXT_MODES)}, got {mode!r}")
    return str(mode)


def impression_section(report: str | None) -> str | None:
    """The text of the report's IMPRESSION section(s), whitespace collapsed; None if none.

    A section runs from its heading to the next capitals heading (or the next IMPRESSION
    heading) or the end. Several IMPRESSION sections (an addendum's) are joined in order;
    a heading with nothing after it counts as no impression.
    """
    if report is None or not isinstance(report, str) or not report.strip():
        return None
    headings = list(_IMPRESSION_HEADING.finditer(report))
    sections = []
    for k, heading in enumerate(headings):
        start = heading.end()
        stop = headings[k + 1].start() if k + 1 < len(headings) else len(report)
        following = _CAPS_HEADING.search(report, start, stop)
        body = " ".join(report[start : following.start() if following else stop].split())
        if body:
            sections.append(body)
    return " ".join(sections) or None


def select_report_text(report: str, mode: str) -> tuple[str, bool]:
    """(the text to embed, whether it is the IMPRESSION section) under `mode`.

    `whole`: the report as written (stripped). `impression`: its IMPRESSION section where one
    exists, else the whole report.
    """
    check_report_text_mode(mode)
    whole = str(report).strip()
    if mode == "impression":
        impression = impression_section(whole)
        if impression is not None:
            return impression, True
    return whole, False


def select_report_texts(reports: Iterable[str], mode: str) -> tuple[list[str], int]:
    """The texts to embed for many reports, and how many of them are the IMPRESSION section."""
    check_report_text_mode(mode)
    chosen = [select_report_text(report, mode) for report in reports]
    return [text for text, _ in chosen], sum(used for _, used in chosen)


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Tokens of each text as `tokenizer` makes them, special tokens included, not truncated."""
    lengths = []
    for start in range(0, len(texts), _TOKENIZE_CHUNK):
        chunk = [str(text) for text in texts[start : start + _TOKENIZE_CHUNK]]
        # verbose=False: the "longer than the maximum" warning is what this function counts
        encoded = tokenizer(chunk, add_special_tokens=True, truncation=False, padding=False, verbose=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return np.asarray(lengths, dtype=np.int64)


def count_over_limit(lengths: Sequence[int] | np.ndarray, max_length: int) -> int:
    """How many token counts exceed `max_length` (those texts are truncated when embedded)."""
    return int((np.asarray(lengths, dtype=np.int64) > int(max_length)).sum())


def over_limit_summary(lengths: Sequence[int] | np.ndarray, max_length: int) -> dict[str, int]:
    """Texts, how many exceed `max_length`, the longest and the limit (JSON-ready)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return {
        "n_texts": int(lengths.size),
        "n_over_limit": count_over_limit(lengths, max_length),
        "max_tokens": int(lengths.max()) if lengths.size else 0,
        "limit": int(max_length),
    }


# ------------------------------------------------------------------ counting without an encoder


def demo_token_counter(lowercase: bool = True) -> Callable[[str], int]:
    """Tokens of a text under the demo's word-level tokenizer, without its vocabulary.

    The demo vocabulary (models/tokenizer.py) holds whole words and no "##" pieces, so every
    word of BERT's basic split is one token (a known word, or [UNK]); plus [CLS] and [SEP].
    """
    from transformers.models.bert.tokenization_bert import BasicTokenizer

    # as BertTokenizerFast is built there: tokenize_chinese_chars=False, accents follow lowercase
    splitter = BasicTokenizer(do_lower_case=lowercase, tokenize_chinese_chars=False)
    return lambda text: len(splitter.tokenize(str(text))) + _SPECIAL_TOKENS_ADDED


def _tokenizer_counter(tokenizer: Any) -> Callable[[str], int]:
    return lambda text: int(token_lengths(tokenizer, [text])[0])


def _saved_encoder_counter(folder: Path) -> tuple[Callable[[str], int] | None, str]:
    """The tokenizer and limit of an encoder folder written by save_encoder_folder."""
    import transformers

    config_file, tokenizer_dir = folder / "config.json", folder / "tokenizer"
    if not (config_file.is_file() and tokenizer_dir.is_dir()):
        return None, (
            f"report tokens not counted: encoder.encoder_dir {folder} has no config.json and tokenizer/ "
            "(an encoder folder written by encoder_training)"
        )
    limit = int(json.loads(config_file.read_text(encoding="utf-8"))["text_max_length"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    return _tokenizer_counter(tokenizer), f"the tokenizer of the encoder in {folder}; limit {limit} tokens"


def _encoder_params(encoder_params: EncoderParams | Mapping[str, Any]) -> EncoderParams:
    # imported here: the model layer loads torch and MedCLIP, which the text functions above
    # (and data/report_labels.py, which imports them) do not need
    from medclip_residuals.models.medclip_loader import EncoderParams

    return EncoderParams.parse(encoder_params, "encoder")


def report_token_limit(encoder_params: EncoderParams | Mapping[str, Any]) -> int:
    """The token limit of the configured encoder profile (texts beyond it are truncated).

    `encoder_params`: the `encoder` parameters, typed or as Kedro passes them.
    """
    params = _encoder_params(encoder_params)
    return params.demo.text_max_length if params.profile == "demo" else params.text_max_length


def report_token_counter(
    encoder_params: EncoderParams | Mapping[str, Any],
) -> tuple[Callable[[str], int] | None, str]:
    """A token counter for the configured encoder profile, and a description of it.

    - `demo`: exact without the trained vocabulary (see `demo_token_counter`).
    - `medclip_vit` / `medclip_resnet`: the Bio_ClinicalBERT tokenizer (as the encoder loads
      it) from `text_backbone_dir` or the local Hugging Face cache; nothing is downloaded.
      Where it is not on this machine: (None, why the reports are not counted).
    - `encoder_dir` set: the saved encoder's own tokenizer and limit.
    """
    params = _encoder_params(encoder_params)
    if params.encoder_dir:
        return _saved_encoder_counter(Path(params.encoder_dir).expanduser())
    limit = report_token_limit(params)
    if params.profile == "demo":
        return demo_token_counter(params.demo.lowercase), (
            "demo word-level tokenizer: BERT basic-tokenizer words + [CLS] and [SEP] (exact without "
            f"the trained vocabulary); limit {limit} tokens (encoder.demo.text_max_length)"
        )
    import transformers

    from medclip_residuals.models.medclip_loader import TEXT_HUB_ID, _backbone_folder

    folder, problems = _backbone_folder(
        params.text_backbone_dir, TEXT_HUB_ID, ("config.json", "vocab.txt"), False, "text_backbone_dir"
    )
    if folder is None:
        return None, (
            f"report tokens not counted against the {limit}-token limit: the {TEXT_HUB_ID} tokenizer of the "
            f"{params.profile} profile is not on this machine ({'; '.join(problems)})"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return _tokenizer_counter(tokenizer), (
        f"{TEXT_HUB_ID} tokenizer from {folder}; limit {limit} tokens (encoder.text_max_length)"
    )


def report_length_summary(
    reports: Iterable[str], encoder_params: EncoderParams | Mapping[str, Any]
) -> dict[str, Any]:
    """For the validation report: how many reports exceed the configured encoder's token limit,
    as whole reports and as their IMPRESSION sections (`embedding.report_text: impression`).

    Empty reports are not counted. When the tokenizer cannot be found offline, the counts are
    None and `tokenizer` says why.
    """
    params = _encoder_params(encoder_params)
    texts = [str(text) for text in reports if str(text).strip()]
    counter, description = report_token_counter(params)
    limit = report_token_limit(params)
    summary: dict[str, Any] = {"tokenizer": description, "limit": limit, "n_reports": len(texts)}
    if counter is None:
        return {**summary, "whole": None, "impression": None}
    impressions, n_impressions = select_report_texts(texts, "impression")
    summary["whole"] = over_limit_summary([counter(t) for t in texts], limit)
    summary["impression"] = {"n_with_impression": n_impressions, **over_limit_summary([counter(t) for t in impressions], limit)}
    return summary


# ------------------------------------------------------------------ captions of the embedding


def caption_texts(image_manifest: pd.DataFrame, mode: str) -> tuple[list[str], list[str]]:
    """(image ids, texts to embed) for the images whose report is not empty, under `mode`.

    The log says how many images have no report and, in `impression` mode, how many texts
    are the IMPRESSION section.
    """
    reports = image_manifest["report"].fillna("").astype(str).str.strip()
    with_report = image_manifest.loc[reports != ""]
    skipped = len(image_manifest) - len(with_report)
    if skipped:
        logger.info("caption_embeddings: %d images have an empty report and get no caption embedding", skipped)
    texts, n_impression = select_report_texts(reports.loc[with_report.index].tolist(), mode)
    if mode == "impression":
        logger.info(
            "caption_embeddings: report_text 'impression': %d of %d reports embedded as their IMPRESSION "
            "section, %d (no IMPRESSION section) as the whole report",
            n_impression, len(texts), len(texts) - n_impression,
        )
    return with_report["image_id"].astype(str).tolist(), texts


def log_over_limit(encoder: Any, texts: list[str], what: str, hint: str = "") -> dict[str, int]:
    """Count the texts longer than `encoder`'s token limit and log it (a warning if any).

    `encoder`: a MedCLIPEncoder (its tokenizer and text_max_length are read).
    """
    summary = over_limit_summary(token_lengths(encoder.tokenizer, texts), encoder.text_max_length)
    level = logging.WARNING if summary["n_over_limit"] else logging.INFO
    logger.log(
        level,
        "%s: %d of %d texts exceed the tokenizer limit of %d tokens (text_max_length) and are truncated "
        "to it (longest %d tokens)%s",
        what, summary["n_over_limit"], summary["n_texts"], summary["limit"], summary["max_tokens"],
        hint if summary["n_over_limit"] else "",
    )
    return summary
