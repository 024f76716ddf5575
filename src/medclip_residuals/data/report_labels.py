"""CheXpert labels from report text: mentions, then negation and uncertainty in context.

The CheXpert labeller's scheme (Irvin et al. 2019; NegBio), built on spaCy 3.8 and negspacy
(NegEx) over a blank English pipeline, so nothing is downloaded:

1. `report_sections`: the FINDINGS and IMPRESSION text where the report has those headings
   (the INDICATION's "evaluate for pneumonia" is no finding), else the whole report.
2. Sentences (spaCy's `sentencizer`), then mentions: the rules file's phrases per finding,
   matched case-blind as whole tokens by an `entity_ruler` (the longest phrase wins where two
   overlap: "pleural effusion" over "effusion").
3. Each mention is `negated` or `uncertain` by two NegEx passes whose cues come from the
   rules file (`negation`, `uncertainty`): a preceding cue anywhere before the mention in its
   sentence, a following cue anywhere after it, up to a termination phrase ("but",
   "however") or the sentence's end; a pseudo cue ("no change in") cancels the cue it holds.
   Negated wins over uncertain (no opacity "to suggest pneumonia" is a negated pneumonia);
   "cannot exclude" and its kin are pseudo-negations, so they count as uncertain only.
4. Per report and finding, as the CheXpert labeller aggregates: any affirmed mention -> 1,
   else any uncertain -> -1, else any negated -> 0, else NaN (not mentioned).
5. "No Finding": 1 when no finding other than Support Devices is 1 or -1, no `other_abnormal`
   phrase (granuloma, scoliosis, ...: abnormalities outside the 14) is affirmed or
   uncertain, and the report either states normality (the `No Finding` phrases: "normal
   chest", "no acute cardiopulmonary disease") or rules out at least one finding; else NaN
   (not 0: as the CheXpert labeller leaves it blank when something is positive). The
   `No Finding` phrases carry their own negation words, so NegEx's verdict on them is not used;
   their mention rows are kept only where the report's No Finding is 1.

Mention rows give the report's position in the input, the finding, the status, the words
matched, and the sentence (its index and text) within the text read (`report_sections`).
Locations: a mention takes the side and the zone of the nearest location phrase of its
sentence that gives one (`locations` in the rules file; "left lower lobe" gives both).

Bad input never raises; it is counted in `report_status`:
- `empty`: NaN/None, an empty or whitespace-only text, or one of only `XXXX` anonymisation
  tokens, digits and punctuation;
- `not_text`: not a string (bytes that are valid UTF-8 are decoded and labelled), a text
  whose letters are mostly not Latin (another script), or one with more than 5% U+FFFD
  replacement characters (a file that was not UTF-8);
- `no_mention`: readable text that names none of the findings (non-English Latin-script
  text usually lands here);
- `labelled`: at least one finding labelled.
At most MAX_REPORT_CHARS characters of a report's sections are read (real reports are a few
thousand at most); `ReportLabels.n_truncated` counts the reports cut there.

The rules file (conf/base/report_label_rules.yml) holds the WHOLE cue sets (starting from
negspacy's `en_clinical` termset, less its cues that misfire in radiology, e.g. "versus",
which is an uncertainty cue here), so what is matched is what the file says.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.models.report_text import _CAPS_HEADING, impression_section

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[3] / "conf" / "base" / "report_label_rules.yml"
MAX_REPORT_CHARS = 20_000
REPORT_STATUSES: tuple[str, ...] = ("labelled", "no_mention", "empty", "not_text")
MENTION_STATUSES: tuple[str, ...] = ("affirmed", "negated", "uncertain")
MENTION_COLUMNS: tuple[str, ...] = (
    "report", "finding", "status", "text", "sentence", "sentence_text", "side", "zone",
)
CUE_KEYS: tuple[str, ...] = ("preceding", "following", "pseudo", "termination")
SIDES: tuple[str, ...] = ("left", "right", "bilateral")
ZONES: tuple[str, ...] = ("upper", "middle", "lower", "heart")
RULES_KEYS: tuple[str, ...] = ("findings", "other_abnormal", "negation", "uncertainty", "locations")

_NEGEX_KEYS = {  # our key -> negspacy's termset key
    "preceding": "preceding_negations",
    "following": "following_negations",
    "pseudo": "pseudo_negations",
    "termination": "termination",
}
_NO_FINDING = "No Finding"
_NOT_FOR_NO_FINDING = {_NO_FINDING, "Support Devices"}  # positives that leave No Finding possible
_OTHER_LABEL = "_other_abnormal"  # entity label of the other_abnormal phrases (not in the tables)
_NEGATED_EXT = "report_negated"
_UNCERTAIN_EXT = "report_uncertain"
_FINDINGS_HEADING = re.compile(
    r"(?:\bFINDINGS?[ \t]*:|(?:^|(?<=[.;!?]))[ \t]*(?i:findings?)[ \t]*:)", re.MULTILINE
)
_WORD = re.compile(r"[^\W\d_]+")
_ANONYMISED = re.compile(r"^X{2,}$", re.IGNORECASE)  # Open-i's XXXX (any length)
_REPLACEMENT_LIMIT = 0.05


class ReportRulesError(ValueError):
    """A rules file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class LabelRules:
    """Phrase rules of the report labeller (see conf/base/report_label_rules.yml)."""

    findings: Mapping[str, tuple[str, ...]]
    negation: Mapping[str, tuple[str, ...]]
    uncertainty: Mapping[str, tuple[str, ...]]
    locations: Mapping[str, Mapping[str, str]]
    source: str
    other_abnormal: tuple[str, ...] = ()


