"""Phenotyping nodes on hand-made vectors with known answers (complete parameters: conf/base's
phenotyping with overrides)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pandas as pd
import pytest

from medclip_residuals.pipelines.phenotyping.nodes import (
    embed_phenotypes,
    evaluate_phenotypes,
    make_phenotype_table,
    score_phenotypes,
)
from medclip_residuals.utils.frames import matrix_to_embeddings

VOCAB = np.eye(4, dtype=np.float32)  # phrase j is axis j: score j of an image is its j-th value
IMAGES = np.array([[0.1, 0.9, 0.3, 0.0], [0.5, 0.2, 0.7, 0.1], [0.0, 0.1, 0.2, 0.95]], dtype=np.float32)
PHRASES = ["Pneumonia", "Edema", "left", "right"]
NO_MENTIONS = pd.DataFrame(columns=["image_id", "finding", "status", "text", "sentence", "sentence_text", "side", "zone"])


def all_test(manifest: pd.DataFrame) -> pd.DataFrame:
    """A study split that puts every image of `manifest` in the test role (one patient each)."""
    ids = manifest["image_id"].astype(str)
    return pd.DataFrame({"image_id": ids, "patient_id": ids, "role": "test"})


def frames(images=IMAGES, vocab=VOCAB, phrases=PHRASES):
    ids = [f"img{j}" for j in range(len(images))]
    manifest = pd.DataFrame({"image_id": ids, "patient_id": ids, "report": ""})
    return (
        matrix_to_embeddings(ids, images),
        matrix_to_embeddings(phrases, vocab, id_column="phrase"),
        manifest,
    )


@pytest.fixture
def make_params(base_params):
    """Factory: conf/base's phenotyping parameters (top_k 2, strategy sentence, source
    predicted, phrase_order vocabulary, ...) with overrides."""

    def make(**overrides):
        return base_params("phenotyping", **overrides)

    return make


def test_score_phenotypes_table(make_params):
    images, vocab, manifest = frames()
    table = score_phenotypes(images, vocab, manifest, make_params(top_k=2, chunk_size=2), "cpu")
    assert list(table.columns) == ["image_id", "index_1", "index_2", "score_1", "score_2"]
    assert table["index_1"].tolist() == [1, 2, 3]
    assert table["index_2"].tolist() == [2, 0, 2]
    np.testing.assert_allclose(table["score_1"], [0.9, 0.7, 0.95], rtol=1e-6)


def test_score_phenotypes_clear_errors(make_params):
    images, vocab, manifest = frames()
    with pytest.raises(ValueError, match=r"top_k = 5 is larger than the phenotype vocabulary \(4 phrases"):
        score_phenotypes(images, vocab, manifest, make_params(top_k=5), "cpu")
    with pytest.raises(ValueError, match="vocabulary is empty"):
        score_phenotypes(images, vocab.iloc[:0], manifest, make_params(top_k=1), "cpu")
    bad = images.copy()
    bad.loc[1, "e002"] = np.nan
    with pytest.raises(ValueError, match=r"image_embeddings: row 1 \(image_id='img1'\), column 'e002'"):
        score_phenotypes(bad, vocab, manifest, make_params(top_k=1), "cpu")
    bad_vocab = vocab.copy()
    bad_vocab.loc[3, "e000"] = np.inf
    with pytest.raises(ValueError, match=r"phenotype_embeddings: row 3 \(phrase='right'\), column 'e000'"):
        score_phenotypes(images, bad_vocab, manifest, make_params(top_k=1), "cpu")
    with pytest.raises(ValueError, match=r"1 image_id\(s\) are not in image_manifest, e.g. row 2 'img2'"):
        score_phenotypes(images, vocab, manifest.iloc[:2], make_params(top_k=1), "cpu")
    duplicated = pd.concat([images, images.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match="row 3, column 'image_id': duplicate id 'img0'"):
        score_phenotypes(duplicated, vocab, manifest, make_params(top_k=1), "cpu")


def test_phenotype_table_is_long_and_ranked(make_params):
    images, vocab, manifest = frames()
    table = make_phenotype_table(score_phenotypes(images, vocab, manifest, make_params(), "cpu"), vocab)
    assert len(table) == 6
    first = table[table["image_id"] == "img1"]
    assert first["rank"].tolist() == [1, 2]
    assert first["phenotype"].tolist() == ["left", "Pneumonia"]
    np.testing.assert_allclose(first["score"], [0.7, 0.5], rtol=1e-6)


class RecordingEncoder:
    def __init__(self, dim=4):
        self.calls = []
        self.dim = dim

    def encode_texts(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, len(text) % self.dim] = 1.0
        return out




def test_sentence_strategy_embeds_each_unique_sentence_once(make_params):
    images = np.vstack([IMAGES, IMAGES[:1]])  # img3 has the same phenotypes as img0
    image_frame, vocab, manifest = frames(images)
    scores = score_phenotypes(image_frame, vocab, manifest, make_params(), "cpu")
    encoder = RecordingEncoder()
    w = embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, encoder, make_params())
    expected = [
        "The phenotype are: Edema, left",  # img0: top (Edema, left) in vocabulary order
        "The phenotype are: Pneumonia, left",  # img1: top (left, Pneumonia), listed in vocabulary order
        "The phenotype are: left, right",
    ]
    assert encoder.calls == [expected]
    assert w["phenotypes"].tolist() == ["Edema, left", "Pneumonia, left", "left, right", "Edema, left"]
    assert (w["phenotype_source"] == "predicted").all()
    np.testing.assert_array_equal(w.loc[3, ["e000", "e001", "e002", "e003"]], w.loc[0, ["e000", "e001", "e002", "e003"]])
    np.testing.assert_array_equal(w.filter(like="e0").to_numpy()[1], encoder.encode_texts([expected[1]])[0])
    ranked = embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, RecordingEncoder(), make_params(phrase_order="rank"))
    assert ranked["phenotypes"].tolist()[1] == "left, Pneumonia"


def test_mean_and_concat_strategies(make_params):
    image_frame, vocab, manifest = frames()
    scores = score_phenotypes(image_frame, vocab, manifest, make_params(), "cpu")
    mean = embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, None, make_params(strategy="mean"))
    np.testing.assert_allclose(mean.filter(like="e0").to_numpy()[1], [2**-0.5, 0, 2**-0.5, 0], atol=1e-6)
    concat = embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, None, make_params(strategy="concat"))
    columns = [c for c in concat.columns if c.startswith("e")]
    assert len(columns) == 8
    np.testing.assert_array_equal(concat[columns].to_numpy()[1], np.concatenate([VOCAB[0], VOCAB[2]]))


def _mentions(*rows):
    columns = ["image_id", "finding", "status", "sentence_text"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows], columns=columns)


LOCATIONS = {"evaluation": {"location_phrases": {"left": {"side": "left"}, "right": {"side": "right"}}}}


def test_report_source_takes_affirmed_findings_with_their_sentences_locations(make_params):
    image_frame, vocab, manifest = frames()
    scores = score_phenotypes(image_frame, vocab, manifest, make_params(), "cpu")
    mentions = _mentions(
        ("img0", "Pneumonia", "affirmed", "Right sided opacity, PNEUMONIA."),
        ("img0", "Edema", "negated", "No edema on the left."),  # negated: neither Edema nor left
        ("img1", "Pneumonia", "negated", "No pneumonia."),
        ("img1", "Edema", "uncertain", "Possible edema."),
        ("img2", "Edema", "affirmed", "Edema."),
    )
    w = embed_phenotypes(scores, vocab, manifest, mentions, RecordingEncoder(), make_params(source="report", **LOCATIONS))
    assert w["phenotypes"].tolist() == ["Pneumonia, right", "Pneumonia, left", "Edema"]
    assert w["phenotype_source"].tolist() == ["report", "fallback", "report"]
    included = embed_phenotypes(
        scores, vocab, manifest, mentions, RecordingEncoder(), make_params(source="report", report_uncertain="include", **LOCATIONS)
    )
    assert included["phenotypes"].tolist()[1] == "Edema"
    concat = embed_phenotypes(scores, vocab, manifest, mentions, None, make_params(source="report", strategy="concat", **LOCATIONS))
    # img2's report names one phrase: filled with its best predicted phrase (right)
    assert concat["phenotypes"].tolist()[2] == "Edema, right"
    assert concat["phenotype_source"].tolist() == ["report", "fallback", "report_filled"]
    with pytest.raises(ValueError, match="image 'img1'.*affirms no phrase"):
        embed_phenotypes(scores, vocab, manifest, mentions, RecordingEncoder(), make_params(source="report", report_fallback="error"))
    with pytest.raises(ValueError, match="phenotyping.report_uncertain: 'yes' is not one of"):
        embed_phenotypes(scores, vocab, manifest, mentions, RecordingEncoder(), make_params(source="report", report_uncertain="yes"))
    metrics = evaluate_phenotypes(scores, vocab, w, manifest, pd.DataFrame(), all_test(manifest), make_params(source="report"))
    assert metrics["phenotype_sources"] == {"fallback": 1, "report": 2}


def test_bad_parameters_and_encoder_output_are_errors(make_params):
    image_frame, vocab, manifest = frames()
    scores = score_phenotypes(image_frame, vocab, manifest, make_params(), "cpu")
    with pytest.raises(ValueError, match="phenotyping.strategy: 'max' is not one of"):
        embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, None, make_params(strategy="max"))
    with pytest.raises(ValueError, match="top_k is 3"):
        embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, None, make_params(top_k=3))

    class NaNEncoder:
        def encode_texts(self, texts):
            return np.full((len(texts), 4), np.nan, dtype=np.float32)

    with pytest.raises(ValueError, match="NaN/inf for the sentence"):
        embed_phenotypes(scores, vocab, manifest, NO_MENTIONS, NaNEncoder(), make_params())


def _evaluation_case(make_params):
    """Two images, four phrases; the location phrases are exactly left, right, near the heart."""
    image_frame, vocab, _ = frames(IMAGES[:2] * 0)
    scores = pd.DataFrame(
        {"image_id": ["img0", "img1"], "index_1": [0, 0], "index_2": [2, 3], "score_1": [0.9, 0.9], "score_2": [0.5, 0.5]}
    )
    manifest = pd.DataFrame(
        {"image_id": ["img0", "img1"], "Pneumonia": [1.0, 0.0], "Edema": [0.0, 1.0], "report": ""}
    )
    localizations = pd.DataFrame({"image_id": ["img0"], "finding": ["Pneumonia"], "side": ["left"], "zone": [""]})
    params = make_params()
    params["evaluation"]["location_phrases"] = {"left": {"side": "left"}, "right": {"side": "right"}, "near the heart": {"zone": "heart"}}
    w = pd.DataFrame({"image_id": ["img0", "img1"], "phenotype_source": "predicted", "e000": [0.0, 0.0]})
    return scores, vocab, w, manifest, localizations, all_test(manifest), params


def test_evaluation_known_answer_and_exact_chance(make_params):
    metrics = evaluate_phenotypes(*_evaluation_case(make_params))
    evaluation = metrics["evaluation"]
    # img0: top (Pneumonia, left), truth {Pneumonia, left}; img1: top (Pneumonia, right), truth {Edema}
    assert evaluation["all"]["n_images"] == 2
    assert evaluation["all"]["precision_at_k"] == pytest.approx(0.5)
    assert evaluation["all"]["recall_at_k"] == pytest.approx(0.5)
    assert evaluation["all"]["hit_rate_at_k"] == pytest.approx(0.5)
    chance = evaluation["all"]["chance"]
    assert chance["precision_at_k"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert chance["recall_at_k"] == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) for every concept
    assert chance["hit_rate_at_k"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert evaluation["findings"]["precision_at_k"] == pytest.approx(0.25)
    assert evaluation["findings"]["recall_at_k"] == pytest.approx(0.5)
    assert evaluation["locations"] == {
        "n_images": 1,
        "precision_at_k": 0.5,
        "recall_at_k": 1.0,
        "hit_rate_at_k": 1.0,
        "chance": {"precision_at_k": 0.25, "recall_at_k": 0.5, "hit_rate_at_k": 0.5},
    }
    assert metrics["location_phrases_not_in_vocabulary"] == ["near the heart"]
    assert metrics["evaluable_phrases"] == {"findings": ["Edema", "Pneumonia"], "locations": ["left", "right"]}


def test_chance_rates_agree_with_random_draws(make_params):
    """The hypergeometric chance rates equal the averages over every possible k-subset."""
    scores, vocab, w, manifest, localizations, _, params = _evaluation_case(make_params)
    chance = evaluate_phenotypes(scores, vocab, w, manifest, localizations, all_test(manifest), params)["evaluation"]["all"]["chance"]
    subsets = list(itertools.combinations(range(4), 2))
    observed = {"precision_at_k": [], "recall_at_k": [], "hit_rate_at_k": []}
    for first, second in itertools.product(subsets, repeat=2):
        table = scores.assign(index_1=[first[0], second[0]], index_2=[first[1], second[1]])
        result = evaluate_phenotypes(table, vocab, w, manifest, localizations, all_test(manifest), params)["evaluation"]["all"]
        for key, values in observed.items():
            values.append(result[key])
    for key, values in observed.items():
        assert np.mean(values) == pytest.approx(chance[key])


def test_evaluation_without_ground_truth_says_so(make_params):
    scores, vocab, w, manifest, _, _, params = _evaluation_case(make_params)
    metrics = evaluate_phenotypes(scores, vocab, w, manifest[["image_id", "report"]], pd.DataFrame(), all_test(manifest), params)
    assert metrics["evaluation"].startswith("not available")


def test_combined_location_phrase_needs_everything_it_names(make_params):
    scores, vocab, w, manifest, localizations, _, params = _evaluation_case(make_params)
    params = copy.deepcopy(params)
    params["evaluation"]["location_phrases"]["left"] = {"side": "left", "zone": "lower"}
    metrics = evaluate_phenotypes(scores, vocab, w, manifest, localizations, all_test(manifest), params)
    # img0's localization says left but no zone: "left" (now "left lower") is not correct
    assert metrics["evaluation"]["locations"]["precision_at_k"] == 0.0
