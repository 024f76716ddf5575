"""Build the `medclip` package's own classes offline, for every encoder profile.

MedCLIP's constructors fetch their backbones from the Hugging Face hub
(`AutoModel.from_pretrained("microsoft/swin-tiny-patch4-window7-224")`,
`AutoModel/AutoTokenizer.from_pretrained("emilyalsentzer/Bio_ClinicalBERT")`) and from
torchvision (`resnet50(pretrained=True)`). `medclip_backbones` swaps those three names inside
`medclip.modeling_medclip`, only while a model is being constructed, for resolvers that map
the hub ids to configurations or local folders: the real classes run their real `__init__`,
nothing is copied from them, and nothing is downloaded.

Profiles (the `encoder:` parameters, conf/base/parameters_encoder.yml, read as `EncoderParams`):
- `medclip_vit` / `medclip_resnet`: the published MedCLIP weights (`pytorch_model.bin`) from
  `weights_dir`; the backbones' config.json (and Bio_ClinicalBERT's vocab.txt) from
  `vision_backbone_dir` / `text_backbone_dir` or the Hugging Face cache. The backbones are
  built from their configuration only: every one of their weights comes from the MedCLIP
  checkpoint, which is loaded strictly, so their own pretrained weights are never needed.
- `demo`: the same classes on small Swin/BERT configurations and a word-level tokenizer made
  from the demo corpus, trained by the `encoder_training` pipeline.

MedCLIP's projection heads take 768-d backbone outputs. A backbone of another width (the demo's
small Swin and BERT) gets its head replaced by `nn.Linear(width, 512, bias=False)` right after
construction, the same layer MedCLIP uses: a 768-wide demo backbone would be several times
slower to train on a CPU for no gain on the demo data.
"""

from __future__ import annotations

import copy
import inspect
import logging
import threading
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import torch
import torchvision
import transformers
from medclip import constants as medclip_constants
from medclip import modeling_medclip
from medclip.modeling_medclip import (
    MedCLIPModel,
    MedCLIPTextModel,
    MedCLIPVisionModel,
    MedCLIPVisionModelViT,
)
from torch import nn
from transformers import BertConfig, PretrainedConfig, SwinConfig

from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.tokenizer import build_word_tokenizer
from medclip_residuals.utils.params import Parameters

logger = logging.getLogger(__name__)

VIT = "vit"
RESNET = "resnet"
PROFILES: dict[str, str] = {"demo": VIT, "medclip_vit": VIT, "medclip_resnet": RESNET}
PUBLISHED_PROFILES = ("medclip_vit", "medclip_resnet")
# What the published weights were trained on (Wang et al., EMNLP 2022, section 4.1)
PUBLISHED_TRAINED_ON = {"dataset": "MIMIC-CXR and CheXpert (MedCLIP's published weights)"}
EMBED_DIM = 512
WEIGHTS_NAME = medclip_constants.WEIGHTS_NAME  # pytorch_model.bin
# Old transformers saved BERT's position_ids buffer; current ones do not register it as state.
POSITION_IDS_KEY = "text_model.model.embeddings.position_ids"
# The hub ids MedCLIP asks for. MedCLIPTextModel's default `bert_type` was bound at import time,
# so it is read from the signature rather than from medclip.constants.
TEXT_HUB_ID: str = inspect.signature(MedCLIPTextModel.__init__).parameters["bert_type"].default
VISION_HUB_ID: str = medclip_constants.VIT_TYPE
WEIGHT_URL_FILES = {
    VIT: medclip_constants.PRETRAINED_URL_MEDCLIP_VIT,
    RESNET: medclip_constants.PRETRAINED_URL_MEDCLIP_RESNET,
}
MEDCLIP_README = "https://github.com/RyanWangZf/MedCLIP#readme"

_PATCH_LOCK = threading.RLock()

BackboneSource = PretrainedConfig | str | Path


@dataclass(frozen=True)
class DemoEncoderParams(Parameters):
    """`encoder.demo`: the demo profile's geometry (MedCLIP's classes on small backbones).

    `swin` and `bert` are keyword arguments of transformers' `SwinConfig` and `BertConfig`
    (their own defaults apply to the keys left out); `image_size` is the Swin input size.
    """

    image_size: int
    allow_global_windows: bool
    text_max_length: int
    lowercase: bool
    swin: dict[str, Any]
    bert: dict[str, Any]


