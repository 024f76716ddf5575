"""encoder_training nodes: patient split, loss, schedule, augmentation, labels and the metric."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from medclip.modeling_medclip import MedCLIPModel

from medclip_residuals.data.preprocess import MEDCLIP_MEAN, MEDCLIP_STD
from medclip_residuals.models.medclip_loader import build_demo_encoder
from medclip_residuals.pipelines.encoder_training.nodes import (
    ReportSimilarity,
    augment,
    center_projection_heads,
    clip_loss,
    evaluate_encoder,
    finding_labels,
    fit_contrastive,
    image_source,
    label_matrix,
    learning_rate_at,
    match_weights,
    report_sentences,
    sample_sentences,
    split_patients,
    text_groups,
)


def _manifest(n_patients: int = 10, per_patient: int = 3) -> pd.DataFrame:
    rows = [
        {"image_id": f"p{p}_{i}", "patient_id": f"p{p}", "image_path": f"/x/p{p}_{i}.png", "report": "r"}
        for p in range(n_patients) for i in range(per_patient)
    ]
    return pd.DataFrame(rows)


def test_split_is_by_patient_seeded_and_sized():
    manifest = _manifest()
    split = split_patients(manifest, {"test_fraction": 0.3}, seed=7)
    assert split["image_id"].tolist() == manifest["image_id"].tolist()
    sides = split.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    assert split.drop_duplicates("patient_id")["split"].value_counts().to_dict() == {"train": 7, "test": 3}
    pd.testing.assert_frame_equal(split, split_patients(manifest, {"test_fraction": 0.3}, seed=7))
    assert not split.equals(split_patients(manifest, {"test_fraction": 0.3}, seed=8))
    with pytest.raises(ValueError, match="at least 2"):
        split_patients(_manifest(n_patients=1), {}, seed=0)
    with pytest.raises(ValueError, match="patient_id"):
        split_patients(manifest.drop(columns="patient_id"), {}, seed=0)


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
    params = {"rotate_degrees": 5, "scale": 0.06, "translate": 0.04, "brightness": 0.05, "contrast": 0.1, "noise": 0.02}
    moved = augment(batch, params, torch.Generator().manual_seed(0))
    assert moved.shape == batch.shape
    assert not torch.equal(moved, batch)
    right, left = moved[..., :, 22:].mean(dim=(1, 2, 3)), moved[..., :, :10].mean(dim=(1, 2, 3))
    assert (right > left + 2).all()  # never flipped
    same = augment(batch, params, torch.Generator().manual_seed(0))
    assert torch.equal(moved, same)
    assert torch.equal(augment(batch, {}, torch.Generator()), batch)


def test_finding_labels_treat_uncertain_as_unknown_and_empty_as_negative():
    rows = pd.DataFrame({"Pneumonia": [1.0, 0.0, -1.0, np.nan], "Edema": [0.0, 0.0, np.nan, 0.0],
                         "No Finding": [0.0, 1.0, 0.0, 1.0]})
    labels = finding_labels(rows, None, ["No Finding"])
    assert list(labels) == ["Pneumonia"]  # Edema has no positive; No Finding is excluded
    np.testing.assert_array_equal(labels["Pneumonia"], [1.0, 0.0, np.nan, 0.0])
    with pytest.raises(ValueError, match="Fracture"):
        finding_labels(rows, ["Fracture"], [])


class _LabelEncoder:
    """Embeds an image by its mean brightness, and any text on one axis: AUC = ranking by brightness."""

    profile, image_size, embed_dim = "demo", 8, 512

    def __init__(self):
        self.model = torch.nn.Module()
        self.model.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def to(self, device):
        return self

    def encode_images(self, pixels):
        out = torch.zeros(len(pixels), 512)
        out[:, 0] = pixels.mean(dim=(1, 2, 3))
        out[:, 1] = 10.0
        return out

    def encode_texts(self, texts):
        out = np.zeros((len(texts), 512), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def test_evaluate_reports_held_out_auc_per_finding(tmp_path):
    from PIL import Image

    rows = []
    for index in range(8):
        path = tmp_path / f"img{index}.png"
        Image.fromarray(np.full((8, 8), 40 + 20 * index, dtype=np.uint8)).save(path)
        rows.append({"image_id": f"img{index}", "image_path": str(path), "patient_id": f"p{index}", "report": "",
                     "Pneumonia": 1.0 if index >= 6 else 0.0, "Edema": 1.0 if index in (1, 3) else np.nan})
    manifest = pd.DataFrame(rows)
    split = manifest[["image_id", "patient_id"]].assign(split=["train", "train"] + ["test"] * 6)
    history = pd.DataFrame({"epoch": [1, 2], "step": [1, 2], "loss": [2.0, 1.0], "learning_rate": [1e-3, 0.0],
                            "temperature": [0.07, 0.07], "seconds": [1.0, 2.0]})
    metrics = evaluate_encoder(_LabelEncoder(), manifest, split, history, {"evaluation": {}}, "cpu")
    assert metrics["auc"]["Pneumonia"] == pytest.approx(1.0)  # the two brightest test images
    # held out: img2..img7, brightness rising; the one Edema positive (img3) beats only img2
    assert metrics["auc"]["Edema"] == pytest.approx(1 / 5)
    assert metrics["positives"] == {"Pneumonia": 2, "Edema": 1}
    assert metrics["held_out_images"] == 6 and metrics["train_images"] == 2
    assert metrics["min_auc"] == pytest.approx(0.2) and metrics["meets_target"] is False
    assert metrics["epochs"] == 2 and metrics["final_epoch_loss"] == 1.0


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


TINY_DEMO = {
    "image_size": 32, "text_max_length": 8,
    "swin": {"patch_size": 4, "embed_dim": 8, "depths": [1, 1], "num_heads": [1, 2], "window_size": 2},
    "bert": {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
             "max_position_embeddings": 8},
}


def test_fit_contrastive_learns_a_planted_pairing():
    """Bright-left images say "left", bright-right images say "right": the loss must fall
    and each image must end nearer its own text than the other one."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(32, 1, 32, 32, generator=generator) * 0.1 - 1
    pixels[0::2, :, :, :12] += 3  # image's left
    pixels[1::2, :, :, 20:] += 3  # image's right
    reports = ["opacity on the left", "opacity on the right"] * 16
    encoder = build_demo_encoder(TINY_DEMO, reports, seed=0)
    epochs_seen = []
    params = {"epochs": 12, "batch_size": 16, "learning_rate": 3e-3, "warmup_epochs": 1}
    history = fit_contrastive(encoder, pixels, reports, params, seed=0,
                              on_epoch_end=lambda epoch, enc: epochs_seen.append(epoch))
    assert epochs_seen == list(range(1, 13))
    assert len(history) == 24 and history["step"].tolist() == list(range(1, 25))
    first, last = history["loss"].iloc[:2].mean(), history["loss"].iloc[-2:].mean()
    assert last < first - 0.2
    assert not encoder.model.training
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


