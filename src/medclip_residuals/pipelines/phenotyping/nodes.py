"""Phenotyping: score every image against the phenotype vocabulary, keep its top k, and
embed the chosen phenotypes as one text embedding `w` per image.

Scores are `s = W i` (W: V x D phrase embeddings, i: the image embedding; both
L2-normalised, so s is the cosine similarity). They are computed in chunks of images, so
that at most `chunk_size x V` scores exist at once; only the top-k survive a chunk.

`phenotype_scores` keeps the top-k indices and scores per image, never the full N x V
matrix: for 100,000 images and 10,000 phrases that matrix is 4 GB, while the top-k is
N x k, and one format for every size keeps notebooks and downstream nodes simple.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.models.device import resolve_device
from medclip_residuals.pipelines.phenotyping.tables import (
    checked_embeddings,
    check_ids_known,
    embedding_column_names,
)
from medclip_residuals.utils.frames import embedding_columns

logger = logging.getLogger(__name__)

STRATEGIES = ("sentence", "mean", "concat")
SOURCES = ("predicted", "report")
PHRASE_ORDERS = ("vocabulary", "rank")
REPORT_FALLBACKS = ("predicted", "error")
REPORT_UNCERTAIN = ("exclude", "include")


class TextEncoder(Protocol):
    """What phenotyping needs of the MedCLIP encoder."""

    def encode_texts(self, texts: list[str]) -> np.ndarray:  # (N, D) float32, L2-normalised
        ...


# ---------------------------------------------------------------- scoring


def top_k_scores(
    images: np.ndarray,
    vocabulary: np.ndarray,
    k: int,
    chunk_size: int = 8192,
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


def _vocabulary(phenotype_embeddings: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if len(phenotype_embeddings) == 0:
        raise ValueError("phenotype_embeddings: the phenotype vocabulary is empty (no rows)")
    return checked_embeddings(phenotype_embeddings, "phenotype_embeddings", id_column="phrase")


def _k(params: dict[str, Any], n_phrases: int) -> int:
    k = int(params.get("top_k", 2))
    if k < 1:
        raise ValueError(f"params:phenotyping.top_k must be >= 1, got {k}")
    if k > n_phrases:
        raise ValueError(
            f"params:phenotyping.top_k = {k} is larger than the phenotype vocabulary "
            f"({n_phrases} phrases in phenotype_embeddings)"
        )
    return k


def score_phenotypes(
    image_embeddings: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    params: dict[str, Any],
    device: str = "auto",
) -> pd.DataFrame:
    """Top-k phenotype phrases of every image by s = W i, computed in chunks of images.

    Returns one row per image: image_id, index_1..index_k (vocabulary positions, best
    first) and score_1..score_k.
    """
    phrases, vocabulary = _vocabulary(phenotype_embeddings)
    ids, images = checked_embeddings(image_embeddings, "image_embeddings")
    check_ids_known(ids, image_manifest, "image_embeddings")
    k = _k(params, len(phrases))
    indices, scores = top_k_scores(
        images, vocabulary, k, int(params.get("chunk_size", 8192)), resolve_device(device)
    )
    table = pd.DataFrame({"image_id": ids})
    for rank in range(k):
        table[f"index_{rank + 1}"] = indices[:, rank].astype(np.int32)
    for rank in range(k):
        table[f"score_{rank + 1}"] = scores[:, rank]
    return table


def _top_k_arrays(phenotype_scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, indices (N, k), scores (N, k)) of a phenotype_scores table."""
    k = sum(1 for c in phenotype_scores.columns if str(c).startswith("index_"))
    if k == 0:
        raise ValueError("phenotype_scores: no index_1.. columns")
    indices = phenotype_scores[[f"index_{r + 1}" for r in range(k)]].to_numpy(dtype=np.int64)
    scores = phenotype_scores[[f"score_{r + 1}" for r in range(k)]].to_numpy(dtype=np.float32)
    return phenotype_scores["image_id"].astype(str).to_numpy(), indices, scores