@dataclass
class ReportLabels:
    """The labeller's output: one label row per report, one row per mention."""

    labels: pd.DataFrame
    mentions: pd.DataFrame
    n_truncated: int = 0

    def status_counts(self) -> dict[str, int]:
        """Reports per report_status (every status, zero included)."""
        counts = self.labels["report_status"].value_counts()
        return {status: int(counts.get(status, 0)) for status in REPORT_STATUSES}


# ------------------------------------------------------------------ the rules file


def _fail(path: str, node: Any, reason: str) -> ReportRulesError:
    line = node.start_mark.line + 1 if node is not None and getattr(node, "start_mark", None) else 1
    return ReportRulesError(f"{path}:{line}: {reason}")


def _mapping_items(path: str, node: Any, what: str) -> list[tuple[Any, Any]]:
    """(key node, value node) pairs of a mapping node; duplicate or non-text keys fail."""
    if not isinstance(node, yaml.MappingNode):
        raise _fail(path, node, f"{what} must be a mapping")
    seen: set[str] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or not str(key.value).strip():
            raise _fail(path, key, f"{what}: keys must be non-empty text")
        if key.value in seen:
            raise _fail(path, key, f"{what}: duplicate key {key.value!r}")
        seen.add(key.value)
    return list(node.value)


def _phrases(path: str, node: Any, what: str) -> tuple[str, ...]:
    """A list of non-empty phrases, whitespace collapsed and lowercased (matching is case-blind)."""
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise _fail(path, node, f"{what} must be a list of phrases")
    phrases = []
    for item in node.value:
        text = " ".join(str(item.value).split()).lower() if isinstance(item, yaml.ScalarNode) else ""
        if not text or item.tag.endswith(":null"):
            raise _fail(path, item, f"{what}: each entry must be a non-empty phrase")
        phrases.append(text)
    return tuple(dict.fromkeys(phrases))


def _cues(path: str, node: Any, what: str) -> dict[str, tuple[str, ...]]:
    cues = {key: () for key in CUE_KEYS}
    for key, value in _mapping_items(path, node, what):
        if key.value not in CUE_KEYS:
            raise _fail(path, key, f"unknown key {key.value!r} in {what} (one of {', '.join(CUE_KEYS)})")
        cues[key.value] = _phrases(path, value, f"{what}.{key.value}")
    return cues


