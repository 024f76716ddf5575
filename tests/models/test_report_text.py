"""What of a report is embedded, and counting tokens over the limit (models/report_text.py).

The real-report tests read /work/shared/real_reports/iu_xray_reports_dev.csv (400 Open-i
reports with their FINDINGS and IMPRESSION sections in separate columns; see its README)
and skip where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from transformers import BertTokenizerFast

from medclip_residuals.models.medclip_loader import EncoderParams
from medclip_residuals.models.report_text import (
    count_over_limit,
    demo_token_counter,
    impression_section,
    over_limit_summary,
    report_token_counter,
    report_token_limit,
    select_report_text,
    select_report_texts,
    token_lengths,
)
from medclip_residuals.models.tokenizer import build_word_tokenizer

REAL_REPORTS = Path(__file__).resolve().parents[3] / "shared" / "real_reports" / "iu_xray_reports_dev.csv"

MIMIC_STYLE = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // ?pna

 COMPARISON:  ___

 FINDINGS:

 PA and lateral views of the chest. Lungs are clear. No pleural effusion or pneumothorax.

 IMPRESSION:

 1. No acute cardiopulmonary process.
 2. Stable mild cardiomegaly.

 RECOMMENDATION(S):  Follow-up chest radiograph in 6 weeks.
"""


# ---------------------------------------------------------------- the IMPRESSION section


@pytest.mark.parametrize(
    "report, expected",
    [
        (MIMIC_STYLE, "1. No acute cardiopulmonary process. 2. Stable mild cardiomegaly."),
        ("FINDINGS: Heart size normal. IMPRESSION: No acute disease.", "No acute disease."),
        ("Findings: clear lungs.\nImpression: normal chest.", "normal chest."),
        ("Findings: clear lungs. Impression: normal chest.", "normal chest."),
        ("IMPRESSIONS: 1. Effusion. 2. Atelectasis.", "1. Effusion. 2. Atelectasis."),
        ("FINDINGS: x.\nFINAL IMPRESSION: Pneumonia.\nNOTIFICATION: called Dr. ___ at 10:30.", "Pneumonia."),
        ("FINDINGS: x.\nIMPRESSION\nEdema, improved.", "Edema, improved."),
        # an addendum's second impression is kept, after the first
        ("IMPRESSION: Effusion.\nADDENDUM: see below.\nIMPRESSION: Effusion and edema.", "Effusion. Effusion and edema."),
        ("FINDINGS: Lungs clear.", None),  # no heading
        ("IMPRESSION:\n\nRECOMMENDATION(S): CT.", None),  # a heading with nothing under it
        ("The impression: none here, mid-sentence in lower case.", None),
        ("", None),
        (None, None),
    ],
)
def test_impression_section_known_answers(report, expected):
    assert impression_section(report) == expected


def test_select_report_text_modes_and_errors():
    assert select_report_text("  FINDINGS: a. IMPRESSION: b.  ", "whole") == ("FINDINGS: a. IMPRESSION: b.", False)
    assert select_report_text("FINDINGS: a. IMPRESSION: b.", "impression") == ("b.", True)
    assert select_report_text("there is pneumonia", "impression") == ("there is pneumonia", False)
    texts, used = select_report_texts(["IMPRESSION: b.", "no heading", "x. Impression: c"], "impression")
    assert (texts, used) == (["b.", "no heading", "c"], 2)
    assert select_report_texts(["IMPRESSION: b."], "whole") == (["IMPRESSION: b."], 0)
    with pytest.raises(ValueError, match=r"report_text must be one of \['whole', 'impression'\], got 'findings'"):
        select_report_texts(["a"], "findings")


# ---------------------------------------------------------------- counting tokens


def test_token_lengths_count_special_tokens_and_do_not_truncate():
    tokenizer = build_word_tokenizer(["there is pneumonia on the left"], max_length=4)
    lengths = token_lengths(tokenizer, ["there is pneumonia on the left", "", "zebra giraffe", "left, right."])
    np.testing.assert_array_equal(lengths, [8, 2, 4, 6])  # words + [CLS] + [SEP]; unknown words are one [UNK]
    assert count_over_limit(lengths, 4) == 2 and count_over_limit(lengths, 8) == 0
    assert over_limit_summary(lengths, 5) == {"n_texts": 4, "n_over_limit": 2, "max_tokens": 8, "limit": 5}
    assert over_limit_summary([], 5) == {"n_texts": 0, "n_over_limit": 0, "max_tokens": 0, "limit": 5}
    assert token_lengths(tokenizer, []).shape == (0,)


EDGE_TEXTS = [
    "", "   ", "\t\n", "There is NO pneumothorax.", "10:30 a.m., 2.5 cm; (XXXX-XXXX)", "café naïve Ångström",
    "肺炎 pneumonia", "emoji 🙂 here", "ctrl\x00char\x07s", "a \u0301 b", "ﬁbrosis Ⅻ", "x" * 150,
    "well-defined 1.2x3.4cm nodule/mass @ RLL #3", "“quoted” — dash – en…",
]


