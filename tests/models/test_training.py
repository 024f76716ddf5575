"""models/training.py: loss, match targets, schedule, augmentation, sentences, centring and the loop."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from medclip.modeling_medclip import MedCLIPModel

from medclip_residuals.data.preprocess import MEDCLIP_MEAN, MEDCLIP_STD
from medclip_residuals.models.compute import cpu_supports_bf16
from medclip_residuals.models.medclip_loader import build_demo_encoder
from medclip_residuals.models.training import (
    Augmentation,
    LayerTokens,
    ReportSimilarity,
    augment,
    center_projection_heads,
    clip_loss,
    fit_contrastive,
    label_matrix,
    learning_rate_at,
    local_alignment_logits,
    match_weights,
    report_sentences,
    sample_sentences,
    text_groups,
)
from medclip_residuals.pipelines.encoder_training.params import EncoderTrainingParams

TINY_DEMO = {
    "image_size": 32, "text_max_length": 8, "allow_global_windows": False, "lowercase": True,
    "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2},
    "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
             "max_position_embeddings": 8},
}
# What these tests leave out of the training settings: no augmentation, no sentence sampling,
# plain CLIP targets, no floor under the learning rate.
PLAIN = {"min_learning_rate": 0.0, "weight_decay": 0.05, "grad_clip_norm": 1.0, "sentence_sampling": 0.0,
         "label_match_weight": 0.0, "soft_target_temperature": None, "augment": None}
NO_AUGMENTATION = {"rotate_degrees": 0.0, "scale": 0.0, "translate": 0.0, "brightness": 0.0, "contrast": 0.0,
                   "noise": 0.0}


def _settings(base_params, **overrides) -> EncoderTrainingParams:
    return EncoderTrainingParams.parse(base_params("encoder_training", {**PLAIN, **overrides}), "encoder_training")


def test_clip_loss_matches_medclip_for_distinct_texts_and_merges_duplicates():
    logits = torch.randn(5, 5, generator=torch.Generator().manual_seed(0)) * 3
    medclip = SimpleNamespace(contrastive_loss=lambda x: MedCLIPModel.contrastive_loss(None, x))
    expected = MedCLIPModel.clip_loss(medclip, logits.t())  # MedCLIP passes logits_per_text
    torch.testing.assert_close(clip_loss(logits, torch.arange(5)), expected)

    groups = text_groups(["There is  pneumonia", "no finding", "there is pneumonia", "No finding", "x"])
    assert groups.tolist() == [0, 1, 0, 1, 2]
    # texts 0 and 2 are the same: which image is paired with which copy must not matter
    swapped = logits[:, [2, 1, 0, 3, 4]]
    torch.testing.assert_close(clip_loss(swapped, groups), clip_loss(logits, groups))
    assert not torch.isclose(clip_loss(swapped, torch.arange(5)), clip_loss(logits, torch.arange(5)))
    assert clip_loss(torch.eye(5) * 50, torch.arange(5)) < 1e-6
    # a weight matrix that is the identity of the groups gives the same loss as the groups
    weights = (groups[:, None] == groups[None, :]).float()
    torch.testing.assert_close(clip_loss(logits, weights), clip_loss(logits, groups))


def test_report_similarity_weighs_shared_rare_words():
    reports = ["left upper lung pneumonia", "there is pneumonia in the left upper lung", "right lower lung nodule",
               "the heart is enlarged", "the lungs are clear"] * 3
    weights = ReportSimilarity(reports, temperature=0.2)(reports[:5] + ["left upper lung pneumonia"])
    assert weights.shape == (6, 6) and torch.allclose(weights, weights.t())
    assert weights[0, 5] == 1.0 and torch.all(weights.diagonal() == 1.0)
    assert weights[0, 1] > weights[0, 2] > 0  # same finding and place beats another finding
    assert weights[0, 3] < 0.05
    with pytest.raises(ValueError, match="soft_target_temperature"):
        ReportSimilarity(reports, temperature=0)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    rates = [learning_rate_at(step, 100, 10, 1e-3, 1e-5) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert rates[-1] == pytest.approx(1e-5, rel=0.05)


def test_augmentation_keeps_sides_and_shape():
    black = -MEDCLIP_MEAN / MEDCLIP_STD
    batch = torch.full((8, 1, 32, 32), black)
    batch[..., :, 20:] = (1 - MEDCLIP_MEAN) / MEDCLIP_STD  # bright on the image's right
    params = Augmentation(rotate_degrees=5, scale=0.06, translate=0.04, brightness=0.05, contrast=0.1, noise=0.02)
    moved = augment(batch, params, torch.Generator().manual_seed(0))
    assert moved.shape == batch.shape
    assert not torch.equal(moved, batch)
    right, left = moved[..., :, 22:].mean(dim=(1, 2, 3)), moved[..., :, :10].mean(dim=(1, 2, 3))
    assert (right > left + 2).all()  # never flipped
    same = augment(batch, params, torch.Generator().manual_seed(0))
    assert torch.equal(moved, same)
    assert torch.equal(augment(batch, None, torch.Generator()), batch)


def test_report_sentences_and_sampling():
    report = "there is pleural effusion on the lower lung. left upper lung nodule; the heart is enlarged, and more"
    assert report_sentences(report) == [
        "there is pleural effusion on the lower lung", "left upper lung nodule", "the heart is enlarged", "more",
    ]
    assert report_sentences("pleural effusions on the left and right lower lung.") == [
        "pleural effusions on the left and right lower lung"
    ]
    reports = [report, "no finding"] * 20
    assert sample_sentences(reports, 0.0, torch.Generator()) == reports
    sampled = sample_sentences(reports, 1.0, torch.Generator().manual_seed(0))
    assert all(text in report_sentences(report) for text in sampled[::2])
    assert sampled[1::2] == ["no finding"] * 20
    assert len(set(sampled[::2])) > 1


@pytest.mark.parametrize("bf16", [False, pytest.param(True, marks=pytest.mark.skipif(
    not cpu_supports_bf16(), reason="this CPU computes bf16 only by emulation"))])
def test_fit_contrastive_learns_a_planted_pairing(base_params, bf16):
    """Bright-left images say "left", bright-right images say "right": the loss must fall
    and each image must end nearer its own text than the other one, in float32 and under bf16
    autocast (whose weights, loss and optimiser stay float32)."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(32, 1, 32, 32, generator=generator) * 0.1 - 1
    pixels[0::2, :, :, :12] += 3  # image's left
    pixels[1::2, :, :, 20:] += 3  # image's right
    reports = ["opacity on the left", "opacity on the right"] * 16
    encoder = build_demo_encoder(TINY_DEMO, reports, seed=0)
    epochs_seen = []
    params = _settings(base_params, epochs=12, batch_size=16, learning_rate=3e-3, warmup_epochs=1, bf16=bf16)
    history = fit_contrastive(encoder, pixels, reports, params, seed=0,
                              on_epoch_end=lambda epoch, enc: epochs_seen.append(epoch))
    assert epochs_seen == list(range(1, 13))
    assert len(history) == 24 and history["step"].tolist() == list(range(1, 25))
    first, last = history["loss"].iloc[:2].mean(), history["loss"].iloc[-2:].mean()
    assert last < first - 0.2
    assert not encoder.model.training
    assert all(weight.dtype == torch.float32 for weight in encoder.model.parameters())
    texts = encoder.encode_texts(["opacity on the left", "opacity on the right"])
    with torch.inference_mode():
        images = encoder.encode_images(pixels).numpy()
    choice = (images @ texts.T).argmax(axis=1)
    assert (choice == np.arange(32) % 2).mean() > 0.9