def _locations(path: str, node: Any) -> dict[str, dict[str, str]]:
    allowed = {"side": SIDES, "zone": ZONES}
    locations: dict[str, dict[str, str]] = {}
    for key, value in _mapping_items(path, node, "locations"):
        phrase = " ".join(str(key.value).split()).lower()
        where: dict[str, str] = {}
        for part, part_value in _mapping_items(path, value, f"locations.{phrase}"):
            if part.value not in allowed:
                raise _fail(path, part, f"unknown key {part.value!r} in locations.{phrase} (side or zone)")
            if not isinstance(part_value, yaml.ScalarNode) or part_value.value not in allowed[part.value]:
                raise _fail(path, part_value, f"locations.{phrase}.{part.value} must be one of {', '.join(allowed[part.value])}")
            where[part.value] = part_value.value
        if not where:
            raise _fail(path, value, f"locations.{phrase} gives neither side nor zone")
        locations[phrase] = where
    return locations


def load_label_rules(path: str | os.PathLike) -> LabelRules:
    """The rules of a YAML rules file; ReportRulesError naming `file:line` where it is wrong.

    Top-level keys: `findings` (CheXpert name -> phrases), `other_abnormal` (phrases),
    `negation` and `uncertainty` (preceding / following / pseudo / termination -> phrases:
    the whole cue sets) and `locations` (phrase -> side and/or zone). A phrase given to two
    findings is an error: its label would depend on the order of the file.
    """
    name = str(path)
    root = _compose_rules(path)
    if root is None:
        raise ReportRulesError(f"{name}:1: empty rules file (needs at least `findings`)")
    sections = {key.value: (key, value) for key, value in _mapping_items(name, root, "the rules file")}
    for key, _ in sections.values():
        if key.value not in RULES_KEYS:
            raise _fail(name, key, f"unknown key {key.value!r} (one of {', '.join(RULES_KEYS)})")
    if "findings" not in sections:
        raise _fail(name, root, "no `findings` section")
    findings, owner = _findings(name, sections["findings"][1])
    other = _phrases(name, sections["other_abnormal"][1], "other_abnormal") if "other_abnormal" in sections else ()
    for phrase in other:
        if phrase in owner:
            raise _fail(name, sections["other_abnormal"][1], f"phrase {phrase!r} is in other_abnormal and in findings.{owner[phrase]}")
    empty_cues = {key: () for key in CUE_KEYS}
    return LabelRules(
        findings=findings,
        negation=_cues(name, sections["negation"][1], "negation") if "negation" in sections else empty_cues,
        uncertainty=_cues(name, sections["uncertainty"][1], "uncertainty") if "uncertainty" in sections else empty_cues,
        locations=_locations(name, sections["locations"][1]) if "locations" in sections else {},
        source=name,
        other_abnormal=other,
    )