@pytest.mark.parametrize("lowercase", [True, False])
def test_demo_counter_equals_the_demo_tokenizer(lowercase):
    corpus = ["There is pneumonia near the heart.", "No pleural effusion; mild edema."]  # most words unknown
    tokenizer = build_word_tokenizer(corpus, lowercase=lowercase, max_length=32)
    count = demo_token_counter(lowercase)
    texts = EDGE_TEXTS + corpus
    if REAL_REPORTS.is_file():
        frame = pd.read_csv(REAL_REPORTS, dtype=str, keep_default_na=False)
        texts += [" ".join(row) for row in frame[["indication", "findings", "impression"]].itertuples(index=False)]
    expected = token_lengths(tokenizer, texts)
    counted = np.array([count(text) for text in texts])
    mismatched = [(t[:40], c, e) for t, c, e in zip(texts, counted, expected) if c != e]
    assert not mismatched


def test_report_token_counter_demo_profile(base_params):
    count, description = report_token_counter(
        base_params("encoder", profile="demo", demo={"text_max_length": 32, "lowercase": True})
    )
    assert count("FINDINGS: Lungs clear. IMPRESSION: No acute disease.") == 13  # 11 words and marks + 2
    assert "word-level" in description and "limit 32 tokens" in description
    assert report_token_limit(base_params("encoder", profile="demo")) == 32
    assert report_token_limit(base_params("encoder", profile="demo", demo={"text_max_length": 20})) == 20
    assert report_token_limit(base_params("encoder", profile="medclip_vit")) == 77
    assert report_token_limit(base_params("encoder", profile="medclip_resnet", text_max_length=60)) == 60
    typed = EncoderParams.parse(base_params("encoder", profile="demo", demo={"text_max_length": 20}), "encoder")
    assert report_token_limit(typed) == 20


def _fake_clinical_bert(folder: Path) -> Path:
    """config.json and a WordPiece vocab.txt, as in Bio_ClinicalBERT's repository."""
    folder.mkdir(parents=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "there", "is", "pneu", "##monia", "no", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "config.json").write_text(f'{{"model_type": "bert", "vocab_size": {len(vocab)}}}')
    return folder


def test_report_token_counter_published_profile_reads_the_local_tokenizer(tmp_path, base_params):
    folder = _fake_clinical_bert(tmp_path / "bert")
    count, description = report_token_counter(base_params("encoder", profile="medclip_vit", text_backbone_dir=str(folder)))
    assert count("there is pneumonia.") == 7  # [CLS] there is pneu ##monia . [SEP]
    assert count("there is " * 60) == 122  # not truncated at 77
    assert str(folder) in description and "limit 77 tokens" in description
    reference = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    assert count("no pneumonia") == len(reference("no pneumonia")["input_ids"])


def test_report_token_counter_without_the_tokenizer_says_why(tmp_path, monkeypatch, base_params):
    from huggingface_hub import constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    count, description = report_token_counter(base_params("encoder", profile="medclip_resnet", text_max_length=77))
    assert count is None
    assert description.startswith("report tokens not counted against the 77-token limit")
    assert "emilyalsentzer/Bio_ClinicalBERT" in description and str(tmp_path / "empty_cache") in description
    count, description = report_token_counter(
        base_params("encoder", profile="medclip_vit", text_backbone_dir=str(tmp_path / "none"))
    )
    assert count is None and str(tmp_path / "none" / "vocab.txt") in description


def test_report_token_counter_of_a_saved_encoder(tmp_path, tiny_demo_encoder, base_params):
    from medclip_residuals.models.medclip_loader import save_encoder_folder

    encoder = tiny_demo_encoder(["there is pneumonia"], seed=0)
    folder = save_encoder_folder(encoder, tmp_path / "encoder")
    count, description = report_token_counter(base_params("encoder", profile="demo", encoder_dir=str(folder)))
    assert count("there is pneumonia, zebra") == 7 and "limit 16 tokens" in description


# ---------------------------------------------------------------- real reports


@pytest.fixture(scope="module")
def real_reports() -> pd.DataFrame:
    if not REAL_REPORTS.is_file():
        pytest.skip(f"{REAL_REPORTS} is not on this machine")
    return pd.read_csv(REAL_REPORTS, dtype=str, keep_default_na=False)


def _as_written(row: pd.Series, separator: str) -> str:
    """The report as Open-i's XML lays it out: headed sections, IMPRESSION last."""
    parts = [f"{name}: {row[column].strip()}" for name, column in
             (("INDICATION", "indication"), ("FINDINGS", "findings"), ("IMPRESSION", "impression")) if row[column].strip()]
    return separator.join(parts)


@pytest.mark.parametrize("separator", [" ", "\n\n"])
def test_real_reports_impression_is_recovered_exactly(real_reports, separator):
    reports = [_as_written(row, separator) for _, row in real_reports.iterrows()]
    found = [impression_section(report) for report in reports]
    expected = [" ".join(text.split()) or None for text in real_reports["impression"]]
    assert found == expected
    assert sum(text is not None for text in found) == 399  # one of the 400 has no IMPRESSION
    texts, used = select_report_texts(reports, "impression")
    assert used == 399


def test_real_reports_over_the_limits(real_reports, base_params):
    """Tokens of the Open-i reports under the demo tokenizer rule (words + 2): whole vs impression."""
    reports = [_as_written(row, " ") for _, row in real_reports.iterrows()]
    count, _ = report_token_counter(base_params("encoder", profile="demo"))
    whole = np.array([count(report) for report in reports])
    impression = np.array([count(text) for text in select_report_texts(reports, "impression")[0]])
    assert (count_over_limit(whole, 32), count_over_limit(whole, 77), int(whole.max())) == (375, 76, 205)
    assert (count_over_limit(impression, 32), count_over_limit(impression, 77), int(impression.max())) == (37, 1, 96)
