"""The published-weights profiles, on tiny random backbones saved in MedCLIP's own format.

The reference model is built by MedCLIP's own constructors with `unittest.mock` standing in
for the hub (not through the code under test); its state dict is saved as MedCLIP saves it,
with the `position_ids` key that old transformers wrote.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
import torchvision
import transformers
from medclip import modeling_medclip
from medclip.modeling_medclip import MedCLIPModel, MedCLIPVisionModel, MedCLIPVisionModelViT
from transformers import BertConfig, BertModel, SwinConfig, SwinModel

from medclip_residuals.models import medclip_loader
from medclip_residuals.models.medclip_loader import (
    POSITION_IDS_KEY,
    TEXT_HUB_ID,
    VISION_HUB_ID,
    CheckpointMismatchError,
    EncoderFileNotFoundError,
    EncoderParams,
    check_local_windows,
    load_encoder,
    load_medclip_checkpoint,
    load_published_encoder,
    medclip_backbones,
    stage_grids,
)

WORDS = ["there", "is", "no", "pneumonia", "effusion", "left", "right", "lung", "heart", "near", "the", "finding"]
TEXTS = ["there is pneumonia", "no finding", "effusion near the heart", "pneumonia left lung zebra"]
MAX_POSITIONS = 24
PUBLISHED_ARGS = ("profile", "weights_dir", "vision_backbone_dir", "text_backbone_dir", "allow_download", "text_max_length")


def _published_args(base_params, **overrides) -> dict:
    """load_published_encoder's arguments: conf/base's `encoder` parameters with `overrides`."""
    encoder = base_params("encoder", **overrides)
    return {key: encoder[key] for key in PUBLISHED_ARGS}


def _save_tiny_backbones(root: Path) -> tuple[Path, Path]:
    """A 768-wide one-stage Swin and a 768-wide two-layer BERT (MedCLIP's heads take 768)."""
    torch.manual_seed(0)
    swin_dir, bert_dir = root / "swin", root / "bert"
    swin = SwinModel(
        SwinConfig(image_size=32, patch_size=8, embed_dim=768, depths=[1], num_heads=[2], window_size=2, mlp_ratio=0.05)
    )
    swin.save_pretrained(swin_dir)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    bert = BertModel(
        BertConfig(
            vocab_size=len(vocab), hidden_size=768, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=16, max_position_embeddings=MAX_POSITIONS,
        )
    )
    bert.save_pretrained(bert_dir)
    # Bio_ClinicalBERT's repository holds config.json and vocab.txt, no tokenizer config.
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return swin_dir, bert_dir


class _HubFromFolders:
    """What the hub would have answered, from local folders."""

    def __init__(self, folders: dict[str, Path], auto: type) -> None:
        self.folders, self.auto = folders, auto

    def from_pretrained(self, name, **kwargs):
        return self.auto.from_pretrained(str(self.folders[name]), local_files_only=True, **kwargs)


def _reference_medclip(swin_dir: Path, bert_dir: Path, vision_cls: type) -> MedCLIPModel:
    folders = {VISION_HUB_ID: swin_dir, TEXT_HUB_ID: bert_dir}
    offline_torchvision = SimpleNamespace(
        models=SimpleNamespace(resnet50=lambda pretrained: torchvision.models.resnet50(weights=None))
    )
    with (
        mock.patch.object(modeling_medclip, "AutoModel", _HubFromFolders(folders, transformers.AutoModel)),
        mock.patch.object(modeling_medclip, "AutoTokenizer", _HubFromFolders(folders, transformers.AutoTokenizer)),
        mock.patch.object(modeling_medclip, "torchvision", offline_torchvision),
    ):
        torch.manual_seed(1)
        model = MedCLIPModel(vision_cls=vision_cls)
    with torch.no_grad():
        model.logit_scale.fill_(2.5)
    return model.eval()


def _save_medclip_checkpoint(model: MedCLIPModel, folder: Path, extra: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    state[POSITION_IDS_KEY] = torch.arange(MAX_POSITIONS).unsqueeze(0)  # as transformers 4.2x saved it
    state.update(extra or {})
    path = folder / "pytorch_model.bin"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def published_vit(tmp_path_factory, base_params):
    root = tmp_path_factory.mktemp("medclip_vit")
    swin_dir, bert_dir = _save_tiny_backbones(root)
    reference = _reference_medclip(swin_dir, bert_dir, MedCLIPVisionModelViT)
    weights = _save_medclip_checkpoint(reference, root / "weights")
    params = _published_args(
        base_params,
        profile="medclip_vit",
        weights_dir=str(weights.parent),
        vision_backbone_dir=str(swin_dir),
        text_backbone_dir=str(bert_dir),
        text_max_length=MAX_POSITIONS,
    )
    return SimpleNamespace(root=root, swin_dir=swin_dir, bert_dir=bert_dir, reference=reference, params=params)


def _reference_texts(reference: MedCLIPModel, bert_dir: Path, texts: list[str]) -> np.ndarray:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bert_dir), local_files_only=True)
    tokens = tokenizer(texts, padding="max_length", max_length=MAX_POSITIONS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        embeddings = reference.text_model(tokens["input_ids"], tokens["attention_mask"])
    return (embeddings / embeddings.norm(dim=-1, keepdim=True)).numpy()


def test_vit_profile_loads_medclip_checkpoint_and_reproduces_embeddings(published_vit):
    encoder = load_published_encoder(**published_vit.params, device="cpu")
    assert isinstance(encoder.model, MedCLIPModel)
    assert isinstance(encoder.vision_model, MedCLIPVisionModelViT)
    assert (encoder.profile, encoder.image_size, encoder.device.type) == ("medclip_vit", 32, "cpu")
    reference_state = published_vit.reference.state_dict()
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, reference_state[key]), key

    pixels = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    encoder.model.eval()
    with torch.inference_mode():
        ours = encoder.encode_images(pixels)
        theirs = published_vit.reference.encode_image(pixels)  # MedCLIP's own (no .cuda() in it)
    assert ours.shape == (3, 512)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(3))

    texts = encoder.encode_texts(TEXTS, batch_size=3)
    assert texts.dtype == np.float32 and texts.shape == (4, 512)
    np.testing.assert_allclose(texts, _reference_texts(published_vit.reference, published_vit.bert_dir, TEXTS), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-6)