def _compose_rules(path: str | os.PathLike) -> yaml.Node | None:
    """The rules file's YAML node tree (None when it is empty); ReportRulesError naming
    `file:line` when it cannot be read or is not YAML."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ReportRulesError(f"{name}:1: cannot read the rules file ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise ReportRulesError(f"{name}:1: not UTF-8 text ({error.reason})") from error
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        reason = error.problem or error.context
        if error.context and error.context_mark is not None and error.problem:  # e.g. where an unclosed [ opened
            reason += f" ({error.context} from line {error.context_mark.line + 1})"
        raise ReportRulesError(f"{name}:{line}: YAML syntax error: {reason}") from error
    except yaml.YAMLError as error:
        raise ReportRulesError(f"{name}:1: YAML syntax error: {error}") from error


def _findings(name: str, node: Any) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """The `findings` section: CheXpert name -> phrases, and phrase -> its finding (a phrase
    given to two findings is an error)."""
    findings: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for key, value in _mapping_items(name, node, "findings"):
        if key.value not in CHEXPERT_FINDINGS:
            raise _fail(name, key, f"unknown finding {key.value!r} (one of the {len(CHEXPERT_FINDINGS)} CheXpert names)")
        phrases = _phrases(name, value, f"findings.{key.value}")
        for phrase in phrases:
            if phrase in owner:
                raise _fail(name, value, f"phrase {phrase!r} given to both {owner[phrase]!r} and {key.value!r}")
            owner[phrase] = key.value
        findings[key.value] = phrases
    return findings, owner


# ------------------------------------------------------------------ the text read


_STOPS = re.compile(r"\.{2,}")  # "effusion.. Multiple": one token the sentencizer would not split at


def _section(report: str, heading: re.Match[str]) -> str:
    following = _CAPS_HEADING.search(report, heading.end())
    return " ".join(report[heading.end() : following.start() if following else len(report)].split())


def _as_sentence(text: str) -> str:
    """`text` ending in a sentence stop, so that two joined sections do not merge sentences."""
    text = _STOPS.sub(".", text)
    return text if text[-1:] in ".!?;" else text + "."


def report_sections(report: str) -> str:
    """The FINDINGS and IMPRESSION text (in that order) where the report has those headings,
    else the whole report; whitespace collapsed, a blank line counted as a sentence end."""
    if not isinstance(report, str):
        return ""
    parts = [_section(report, heading) for heading in _FINDINGS_HEADING.finditer(report)]
    impression = impression_section(report)
    parts = [part for part in (*parts, impression or "") if part]
    if parts:
        return " ".join(_as_sentence(part) for part in parts)
    paragraphs = [" ".join(block.split()) for block in re.split(r"\n[ \t]*\n", report)]
    return " ".join(_as_sentence(block) for block in paragraphs if block)


def _as_string(value: Any) -> tuple[str | None, str | None]:
    """(the report as a string, or None and the report_status why not): missing values are
    empty, UTF-8 bytes are decoded, anything else is not text."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None, "empty"
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8"), None
        except UnicodeDecodeError:
            return None, "not_text"
    if not isinstance(value, str):
        return None, "not_text"
    return value, None


def _readable(value: Any) -> tuple[str | None, str | None, bool]:
    """(text to label, or None and the report_status why not, whether the text was cut)."""
    string, status = _as_string(value)
    if string is None:
        return None, status, False
    text = report_sections(string)
    if not text.strip():
        return None, "empty", False
    truncated = len(text) > MAX_REPORT_CHARS
    text = text[:MAX_REPORT_CHARS]
    visible = sum(not ch.isspace() for ch in text)
    if text.count("\ufffd") > _REPLACEMENT_LIMIT * visible:
        return None, "not_text", truncated
    words = [word for word in _WORD.findall(text) if not _ANONYMISED.match(word)]
    if not words:
        return None, "empty", truncated
    letters = "".join(words)
    latin = sum(ch.isascii() or unicodedata.name(ch, "").startswith("LATIN") for ch in letters)
    if latin < 0.5 * len(letters):
        return None, "not_text", truncated
    return text, None, truncated


# ------------------------------------------------------------------ the labeller


