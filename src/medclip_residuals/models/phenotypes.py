"""Phenotypes: each image's top-k phrases of the vocabulary, its phenotype text embedding `w`,
and how well the top-k name the image's true findings and locations.

Scores are `s = W i` (W: V x D phrase embeddings, i: the image embedding; both
L2-normalised, so s is the cosine similarity). They are computed in chunks of images, so
that at most `chunk_size x V` scores exist at once; only the top-k survive a chunk.

`phenotype_scores` keeps the top-k indices and scores per image, never the full N x V
matrix: for 100,000 images and 10,000 phrases that matrix is 4 GB, while the top-k is
N x k, and one format for every size keeps notebooks and downstream nodes simple.

`w` is made from the chosen phrases by one of three strategies: `sentence` (embed
"The phenotype are: {list}", the slides' sentence), `mean` (the phrase embeddings' mean,
renormalised) or `concat` (the k phrase embeddings side by side: k x D wide).

Example:
    >>> import numpy as np
    >>> indices, scores = top_k_scores(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 1, 8192)
    >>> indices.ravel().tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.utils.frames import embedding_column_names, embedding_columns, embeddings_to_matrix
from medclip_residuals.utils.params import ParameterError, Parameters

logger = logging.getLogger(__name__)

Strategy = Literal["sentence", "mean", "concat"]
Source = Literal["predicted", "report"]
PhraseOrder = Literal["vocabulary", "rank"]
ReportFallback = Literal["predicted", "error"]
ReportUncertain = Literal["exclude", "include"]
LOCATION_AXES = ("side", "zone")


class TextEncoder(Protocol):
    """What phenotyping needs of the MedCLIP encoder."""

    def encode_texts(self, texts: list[str]) -> np.ndarray:  # (N, D) float32, L2-normalised
        ...


@dataclass(frozen=True)
class PhraseMeanings(Parameters):
    """What the vocabulary's phrases name, for the report source and the evaluation.

    A phrase equal to a CheXpert label name (any case) names that finding;
    `finding_synonyms` adds phrase -> label pairs; `location_phrases` maps a phrase to the
    localization values it names, e.g. {"left lower lobe": {"side": "left", "zone": "lower"}}.
    """

    finding_synonyms: dict[str, str]
    location_phrases: dict[str, dict[str, str]]

    def check(self, where: str) -> None:
        for phrase, spec in self.location_phrases.items():
            for axis in spec:
                if axis not in LOCATION_AXES:
                    raise ParameterError(
                        f"{where}.location_phrases[{phrase!r}]: unknown key {axis!r} (side or zone)"
                    )


# ---------------------------------------------------------------- scoring


def top_k_scores(
    images: np.ndarray,
    vocabulary: np.ndarray,
    k: int,
    chunk_size: int,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (N, k) int64 and scores (N, k) float32 of the k best phrases per image.

    `images` (N, D) and `vocabulary` (V, D) float32; scores are inner products, best
    first. Works through `chunk_size` images at a time: peak extra memory is about
    chunk_size x V x 4 bytes (plus the N x k outputs). Ties between equal scores are
    broken by torch.topk, which does not promise an order.
    """
    n_images, dim = images.shape
    n_phrases = vocabulary.shape[0]
    if n_phrases == 0:
        raise ValueError("the phenotype vocabulary is empty: phenotype_embeddings has no rows")
    if vocabulary.shape[1] != dim:
        raise ValueError(f"image embeddings are {dim}-d but phenotype embeddings are {vocabulary.shape[1]}-d")
    if not 1 <= k <= n_phrases:
        raise ValueError(f"top_k = {k} must lie between 1 and the vocabulary size {n_phrases}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    device = torch.device(device)
    indices = np.empty((n_images, k), dtype=np.int64)
    scores = np.empty((n_images, k), dtype=np.float32)
    images = np.ascontiguousarray(images, dtype=np.float32)  # no copy when already so
    with torch.inference_mode(), warnings.catch_warnings():
        # read-only arrays (pandas copy-on-write) are shared, not copied: torch only reads them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        phrases_t = torch.from_numpy(np.ascontiguousarray(vocabulary, dtype=np.float32)).to(device).T
        for start in range(0, n_images, chunk_size):
            stop = min(n_images, start + chunk_size)
            chunk = torch.from_numpy(images[start:stop]).to(device)
            values, best = torch.topk(chunk @ phrases_t, k, dim=1, largest=True, sorted=True)
            indices[start:stop] = best.cpu().numpy()
            scores[start:stop] = values.cpu().numpy()
    return indices, scores


def vocabulary_matrix(phenotype_embeddings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(phrases, (V, D) matrix) of the phenotype vocabulary; an empty vocabulary is an error."""
    if len(phenotype_embeddings) == 0:
        raise ValueError("phenotype_embeddings: the phenotype vocabulary is empty (no rows)")
    return embeddings_to_matrix(phenotype_embeddings, dataset="phenotype_embeddings", id_column="phrase")


def checked_top_k(top_k: int, n_phrases: int) -> int:
    """`top_k`, which must not exceed the vocabulary."""
    if top_k > n_phrases:
        raise ValueError(
            f"params:phenotyping.top_k = {top_k} is larger than the phenotype vocabulary "
            f"({n_phrases} phrases in phenotype_embeddings)"
        )
    return top_k


def top_k_table(ids: np.ndarray, indices: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """phenotype_scores: image_id, index_1..index_k (best first), score_1..score_k."""
    k = indices.shape[1]
    table = pd.DataFrame({"image_id": ids})
    for rank in range(k):
        table[f"index_{rank + 1}"] = indices[:, rank].astype(np.int32)
    for rank in range(k):
        table[f"score_{rank + 1}"] = scores[:, rank]
    return table


def top_k_arrays(phenotype_scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, indices (N, k), scores (N, k)) of a phenotype_scores table."""
    k = sum(1 for c in phenotype_scores.columns if str(c).startswith("index_"))
    if k == 0:
        raise ValueError("phenotype_scores: no index_1.. columns")
    indices = phenotype_scores[[f"index_{r + 1}" for r in range(k)]].to_numpy(dtype=np.int64)
    scores = phenotype_scores[[f"score_{r + 1}" for r in range(k)]].to_numpy(dtype=np.float32)
    return phenotype_scores["image_id"].astype(str).to_numpy(), indices, scores


def long_phenotype_table(phenotype_scores: pd.DataFrame, phenotype_embeddings: pd.DataFrame) -> pd.DataFrame:
    """The top-k as a long table: image_id, rank (1 = best), phenotype, phrase_index, score."""
    phrases = phenotype_embeddings["phrase"].astype(str).to_numpy()
    ids, indices, scores = top_k_arrays(phenotype_scores)
    if indices.size and indices.max() >= len(phrases):
        raise ValueError(
            f"phenotype_scores refers to phrase {indices.max()} but phenotype_embeddings has "
            f"{len(phrases)} phrases: were they made from another vocabulary?"
        )
    k = indices.shape[1]
    return pd.DataFrame(
        {
            "image_id": np.repeat(ids, k),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(ids)),
            "phenotype": phrases[indices.ravel()],
            "phrase_index": indices.ravel().astype(np.int32),
            "score": scores.ravel(),
        }
    )


# ---------------------------------------------------------------- choosing phenotypes


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def match_report_phrases(reports: list[str], phrases: list[str] | np.ndarray) -> list[list[int]]:
    """Vocabulary positions of the phrases each report names, in vocabulary order.

    Case-insensitive whole-phrase matching on words: a phrase matches where its words
    appear consecutively in the report ("Pleural Effusion" matches "small pleural
    effusion." but "left" does not match "leftover"); punctuation between words is
    ignored. Nested phrases both match ("lower lung" also matches "lung" if both are in
    the vocabulary). There is no negation handling ("no pneumonia" names "pneumonia"): it is
    applied to the sentences the report labeller found a finding affirmed in.
    """
    phrase_words = [tuple(_words(str(p))) for p in phrases]
    lengths = sorted({len(w) for w in phrase_words if w})
    position: dict[tuple[str, ...], list[int]] = {}
    for j, words in enumerate(phrase_words):
        if words:
            position.setdefault(words, []).append(j)
    found: list[list[int]] = []
    for report in reports:
        words = _words(report or "")
        grams = {tuple(words[s : s + n]) for n in lengths for s in range(len(words) - n + 1)}
        found.append(sorted(j for gram in grams & position.keys() for j in position[gram]))
    return found


def _ordered(indices: np.ndarray, order: PhraseOrder) -> list[list[int]]:
    if order == "vocabulary":
        return [sorted(int(j) for j in row) for row in indices]
    return [[int(j) for j in row] for row in indices]


def report_phenotypes(
    ids: Sequence[str],
    report_mentions: pd.DataFrame,
    phrases: np.ndarray,
    report_uncertain: ReportUncertain,
    meanings: PhraseMeanings,
) -> list[list[int]]:
    """Per image, the vocabulary positions its report affirms, in vocabulary order.

    From the report labeller's mentions (data/report_labels.py; negation and uncertainty in
    context): each affirmed finding (and each uncertain one with `report_uncertain`
    "include") names the phrases equal to its CheXpert name (any case) or mapped to it by
    `meanings.finding_synonyms`, and the location phrases of the vocabulary
    (`meanings.location_phrases`) that its own sentence names. A negated finding names nothing.
    """
    kept = {"affirmed", "uncertain"} if report_uncertain == "include" else {"affirmed"}
    by_finding: dict[str, list[int]] = {}
    synonyms = {str(p).casefold(): str(f) for p, f in meanings.finding_synonyms.items()}
    for j, phrase in enumerate(phrases):
        key = str(phrase).casefold()
        finding = synonyms.get(key) or next((f for f in CHEXPERT_FINDINGS if f.casefold() == key), None)
        if finding:
            by_finding.setdefault(finding, []).append(j)
    locations = {str(p).casefold() for p in meanings.location_phrases}
    location_positions = np.array([j for j, p in enumerate(phrases) if str(p).casefold() in locations], dtype=int)
    location_phrases = phrases[location_positions] if len(location_positions) else np.array([], dtype=object)

    chosen: dict[str, set[int]] = {str(i): set() for i in ids}
    affirmed = report_mentions[report_mentions["status"].isin(kept)] if len(report_mentions) else report_mentions
    if len(affirmed):
        sentences = affirmed["sentence_text"].fillna("").astype(str).tolist()
        located = match_report_phrases(sentences, location_phrases) if len(location_phrases) else [[]] * len(sentences)
        for image_id, finding, where in zip(affirmed["image_id"].astype(str), affirmed["finding"], located, strict=True):
            if image_id in chosen and finding in by_finding:
                chosen[image_id].update(by_finding[finding])
                chosen[image_id].update(int(location_positions[k]) for k in where)
    return [sorted(chosen[str(i)]) for i in ids]


def choose_phenotypes(
    ids: np.ndarray,
    indices: np.ndarray,
    phrases: np.ndarray,
    report_mentions: pd.DataFrame,
    *,
    source: Source,
    phrase_order: PhraseOrder,
    report_fallback: ReportFallback,
    report_uncertain: ReportUncertain,
    meanings: PhraseMeanings,
) -> tuple[list[list[int]], list[str]]:
    """Per image, the vocabulary positions to embed and where they came from.

    source "predicted": the image's top-k (`indices`). source "report": what its report
    affirms (`report_phenotypes`); a report affirming none falls back to the top-k (source
    "fallback"), or is an error with report_fallback "error". Order: vocabulary order (as
    the slides list them) or rank order (phrase_order "rank", predicted phenotypes only).
    """
    predicted = _ordered(indices, phrase_order)
    if source == "predicted":
        return predicted, ["predicted"] * len(ids)
    matched = report_phenotypes(ids, report_mentions, phrases, report_uncertain, meanings)
    chosen, sources = [], []
    for row, (image_id, found) in enumerate(zip(ids, matched, strict=True)):
        if found:
            chosen.append(found)
            sources.append("report")
        elif report_fallback == "error":
            raise ValueError(
                f"image {image_id!r} (row {row} of phenotype_scores): its report affirms no phrase of the "
                "phenotype vocabulary (report_mentions) and params:phenotyping.report_fallback is 'error'"
            )
        else:
            chosen.append(predicted[row])
            sources.append("fallback")
    return chosen, sources


# ---------------------------------------------------------------- w


def phenotype_sentences(chosen: list[list[int]], phrases: np.ndarray, template: str, separator: str) -> list[str]:
    """The sentence of each image: `template` with {phenotypes} replaced by its phrases."""
    return [template.replace("{phenotypes}", separator.join(phrases[j] for j in row)) for row in chosen]


def encode_unique(sentences: list[str], encoder: TextEncoder, dim: int) -> np.ndarray:
    """Embed each distinct sentence once; rows follow `sentences`."""
    unique = list(dict.fromkeys(sentences))
    embedded = np.asarray(encoder.encode_texts(unique), dtype=np.float32)
    if embedded.shape != (len(unique), dim):
        raise ValueError(
            f"medclip_encoder.encode_texts returned shape {embedded.shape} for {len(unique)} sentences; "
            f"expected ({len(unique)}, {dim})"
        )
    if not np.isfinite(embedded).all():
        bad = unique[int(np.flatnonzero(~np.isfinite(embedded).all(axis=1))[0])]
        raise ValueError(f"medclip_encoder returned NaN/inf for the sentence {bad!r}")
    position = {s: j for j, s in enumerate(unique)}
    logger.info("phenotyping: %d images share %d distinct phenotype sentences", len(sentences), len(unique))
    return embedded[[position[s] for s in sentences]]


def mean_embeddings(chosen: list[list[int]], vocabulary: np.ndarray) -> np.ndarray:
    """The mean of each image's phrase embeddings, renormalised to unit length."""
    out = np.empty((len(chosen), vocabulary.shape[1]), dtype=np.float32)
    for row, indices in enumerate(chosen):
        mean = vocabulary[indices].astype(np.float64).mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm < 1e-12:
            raise ValueError(f"the mean of phrases {indices} is the zero vector: it cannot be renormalised")
        out[row] = mean / norm
    return out


def concat_embeddings(
    chosen: list[list[int]], predicted: np.ndarray, sources: list[str], vocabulary: np.ndarray, k: int
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """k x D per image; a report naming other than k phrases is cut to its first k, or
    filled up with the image's best predicted phrases not already named ("report_filled")."""
    sources = list(sources)
    slots = np.empty((len(chosen), k), dtype=np.int64)
    for row, indices in enumerate(chosen):
        picked = list(indices[:k])
        if len(picked) < k:
            picked += [int(j) for j in predicted[row] if j not in picked][: k - len(picked)]
            if sources[row] == "report":
                sources[row] = "report_filled"
        slots[row] = picked
    return vocabulary[slots].reshape(len(chosen), -1), sources, [list(row) for row in slots]


def phenotype_w(
    chosen: list[list[int]],
    sources: list[str],
    predicted: np.ndarray,
    phrases: np.ndarray,
    vocabulary: np.ndarray,
    encoder: TextEncoder | None,
    *,
    strategy: Strategy,
    sentence_template: str,
    separator: str,
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """(w matrix, sources, chosen phrases) by `strategy`; concat may fill or cut `chosen`.

    - sentence: embed `sentence_template` with the phrases, each distinct sentence once. D wide.
    - mean: mean of the phrase embeddings, renormalised. D wide.
    - concat: the k phrase embeddings side by side (k = `predicted`'s width). k x D wide.
    """
    if strategy == "sentence":
        sentences = phenotype_sentences(chosen, phrases, sentence_template, separator)
        return encode_unique(sentences, encoder, vocabulary.shape[1]), sources, chosen
    if strategy == "mean":
        return mean_embeddings(chosen, vocabulary), sources, chosen
    return concat_embeddings(chosen, predicted, sources, vocabulary, predicted.shape[1])


def w_table(ids: np.ndarray, chosen: list[list[int]], sources: list[str], matrix: np.ndarray, phrases: np.ndarray) -> pd.DataFrame:
    """phenotype_sentence_embeddings: image_id, phenotypes (joined with ", "), phenotype_source, e000.."""
    frame = pd.DataFrame(matrix.astype(np.float32), columns=embedding_columns(matrix.shape[1]))
    frame.insert(0, "phenotype_source", sources)
    frame.insert(0, "phenotypes", [", ".join(phrases[j] for j in row) for row in chosen])
    frame.insert(0, "image_id", ids)
    return frame


# ---------------------------------------------------------------- evaluation


def concepts_of_phrases(phrases: np.ndarray, label_columns: list[str], meanings: PhraseMeanings) -> list[frozenset]:
    """The ground-truth concepts each vocabulary phrase names (empty: not evaluable).

    A phrase equal to a label name (any case), or mapped to one by finding_synonyms, names
    "finding:<label>"; a location phrase names "side:<value>" / "zone:<value>".
    """
    by_name = {label.casefold(): label for label in label_columns}
    synonyms = {str(p).casefold(): label for p, label in meanings.finding_synonyms.items()}
    locations = {str(p).casefold(): spec for p, spec in meanings.location_phrases.items()}
    concepts = []
    for phrase in phrases:
        key = str(phrase).strip().casefold()
        named: set[str] = set()
        label = by_name.get(key) or synonyms.get(key)
        if label in label_columns:
            named.add(f"finding:{label}")
        for axis, value in (locations.get(key) or {}).items():
            named.add(f"{axis}:{str(value).casefold()}")
        concepts.append(frozenset(named))
    return concepts


def true_concepts(
    ids: np.ndarray, image_manifest: pd.DataFrame, image_localizations: pd.DataFrame, label_columns: list[str]
) -> tuple[dict[str, set[str]], bool, bool]:
    """True concepts per image: positive labels, and side/zone of its localizations;
    also whether there were labels and localizations with side/zone at all."""
    truth: dict[str, set[str]] = {i: set() for i in ids}
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    labels = manifest.reindex(ids)[label_columns] if label_columns else pd.DataFrame(index=ids)
    for label in label_columns:
        for image_id in labels.index[labels[label].to_numpy(dtype=float) == 1.0]:
            truth[image_id].add(f"finding:{label}")
    has_locations = (
        image_localizations is not None
        and len(image_localizations) > 0
        and any(c in image_localizations.columns for c in LOCATION_AXES)
    )
    if has_locations:
        for axis in LOCATION_AXES:
            if axis not in image_localizations.columns:
                continue
            rows = image_localizations[["image_id", axis]].dropna()
            for image_id, value in zip(rows["image_id"].astype(str), rows[axis].astype(str), strict=True):
                if value.strip() and image_id in truth:
                    truth[image_id].add(f"{axis}:{value.strip().casefold()}")
    return truth, bool(label_columns), has_locations


def _none_chosen(n_phrases: int, m: int, k: int) -> float:
    """P(a uniformly random k-subset of n_phrases avoids m given phrases)."""
    if m > n_phrases - k:
        return 0.0
    return math.exp(sum(math.log((n_phrases - m - j) / (n_phrases - j)) for j in range(k)))


def group_metrics(
    ids: np.ndarray,
    indices: np.ndarray,
    truth: dict[str, set[str]],
    concepts: list[frozenset],
    prefix: str | tuple[str, ...] | None,
) -> dict[str, Any]:
    """Precision/recall/hit rate at k for concepts starting with `prefix` (None: all), and
    their exact chance values (k phrases drawn uniformly from the vocabulary)."""
    n_phrases, k = len(concepts), indices.shape[1]

    def keep(c: str) -> bool:
        return prefix is None or c.startswith(prefix)

    group_concepts = [frozenset(c for c in named if keep(c)) for named in concepts]
    evaluable = [(j, named) for j, named in enumerate(group_concepts) if named]
    precision, recall, hits_any = [], [], []
    chance_precision, chance_recall, chance_hit = [], [], []
    by_truth: dict[frozenset, tuple[set[int], float, float]] = {}  # many images share a truth set
    for image_id, top in zip(ids, indices, strict=True):
        true = frozenset(c for c in truth[image_id] if keep(c))
        if not true:
            continue
        if true not in by_truth:
            # a phrase is correct when everything it names (in this group) is true
            correct = {j for j, named in evaluable if named <= true}
            per_concept = [
                1 - _none_chosen(n_phrases, sum(1 for j in correct if c in group_concepts[j]), k) for c in true
            ]
            by_truth[true] = (correct, float(np.mean(per_concept)), 1 - _none_chosen(n_phrases, len(correct), k))
        correct, chance_recall_here, chance_hit_here = by_truth[true]
        chosen_correct = [int(j) for j in top if j in correct]
        recalled = set().union(*(group_concepts[j] for j in chosen_correct)) if chosen_correct else set()
        precision.append(len(chosen_correct) / k)
        recall.append(len(recalled & true) / len(true))
        hits_any.append(bool(chosen_correct))
        chance_precision.append(len(correct) / n_phrases)
        chance_recall.append(chance_recall_here)
        chance_hit.append(chance_hit_here)
    if not precision:
        return {"n_images": 0}
    return {
        "n_images": len(precision),
        "precision_at_k": float(np.mean(precision)),
        "recall_at_k": float(np.mean(recall)),
        "hit_rate_at_k": float(np.mean(hits_any)),
        "chance": {
            "precision_at_k": float(np.mean(chance_precision)),
            "recall_at_k": float(np.mean(chance_recall)),
            "hit_rate_at_k": float(np.mean(chance_hit)),
        },
    }


def phenotype_metrics(
    phenotype_scores: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    *,
    strategy: Strategy,
    source: Source,
    meanings: PhraseMeanings,
) -> dict[str, Any]:
    """How often the top-k name an image's true findings and locations, against chance.

    For each image with at least one true concept (a positive label, or a side/zone of
    one of its localizations): precision@k (share of the k phrases that are correct),
    recall@k (share of the true concepts named by a correct phrase) and hit rate (at least
    one correct phrase). Chance is the exact expectation for k phrases drawn uniformly at
    random from the V of the vocabulary (hypergeometric), computed per image and averaged.
    Reported for findings, locations and both together; also counts where `w` came from.
    The top-k evaluated are always the image's predicted ones, whatever the source of `w`.
    """
    phrases, _ = vocabulary_matrix(phenotype_embeddings)
    ids, indices, _ = top_k_arrays(phenotype_scores)
    label_columns = [c for c in CHEXPERT_FINDINGS if c in image_manifest.columns]
    concepts = concepts_of_phrases(phrases, label_columns, meanings)
    sources = phenotype_sentence_embeddings.get("phenotype_source", pd.Series(dtype=str))
    metrics: dict[str, Any] = {
        "k": int(indices.shape[1]),
        "vocabulary_size": int(len(phrases)),
        "n_images": int(len(ids)),
        "strategy": strategy,
        "source": source,
        "w_width": len(embedding_column_names(phenotype_sentence_embeddings)),
        "phenotype_sources": {str(s): int(n) for s, n in sources.value_counts().sort_index().items()},
        "evaluable_phrases": {
            "findings": sorted(str(p) for p, c in zip(phrases, concepts, strict=True) if any(x.startswith("finding:") for x in c)),
            "locations": sorted(
                str(p) for p, c in zip(phrases, concepts, strict=True) if any(x.startswith(("side:", "zone:")) for x in c)
            ),
        },
        "chance_model": "k phrases drawn uniformly at random from the vocabulary (exact hypergeometric expectation)",
    }
    vocabulary_keys = {str(p).strip().casefold() for p in phrases}
    missing = sorted(str(p) for p in meanings.location_phrases if str(p).strip().casefold() not in vocabulary_keys)
    if missing:
        metrics["location_phrases_not_in_vocabulary"] = missing
    truth, has_labels, has_locations = true_concepts(ids, image_manifest, image_localizations, label_columns)
    if not has_labels and not has_locations:
        metrics["evaluation"] = "not available: image_manifest has no label columns and no localizations with side/zone"
        return metrics
    metrics["evaluation"] = {
        "all": group_metrics(ids, indices, truth, concepts, None),
        "findings": group_metrics(ids, indices, truth, concepts, "finding:"),
        "locations": group_metrics(ids, indices, truth, concepts, ("side:", "zone:")),
    }
    return metrics