def make_phenotype_table(phenotype_scores: pd.DataFrame, phenotype_embeddings: pd.DataFrame) -> pd.DataFrame:
    """The top-k as a long table: image_id, rank (1 = best), phenotype, phrase_index, score."""
    phrases = phenotype_embeddings["phrase"].astype(str).to_numpy()
    ids, indices, scores = _top_k_arrays(phenotype_scores)
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


def _ordered(indices: np.ndarray, order: str) -> list[list[int]]:
    if order == "vocabulary":
        return [sorted(int(j) for j in row) for row in indices]
    return [[int(j) for j in row] for row in indices]


def report_phenotypes(
    ids: Sequence[str], report_mentions: pd.DataFrame, phrases: np.ndarray, params: dict[str, Any]
) -> list[list[int]]:
    """Per image, the vocabulary positions its report affirms, in vocabulary order.

    From the report labeller's mentions (data/report_labels.py; negation and uncertainty in
    context): each affirmed finding (and each uncertain one with `report_uncertain: include`)
    names the phrases equal to its CheXpert name (any case) or mapped to it by
    evaluation.finding_synonyms, and the location phrases of the vocabulary
    (evaluation.location_phrases) that its own sentence names. A negated finding names nothing.
    """
    uncertain = params.get("report_uncertain", "exclude")
    if uncertain not in REPORT_UNCERTAIN:
        raise ValueError(f"params:phenotyping.report_uncertain must be one of {REPORT_UNCERTAIN}, got {uncertain!r}")
    kept = {"affirmed", "uncertain"} if uncertain == "include" else {"affirmed"}
    evaluation = params.get("evaluation") or {}
    by_finding: dict[str, list[int]] = {}
    synonyms = {str(p).casefold(): str(f) for p, f in (evaluation.get("finding_synonyms") or {}).items()}
    for j, phrase in enumerate(phrases):
        key = str(phrase).casefold()
        finding = synonyms.get(key) or next((f for f in CHEXPERT_FINDINGS if f.casefold() == key), None)
        if finding:
            by_finding.setdefault(finding, []).append(j)
    locations = {str(p).casefold() for p in (evaluation.get("location_phrases") or {})}
    location_positions = np.array([j for j, p in enumerate(phrases) if str(p).casefold() in locations], dtype=int)
    location_phrases = phrases[location_positions] if len(location_positions) else np.array([], dtype=object)

    chosen: dict[str, set[int]] = {str(i): set() for i in ids}
    affirmed = report_mentions[report_mentions["status"].isin(kept)] if len(report_mentions) else report_mentions
    if len(affirmed):
        sentences = affirmed["sentence_text"].fillna("").astype(str).tolist()
        located = match_report_phrases(sentences, location_phrases) if len(location_phrases) else [[]] * len(sentences)
        for image_id, finding, where in zip(affirmed["image_id"].astype(str), affirmed["finding"], located):
            if image_id in chosen and finding in by_finding:
                chosen[image_id].update(by_finding[finding])
                chosen[image_id].update(int(location_positions[k]) for k in where)
    return [sorted(chosen[str(i)]) for i in ids]


