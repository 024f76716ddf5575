"""The report labeller: mentions, negation, uncertainty, locations, No Finding, bad input, rules files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.data.report_labels import (
    DEFAULT_RULES_FILE,
    MAX_REPORT_CHARS,
    MENTION_COLUMNS,
    ReportLabeller,
    ReportRulesError,
    load_label_rules,
    report_sections,
)


@pytest.fixture(scope="module")
def labeller() -> ReportLabeller:
    return ReportLabeller(load_label_rules(DEFAULT_RULES_FILE))


def one(labeller: ReportLabeller, text: str) -> dict[str, float]:
    """The label row of one report, as a dict (NaN kept)."""
    return labeller.label([text]).labels.iloc[0].to_dict()


def same(value: float, expected: float) -> bool:
    return math.isnan(expected) and math.isnan(value) or value == expected


# ------------------------------------------------------------------ mentions in context


@pytest.mark.parametrize(
    ("text", "finding", "expected"),
    [
        ("There is a large right pleural effusion.", "Pleural Effusion", 1.0),
        ("Cardiomegaly.", "Cardiomegaly", 1.0),
        ("Left basilar opacity.", "Lung Opacity", 1.0),
        ("A 1 cm nodule in the right upper lobe.", "Lung Lesion", 1.0),
        ("No pneumothorax.", "Pneumothorax", 0.0),
        ("Negative for pneumonia.", "Pneumonia", 0.0),
        ("Pneumothorax is not seen.", "Pneumothorax", 0.0),
        ("Pleural effusion is absent.", "Pleural Effusion", 0.0),
        ("The previously seen effusion has resolved.", "Pleural Effusion", 0.0),
        ("Possible pneumonia.", "Pneumonia", -1.0),
        ("Cannot exclude effusion.", "Pleural Effusion", -1.0),
        ("A small effusion cannot be excluded.", "Pleural Effusion", -1.0),
        ("This may represent atelectasis.", "Atelectasis", -1.0),
        ("Findings suggestive of edema.", "Edema", -1.0),
        ("Atelectasis versus consolidation.", "Consolidation", -1.0),
        ("No change in the effusion.", "Pleural Effusion", 1.0),  # pseudo-negation
        ("No interval change in the left lower lobe consolidation.", "Consolidation", 1.0),
        ("There is not only an effusion but also a pneumothorax.", "Pleural Effusion", 1.0),
        ("There are no focal opacities to suggest pneumonia.", "Pneumonia", 0.0),  # negated beats uncertain
        ("Heart size is normal.", "Cardiomegaly", math.nan),
        ("Consolidation in the left lower lobe has cleared.", "Consolidation", 0.0),
        ("Interval removal of the right PICC line.", "Support Devices", 0.0),
        ("Left midlung opacity, not visualized on prior.", "Lung Opacity", 1.0),  # pseudo: "not ... on prior"
        ("Kerley B-lines.", "Support Devices", math.nan),  # the longer other_abnormal phrase wins over "lines"
        ("Small pericardial effusion.", "Pleural Effusion", math.nan),
    ],
)
def test_mention_status(labeller: ReportLabeller, text: str, finding: str, expected: float) -> None:
    assert same(one(labeller, text)[finding], expected), (text, finding)


def test_negation_ends_at_a_sentence_boundary(labeller: ReportLabeller) -> None:
    row = one(labeller, "No effusion. Pneumothorax.")
    assert row["Pleural Effusion"] == 0.0 and row["Pneumothorax"] == 1.0


def test_negation_ends_at_a_clause_boundary(labeller: ReportLabeller) -> None:
    row = one(labeller, "No effusion, but there is a pneumothorax.")
    assert row["Pleural Effusion"] == 0.0 and row["Pneumothorax"] == 1.0
    row = one(labeller, "No consolidation; however a small effusion is present.")
    assert row["Consolidation"] == 0.0 and row["Pleural Effusion"] == 1.0


def test_a_negated_list(labeller: ReportLabeller) -> None:
    row = one(labeller, "No pneumothorax, effusion or consolidation.")
    assert (row["Pneumothorax"], row["Pleural Effusion"], row["Consolidation"]) == (0.0, 0.0, 0.0)


def test_affirmed_wins_over_negated_and_uncertain(labeller: ReportLabeller) -> None:
    row = one(labeller, "No effusion on the left. Small right effusion. Possible pneumonia. No pneumonia.")
    assert row["Pleural Effusion"] == 1.0 and row["Pneumonia"] == -1.0


def test_mentions_table(labeller: ReportLabeller) -> None:
    mentions = labeller.label(["Heart size normal.", "No effusion. Left lower lobe pneumonia."]).mentions
    assert list(mentions.columns) == list(MENTION_COLUMNS)
    assert mentions[["report", "finding", "status", "text", "sentence"]].values.tolist() == [
        [1, "Pleural Effusion", "negated", "effusion", 0],
        [1, "Pneumonia", "affirmed", "pneumonia", 1],
    ]
    pneumonia = mentions.iloc[1]
    assert pneumonia["sentence_text"] == "Left lower lobe pneumonia."
    assert (pneumonia["side"], pneumonia["zone"]) == ("left", "lower")
    assert (mentions.iloc[0]["side"], mentions.iloc[0]["zone"]) == ("", "")


@pytest.mark.parametrize(
    ("text", "side", "zone"),
    [
        ("Right upper lobe consolidation.", "right", "upper"),
        ("Bibasilar atelectasis.", "bilateral", "lower"),
        ("Retrocardiac opacity.", "", "heart"),
        ("Left pleural effusion.", "left", ""),
        ("Right apical pneumothorax and left basilar atelectasis.", "right", "upper"),  # the nearest place
    ],
)
def test_locations_from_the_sentence(labeller: ReportLabeller, text: str, side: str, zone: str) -> None:
    first = labeller.label([text]).mentions.iloc[0]
    assert (first["side"], first["zone"]) == (side, zone)


# ------------------------------------------------------------------ No Finding


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No pneumothorax or pleural effusion.", 1.0),  # only ruled-out findings
        ("Normal chest.", 1.0),
        ("No acute cardiopulmonary abnormality.", 1.0),
        ("The lungs are clear.", 1.0),
        ("Pacemaker in place. Lungs are clear.", 1.0),  # devices allow No Finding
        ("Cardiomegaly. No acute cardiopulmonary disease.", math.nan),
        ("Possible pneumonia. Otherwise normal chest.", math.nan),
        ("Calcified granuloma. No pneumothorax.", math.nan),  # an abnormality outside the 14
        ("No granuloma. No pneumothorax.", 1.0),
        ("Heart size is normal.", math.nan),  # nothing said about any finding
    ],
)
def test_no_finding(labeller: ReportLabeller, text: str, expected: float) -> None:
    assert same(one(labeller, text)["No Finding"], expected), text


def test_an_overruled_normal_statement_leaves_no_mention_row(labeller: ReportLabeller) -> None:
    mentions = labeller.label(["Cardiomegaly. No acute cardiopulmonary disease.", "Normal chest."]).mentions
    assert mentions[["report", "finding"]].values.tolist() == [[0, "Cardiomegaly"], [1, "No Finding"]]


def test_devices_with_no_finding(labeller: ReportLabeller) -> None:
    row = one(labeller, "Pacemaker in place. Lungs are clear.")
    assert row["Support Devices"] == 1.0 and row["No Finding"] == 1.0


# ------------------------------------------------------------------ bad input


def test_bad_input_is_counted_never_raised(labeller: ReportLabeller) -> None:
    reports = [
        "",  # empty
        "   \n\t ",  # whitespace
        None,
        float("nan"),
        42,  # not a string
        b"\xff\xfe\xfa",  # bytes that are not UTF-8
        "XXXX XXXX. XXXX-XXXX.",  # only anonymisation tokens
        "... ;; -- 12/3",  # only punctuation and digits
        "肺野に異常なし。胸水なし。",  # another script
        "\ufffd\ufffd\ufffd pneumothorax \ufffd\ufffd\ufffd\ufffd\ufffd",  # decoded from a non-UTF-8 file
        "Sin derrame ni neumotórax.",  # Latin-script, not English: no mention
        "No pneumothorax.",
    ]
    result = labeller.label(reports)
    assert result.labels["report_status"].tolist() == [
        "empty", "empty", "empty", "empty", "not_text", "not_text", "empty", "empty",
        "not_text", "not_text", "no_mention", "labelled",
    ]
    assert result.labels.iloc[:11][list(CHEXPERT_FINDINGS)].isna().all().all()
    assert result.status_counts() == {"labelled": 1, "no_mention": 1, "empty": 6, "not_text": 4}
    assert set(result.mentions["report"]) == {11}


def test_utf8_bytes_are_read(labeller: ReportLabeller) -> None:
    assert one(labeller, b"No pneumothorax.")["Pneumothorax"] == 0.0


def test_a_very_long_report_is_cut(labeller: ReportLabeller) -> None:
    long = "Cardiomegaly. " + "The lungs are well expanded. " * (MAX_REPORT_CHARS // 20) + "Pneumothorax."
    result = labeller.label([long, "No effusion."])
    assert result.n_truncated == 1
    assert result.labels.loc[0, "Cardiomegaly"] == 1.0 and result.labels.loc[1, "Pleural Effusion"] == 0.0
    assert math.isnan(result.labels.loc[0, "Pneumothorax"])  # beyond the cap: not read
    assert result.labels["report_status"].tolist() == ["labelled", "labelled"]


def test_output_shape(labeller: ReportLabeller) -> None:
    result = labeller.label(["No effusion.", "", "Cardiomegaly."])
    labels = result.labels
    assert list(labels.columns) == [*CHEXPERT_FINDINGS, "report_status"]
    assert isinstance(labels.index, pd.RangeIndex) and len(labels) == 3
    assert all(labels[f].dtype == np.float64 for f in CHEXPERT_FINDINGS)
    empty = labeller.label([""])
    assert len(empty.mentions) == 0 and list(empty.mentions.columns) == list(MENTION_COLUMNS)
    assert len(labeller.label([]).labels) == 0


def test_deterministic(labeller: ReportLabeller) -> None:
    reports = ["No effusion. Possible pneumonia.", "Left lower lobe atelectasis.", "", "Normal chest."] * 20
    first = labeller.label(reports, batch_size=256)
    again = labeller.label(reports, batch_size=3)
    pd.testing.assert_frame_equal(first.labels, again.labels)
    pd.testing.assert_frame_equal(first.mentions, again.mentions)
    other = ReportLabeller(load_label_rules(DEFAULT_RULES_FILE)).label(reports)
    pd.testing.assert_frame_equal(first.labels, other.labels)


# ------------------------------------------------------------------ sections


def test_report_sections() -> None:
    report = "INDICATION: evaluate for pneumonia.\nFINDINGS: No effusion.\n\nIMPRESSION: Normal chest"
    assert report_sections(report) == "No effusion. Normal chest."
    assert report_sections("No effusion\n\nPneumothorax") == "No effusion. Pneumothorax."
    assert report_sections("Findings: clear lungs") == "clear lungs."
    assert report_sections("FINDINGS: No effusion.. Pneumothorax") == "No effusion. Pneumothorax."


def test_indication_is_not_labelled(labeller: ReportLabeller) -> None:
    row = one(labeller, "INDICATION: pneumonia?\nFINDINGS: The lungs are clear. IMPRESSION: No acute disease.")
    assert math.isnan(row["Pneumonia"]) and row["No Finding"] == 1.0


# ------------------------------------------------------------------ rules files


MINIMAL = """\
findings:
  Pneumothorax: [pneumothorax]