@dataclass(frozen=True)
class EncoderParams(Parameters):
    """`params:encoder`, shared by encoder_training, embedding and data validation.

    Example:
        >>> params = EncoderParams.parse(raw_encoder_parameters, "encoder")  # doctest: +SKIP
        >>> encoder = load_encoder(params)  # doctest: +SKIP
    """

    profile: Literal["demo", "medclip_vit", "medclip_resnet"]
    # Published profiles: the folder of pytorch_model.bin and the backbones' folders (null:
    # the Hugging Face cache).
    weights_dir: str | None
    vision_backbone_dir: str | None
    text_backbone_dir: str | None
    allow_download: bool
    text_max_length: int
    # A folder written by save_encoder_folder: loaded instead of the profile's weights.
    encoder_dir: str | None
    demo: DemoEncoderParams


class EncoderFileNotFoundError(FileNotFoundError):
    """A file the encoder needs is not on disk; the message says which, where, and how to get it."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""


# --------------------------------------------------------------------------------------------
# Constructing MedCLIP's classes without the hub
# --------------------------------------------------------------------------------------------


class _AutoModelResolver:
    """Stands in for `transformers.AutoModel` inside medclip.modeling_medclip."""

    def __init__(self, sources: Mapping[str, BackboneSource]) -> None:
        self._sources = dict(sources)

    def from_pretrained(self, name: str, *args: Any, **kwargs: Any) -> nn.Module:
        if name not in self._sources:
            raise KeyError(f"MedCLIP asked for the backbone {name!r}, which the encoder layer was not given")
        source = self._sources[name]
        if isinstance(source, PretrainedConfig):
            config = copy.deepcopy(source)
            for key, value in kwargs.items():  # e.g. output_hidden_states=True for the text model
                setattr(config, key, value)
            return transformers.AutoModel.from_config(config)
        return transformers.AutoModel.from_pretrained(str(source), *args, local_files_only=True, **kwargs)


class _AutoTokenizerResolver:
    """Stands in for `transformers.AutoTokenizer` inside medclip.modeling_medclip."""

    def __init__(self, tokenizers: Mapping[str, Any]) -> None:
        self._tokenizers = dict(tokenizers)

    def from_pretrained(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name not in self._tokenizers:
            raise KeyError(f"MedCLIP asked for the tokenizer {name!r}, which the encoder layer was not given")
        source = self._tokenizers[name]
        if isinstance(source, (str, Path)):
            return transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        return source


def _resnet50_without_download(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    # The ImageNet weights would be overwritten by the MedCLIP checkpoint (or by training).
    return torchvision.models.resnet50(weights=None)


@contextmanager
def medclip_backbones(
    models: Mapping[str, BackboneSource], tokenizers: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """While active, MedCLIP's constructors resolve hub ids through `models` and `tokenizers`.

    `models` maps a hub id to a transformers config (built with `from_config`, random weights)
    or to a local folder (`from_pretrained(..., local_files_only=True)`); `tokenizers` maps a
    hub id to a tokenizer object or a local folder. ResNet-50 is built with `weights=None`.
    """
    replacements = {
        "AutoModel": _AutoModelResolver(models),
        "AutoTokenizer": _AutoTokenizerResolver(tokenizers or {}),
        "torchvision": SimpleNamespace(models=SimpleNamespace(resnet50=_resnet50_without_download)),
    }
    with _PATCH_LOCK:
        originals = {name: getattr(modeling_medclip, name) for name in replacements}
        try:
            for name, value in replacements.items():
                setattr(modeling_medclip, name, value)
            yield
        finally:
            for name, value in originals.items():
                setattr(modeling_medclip, name, value)


def fit_projection_heads(model: MedCLIPModel) -> MedCLIPModel:
    """Give a backbone whose width is not 768 a projection head of its width (512 outputs)."""
    vision = model.vision_model
    if isinstance(vision, MedCLIPVisionModelViT):
        width = vision.model.config.hidden_size
        if vision.projection_head.in_features != width:
            vision.projection_head = nn.Linear(width, EMBED_DIM, bias=False)
    text = model.text_model
    width = text.model.config.hidden_size
    if text.projection_head.in_features != width:
        text.projection_head = nn.Linear(width, EMBED_DIM, bias=False)
    return model


def build_medclip_model(
    vision: str, vision_config: PretrainedConfig | None, text_config: PretrainedConfig, tokenizer: Any
) -> MedCLIPModel:
    """Construct `MedCLIPModel` (random weights) on the given backbone configurations.

    `vision` is "vit" (MedCLIPVisionModelViT on a Swin config) or "resnet"
    (MedCLIPVisionModel on torchvision's ResNet-50, no config needed).
    """
    if vision not in (VIT, RESNET):
        raise ValueError(f"vision must be {VIT!r} or {RESNET!r}, got {vision!r}")
    models: dict[str, BackboneSource] = {TEXT_HUB_ID: text_config}
    if vision == VIT:
        if vision_config is None:
            raise ValueError("the ViT variant needs a Swin configuration")
        models[VISION_HUB_ID] = vision_config
    vision_cls = MedCLIPVisionModelViT if vision == VIT else MedCLIPVisionModel
    with medclip_backbones(models, {TEXT_HUB_ID: tokenizer}):
        model = MedCLIPModel(vision_cls=vision_cls)
    return fit_projection_heads(model)


def model_configs(model: MedCLIPModel) -> tuple[str, PretrainedConfig | None, PretrainedConfig]:
    """The (vision kind, vision config, text config) that rebuild `model`'s architecture."""
    vision = model.vision_model
    if isinstance(vision, MedCLIPVisionModelViT):
        return VIT, vision.model.config, model.text_model.model.config
    return RESNET, None, model.text_model.model.config


def config_from_dict(values: Mapping[str, Any]) -> PretrainedConfig:
    """Rebuild a transformers configuration saved with `to_dict()`."""
    values = dict(values)
    model_type = values.get("model_type")
    if model_type not in transformers.CONFIG_MAPPING:
        raise ValueError(f"unknown backbone model_type {model_type!r} in the saved encoder configuration")
    return transformers.CONFIG_MAPPING[model_type].from_dict(values)


# --------------------------------------------------------------------------------------------
# Loading weights strictly
# --------------------------------------------------------------------------------------------


def _list_keys(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load `state` into `model`; any missing or unexpected key, or a wrong shape, is an error."""
    expected = set(model.state_dict())
    given = set(state)
    missing = sorted(expected - given)
    unexpected = sorted(given - expected)
    if missing or unexpected:
        parts = [f"the checkpoint {source} does not match the {type(model).__name__} it is loaded into:"]
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_list_keys(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_list_keys(unexpected)}")
        parts.append("(is it the checkpoint of this profile, with the same backbones?)")
        raise CheckpointMismatchError("\n".join(parts))
    try:
        model.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:  # shapes that differ
        raise CheckpointMismatchError(f"the checkpoint {source} does not fit the model: {error}") from error


def load_medclip_checkpoint(model: MedCLIPModel, path: str | Path) -> None:
    """Load a MedCLIP `pytorch_model.bin` (a MedCLIPModel state dict) into `model`, strictly.

    Only `text_model.model.embeddings.position_ids` is dropped: older transformers saved it,
    current ones reject it. The file is read with `weights_only=True` on the CPU.
    """
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError as error:
        raise EncoderFileNotFoundError(f"MedCLIP checkpoint {path} does not exist") from error
    except Exception as error:  # a corrupt or pickled-object file
        raise CheckpointMismatchError(
            f"{path} could not be read as a MedCLIP state dict with torch.load(weights_only=True): {error}"
        ) from error
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = {key: value for key, value in state.items() if key != POSITION_IDS_KEY}
    load_state_strict(model, state, path)


# --------------------------------------------------------------------------------------------
# Finding the files of the published profiles
# --------------------------------------------------------------------------------------------


def _hub_hint(hub_id: str, files: Iterable[str], folder: str | Path | None) -> str:
    target = folder if folder else f"models/{hub_id.rsplit('/', maxsplit=1)[-1]}"
    return (
        f"get it with `huggingface-cli download {hub_id} {' '.join(files)} --local-dir {target}` on a machine "
        f"with internet (then set the folder in the encoder parameters), or set encoder.allow_download: true"
    )


def _backbone_folder(
    folder: str | Path | None, hub_id: str, files: tuple[str, ...], allow_download: bool, param: str
) -> tuple[Path | None, list[str]]:
    """Find the folder that holds `files` of `hub_id`: `folder`, else the Hugging Face cache.

    Returns (folder, problems): problems are full sentences, one per missing file.
    """
    if folder:
        root = Path(folder).expanduser()
        missing = [name for name in files if not (root / name).is_file()]
        if not missing:
            return root, []
        return None, [
            f"{root / name} not found (encoder.{param} = {folder}, the {hub_id} backbone); "
            + _hub_hint(hub_id, missing, root)
            for name in missing
        ]
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = {name: try_to_load_from_cache(hub_id, name) for name in files}
    if all(isinstance(path, str) for path in cached.values()):
        return Path(next(iter(cached.values()))).parent, []
    if allow_download:
        paths = [hf_hub_download(hub_id, name) for name in files]
        return Path(paths[0]).parent, []
    missing = [name for name, path in cached.items() if not isinstance(path, str)]
    return None, [
        f"{name} of {hub_id} not found: encoder.{param} is not set and the Hugging Face cache "
        f"({hub_constants.HF_HUB_CACHE}) does not hold it; " + _hub_hint(hub_id, missing, None)
        for name in missing
    ]


def download_medclip_weights(variant: str, weights_dir: str | Path, timeout_s: float = 60.0) -> Path:
    """Fetch MedCLIP's published weights (the zip its README links) into `weights_dir`.

    Only called when `allow_download: true`; one attempt, no retries.
    """
    weights_dir = Path(weights_dir).expanduser()
    weights_dir.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(WEIGHT_URL_FILES[variant], timeout=timeout_s) as response:  # noqa: S310
        zip_url = response.read().decode("utf-8").strip()
    zip_path = weights_dir / "medclip-weights.zip"
    with urllib.request.urlopen(zip_url, timeout=timeout_s) as response, zip_path.open("wb") as out:  # noqa: S310
        while chunk := response.read(1 << 20):
            out.write(chunk)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(weights_dir)
    zip_path.unlink()
    found = weights_dir / WEIGHTS_NAME
    if not found.is_file():
        nested = sorted(weights_dir.rglob(WEIGHTS_NAME))
        if not nested:
            raise EncoderFileNotFoundError(f"the MedCLIP zip from {zip_url} held no {WEIGHTS_NAME}")
        return nested[0]
    return found


def _weights_file(weights_dir: str | Path | None, variant: str, allow_download: bool) -> tuple[Path | None, list[str]]:
    name = "MedCLIP-ViT" if variant == VIT else "MedCLIP-ResNet"
    how = (
        f"get it from MedCLIP's README ({MEDCLIP_README}, 'pretrained weights'): {WEIGHT_URL_FILES[variant]} "
        f"holds the link to a zip; unzip it into that folder so that {WEIGHTS_NAME} lies directly in it, "
        "or set encoder.allow_download: true"
    )
    if not weights_dir:
        return None, [f"{name} weights: encoder.weights_dir is not set (the folder that holds {WEIGHTS_NAME}); {how}"]
    path = Path(weights_dir).expanduser() / WEIGHTS_NAME
    if path.is_file():
        return path, []
    if allow_download:
        return download_medclip_weights(variant, path.parent), []
    return None, [f"{name} weights: {path} not found (encoder.weights_dir = {weights_dir}); {how}"]


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def load_published_encoder(
    *,
    profile: str,
    weights_dir: str | Path | None,
    vision_backbone_dir: str | Path | None,
    text_backbone_dir: str | Path | None,
    allow_download: bool,
    text_max_length: int,
    device: str | torch.device = "cpu",
) -> MedCLIPEncoder:
    """Build `medclip_vit` / `medclip_resnet` from local files and load the published weights.

    Args:
        profile: `medclip_vit` or `medclip_resnet`.
        weights_dir: the folder that holds MedCLIP's pytorch_model.bin.
        vision_backbone_dir, text_backbone_dir: the backbones' folders (None: the Hugging
            Face cache).
        allow_download: fetch missing files (MedCLIP's zip, the backbones' configurations).
        text_max_length: the tokenizer's limit (texts are padded and cut to it).
        device: where the model is placed.

    Every missing file is reported at once, before anything is built.
    """
    if profile not in PUBLISHED_PROFILES:
        raise ValueError(f"load_published_encoder serves {PUBLISHED_PROFILES}, got profile {profile!r}")
    variant = PROFILES[profile]
    weights, problems = _weights_file(weights_dir, variant, allow_download)
    text_dir, text_problems = _backbone_folder(
        text_backbone_dir, TEXT_HUB_ID, ("config.json", "vocab.txt"), allow_download, "text_backbone_dir"
    )
    problems += text_problems
    vision_dir = None
    if variant == VIT:
        vision_dir, vision_problems = _backbone_folder(
            vision_backbone_dir, VISION_HUB_ID, ("config.json",), allow_download, "vision_backbone_dir"
        )
        problems += vision_problems
    if problems:
        raise EncoderFileNotFoundError(
            f"the {profile} encoder cannot be built, files are missing:\n- " + "\n- ".join(problems)
        )
    text_config = transformers.AutoConfig.from_pretrained(str(text_dir), local_files_only=True)
    vision_config = (
        transformers.AutoConfig.from_pretrained(str(vision_dir), local_files_only=True) if vision_dir else None
    )
    max_length = int(text_max_length)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(text_dir), local_files_only=True)
    tokenizer.model_max_length = max_length
    model = build_medclip_model(variant, vision_config, text_config, tokenizer)
    load_medclip_checkpoint(model, weights)
    logger.info("loaded %s weights from %s", profile, weights)
    image_size = int(getattr(vision_config, "image_size", medclip_constants.IMG_SIZE))
    encoder = MedCLIPEncoder(
        model=model, tokenizer=tokenizer, profile=profile, image_size=image_size, text_max_length=max_length,
        trained_on=dict(PUBLISHED_TRAINED_ON),
    )
    return encoder.to(device)


def stage_grids(swin: SwinConfig) -> list[int]:
    """The token grid side of each Swin stage (input / patch / 2**stage)."""
    side = swin.image_size // swin.patch_size
    return [side // (2**stage) for stage in range(len(swin.depths))]


def check_local_windows(swin: SwinConfig) -> None:
    """Refuse a geometry in which a stage's attention window covers its whole token grid.

    Such a stage attends globally: its tokens lose their location, and heatmaps drawn from it
    point at the wrong places.
    """
    grids = stage_grids(swin)
    covering = [(stage, grid) for stage, grid in enumerate(grids) if grid <= swin.window_size]
    if covering:
        raise ValueError(
            f"Swin geometry: image {swin.image_size} px, patch {swin.patch_size}, window {swin.window_size} gives "
            f"stage grids {grids}; the window covers the whole grid in stage(s) {[s for s, _ in covering]}. "
            "Use a smaller window, fewer stages or a larger image (or set encoder.demo.allow_global_windows: true)."
        )


def demo_configs(demo: DemoEncoderParams, vocab_size: int) -> tuple[SwinConfig, BertConfig]:
    """The demo profile's Swin and BERT configurations from `encoder.demo` parameters."""
    swin = SwinConfig(image_size=demo.image_size, num_channels=3, **demo.swin)
    if not demo.allow_global_windows:
        check_local_windows(swin)
    bert = BertConfig(vocab_size=vocab_size, pad_token_id=0, **demo.bert)
    return swin, bert


def build_demo_encoder(
    demo: DemoEncoderParams | Mapping[str, Any],
    corpus: Iterable[str],
    device: str | torch.device = "cpu",
    seed: int | None = None,
) -> MedCLIPEncoder:
    """A fresh (random) demo encoder: MedCLIP's classes on small configs, tokenizer from `corpus`.

    `demo`: the `encoder.demo` parameters (a mapping is parsed as `DemoEncoderParams`).
    """
    demo = DemoEncoderParams.parse(demo, "encoder.demo")
    max_length = demo.text_max_length
    tokenizer = build_word_tokenizer(corpus, lowercase=demo.lowercase, max_length=max_length)
    swin, bert = demo_configs(demo, vocab_size=len(tokenizer))
    if bert.max_position_embeddings < max_length:
        raise ValueError(
            f"encoder.demo.bert.max_position_embeddings ({bert.max_position_embeddings}) must be at least "
            f"text_max_length ({max_length})"
        )
    if seed is not None:
        torch.manual_seed(seed)
    model = build_medclip_model(VIT, swin, bert, tokenizer)
    encoder = MedCLIPEncoder(
        model=model, tokenizer=tokenizer, profile="demo", image_size=swin.image_size, text_max_length=max_length
    )
    return encoder.to(device)


# --------------------------------------------------------------------------------------------
# The project's own format: a folder with model.safetensors, config.json and the tokenizer
# --------------------------------------------------------------------------------------------

ENCODER_FORMAT = "medclip_residuals.encoder/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


def save_encoder_folder(encoder: MedCLIPEncoder, folder: str | Path) -> Path:
    """Write `encoder` to `folder`: model.safetensors, config.json and tokenizer/ (no pickle)."""
    import json

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vision, vision_config, text_config = model_configs(encoder.model)
    state = {key: value.detach().to("cpu").contiguous() for key, value in encoder.model.state_dict().items()}
    save_file(state, str(folder / MODEL_FILE), metadata={"format": ENCODER_FORMAT, "profile": encoder.profile})
    config = {
        "format": ENCODER_FORMAT,
        "profile": encoder.profile,
        "vision": vision,
        "vision_config": vision_config.to_dict() if vision_config is not None else None,
        "text_config": text_config.to_dict(),
        "image_size": int(encoder.image_size),
        "text_max_length": int(encoder.text_max_length),
        "embed_dim": EMBED_DIM,
        "trained_on": dict(encoder.trained_on),
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
    encoder.tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))
    return folder