def _termset(cues: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {_NEGEX_KEYS[key]: list(cues.get(key, ())) for key in CUE_KEYS}


def _nearest(mention: Any, places: list[tuple[int, int, dict[str, str]]], part: str) -> str:
    """The `part` (side or zone) of the location phrase nearest the mention; "" when none."""
    best, best_gap = "", math.inf
    for start, end, where in places:
        if part in where:
            gap = mention.start - end if end <= mention.start else start - mention.end
            if gap < best_gap:
                best, best_gap = where[part], gap
    return best


class ReportLabeller:
    """CheXpert labels of reports under `rules` (one spaCy pipeline, built once)."""

    def __init__(self, rules: LabelRules) -> None:
        import negspacy.negation  # noqa: F401  (registers the "negex" factory)
        import spacy
        from spacy.matcher import PhraseMatcher

        self.rules = rules
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
        patterns = [
            {"label": finding, "pattern": phrase}
            for finding, phrases in rules.findings.items()
            for phrase in phrases
        ]
        patterns += [{"label": _OTHER_LABEL, "pattern": phrase} for phrase in rules.other_abnormal]
        ruler.add_patterns(patterns)
        nlp.add_pipe("negex", name="negation", config={"neg_termset": _termset(rules.negation), "extension_name": _NEGATED_EXT})
        nlp.add_pipe(
            "negex", name="uncertainty", config={"neg_termset": _termset(rules.uncertainty), "extension_name": _UNCERTAIN_EXT}
        )
        self.nlp = nlp
        self._places = PhraseMatcher(nlp.vocab, attr="LOWER")
        self._where: dict[str, dict[str, str]] = {}
        for phrase, where in rules.locations.items():
            self._where[phrase] = dict(where)
            self._places.add(phrase, [nlp.make_doc(phrase)])

    def _locations(self, doc: Any) -> list[tuple[int, int, dict[str, str]]]:
        from spacy.util import filter_spans

        spans = filter_spans([doc[start:end] for _, start, end in self._places(doc)])  # longest wins
        return [(span.start, span.end, self._where[span.text.lower()]) for span in spans]

    def _mentions(self, doc: Any) -> tuple[list[dict[str, Any]], bool]:
        """The doc's finding mentions, and whether an other_abnormal phrase is affirmed/uncertain."""
        sentences = list(doc.sents)
        sentence_of = np.zeros(len(doc), dtype=np.int64)
        for k, sentence in enumerate(sentences):
            sentence_of[sentence.start : sentence.end] = k
        places = self._locations(doc) if self._where else []
        rows, other = [], False
        for ent in doc.ents:
            if ent._.get(_NEGATED_EXT) and ent.label_ != _NO_FINDING:
                status = "negated"
            elif ent._.get(_UNCERTAIN_EXT) and ent.label_ != _NO_FINDING:
                status = "uncertain"
            else:
                status = "affirmed"
            if ent.label_ == _OTHER_LABEL:
                other = other or status != "negated"
                continue
            k = int(sentence_of[ent.start])
            sentence = sentences[k]
            in_sentence = [p for p in places if sentence.start <= p[0] < sentence.end]
            rows.append({
                "finding": ent.label_, "status": status, "text": ent.text, "sentence": k,
                "sentence_text": sentence.text, "side": _nearest(ent, in_sentence, "side"),
                "zone": _nearest(ent, in_sentence, "zone"),
            })
        return rows, other

    @staticmethod
    def _aggregate(rows: list[dict[str, Any]], other: bool) -> dict[str, float]:
        """CheXpert's per-finding rule: affirmed > uncertain > negated > not mentioned."""
        statuses: dict[str, set[str]] = {}
        for row in rows:
            statuses.setdefault(row["finding"], set()).add(row["status"])
        labels = {finding: math.nan for finding in CHEXPERT_FINDINGS}
        for finding, seen in statuses.items():
            if finding != _NO_FINDING:
                labels[finding] = 1.0 if "affirmed" in seen else -1.0 if "uncertain" in seen else 0.0
        positive = any(labels[f] in (1.0, -1.0) for f in CHEXPERT_FINDINGS if f not in _NOT_FOR_NO_FINDING)
        ruled_out = any(labels[f] == 0.0 for f in CHEXPERT_FINDINGS)
        if not positive and not other and (_NO_FINDING in statuses or ruled_out):
            labels[_NO_FINDING] = 1.0
        return labels

    def label(self, reports: Sequence[Any], batch_size: int = 256) -> ReportLabels:
        """Labels of `reports` (same order); bad input is counted in report_status, never raised."""
        prepared = [_readable(report) for report in reports]
        texts = [text for text, _, _ in prepared if text is not None]
        docs = iter(self.nlp.pipe(texts, batch_size=max(1, int(batch_size))))
        label_rows, mention_rows = [], []
        for position, (text, unreadable, _) in enumerate(prepared):
            labels = {finding: math.nan for finding in CHEXPERT_FINDINGS}
            status = unreadable
            if text is not None:
                rows, other = self._mentions(next(docs))
                labels = self._aggregate(rows, other)
                status = "labelled" if any(not math.isnan(v) for v in labels.values()) else "no_mention"
                # a normal statement beside a positive finding is overruled: no No Finding row then
                keep_normal = labels[_NO_FINDING] == 1.0
                mention_rows.extend(
                    {"report": position, **row} for row in rows if keep_normal or row["finding"] != _NO_FINDING
                )
            label_rows.append({**labels, "report_status": status})
        labels = pd.DataFrame(label_rows, columns=[*CHEXPERT_FINDINGS, "report_status"])
        labels[list(CHEXPERT_FINDINGS)] = labels[list(CHEXPERT_FINDINGS)].astype("float64")
        labels["report_status"] = labels["report_status"].astype(object)
        mentions = pd.DataFrame(mention_rows, columns=list(MENTION_COLUMNS))
        mentions["report"] = mentions["report"].astype("int64")
        mentions["sentence"] = mentions["sentence"].astype("int64")
        for column in ("finding", "status", "text", "sentence_text", "side", "zone"):
            mentions[column] = mentions[column].astype(object)
        return ReportLabels(
            labels=labels.reset_index(drop=True),
            mentions=mentions.reset_index(drop=True),
            n_truncated=sum(cut for _, _, cut in prepared),
        )


# ------------------------------------------------------------------ a manifest's labels


def label_manifest_reports(image_manifest: pd.DataFrame, rules: LabelRules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`report_labels` and `report_mentions` of a manifest's reports: the labeller's two
    tables with each row's image_id first (a manifest without reports reads as empty ones)."""
    ids = image_manifest["image_id"].astype(str).to_numpy()
    reports = image_manifest["report"].tolist() if "report" in image_manifest.columns else [""] * len(ids)
    labelled = ReportLabeller(rules).label(reports)
    labels = labelled.labels.copy()
    labels.insert(0, "image_id", ids)
    mentions = labelled.mentions.copy()
    mentions.insert(0, "image_id", ids[mentions["report"].to_numpy(dtype=int)] if len(mentions) else pd.Series([], dtype=str))
    return labels, mentions.drop(columns="report")


def fill_empty_labels(
    image_manifest: pd.DataFrame, report_labels: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The manifest with every CheXpert label it leaves empty (a missing column, or an empty
    cell) taken from its report, the manifest's own labels never overwritten.

    Returns the manifest, with `labels_from_report` naming per image the labels that came
    from its report, and the counts of the filled labels per finding and value ("1", "0",
    "-1"). A column neither the manifest nor any report gives is not added.
    """
    manifest = image_manifest.copy()
    if manifest["image_id"].astype(str).tolist() != report_labels["image_id"].astype(str).tolist():
        raise ValueError("report_labels and image_manifest list different images: rerun the data_validation pipeline")
    filled_by_image: list[list[str]] = [[] for _ in range(len(manifest))]
    filled: dict[str, dict[str, int]] = {}
    for finding in CHEXPERT_FINDINGS:
        from_report = report_labels[finding].to_numpy(dtype=float)
        own = manifest[finding].to_numpy(dtype=float) if finding in manifest.columns else np.full(len(manifest), np.nan)
        take = np.isnan(own) & ~np.isnan(from_report)
        if finding not in manifest.columns and not take.any():
            continue  # no column where neither the manifest nor any report has a label
        manifest[finding] = np.where(take, from_report, own)
        for row in np.flatnonzero(take):
            filled_by_image[row].append(finding)
        if take.any():
            values = from_report[take]
            filled[finding] = {"1": int((values == 1).sum()), "0": int((values == 0).sum()), "-1": int((values == -1).sum())}
    manifest["labels_from_report"] = pd.Series([", ".join(names) for names in filled_by_image], dtype=str)
    return manifest, filled