def test_training_is_deterministic_given_the_seed():
    pixels = torch.randn(16, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    reports = ["opacity on the left. effusion on the right", "opacity on the right"] * 8
    params = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "sentence_sampling": 0.5,
              "augment": {"rotate_degrees": 5, "translate": 0.05, "noise": 0.02}}
    runs = []
    for _ in range(2):
        encoder = build_demo_encoder(TINY_DEMO, reports, seed=5)
        history = fit_contrastive(encoder, pixels, reports, params, seed=5)
        runs.append((history["loss"].tolist(), encoder.encode_texts(["opacity on the left"])))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_image_source_caches_within_the_budget_and_streams_the_same_values_beyond(tmp_path, caplog):
    from PIL import Image

    paths = []
    for index in range(5):
        path = tmp_path / f"img{index}.png"
        pixels = np.random.default_rng(index).integers(0, 256, (20 + index, 24), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    # 5 images of 32 x 32 float16 = 10 KB = 0.0098 MB
    with caplog.at_level("INFO"):
        cached = image_source(paths, 32, {"image_cache_mb": 0.0098, "cache_workers": 0}, "training")
        streamed = image_source(paths, 32, {"image_cache_mb": 0.0097, "cache_workers": 0}, "training")
        unlimited = image_source(paths, 32, {"image_cache_mb": None, "cache_workers": 0}, "training")
    assert type(cached).__name__ == "CachedImages" and type(unlimited).__name__ == "CachedImages"
    assert type(streamed).__name__ == "StreamedImages" and len(streamed) == 5
    assert "5 training images streamed from disk per batch (0 DataLoader workers)" in caplog.text
    assert "cached in memory (0.0 MB as float16, no limit)" in caplog.text
    batches = [torch.tensor([3, 0]), torch.tensor([4, 1, 2])]
    state = torch.random.get_rng_state()
    for a, b in zip(cached.batches(batches), streamed.batches(batches), strict=True):
        assert a.dtype == b.dtype == torch.float32 and a.shape[1:] == (1, 32, 32)
        assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)  # streaming leaves torch's global RNG alone
