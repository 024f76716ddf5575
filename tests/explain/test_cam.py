"""CamExplainer on the vision encoder: method lookup, what the maps are, batching, several layers,
shift smoothing, ResNet (the `swin` fixture: tests/explain/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

from medclip_residuals.explain.cam import CAM_METHODS, CamExplainer, resolve_cam_method
from medclip_residuals.explain.heatmap_model import ImageEmbeddingModel
from medclip_residuals.explain.layers import resolve_target_layer
from medclip_residuals.explain.smoothing import shift_image
from medclip_residuals.explain.targets import SimilarityTarget


class TinyResNetVision(nn.Module):
    """Shaped like medclip's MedCLIPVisionModel: `.model` is a torchvision ResNet ending in 512."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.model = resnet18(weights=None, num_classes=512)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values)


def _targets(n: int, seed: int = 0) -> list[SimilarityTarget]:
    rng = np.random.default_rng(seed)
    return [SimilarityTarget(rng.standard_normal(512), label=f"t{k}") for k in range(n)]


# ---------------------------------------------------------------- names


def test_method_names_and_aliases() -> None:
    assert resolve_cam_method("GradCAM").__name__ == "GradCAM"
    assert resolve_cam_method("grad-cam++").__name__ == "GradCAMPlusPlus"
    assert resolve_cam_method("HiRes_CAM").__name__ == "HiResCAM"
    for required in ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam", "scorecam"):
        assert required in CAM_METHODS
    with pytest.raises(ValueError, match="unknown CAM method 'gradkam'.*hirescam"):
        resolve_cam_method("gradkam")


def test_bad_method_or_layer_fails_before_any_forward(swin: nn.Module) -> None:
    calls = []
    handle = swin.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(ValueError, match="does not exist"):
            CamExplainer(swin, "gradcam", "model.nope")
        with pytest.raises(ValueError, match="unknown CAM method"):
            CamExplainer(swin, "nope", "model.layernorm")
    finally:
        handle.remove()
    assert calls == []
    assert not any(m._forward_hooks for m in swin.modules())  # nothing left hooked


# ---------------------------------------------------------------- what the maps are


def test_hirescam_on_a_stage_block_equals_the_hand_computation(swin: nn.Module) -> None:
    # A Swin block returns a tuple; the explainer must follow its first tensor, and lay
    # the tokens out on the right grid (rows = image rows).
    torch.manual_seed(1)
    x = torch.randn(3, 3, 60, 52)
    targets = _targets(3)
    with CamExplainer(swin, "hirescam", "model.encoder.layers.0.blocks.0", batch_size=3, progress=False) as explainer:
        maps = explainer(x, targets)

    captured = {}

    def keep(module: nn.Module, inputs: object, output: tuple) -> None:
        captured["tokens"] = output[0]

    handle = swin.model.encoder.layers[0].blocks[0].register_forward_hook(keep)
    try:
        embedding = ImageEmbeddingModel(swin)(x)
    finally:
        handle.remove()
    tokens = captured["tokens"]
    score = sum(target(row) for target, row in zip(targets, embedding))
    (grads,) = torch.autograd.grad(score, tokens)
    cam = (tokens * grads).sum(-1).reshape(3, 15, 13).clamp(min=0).detach().numpy()
    expected = scale_cam_image(scale_cam_image(cam, (52, 60)))  # pytorch-grad-cam rescales after resizing
    assert maps.shape == (3, 60, 52)
    np.testing.assert_allclose(maps, expected, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "eigencam"])
def test_batched_equals_one_image_at_a_time(swin: nn.Module, method: str) -> None:
    torch.manual_seed(2)
    x = torch.randn(5, 3, 64, 64)
    targets = _targets(5, seed=3)
    with CamExplainer(swin, method, "model.encoder.layers.1.blocks.0", batch_size=4, progress=False) as explainer:
        batched = explainer(x, targets)
        single = np.concatenate([explainer(x[k : k + 1], targets[k : k + 1]) for k in range(5)])
    assert batched.shape == (5, 64, 64)
    np.testing.assert_allclose(batched, single, atol=1e-4)
    assert all(p.requires_grad for p in swin.parameters())  # the freeze is undone