def choose_phenotypes(
    phenotype_scores: pd.DataFrame,
    phrases: np.ndarray,
    report_mentions: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[list[list[int]], list[str]]:
    """Per image, the vocabulary positions to embed and where they came from.

    source "predicted": the image's top-k. source "report": what its report affirms
    (`report_phenotypes`); a report affirming none falls back to the top-k (source
    "fallback"), or is an error with report_fallback "error". Order: vocabulary order
    (default, as the slides list them) or rank order (phrase_order "rank", predicted
    phenotypes only).
    """
    source = params.get("source", "predicted")
    order = params.get("phrase_order", "vocabulary")
    if source not in SOURCES:
        raise ValueError(f"params:phenotyping.source must be one of {SOURCES}, got {source!r}")
    if order not in PHRASE_ORDERS:
        raise ValueError(f"params:phenotyping.phrase_order must be one of {PHRASE_ORDERS}, got {order!r}")
    ids, indices, _ = _top_k_arrays(phenotype_scores)
    predicted = _ordered(indices, order)
    if source == "predicted":
        return predicted, ["predicted"] * len(ids)
    fallback = params.get("report_fallback", "predicted")
    if fallback not in REPORT_FALLBACKS:
        raise ValueError(f"params:phenotyping.report_fallback must be one of {REPORT_FALLBACKS}, got {fallback!r}")
    matched = report_phenotypes(ids, report_mentions, phrases, params)
    chosen, sources = [], []
    for row, (image_id, found) in enumerate(zip(ids, matched)):
        if found:
            chosen.append(found)
            sources.append("report")
        elif fallback == "error":
            raise ValueError(
                f"image {image_id!r} (row {row} of phenotype_scores): its report affirms no phrase of the "
                "phenotype vocabulary (report_mentions) and params:phenotyping.report_fallback is 'error'"
            )
        else:
            chosen.append(predicted[row])
            sources.append("fallback")
    return chosen, sources


# ---------------------------------------------------------------- w


def _sentences(chosen: list[list[int]], phrases: np.ndarray, params: dict[str, Any]) -> list[str]:
    template = params.get("sentence_template", "The phenotype are: {phenotypes}")
    separator = params.get("separator", ", ")
    if "{phenotypes}" not in template:
        raise ValueError(f"params:phenotyping.sentence_template must contain '{{phenotypes}}', got {template!r}")
    return [template.replace("{phenotypes}", separator.join(phrases[j] for j in row)) for row in chosen]


def _encode_unique(sentences: list[str], encoder: TextEncoder, dim: int) -> np.ndarray:
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


def _mean(chosen: list[list[int]], vocabulary: np.ndarray) -> np.ndarray:
    out = np.empty((len(chosen), vocabulary.shape[1]), dtype=np.float32)
    for row, indices in enumerate(chosen):
        mean = vocabulary[indices].astype(np.float64).mean(axis=0)
        norm = np.linalg.norm(mean)
        if norm < 1e-12:
            raise ValueError(f"the mean of phrases {indices} is the zero vector: it cannot be renormalised")
        out[row] = mean / norm
    return out


def _concat(
    chosen: list[list[int]], predicted: np.ndarray, sources: list[str], vocabulary: np.ndarray, k: int
) -> tuple[np.ndarray, list[str], list[list[int]]]:
    """k x D per image; a report naming other than k phrases is cut to its first k, or
    filled up with the image's best predicted phrases not already named."""
    slots = np.empty((len(chosen), k), dtype=np.int64)
    for row, indices in enumerate(chosen):
        picked = list(indices[:k])
        if len(picked) < k:
            picked += [int(j) for j in predicted[row] if j not in picked][: k - len(picked)]
            if sources[row] == "report":
                sources[row] = "report_filled"
        slots[row] = picked
    return vocabulary[slots].reshape(len(chosen), -1), sources, [list(row) for row in slots]


def embed_phenotypes(
    phenotype_scores: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    report_mentions: pd.DataFrame,
    medclip_encoder: TextEncoder,
    params: dict[str, Any],
) -> pd.DataFrame:
    """The phenotype text embedding `w` of every image, by params:phenotyping.strategy.

    - sentence (default): embed "The phenotype are: {list}" (the slides' sentence; the
      list joined with ", "), each distinct sentence once. D columns.
    - mean: mean of the phrase embeddings, renormalised to unit length. D columns.
    - concat: the k phrase embeddings side by side: k x D columns (e0000..). A different
      input size: residual_1 (r = i - w) refuses it; residual_2 maps i to k x D.

    Returns image_id, phenotypes (the phrases, joined with ", "), phenotype_source
    (predicted / report / report_filled / fallback) and e000.. (float32).
    """
    strategy = params.get("strategy", "sentence")
    if strategy not in STRATEGIES:
        raise ValueError(f"params:phenotyping.strategy must be one of {STRATEGIES}, got {strategy!r}")
    phrases, vocabulary = _vocabulary(phenotype_embeddings)
    ids, indices, _ = _top_k_arrays(phenotype_scores)
    check_ids_known(ids, image_manifest, "phenotype_scores")
    k = _k(params, len(phrases))
    if indices.shape[1] != k:
        raise ValueError(f"phenotype_scores holds the top {indices.shape[1]} but params:phenotyping.top_k is {k}")
    chosen, sources = choose_phenotypes(phenotype_scores, phrases, report_mentions, params)
    if strategy == "sentence":
        matrix = _encode_unique(_sentences(chosen, phrases, params), medclip_encoder, vocabulary.shape[1])
    elif strategy == "mean":
        matrix = _mean(chosen, vocabulary)
    else:
        matrix, sources, chosen = _concat(chosen, indices, sources, vocabulary, k)
    frame = pd.DataFrame(matrix.astype(np.float32), columns=embedding_columns(matrix.shape[1]))
    frame.insert(0, "phenotype_source", sources)
    frame.insert(0, "phenotypes", [", ".join(phrases[j] for j in row) for row in chosen])
    frame.insert(0, "image_id", ids)
    return frame


# ---------------------------------------------------------------- evaluation


def _concepts_of_phrases(phrases: np.ndarray, label_columns: list[str], params: dict[str, Any]) -> list[frozenset]:
    """The ground-truth concepts each vocabulary phrase names (empty: not evaluable).

    A phrase equal to a label name (any case) names "finding:<label>"; params
    evaluation.finding_synonyms adds phrase -> label pairs; evaluation.location_phrases
    maps a phrase to the localization values it names, e.g. {side: left, zone: lower}.
    """
    evaluation = params.get("evaluation") or {}
    by_name = {label.casefold(): label for label in label_columns}
    synonyms = {str(p).casefold(): label for p, label in (evaluation.get("finding_synonyms") or {}).items()}
    locations = {str(p).casefold(): spec for p, spec in (evaluation.get("location_phrases") or {}).items()}
    concepts = []
    for phrase in phrases:
        key = str(phrase).strip().casefold()
        named: set[str] = set()
        label = by_name.get(key) or synonyms.get(key)
        if label in label_columns:
            named.add(f"finding:{label}")
        for axis, value in (locations.get(key) or {}).items():
            if axis not in ("side", "zone"):
                raise ValueError(f"params:phenotyping.evaluation.location_phrases[{phrase!r}]: unknown key {axis!r} (side or zone)")
            named.add(f"{axis}:{str(value).casefold()}")
        concepts.append(frozenset(named))
    return concepts


def _truth(
    ids: np.ndarray, image_manifest: pd.DataFrame, image_localizations: pd.DataFrame, label_columns: list[str]
) -> tuple[dict[str, set[str]], bool, bool]:
    """True concepts per image: positive labels, and side/zone of its localizations."""
    truth: dict[str, set[str]] = {i: set() for i in ids}
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).set_index("image_id")
    labels = manifest.reindex(ids)[label_columns] if label_columns else pd.DataFrame(index=ids)
    for label in label_columns:
        for image_id in labels.index[labels[label].to_numpy(dtype=float) == 1.0]:
            truth[image_id].add(f"finding:{label}")
    has_locations = (
        image_localizations is not None
        and len(image_localizations) > 0
        and any(c in image_localizations.columns for c in ("side", "zone"))
    )
    if has_locations:
        for axis in ("side", "zone"):
            if axis not in image_localizations.columns:
                continue
            rows = image_localizations[["image_id", axis]].dropna()
            for image_id, value in zip(rows["image_id"].astype(str), rows[axis].astype(str)):
                if value.strip() and image_id in truth:
                    truth[image_id].add(f"{axis}:{value.strip().casefold()}")
    return truth, bool(label_columns), has_locations