def test_centering_spreads_the_initial_embeddings_without_changing_the_forward():
    reports = [f"opacity on the left number {i}" for i in range(24)]
    encoder = build_demo_encoder(TINY_DEMO, reports, seed=1)
    pixels = torch.randn(24, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.2 + 0.5
    before = encoder.model.state_dict()
    before = {key: value.clone() for key, value in before.items()}
    spread = center_projection_heads(encoder, pixels, reports)
    assert spread["vision_cosine_before"] > 0.5 and spread["text_cosine_before"] > 0.5
    assert abs(spread["vision_cosine_after"]) < 0.1 and abs(spread["text_cosine_after"]) < 0.1
    changed = {key for key, value in encoder.model.state_dict().items() if not torch.equal(value, before[key])}
    assert changed == {"vision_model.projection_head.weight", "text_model.projection_head.weight"}
    assert encoder.model.training  # the mode it had


def test_label_matches_make_studies_with_shared_findings_partial_positives():
    rows = pd.DataFrame({"No Finding": [1.0, 1.0, 0.0, 0.0], "Pneumonia": [0.0, 0.0, 1.0, -1.0],
                         "Edema": [np.nan, 0.0, 1.0, 0.0], "report": ["a", "b", "c", "d"]})
    labels = label_matrix(rows)
    # columns in CheXpert order: No Finding, Edema, Pneumonia; uncertain counts half
    np.testing.assert_array_equal(labels, [[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0.5]])
    vectors = torch.nn.functional.normalize(torch.as_tensor(labels), dim=1)
    weights = match_weights(["a", "b", "c", "a"], torch.arange(4), None, vectors, 0.5)
    assert weights[0, 1] == pytest.approx(0.5)  # two normal studies
    assert weights[0, 3] == 1.0  # identical text
    assert weights[2, 3] == pytest.approx(0.5 / 2 ** 0.5)  # pneumonia+edema vs uncertain pneumonia
    assert weights[0, 2] == 0.0
    assert label_matrix(rows[["report"]]) is None


def test_training_is_deterministic_given_the_seed(base_params):
    pixels = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    reports = ["opacity on the left. effusion on the right", "opacity on the right"] * 8
    params = _settings(base_params, epochs=2, batch_size=8, learning_rate=1e-3, sentence_sampling=0.5,
                       augment={**NO_AUGMENTATION, "rotate_degrees": 5, "translate": 0.05, "noise": 0.02})
    runs = []
    for _ in range(2):
        encoder = build_demo_encoder(TINY_DEMO, reports, seed=5)
        history = fit_contrastive(encoder, pixels, reports, params, seed=5)
        runs.append((history["loss"].tolist(), encoder.encode_texts(["opacity on the left"])))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_last_stage_tokens_are_the_parts_the_image_embedding_averages():
    """The hooked tokens, carried by the projection head, average to the vision model's own
    (unnormalised) embedding: the local loss and the image embedding see the same tokens."""
    encoder = build_demo_encoder(TINY_DEMO, ["a report"], seed=2)
    pixels = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    tokens = LayerTokens(encoder.vision_model)
    with torch.no_grad():
        embeddings = encoder.vision_model(pixels)
        projected = tokens.projected()
    assert projected.shape == (3, 16, 512)  # 32 px, 4-px patches (8 x 8), one patch merging: 4 x 4
    torch.testing.assert_close(projected.mean(dim=1), embeddings, rtol=1e-4, atol=1e-5)
    tokens.remove()
    with torch.no_grad():
        encoder.vision_model(pixels)
    assert tokens.tokens is None  # the hook is gone
    with pytest.raises(RuntimeError, match="no forward pass recorded the tokens of model.layernorm"):
        tokens.projected()


def test_local_alignment_pools_the_tokens_most_like_the_text():
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=1)
    # image 0: one token is text 0, three are orthogonal to both texts; image 1: all tokens halfway
    tokens = torch.tensor([[[2.0, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]],
                           [[1.0, 1, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0]]])
    sharp = local_alignment_logits(tokens, text, pool_temperature=0.01)
    assert sharp[0, 0] == pytest.approx(1.0, abs=1e-3)  # the one matching token carries it
    assert sharp[0, 1] == pytest.approx(0.0, abs=1e-3)
    torch.testing.assert_close(sharp[1], torch.full((2,), 2 ** -0.5))
    flat = local_alignment_logits(tokens, text, pool_temperature=1e3)
    assert flat[0, 0] == pytest.approx(0.25, abs=1e-3)  # a high temperature is the mean
    assert flat[0, 0] < local_alignment_logits(tokens, text, pool_temperature=0.1)[0, 0] < sharp[0, 0]