@pytest.mark.parametrize("bf16", [False, True])
def test_every_required_method_runs_on_swin(swin: nn.Module, bf16: bool) -> None:
    # Through Swin's token reshape every method gives maps scaled to exactly [0, 1] that vary
    # over the image, in float32 and under bf16 autocast; where the heat belongs is checked on
    # TwoColourEncoder below.
    torch.manual_seed(8)
    x = torch.randn(2, 3, 64, 64)
    for method in ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam", "scorecam"):
        with CamExplainer(swin, method, "model.layernorm", batch_size=2, progress=False, bf16=bf16) as explainer:
            maps = explainer(x, _targets(2))
        assert maps.shape == (2, 64, 64), method
        assert np.isfinite(maps).all(), method
        np.testing.assert_allclose(maps.reshape(2, -1).max(axis=1), 1.0, atol=1e-5, err_msg=method)
        np.testing.assert_allclose(maps.reshape(2, -1).min(axis=1), 0.0, atol=1e-5, err_msg=method)
        assert maps.std(axis=(1, 2)).min() > 0.05, method


class TwoColourEncoder(nn.Module):
    """A conv encoder with a known answer: channels 0-3 see only red, 4-7 only green (ReLU
    of a positive 5x5 filter minus a threshold), and the projection sends the red channels to
    embedding units 0-255 and the green ones to 256-511. A target along units 0-255 is
    therefore the red blob's response, and nothing of the green blob."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(3, 8, 5, padding=2)
        projection = nn.Linear(8, 512)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[:4, 0] = 0.02 + 0.04 * torch.rand(4, 5, 5, generator=generator)
            conv.weight[4:, 1] = 0.02 + 0.04 * torch.rand(4, 5, 5, generator=generator)
            conv.bias.fill_(-0.1)
            projection.weight.zero_()
            projection.weight[:256, :4] = torch.rand(256, 4, generator=generator)
            projection.weight[256:, 4:] = torch.rand(256, 4, generator=generator)
            projection.bias.fill_(0.05)  # an empty image embeds along the diagonal
        self.model = nn.Sequential(conv, nn.ReLU())
        self.projection = projection

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(self.model(pixel_values).mean(dim=(2, 3)))


def _disc(size: int, centre: tuple[int, int], radius: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _two_blobs(red_at: tuple[int, int], green_at: tuple[int, int], size: int = 64, radius: int = 6) -> torch.Tensor:
    image = torch.zeros(3, size, size)
    image[0][torch.from_numpy(_disc(size, red_at, radius))] = 1.0
    image[1][torch.from_numpy(_disc(size, green_at, radius))] = 1.0
    return image


RED, GREEN = torch.cat([torch.ones(256), torch.zeros(256)]), torch.cat([torch.zeros(256), torch.ones(256)])
A, B = (16, 16), (46, 44)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "layercam", "scorecam"])
def test_each_method_puts_the_heat_on_the_blob_the_target_reads(method: str) -> None:
    encoder = TwoColourEncoder().eval()
    x = torch.stack([_two_blobs(A, B), _two_blobs(B, A)])  # the red blob at A, then at B
    for colour, wanted in ((RED, [A, B]), (GREEN, [B, A])):
        with CamExplainer(encoder, method, "model.1", batch_size=8, progress=False) as explainer:
            maps = explainer(x, [SimilarityTarget(colour), SimilarityTarget(colour)])
        for heat, centre in zip(maps, wanted):
            other = B if centre == A else A
            peak = np.unravel_index(heat.argmax(), heat.shape)
            assert _disc(64, centre, 6)[peak], (method, peak, centre)
            on, off = heat[_disc(64, centre, 3)].mean(), heat[_disc(64, other, 3)].mean()
            if method == "scorecam":  # softmax channel weights are all positive: the other blob keeps some
                assert on > 0.9 and off < on - 0.2, (method, on, off)
            else:  # the gradient of the other colour's channels is exactly zero
                assert on > 0.9 and off < 0.01, (method, on, off)


def test_eigencam_follows_the_strongest_activation_whatever_the_target() -> None:
    # EigenCAM uses no target: the first principal component of the activations, i.e. the blob.
    encoder = TwoColourEncoder().eval()
    for centre in (A, B, (12, 50)):
        image = torch.zeros(1, 3, 64, 64)
        image[0, 0][torch.from_numpy(_disc(64, centre, 6))] = 1.0
        with CamExplainer(encoder, "eigencam", "model.1", progress=False) as explainer:
            red, green = explainer(image.repeat(2, 1, 1, 1), [SimilarityTarget(RED), SimilarityTarget(GREEN)])
        peak = np.unravel_index(red.argmax(), red.shape)
        assert _disc(64, centre, 6)[peak] and red[_disc(64, centre, 3)].mean() > 0.9, (centre, peak)
        np.testing.assert_array_equal(red, green)


def test_several_layers_average_their_scaled_maps(swin: nn.Module) -> None:
    # pytorch-grad-cam computes one map per layer (each scaled to [0, 1] and resized), averages
    # them and scales the mean; each layer's part must be that layer's own map
    torch.manual_seed(4)
    x = torch.randn(2, 3, 64, 64)
    targets = _targets(2, seed=5)
    layers = ["model.encoder.layers.0.blocks.0", "model.encoder.layers.1.blocks.0"]
    singles = []
    for layer in layers:
        with CamExplainer(swin, "hirescam", layer, progress=False) as explainer:
            singles.append(explainer(x, targets))
    with CamExplainer(swin, "hirescam", layers, progress=False) as explainer:
        assert explainer.layer_name == " + ".join(layers)
        parts = []
        aggregate = explainer.cam.aggregate_multi_layers
        explainer.cam.aggregate_multi_layers = lambda per_layer: parts.append(per_layer) or aggregate(per_layer)
        both = explainer(x, targets)
    per_layer = np.concatenate(parts[0], axis=1)  # (B, layers, H, W), in the order given
    for k in range(2):
        np.testing.assert_allclose(scale_cam_image(per_layer[:, k]), singles[k], atol=1e-4)
    np.testing.assert_allclose(both, scale_cam_image(per_layer.mean(axis=1)), atol=1e-5)
    assert not np.allclose(both, singles[0], atol=1e-2)  # the second layer counts
    with CamExplainer(swin, "hirescam", " + ".join(layers), progress=False) as explainer:
        np.testing.assert_allclose(explainer(x, targets), both, atol=1e-6)


def test_shift_smoothing_is_the_mean_of_maps_of_shifted_images(swin: nn.Module) -> None:
    torch.manual_seed(6)
    x = torch.randn(2, 3, 64, 64)
    targets = _targets(2, seed=7)
    layer = "model.encoder.layers.0.blocks.0"
    with CamExplainer(swin, "hirescam", layer, progress=False) as plain:
        expected = []
        for dy in (-4, 0, 4):
            for dx in (-4, 0, 4):
                maps = plain(shift_image(x, dy, dx), targets)
                expected.append(shift_image(torch.from_numpy(maps)[:, None], -dy, -dx)[:, 0].numpy())
        unshifted = plain(x, targets)
    with CamExplainer(swin, "hirescam", layer, progress=False, shifts_px=[-4, 0, 4]) as smoothed:
        maps = smoothed(x, targets)
        assert len(smoothed.shifts) == 9
    np.testing.assert_allclose(maps, np.mean(expected, axis=0), atol=1e-4)
    assert not np.allclose(maps, unshifted, atol=1e-2)
    with CamExplainer(swin, "hirescam", layer, progress=False, shifts_px=[0]) as off:
        np.testing.assert_allclose(off(x, targets), unshifted, atol=1e-6)


def test_bf16_autocast_maps_follow_the_float32_ones(swin: nn.Module) -> None:
    # bf16 passes (emulated where the CPU lacks native bf16: the same numbers, slower) give
    # float32 maps in [0, 1] that differ from the float32 pass's only by rounding
    torch.manual_seed(8)
    x = torch.randn(3, 3, 64, 64)
    targets = _targets(3, seed=9)
    layers = ["model.encoder.layers.0.blocks.-1", "model.encoder.layers.1.blocks.-1"]
    with CamExplainer(swin, "hirescam", layers, progress=False) as float32:
        expected = float32(x, targets)
    with CamExplainer(swin, "hirescam", layers, progress=False, bf16=True) as bf16:
        maps = bf16(x, targets)
    assert not torch.is_autocast_enabled("cpu")  # autocast ends with the call
    assert maps.dtype == np.float32 and maps.shape == expected.shape
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert not np.array_equal(maps, expected)  # the passes did run in bf16
    for got, want in zip(maps, expected):
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95


def test_one_target_per_image_is_enforced(swin: nn.Module) -> None:
    with CamExplainer(swin, "gradcam", "model.layernorm", progress=False) as explainer:
        with pytest.raises(ValueError, match="one target per image"):
            explainer(torch.randn(3, 3, 64, 64), _targets(2))


def _disc_image(size: int, centre: tuple[int, int], radius: int = 10) -> torch.Tensor:
    return torch.from_numpy(_disc(size, centre, radius)).float().expand(1, 3, size, size).clone()


@pytest.fixture(scope="module")
def resnet() -> TinyResNetVision:
    torch.manual_seed(0)
    return TinyResNetVision().eval()


def test_resnet_profile_maps_follow_the_blob_and_the_target(resnet: TinyResNetVision) -> None:
    # A white disc on black; the target is "this image rather than a blank one" (its embedding
    # with the blank's as contrast), and then the opposite. Layer3 is a 8 x 8 grid at 128 px.
    blank = torch.zeros(1, 3, 128, 128)
    embed = ImageEmbeddingModel(resnet)
    with torch.no_grad():
        blank_embedding = embed(blank)[0]
    with pytest.raises(ValueError, match="model.layer4"):  # the valid names are listed
        resolve_target_layer(resnet, "model.layer9")
    for centre in ((32, 32), (32, 96), (96, 48), (80, 80)):
        x = _disc_image(128, centre)
        with torch.no_grad():
            embedding = embed(x)[0]
        towards = SimilarityTarget(embedding, contrast_embedding=blank_embedding)
        away = SimilarityTarget(blank_embedding, contrast_embedding=embedding)
        with CamExplainer(resnet, "gradcam", "model.layer3", progress=False) as explainer:
            heat, opposite = explainer(x.repeat(2, 1, 1, 1), [towards, away])
        assert heat.std() > 0.1, centre  # not constant
        peak = np.unravel_index(heat.argmax(), heat.shape)
        # within one layer3 cell (16 px); see the xfail test below for the half-cell offset
        assert max(abs(peak[0] - centre[0]), abs(peak[1] - centre[1])) <= 16, (centre, peak)
        # the opposite target takes the heat off the disc
        assert heat[_disc(128, centre, 4)].mean() > 0.5 and opposite[_disc(128, centre, 4)].mean() < 0.05
        assert np.abs(heat - opposite).mean() > 0.1


@pytest.mark.xfail(strict=True, reason=(
    "the ResNet profile's heat lies down-right of the disc (centroid 10-16 px off at layer3, "
    "stride 16, on 128 px inputs). Likely cause: ResNet cell i of a stride-s layer is centred "
    "on input pixel s*i, while pytorch-grad-cam's resize puts it at s*i + s/2 - 0.5"
))
def test_resnet_heat_is_centred_on_the_blob(resnet: TinyResNetVision) -> None:
    blank = torch.zeros(1, 3, 128, 128)
    embed = ImageEmbeddingModel(resnet)
    with torch.no_grad():
        blank_embedding = embed(blank)[0]
    for centre in ((32, 32), (32, 96), (80, 80)):
        x = _disc_image(128, centre)
        with torch.no_grad():
            target = SimilarityTarget(embed(x)[0], contrast_embedding=blank_embedding)
        with CamExplainer(resnet, "gradcam", "model.layer3", progress=False) as explainer:
            heat = explainer(x, [target])[0]
        ys, xs = np.nonzero(heat >= 0.5)
        weights = heat[ys, xs]
        centroid = ((ys * weights).sum() / weights.sum(), (xs * weights).sum() / weights.sum())
        assert np.hypot(centroid[0] - centre[0], centroid[1] - centre[1]) < 4, (centre, centroid)


class RightHalfEncoder(nn.Module):
    """A conv encoder whose embedding reads only the image's right half: a CAM that keeps
    image columns in place must put all the heat there."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.projection = nn.Linear(8, 512)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.model(pixel_values)
        return self.projection(features[..., features.shape[-1] // 2 :].mean(dim=(2, 3)))


def test_heat_stays_on_the_side_that_matters() -> None:
    encoder = RightHalfEncoder().eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        text = ImageEmbeddingModel(encoder)(x)[0]
    with CamExplainer(encoder, "hirescam", "model.3", progress=False) as explainer:
        maps = explainer(x, [SimilarityTarget(text), SimilarityTarget(text)])
    left, right = maps[:, :, :15].sum(), maps[:, :, 17:].sum()
    assert right > 0 and left < 1e-3 * right