def _none_chosen(n_phrases: int, m: int, k: int) -> float:
    """P(a uniformly random k-subset of n_phrases avoids m given phrases)."""
    if m > n_phrases - k:
        return 0.0
    return math.exp(sum(math.log((n_phrases - m - j) / (n_phrases - j)) for j in range(k)))


def _group_metrics(
    ids: np.ndarray,
    indices: np.ndarray,
    truth: dict[str, set[str]],
    concepts: list[frozenset],
    prefix: str | tuple[str, ...] | None,
) -> dict[str, Any]:
    """Precision/recall/hit rate at k for concepts starting with `prefix` (None: all)."""
    n_phrases, k = len(concepts), indices.shape[1]

    def keep(c: str) -> bool:
        return prefix is None or c.startswith(prefix)

    group_concepts = [frozenset(c for c in named if keep(c)) for named in concepts]
    evaluable = [(j, named) for j, named in enumerate(group_concepts) if named]
    precision, recall, hits_any = [], [], []
    chance_precision, chance_recall, chance_hit = [], [], []
    by_truth: dict[frozenset, tuple[set[int], float, float]] = {}  # many images share a truth set
    for image_id, top in zip(ids, indices):
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


def evaluate_phenotypes(
    phenotype_scores: pd.DataFrame,
    phenotype_embeddings: pd.DataFrame,
    phenotype_sentence_embeddings: pd.DataFrame,
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    params: dict[str, Any],
) -> dict[str, Any]:
    """How often the top-k name an image's true findings and locations, against chance.

    For each image with at least one true concept (a positive label, or a side/zone of
    one of its localizations): precision@k (share of the k phrases that are correct),
    recall@k (share of the true concepts named by a correct phrase) and hit rate (at least
    one correct phrase). Chance is the exact expectation for k phrases drawn uniformly at
    random from the V of the vocabulary (hypergeometric), computed per image and averaged.
    Reported for findings, locations and both together; also counts where `w` came from.
    The top-k evaluated are always the image's predicted ones, whatever params source says.
    """
    phrases, _ = _vocabulary(phenotype_embeddings)
    ids, indices, _ = _top_k_arrays(phenotype_scores)
    label_columns = [c for c in CHEXPERT_FINDINGS if c in image_manifest.columns]
    concepts = _concepts_of_phrases(phrases, label_columns, params)
    sources = phenotype_sentence_embeddings.get("phenotype_source", pd.Series(dtype=str))
    metrics: dict[str, Any] = {
        "k": int(indices.shape[1]),
        "vocabulary_size": int(len(phrases)),
        "n_images": int(len(ids)),
        "strategy": params.get("strategy", "sentence"),
        "source": params.get("source", "predicted"),
        "w_width": len(embedding_column_names(phenotype_sentence_embeddings)),
        "phenotype_sources": {str(s): int(n) for s, n in sources.value_counts().sort_index().items()},
        "evaluable_phrases": {
            "findings": sorted(str(p) for p, c in zip(phrases, concepts) if any(x.startswith("finding:") for x in c)),
            "locations": sorted(
                str(p) for p, c in zip(phrases, concepts) if any(x.startswith(("side:", "zone:")) for x in c)
            ),
        },
        "chance_model": "k phrases drawn uniformly at random from the vocabulary (exact hypergeometric expectation)",
    }
    vocabulary_keys = {str(p).strip().casefold() for p in phrases}
    location_phrases = (params.get("evaluation") or {}).get("location_phrases") or {}
    missing = sorted(str(p) for p in location_phrases if str(p).strip().casefold() not in vocabulary_keys)
    if missing:
        metrics["location_phrases_not_in_vocabulary"] = missing
    truth, has_labels, has_locations = _truth(ids, image_manifest, image_localizations, label_columns)
    if not has_labels and not has_locations:
        metrics["evaluation"] = "not available: image_manifest has no label columns and no localizations with side/zone"
        return metrics
    metrics["evaluation"] = {
        "all": _group_metrics(ids, indices, truth, concepts, None),
        "findings": _group_metrics(ids, indices, truth, concepts, "finding:"),
        "locations": _group_metrics(ids, indices, truth, concepts, ("side:", "zone:")),
    }
    return metrics
