"""models/phenotypes.py: chunked top-k scoring, report phrase matching, phrase meanings."""

from __future__ import annotations

import numpy as np
import pytest

from medclip_residuals.models.phenotypes import PhraseMeanings, match_report_phrases, top_k_scores
from medclip_residuals.utils.params import ParameterError

VOCAB = np.eye(4, dtype=np.float32)  # phrase j is axis j: score j of an image is its j-th value
IMAGES = np.array([[0.1, 0.9, 0.3, 0.0], [0.5, 0.2, 0.7, 0.1], [0.0, 0.1, 0.2, 0.95]], dtype=np.float32)


@pytest.mark.parametrize("chunk_size", [1, 2, 100])
def test_top_k_scores_known_answer_in_any_chunking(chunk_size):
    indices, scores = top_k_scores(IMAGES, VOCAB, k=2, chunk_size=chunk_size)
    np.testing.assert_array_equal(indices, [[1, 2], [2, 0], [3, 2]])
    np.testing.assert_allclose(scores, [[0.9, 0.3], [0.7, 0.5], [0.95, 0.2]], rtol=1e-6)


def test_top_k_scores_rejects_bad_k_and_shapes():
    with pytest.raises(ValueError, match="between 1 and the vocabulary size 4"):
        top_k_scores(IMAGES, VOCAB, k=5, chunk_size=8192)
    with pytest.raises(ValueError, match="empty"):
        top_k_scores(IMAGES, VOCAB[:0], k=1, chunk_size=8192)
    with pytest.raises(ValueError, match="4-d but phenotype embeddings are 3-d"):
        top_k_scores(IMAGES, VOCAB[:, :3], k=1, chunk_size=8192)


def test_report_matching_is_case_insensitive_whole_phrase():
    phrases = ["Pneumonia", "left", "lower lung", "lung", "Pleural Effusion"]
    found = match_report_phrases(
        [
            "There is PNEUMONIA on the left.",
            "leftover pneumonias",
            "small pleural effusion, left lower lung",
            "",
        ],
        phrases,
    )
    assert found == [[0, 1], [], [1, 2, 3, 4], []]


def test_location_phrases_name_only_side_and_zone():
    raw = {"finding_synonyms": {}, "location_phrases": {"left": {"side": "left", "lobe": "upper"}}}
    with pytest.raises(ParameterError, match=r"phenotyping.evaluation.location_phrases\['left'\]: unknown key 'lobe'"):
        PhraseMeanings.parse(raw, "phenotyping.evaluation")