negation:
  preceding: ["no", nein]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_rules_cover_every_finding() -> None:
    rules = load_label_rules(DEFAULT_RULES_FILE)
    assert set(rules.findings) == set(CHEXPERT_FINDINGS)
    assert "versus" in rules.uncertainty["preceding"] and "versus" not in rules.negation["preceding"]
    assert rules.locations["left lower lobe"] == {"side": "left", "zone": "lower"}
    assert rules.source == str(DEFAULT_RULES_FILE)


def test_a_users_rules_are_used(tmp_path: Path) -> None:
    rules = load_label_rules(write(tmp_path, MINIMAL))
    assert rules.findings == {"Pneumothorax": ("pneumothorax",)}
    assert rules.negation == {"preceding": ("no", "nein"), "following": (), "pseudo": (), "termination": ()}
    result = ReportLabeller(rules).label(["Nein pneumothorax.", "Pneumothorax. No effusion."])
    assert result.labels["Pneumothorax"].tolist() == [0.0, 1.0]
    assert math.isnan(result.labels.loc[1, "Pleural Effusion"])  # effusion is not in these rules


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL + "  following: [absent\n", r"rules\.yml:6: YAML syntax error: .*flow sequence from line 5"),
        ("findings:\n  Pneumothorax: x: y\n", r"rules\.yml:2: YAML syntax error: mapping values are not allowed here"),
        ("findings:\n  Pneumothorax: [pneumothorax]\n  Pnemonia: [pneumonia]\n", r"rules\.yml:3: unknown finding 'Pnemonia' \(one of the 14 CheXpert names\)"),
        (MINIMAL + "negations:\n  preceding: [x]\n", r"rules\.yml:5: unknown key 'negations'"),
        (MINIMAL + "  before: [x]\n", r"rules\.yml:5: unknown key 'before' in negation"),
        (MINIMAL + "locations:\n  left: {side: west}\n", r"rules\.yml:6: locations\.left\.side must be one of left, right, bilateral"),
        (MINIMAL + "locations:\n  left: {lobe: lower}\n", r"rules\.yml:6: unknown key 'lobe' in locations\.left"),
        ("findings:\n  Pneumothorax: [pneumothorax]\n  Pneumonia:\n    - pneumothorax\n", r"rules\.yml:4: phrase 'pneumothorax' given to both"),
        ("findings:\n  Pneumothorax: pneumothorax\n", r"rules\.yml:2: findings\.Pneumothorax must be a list"),
        ("findings:\n  Pneumothorax: [pneumothorax, '']\n", r"rules\.yml:2: findings\.Pneumothorax: each entry must be a non-empty phrase"),
        ("findings:\n  Pneumothorax: [a]\n  Pneumothorax: [b]\n", r"rules\.yml:3: findings: duplicate key 'Pneumothorax'"),
        ("negation:\n  preceding: [x]\n", r"rules\.yml:1: no `findings` section"),
        ("", r"rules\.yml:1: empty rules file"),
    ],
)
def test_rules_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ReportRulesError, match=message):
        load_label_rules(write(tmp_path, text))


def test_a_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(ReportRulesError, match=r"missing\.yml:1: cannot read the rules file"):
        load_label_rules(tmp_path / "missing.yml")