def test_load_encoder_reads_the_encoder_parameters(published_vit, base_params):
    params = EncoderParams.parse(base_params("encoder", published_vit.params), "encoder")
    encoder = load_encoder(params)
    assert encoder.profile == "medclip_vit"
    assert torch.equal(encoder.model.logit_scale, published_vit.reference.logit_scale)
    with pytest.raises(ValueError, match="encoder_training pipeline"):
        load_encoder(EncoderParams.parse(base_params("encoder", profile="demo"), "encoder"))


def test_text_embeddings_do_not_depend_on_the_batch(published_vit):
    encoder = load_published_encoder(**published_vit.params)
    alone = encoder.encode_texts(["no finding"])
    together = encoder.encode_texts(["effusion near the heart and pneumonia left lung", "no finding"])
    np.testing.assert_allclose(alone[0], together[1], atol=1e-6)


def test_text_encoding_runs_on_cpu_without_cuda(published_vit, monkeypatch):
    def no_cuda(*args, **kwargs):
        raise AssertionError("something called .cuda()")

    monkeypatch.setattr(torch.Tensor, "cuda", no_cuda)
    monkeypatch.setattr(torch.nn.Module, "cuda", no_cuda)
    encoder = load_published_encoder(**published_vit.params, device="cpu")
    assert encoder.encode_texts(["there is pneumonia"]).shape == (1, 512)
    assert encoder.encode_images(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    assert encoder.model.training  # encode_texts restores the mode it found


def test_missing_weights_file_says_which_where_and_how(published_vit, tmp_path):
    params = {**published_vit.params, "weights_dir": str(tmp_path / "empty")}
    with pytest.raises(EncoderFileNotFoundError) as caught:
        load_published_encoder(**params)
    message = str(caught.value)
    assert str(tmp_path / "empty" / "pytorch_model.bin") in message
    assert "encoder.weights_dir" in message
    assert "medclip_vit_weight.txt" in message and "allow_download" in message

    with pytest.raises(EncoderFileNotFoundError, match="encoder.weights_dir is not set"):
        load_published_encoder(**{**published_vit.params, "weights_dir": None})


def test_missing_backbone_files_are_named_with_the_download_command(published_vit, tmp_path):
    params = {**published_vit.params, "vision_backbone_dir": str(tmp_path / "swin")}
    with pytest.raises(EncoderFileNotFoundError) as caught:
        load_published_encoder(**params)
    message = str(caught.value)
    assert str(tmp_path / "swin" / "config.json") in message and "encoder.vision_backbone_dir" in message
    assert f"huggingface-cli download {VISION_HUB_ID} config.json" in message


def test_empty_hugging_face_cache_is_reported_at_once_with_every_missing_file(
    published_vit, tmp_path, monkeypatch, base_params
):
    from huggingface_hub import constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.hf_hub_download", mock.Mock(side_effect=AssertionError("download attempted")))
    params = _published_args(base_params, profile="medclip_vit", weights_dir=str(tmp_path / "none"))
    with pytest.raises(EncoderFileNotFoundError) as caught:
        load_published_encoder(**params)
    message = str(caught.value)
    for expected in ("pytorch_model.bin", f"config.json of {TEXT_HUB_ID}", f"vocab.txt of {TEXT_HUB_ID}",
                     f"config.json of {VISION_HUB_ID}", str(tmp_path / "hub")):
        assert expected in message


def test_backbones_are_found_in_the_hugging_face_cache(published_vit, tmp_path, monkeypatch):
    from huggingface_hub import constants as hub_constants

    cache = tmp_path / "hub"
    for hub_id, folder, files in ((TEXT_HUB_ID, published_vit.bert_dir, ("config.json", "vocab.txt")),
                                  (VISION_HUB_ID, published_vit.swin_dir, ("config.json",))):
        repo = cache / f"models--{hub_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / "abc123"
        snapshot.mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text("abc123")
        for name in files:
            (snapshot / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    params = {**published_vit.params, "vision_backbone_dir": None, "text_backbone_dir": None}
    encoder = load_published_encoder(**params)
    np.testing.assert_allclose(
        encoder.encode_texts(TEXTS[:2]), _reference_texts(published_vit.reference, published_vit.bert_dir, TEXTS[:2]),
        atol=1e-6,
    )


def test_unexpected_or_missing_checkpoint_keys_are_errors(published_vit, tmp_path):
    model = published_vit.reference
    _save_medclip_checkpoint(model, tmp_path / "extra", extra={"vision_model.stray.weight": torch.zeros(2)})
    with pytest.raises(CheckpointMismatchError, match=r"1 unexpected key\(s\): vision_model.stray.weight"):
        load_published_encoder(**{**published_vit.params, "weights_dir": str(tmp_path / "extra")})

    state = {k: v for k, v in model.state_dict().items() if k != "logit_scale"}
    (tmp_path / "missing").mkdir()
    torch.save(state, tmp_path / "missing" / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatchError, match=r"1 missing key\(s\): logit_scale"):
        load_published_encoder(**{**published_vit.params, "weights_dir": str(tmp_path / "missing")})


def test_checkpoint_without_position_ids_loads_and_pickles_are_refused(published_vit, tmp_path):
    model = published_vit.reference
    (tmp_path / "plain").mkdir()
    torch.save(model.state_dict(), tmp_path / "plain" / "pytorch_model.bin")
    encoder = load_published_encoder(**{**published_vit.params, "weights_dir": str(tmp_path / "plain")})
    reference_state = model.state_dict()
    assert POSITION_IDS_KEY not in reference_state
    with torch.no_grad():  # spoil every weight, then load the file again: each one comes back
        for value in encoder.model.state_dict().values():
            if value.is_floating_point():
                value.add_(1.0)
    assert not torch.equal(encoder.model.logit_scale, model.logit_scale)
    load_medclip_checkpoint(encoder.model, tmp_path / "plain" / "pytorch_model.bin")
    for key, value in encoder.model.state_dict().items():
        assert torch.equal(value, reference_state[key]), key

    (tmp_path / "pickled").mkdir()
    torch.save({"model": SimpleNamespace(a=1)}, tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(CheckpointMismatchError, match="weights_only=True"):
        load_medclip_checkpoint(encoder.model, tmp_path / "pickled" / "pytorch_model.bin")


def test_allow_download_fetches_the_zip_that_medclip_links(published_vit, tmp_path, monkeypatch):
    archive = tmp_path / "medclip-vit.zip"
    buffer = io.BytesIO()
    torch.save({**published_vit.reference.state_dict()}, buffer)
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("pytorch_model.bin", buffer.getvalue())
    link = tmp_path / "medclip_vit_weight.txt"
    link.write_text(archive.as_uri() + "\n")
    monkeypatch.setitem(medclip_loader.WEIGHT_URL_FILES, "vit", link.as_uri())
    params = {**published_vit.params, "weights_dir": str(tmp_path / "fetched"), "allow_download": True}
    encoder = load_published_encoder(**params)
    assert (tmp_path / "fetched" / "pytorch_model.bin").is_file()
    assert torch.equal(encoder.model.logit_scale, published_vit.reference.logit_scale)


def test_resnet_profile_builds_without_downloading(published_vit, tmp_path, monkeypatch, base_params):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", mock.Mock(side_effect=AssertionError("download")))
    reference = _reference_medclip(published_vit.swin_dir, published_vit.bert_dir, MedCLIPVisionModel)
    weights = _save_medclip_checkpoint(reference, tmp_path / "resnet")
    params = _published_args(base_params, profile="medclip_resnet", weights_dir=str(weights.parent),
                             text_backbone_dir=str(published_vit.bert_dir), text_max_length=MAX_POSITIONS)
    encoder = load_published_encoder(**params)
    assert isinstance(encoder.vision_model, MedCLIPVisionModel) and encoder.image_size == 224
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    encoder.model.eval()
    with torch.inference_mode():
        torch.testing.assert_close(encoder.encode_images(pixels), reference.encode_image(pixels), rtol=0, atol=1e-6)


def test_patch_is_undone_even_when_construction_fails():
    originals = (modeling_medclip.AutoModel, modeling_medclip.AutoTokenizer, modeling_medclip.torchvision)
    with pytest.raises(KeyError, match="was not given"), medclip_backbones({}):
        MedCLIPModel(vision_cls=MedCLIPVisionModelViT)
    assert (modeling_medclip.AutoModel, modeling_medclip.AutoTokenizer, modeling_medclip.torchvision) == originals


def test_demo_profile_uses_medclip_classes_with_narrow_heads(tiny_demo_encoder):
    encoder = tiny_demo_encoder(["There is Pneumonia on the left."], seed=0)
    assert isinstance(encoder.model, MedCLIPModel) and isinstance(encoder.vision_model, MedCLIPVisionModelViT)
    assert encoder.vision_model.projection_head.in_features == 16  # 8 * 2**(2 stages - 1)
    assert encoder.model.text_model.projection_head.in_features == 16
    assert "pneumonia" in encoder.tokenizer.get_vocab() and "heart" in encoder.tokenizer.get_vocab()
    with torch.inference_mode():
        images = encoder.encode_images(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(images.norm(dim=-1), torch.ones(2))
    again = tiny_demo_encoder(["There is Pneumonia on the left."], seed=0)
    np.testing.assert_array_equal(encoder.encode_texts(["pneumonia"]), again.encode_texts(["pneumonia"]))


def test_demo_geometry_refuses_windows_that_cover_a_whole_stage():
    with pytest.raises(ValueError, match=r"stage grids \[8, 4, 2\].*stage\(s\) \[2\]"):
        check_local_windows(SwinConfig(image_size=32, patch_size=4, depths=[1, 1, 1], num_heads=[1, 1, 1], window_size=2))
    fits = SwinConfig(image_size=128, patch_size=4, depths=[2, 2, 2], num_heads=[1, 1, 1], window_size=4)
    assert stage_grids(fits) == [32, 16, 8]
    assert check_local_windows(fits) is None  # every stage grid is wider than its window: accepted