def load_encoder_folder(folder: str | Path, device: str | torch.device = "cpu") -> MedCLIPEncoder:
    """Rebuild an encoder written by `save_encoder_folder`, through the same builder."""
    import json

    from safetensors.torch import load_file

    folder = Path(folder)
    needed = [folder / MODEL_FILE, folder / CONFIG_FILE, folder / TOKENIZER_DIR]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise EncoderFileNotFoundError(
            f"the saved encoder in {folder} is incomplete, missing: {', '.join(missing)}; "
            "the demo encoder is written by `kedro run --pipelines encoder_training`"
        )
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != ENCODER_FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE} is not a {ENCODER_FORMAT} encoder (format {config.get('format')!r})")
    vision_config = config_from_dict(config["vision_config"]) if config.get("vision_config") else None
    text_config = config_from_dict(config["text_config"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder / TOKENIZER_DIR), local_files_only=True)
    max_length = int(config["text_max_length"])
    tokenizer.model_max_length = max_length
    model = build_medclip_model(config["vision"], vision_config, text_config, tokenizer)
    load_state_strict(model, load_file(str(folder / MODEL_FILE)), folder / MODEL_FILE)
    encoder = MedCLIPEncoder(
        model=model,
        tokenizer=tokenizer,
        profile=str(config["profile"]),
        image_size=int(config["image_size"]),
        text_max_length=max_length,
        trained_on=dict(config.get("trained_on") or {}),
    )
    return encoder.to(device)


def load_encoder(params: EncoderParams, device: str | torch.device = "cpu") -> MedCLIPEncoder:
    """The encoder the `encoder:` parameters name, from disk (never a fresh random model).

    A folder given as `encoder_dir` (written by `save_encoder_folder`) is loaded whatever the
    profile; else the published profiles load their weights.
    """
    if params.encoder_dir:
        return load_encoder_folder(params.encoder_dir, device)
    if params.profile in PUBLISHED_PROFILES:
        return load_published_encoder(
            profile=params.profile,
            weights_dir=params.weights_dir,
            vision_backbone_dir=params.vision_backbone_dir,
            text_backbone_dir=params.text_backbone_dir,
            allow_download=params.allow_download,
            text_max_length=params.text_max_length,
            device=device,
        )
    raise ValueError(
        "the demo encoder is trained by the encoder_training pipeline and loaded from the "
        "`medclip_encoder` dataset (or give encoder.encoder_dir, a saved encoder folder)"
    )
