"""Contrastive (CLIP loss) training of the MedCLIP model on the manifest's image/report pairs.

The `demo` profile starts from random weights (MedCLIP's classes on small Swin/BERT configs),
the published profiles from MedCLIP's weights. Patients are split once (seeded): the held-out
patients are never trained on and give the metric, the AUC of each image's similarity to a
prompt naming a finding.

What makes a small Swin learn from scratch here (it stalls at chance with default settings):
MedCLIP's input normalisation (done by `preprocess`), a 4-pixel patch, AdamW with a linear
warmup then a cosine decay at a moderate rate (2e-3 collapses every embedding to one point in
the first epoch), projection heads centred on the backbones' mean feature before training
(fresh backbones give all inputs nearly the same feature), MedCLIP's learnable temperature,
gradient clipping, and mild augmentation that keeps left and right (no horizontal flip: reports
name the patient's side). Identical reports in a batch count as matches, and optionally so do
studies that share findings (MedCLIP's semantic matching, `label_match_weight`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F
from tqdm.auto import tqdm

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.data.images import read_image
from medclip_residuals.data.preprocess import MEDCLIP_MEAN, MEDCLIP_STD, XrayImageDataset, preprocess_array
from medclip_residuals.models.device import resolve_device
from medclip_residuals.models.encoder import MedCLIPEncoder, eval_mode
from medclip_residuals.models.medclip_loader import PUBLISHED_PROFILES, build_demo_encoder, load_encoder

logger = logging.getLogger(__name__)

TRAIN, TEST = "train", "test"
# Black (0) after MedCLIP's normalisation: what augmentation fills uncovered pixels with.
_BLACK = -MEDCLIP_MEAN / MEDCLIP_STD


# --------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {list(frame.columns)}")


def split_patients(image_manifest: pd.DataFrame, params: Mapping[str, Any], seed: int) -> pd.DataFrame:
    """Assign every patient to `train` or `test` (a seeded shuffle; `test_fraction` of patients).

    Returns one row per image: image_id, patient_id, split. No patient is on both sides.
    """
    _require_columns(image_manifest, ("image_id", "patient_id"), "image_manifest")
    fraction = float(params.get("test_fraction", 0.2))
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"encoder_training.test_fraction must lie in (0, 1), got {fraction}")
    patients = np.array(sorted(image_manifest["patient_id"].astype(str).unique()))
    if len(patients) < 2:
        raise ValueError(f"image_manifest has {len(patients)} patient(s); a train/test split needs at least 2")
    order = np.random.default_rng(seed).permutation(len(patients))
    n_test = min(len(patients) - 1, max(1, round(fraction * len(patients))))
    test_patients = set(patients[order[:n_test]])
    split = image_manifest[["image_id", "patient_id"]].astype(str).copy()
    split["split"] = np.where(split["patient_id"].isin(test_patients), TEST, TRAIN)
    return split.reset_index(drop=True)


def _rows_of(image_manifest: pd.DataFrame, split: pd.DataFrame, which: str) -> pd.DataFrame:
    chosen = set(split.loc[split["split"] == which, "image_id"].astype(str))
    rows = image_manifest[image_manifest["image_id"].astype(str).isin(chosen)]
    return rows.sort_values("image_id").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def load_image_tensors(paths: Sequence[str], size: int, workers: int = 2, desc: str = "images") -> torch.Tensor:
    """Decode and preprocess `paths` once: (N, 1, size, size) float16, MedCLIP-normalised.

    One channel is kept: MedCLIP's vision models repeat a grey channel to three.
    """

    def one(path: str) -> np.ndarray:
        return preprocess_array(read_image(path), size)[0].numpy().astype(np.float16)

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        arrays = list(tqdm(pool.map(one, paths), total=len(paths), desc=f"preprocess {desc}", leave=False))
    if not arrays:
        return torch.zeros((0, 1, size, size), dtype=torch.float16)
    return torch.from_numpy(np.stack(arrays)).unsqueeze(1)


class ImageSource(Protocol):
    """Training or held-out images by index: cached in memory or streamed from disk."""

    def __len__(self) -> int: ...

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        """float32 (B, 1, S, S) for each index tensor, in order."""
        ...


class CachedImages:
    """Every image decoded once into one float16 tensor (N, 1, S, S)."""

    def __init__(self, pixels: torch.Tensor) -> None:
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.pixels)

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        for index in indices:
            yield self.pixels[index].float()


class _OneChannel(XrayImageDataset):
    """Item i: image i as the cache holds it, one channel rounded to float16."""

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        return super().__getitem__(index)[1][:1].half()


class StreamedImages:
    """Images decoded from disk per batch (a DataLoader over `preprocess_image`), with the
    cache's exact values (one channel through float16), so that numbers do not change."""

    def __init__(self, paths: Sequence[str], size: int, workers: int = 0) -> None:
        self.dataset = _OneChannel(paths, size)
        self.workers = max(0, int(workers))

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, indices: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        if not len(indices):
            return
        # A private generator: a DataLoader draws its workers' base seed from it, which from
        # torch's global generator would shift the model's dropout masks (other numbers).
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=[index.tolist() for index in indices], num_workers=self.workers,
            collate_fn=torch.stack, generator=torch.Generator().manual_seed(0),
        )
        for batch in loader:
            yield batch.float()


def image_source(
    paths: Sequence[str], size: int, params: Mapping[str, Any], desc: str
) -> CachedImages | StreamedImages:
    """The images cached in memory while they fit `image_cache_mb` (float16, one channel),
    else streamed from disk per batch; the choice and its reason are logged."""
    budget = params.get("image_cache_mb", 2048)
    needed_mb = len(paths) * size * size * 2 / 2**20
    workers = int(params.get("cache_workers", 2))
    if budget is None or needed_mb <= float(budget):
        limit = "no limit" if budget is None else f"image_cache_mb {float(budget):g}"
        logger.info("encoder_training: %d %s images cached in memory (%.1f MB as float16, %s)",
                    len(paths), desc, needed_mb, limit)
        return CachedImages(load_image_tensors(paths, size, workers, desc))
    logger.info(
        "encoder_training: %d %s images streamed from disk per batch (%d DataLoader workers): they need "
        "%.1f MB as float16, over image_cache_mb %g", len(paths), desc, workers, needed_mb, float(budget),
    )
    return StreamedImages(paths, size, workers)


def _as_source(pixels: torch.Tensor | ImageSource) -> ImageSource:
    return CachedImages(pixels) if isinstance(pixels, torch.Tensor) else pixels


def augment(batch: torch.Tensor, params: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
    """Random small rotation, zoom and shift, contrast/brightness and noise; never a flip.

    `batch` is (B, C, S, S) MedCLIP-normalised; pixels moved in from outside are black.
    """
    if not params:
        return batch
    count = batch.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * float(limit)

    angle = uniform(params.get("rotate_degrees", 0.0)) * math.pi / 180
    scale = 1 + uniform(params.get("scale", 0.0))
    shift_x, shift_y = uniform(params.get("translate", 0.0)) * 2, uniform(params.get("translate", 0.0)) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    ).to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = F.grid_sample(batch - _BLACK, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + _BLACK
    contrast = (1 + uniform(params.get("contrast", 0.0))).to(batch.device).view(-1, 1, 1, 1)
    brightness = uniform(params.get("brightness", 0.0)).to(batch.device).view(-1, 1, 1, 1) / MEDCLIP_STD
    moved = (moved - _BLACK) * contrast + _BLACK + brightness
    noise = float(params.get("noise", 0.0))
    if noise > 0:
        moved = moved + torch.randn(moved.shape, generator=generator).to(batch.device) * (noise / MEDCLIP_STD)
    return moved


# --------------------------------------------------------------------------------------------
# Loss and schedule
# --------------------------------------------------------------------------------------------


def text_groups(texts: Sequence[str]) -> torch.Tensor:
    """Ids such that texts with the same normalised wording share an id."""
    normalised = [" ".join(str(text).lower().split()) for text in texts]
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(text, len(index)) for text in normalised], dtype=torch.long)


def clip_loss(logits_per_image: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Symmetric CLIP cross-entropy with soft targets.

    `match` is either (B,) text group ids (pairs whose texts are identical all count as
    matches) or a symmetric (B, B) matrix of non-negative match weights. With distinct texts
    this is exactly CLIP's (and MedCLIP's `clip_loss`) loss.
    """
    match = match.to(logits_per_image.device)
    weights = (match[:, None] == match[None, :]).float() if match.ndim == 1 else match.float()
    targets = weights / weights.sum(dim=1, keepdim=True)
    image_loss = F.cross_entropy(logits_per_image, targets)
    text_loss = F.cross_entropy(logits_per_image.t(), targets)  # the weights are symmetric
    return (image_loss + text_loss) / 2


class ReportSimilarity:
    """Soft match weights between reports from their TF-IDF word vectors (fitted on the
    training reports): exp((cosine - 1) / temperature), so identical wording weighs 1 and
    reports that share the rarer words (a finding, a side, a zone) weigh more than others.

    MedCLIP's point, that two studies with the same findings are not negatives of each other,
    made from the reports' words alone (no labels).
    """

    def __init__(self, reports: Sequence[str], temperature: float) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if temperature <= 0:
            raise ValueError(f"encoder_training.soft_target_temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.vectorizer = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b[a-z][a-z-]+\b").fit(list(reports))

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        vectors = torch.from_numpy(self.vectorizer.transform(list(texts)).toarray()).float()
        cosine = vectors @ vectors.t()
        weights = torch.exp((cosine - 1) / self.temperature)
        same = text_groups(texts)
        return torch.where(same[:, None] == same[None, :], torch.ones_like(weights), weights)


def learning_rate_at(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float) -> float:
    """Linear warmup to `peak`, then cosine decay to `floor`."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No decay on norms, biases, embeddings' position tables and the temperature.
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or "norm" in name.lower() or "position" in name or name == "logit_scale"
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# --------------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------------


def build_start_encoder(
    train_reports: Sequence[str], encoder_params: Mapping[str, Any], seed: int
) -> MedCLIPEncoder:
    """The model training starts from: random `demo` weights (tokenizer from the training
    reports), or the published MedCLIP weights for `medclip_vit` / `medclip_resnet`."""
    profile = encoder_params.get("profile", "demo")
    if profile == "demo":
        return build_demo_encoder(encoder_params["demo"], train_reports, seed=seed)
    if profile in PUBLISHED_PROFILES or encoder_params.get("encoder_dir"):
        return load_encoder(encoder_params)
    raise ValueError(f"encoder.profile must be demo, medclip_vit or medclip_resnet, got {profile!r}")


def report_sentences(report: str) -> list[str]:
    """The sentences (or clauses joined by ';' or ', and') of a report."""
    parts = re.split(r"(?:[.;]\s+|,\s+and\s+)", str(report).strip().rstrip("."))
    return [part.strip() for part in parts if part.strip()]


def sample_sentences(reports: Sequence[str], probability: float, generator: torch.Generator) -> list[str]:
    """With `probability`, replace a report of several sentences by one of its sentences.

    Each sentence still describes its image, and single-finding texts are what prompts
    ("there is pneumonia") look like (MedCLIP samples report sentences too).
    """
    if probability <= 0:
        return list(reports)
    chosen = []
    draws = torch.rand(len(reports), generator=generator).tolist()
    for report, draw in zip(reports, draws):
        sentences = report_sentences(report)
        if draw < probability and len(sentences) > 1:
            report = sentences[int(torch.randint(len(sentences), (1,), generator=generator))]
        chosen.append(report)
    return chosen


def projection_heads(encoder: MedCLIPEncoder) -> dict[str, torch.nn.Linear]:
    """MedCLIP's two projection layers: the vision head (ResNet: its `fc`) and the text head."""
    vision = encoder.model.vision_model
    head = vision.projection_head if hasattr(vision, "projection_head") else vision.model.fc
    return {"vision": head, "text": encoder.model.text_model.projection_head}


def center_projection_heads(
    encoder: MedCLIPEncoder,
    pixels: torch.Tensor | ImageSource,
    reports: Sequence[str],
    sample: int = 256,
    batch_size: int = 64,
) -> dict[str, float]:
    """Remove the backbones' shared mean feature from both projection heads (an init, no training).

    Freshly initialised backbones give nearly the same feature for every input (cosine about
    0.9 for the phantom images, 0.99 for the reports): every logit is then alike and the CLIP
    loss starts flat. Projecting the mean direction u out of each head, W <- W (I - u u^T),
    spreads the initial embeddings without touching MedCLIP's forward. Returns the mean
    pairwise cosine of the embeddings before and after, on the sample.
    """
    heads = projection_heads(encoder)
    features: dict[str, list[torch.Tensor]] = {"vision": [], "text": []}
    hooks = [
        head.register_forward_pre_hook(lambda module, args, name=name: features[name].append(args[0].detach().float()))
        for name, head in heads.items()
    ]
    count = min(int(sample), len(reports))
    index = torch.linspace(0, len(reports) - 1, count).round().long().unique()
    chunks = [index[start : start + batch_size] for start in range(0, len(index), batch_size)]
    try:
        with eval_mode(encoder.model), torch.no_grad():
            for chunk, images in zip(chunks, _as_source(pixels).batches(chunks)):
                encoder.encode_images(images)
                tokens = encoder.tokenize([reports[i] for i in chunk.tolist()])
                encoder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()

    def mean_cosine(values: torch.Tensor, weight: torch.Tensor) -> float:
        embedded = F.normalize(values @ weight.t(), dim=-1)
        n = len(embedded)
        return float(((embedded @ embedded.t()).sum() - n) / max(1, n * (n - 1)))

    report = {}
    with torch.no_grad():
        for name, head in heads.items():
            values = torch.cat(features[name]).to(head.weight.device)
            direction = F.normalize(values.mean(dim=0), dim=0)
            before = mean_cosine(values, head.weight)
            head.weight -= torch.outer(head.weight @ direction, direction)
            report[f"{name}_cosine_before"], report[f"{name}_cosine_after"] = before, mean_cosine(values, head.weight)
    return report


def label_matrix(rows: pd.DataFrame) -> np.ndarray | None:
    """(N, K) finding indicators from the CheXpert columns (1 -> 1, uncertain -> 0.5, else 0),
    or None when the manifest has no label column."""
    columns = [name for name in CHEXPERT_FINDINGS if name in rows.columns]
    if not columns:
        return None
    values = rows[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return np.where(values == 1.0, 1.0, np.where(values == -1.0, 0.5, 0.0)).astype(np.float32)


def match_weights(
    texts: Sequence[str],
    index: torch.Tensor,
    similarity: ReportSimilarity | None,
    label_vectors: torch.Tensor | None,
    label_weight: float,
) -> torch.Tensor:
    """The (B, B) match weights of a batch: 1 for identical texts, plus the optional report
    similarity, and `label_weight` x the cosine of the images' finding labels."""
    weights = similarity(texts) if similarity is not None else None
    if weights is None:
        groups = text_groups(texts)
        weights = (groups[:, None] == groups[None, :]).float()
    if label_vectors is not None:
        vectors = label_vectors[index]
        weights = torch.maximum(weights, label_weight * (vectors @ vectors.t()))
    return weights


def fit_contrastive(
    encoder: MedCLIPEncoder,
    pixels: torch.Tensor | ImageSource,
    reports: Sequence[str],
    params: Mapping[str, Any],
    seed: int,
    on_epoch_end: Callable[[int, MedCLIPEncoder], None] | None = None,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Train `encoder` in place with the CLIP loss on (pixels[i], reports[i]) pairs.

    AdamW, linear warmup then cosine decay, gradient clipping, MedCLIP's learnable (clamped)
    temperature, side-preserving augmentation. With `labels` (N, K) and
    `label_match_weight` > 0, pairs whose images share findings are partial matches
    (MedCLIP's semantic matching). `pixels`: a cached (N, 1, S, S) tensor or an
    `ImageSource` (cached or streamed: the same numbers). Returns one history row per step.
    """
    model, device = encoder.model, encoder.device
    batch_size = min(int(params.get("batch_size", 64)), len(reports))
    epochs = int(params.get("epochs", 10))
    steps_per_epoch = len(reports) // batch_size  # drop the last partial batch: in-batch negatives
    total_steps = epochs * steps_per_epoch
    warmup_steps = round(float(params.get("warmup_epochs", 1)) * steps_per_epoch)
    peak, floor = float(params.get("learning_rate", 1e-3)), float(params.get("min_learning_rate", 0.0))
    optimizer = torch.optim.AdamW(
        _param_groups(model, float(params.get("weight_decay", 0.05))), lr=peak, betas=(0.9, 0.98), eps=1e-6
    )
    clip_norm = float(params.get("grad_clip_norm", 1.0))
    augmentation = params.get("augment") or {}
    sentence_probability = float(params.get("sentence_sampling", 0.0))
    soft_temperature = params.get("soft_target_temperature")
    similarity = ReportSimilarity(reports, float(soft_temperature)) if soft_temperature else None
    label_weight = float(params.get("label_match_weight", 0.0) or 0.0)
    label_vectors = (
        F.normalize(torch.as_tensor(np.asarray(labels), dtype=torch.float32), dim=1)
        if labels is not None and label_weight > 0 else None
    )
    generator = torch.Generator().manual_seed(seed)
    reports = list(reports)
    source = _as_source(pixels)

    history = []
    step = 0
    started = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(reports), generator=generator)
        # the epoch's batches are fixed here, so a streamed source can decode ahead
        indices = [order[k * batch_size : (k + 1) * batch_size] for k in range(steps_per_epoch)]
        bar = tqdm(zip(indices, source.batches(indices)), total=steps_per_epoch,
                   desc=f"encoder epoch {epoch + 1}/{epochs}", leave=False)
        epoch_losses = []
        for index, batch in bar:
            images = augment(batch, augmentation, generator).to(device)
            texts = sample_sentences([reports[i] for i in index.tolist()], sentence_probability, generator)
            tokens = encoder.tokenize(texts)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate_at(step, total_steps, warmup_steps, peak, floor)
            image_embeddings = encoder.encode_images(images)
            text_embeddings = encoder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
            logits_per_image = model.compute_logits(image_embeddings, text_embeddings)  # clamps the temperature
            loss = clip_loss(logits_per_image, match_weights(texts, index, similarity, label_vectors, label_weight))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            value = float(loss.detach())
            epoch_losses.append(value)
            history.append({
                "epoch": epoch + 1,
                "step": step + 1,
                "loss": value,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "temperature": float(1.0 / model.logit_scale.detach().exp()),
                "seconds": time.perf_counter() - started,
            })
            bar.set_postfix(loss=f"{value:.3f}")
            step += 1
        logger.info(
            "encoder_training: epoch %d/%d mean loss %.4f (%.0f s)",
            epoch + 1, epochs, float(np.mean(epoch_losses)) if epoch_losses else float("nan"),
            time.perf_counter() - started,
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, encoder)
            model.train()
    with torch.no_grad():
        model.logit_scale.clamp_(0, 4.6052)  # the range MedCLIP's compute_logits allows
    model.eval()
    return pd.DataFrame(history, columns=["epoch", "step", "loss", "learning_rate", "temperature", "seconds"])


def training_pairs(image_manifest: pd.DataFrame, encoder_split: pd.DataFrame) -> pd.DataFrame:
    """The training patients' images that have a report, sorted by image_id."""
    _require_columns(image_manifest, ("image_id", "image_path", "report"), "image_manifest")
    rows = _rows_of(image_manifest, encoder_split, TRAIN)
    rows = rows[rows["report"].fillna("").astype(str).str.strip() != ""].reset_index(drop=True)
    if len(rows) < 2:
        raise ValueError(f"{len(rows)} training image(s) with a report: contrastive training needs at least 2")
    return rows


def train_encoder(
    image_manifest: pd.DataFrame,
    encoder_split: pd.DataFrame,
    encoder_params: dict,
    params: dict,
    seed: int,
    device: str,
) -> tuple[MedCLIPEncoder, pd.DataFrame]:
    """Fine-tune MedCLIP with the CLIP loss on the training patients' image/report pairs.

    Returns the trained encoder (on the CPU) and the history, one row per step:
    epoch, step, loss, learning_rate, temperature, seconds (since the start, image caching included).
    The images are cached while they fit `image_cache_mb`, else streamed from disk per batch.
    """
    torch.manual_seed(seed)
    rows = training_pairs(image_manifest, encoder_split)
    reports = rows["report"].astype(str).tolist()
    encoder = build_start_encoder(reports, encoder_params, seed)
    encoder.to(resolve_device(device))
    if params.get("temperature_init") is not None:
        with torch.no_grad():
            encoder.model.logit_scale.fill_(math.log(1.0 / float(params["temperature_init"])))

    started = time.perf_counter()
    pixels = image_source(rows["image_path"].tolist(), encoder.image_size, params, "training")
    cached = time.perf_counter() - started
    logger.info(
        "encoder_training: %d training images (%d patients, %d distinct reports), images ready in %.1f s",
        len(rows), rows["patient_id"].nunique(), int(text_groups(reports).max()) + 1, cached,
    )
    if params.get("center_projections", False):
        spread = center_projection_heads(encoder, pixels, reports)
        logger.info("encoder_training: centred the projection heads, mean cosine %s",
                    ", ".join(f"{key} {value:.3f}" for key, value in spread.items()))
    history = fit_contrastive(encoder, pixels, reports, params, seed, labels=label_matrix(rows))
    history["seconds"] += cached
    return encoder.to("cpu"), history


def plot_loss_curve(history: pd.DataFrame) -> Figure:
    """The training loss per step and its mean per epoch, with the learning rate."""
    figure = Figure(figsize=(7, 4))  # no pyplot: no global backend or figure registry
    axis = figure.subplots()
    if len(history):
        axis.plot(history["step"], history["loss"], color="tab:blue", alpha=0.35, lw=1, label="loss per step")
        per_epoch = history.groupby("epoch").agg(step=("step", "max"), loss=("loss", "mean"))
        axis.plot(per_epoch["step"], per_epoch["loss"], "o-", color="tab:blue", label="mean loss per epoch")
        rate_axis = axis.twinx()
        rate_axis.plot(history["step"], history["learning_rate"], color="tab:orange", lw=1, label="learning rate")
        rate_axis.set_ylabel("learning rate", color="tab:orange")
    axis.set_xlabel("step")
    axis.set_ylabel("CLIP loss")
    axis.set_title("MedCLIP encoder training")
    axis.legend(loc="upper right")
    figure.tight_layout()
    return figure


def finding_labels(rows: pd.DataFrame, findings: Sequence[str] | None, exclude: Sequence[str]) -> dict[str, np.ndarray]:
    """0/1/NaN targets per finding: 1 positive, 0 or empty negative, -1 (uncertain) left out.

    With `findings` None: every CheXpert column with both classes among `rows`.
    """
    if findings is None:
        candidates = [name for name in CHEXPERT_FINDINGS if name in rows.columns and name not in set(exclude)]
    else:
        unknown = [name for name in findings if name not in rows.columns]
        if unknown:
            raise ValueError(f"encoder_training.evaluation.findings names column(s) not in image_manifest: {unknown}")
        candidates = list(findings)
    labels = {}
    for name in candidates:
        values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
        target = np.where(values == 1.0, 1.0, np.where(values == -1.0, np.nan, 0.0))
        if findings is None and (np.nansum(target) == 0 or np.nansum(1 - target) == 0):
            continue
        labels[name] = target
    return labels


def embed_images(encoder: MedCLIPEncoder, pixels: torch.Tensor | ImageSource, batch_size: int = 128) -> np.ndarray:
    """L2-normalised image embeddings (N, 512) of cached or streamed images, in eval mode without gradients."""
    source = _as_source(pixels)
    indices = [torch.arange(start, min(start + batch_size, len(source))) for start in range(0, len(source), batch_size)]
    chunks = []
    with eval_mode(encoder.model), torch.inference_mode():
        for images in source.batches(indices):
            chunks.append(encoder.encode_images(images).cpu())
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, encoder.embed_dim), dtype=np.float32)


def prompt_vectors(encoder: MedCLIPEncoder, prompts: Sequence[str | Sequence[str]]) -> np.ndarray:
    """One L2-normalised embedding per prompt; a list of prompts is averaged (an ensemble)."""
    groups = [[p] if isinstance(p, str) else list(p) for p in prompts]
    flat = encoder.encode_texts([text for group in groups for text in group])
    vectors, start = [], 0
    for group in groups:
        mean = flat[start : start + len(group)].mean(axis=0)
        vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        start += len(group)
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, encoder.embed_dim), np.float32)


def evaluate_encoder(
    medclip_encoder: MedCLIPEncoder,
    image_manifest: pd.DataFrame,
    encoder_split: pd.DataFrame,
    history: pd.DataFrame,
    params: dict,
    device: str,
) -> dict[str, Any]:
    """On the held-out patients' images: per finding, the ROC AUC of the image's similarity
    to a prompt naming it ("there is pneumonia"). Logged, and returned as metrics."""
    evaluation = dict(params.get("evaluation") or {})
    template = str(evaluation.get("prompt_template", "there is {finding}"))
    target_auc = float(evaluation.get("target_auc", 0.9))
    rows = _rows_of(image_manifest, encoder_split, TEST)
    labels = finding_labels(rows, evaluation.get("findings"), evaluation.get("exclude", ("No Finding",)))
    encoder = medclip_encoder.to(device)
    pixels = image_source(rows["image_path"].tolist(), encoder.image_size, params, "held-out")
    images = embed_images(encoder, pixels, int(evaluation.get("batch_size", 128)))
    overrides = dict(evaluation.get("prompts") or {})
    prompts = {name: overrides.get(name, template.format(finding=name.lower())) for name in labels}
    prompt_embeddings = prompt_vectors(encoder, prompts.values())
    aucs, positives, negatives = {}, {}, {}
    for (name, target), prompt_embedding in zip(labels.items(), prompt_embeddings):
        known = ~np.isnan(target)
        positives[name], negatives[name] = int(target[known].sum()), int((1 - target[known]).sum())
        scores = images[known] @ prompt_embedding
        aucs[name] = (
            float(roc_auc_score(target[known], scores)) if positives[name] and negatives[name] else float("nan")
        )
        level = logging.INFO if aucs[name] >= target_auc else logging.WARNING
        logger.log(level, "encoder_training: held-out AUC %-20s %.3f  (prompt %s, %d+ / %d-)",
                   name, aucs[name], prompts[name], positives[name], negatives[name])
    finite = [value for value in aucs.values() if not math.isnan(value)]
    metrics = {
        "profile": encoder.profile,
        "held_out_images": int(len(rows)),
        "held_out_patients": int(rows["patient_id"].nunique()) if len(rows) else 0,
        "train_images": int((encoder_split["split"] == TRAIN).sum()),
        "epochs": int(history["epoch"].max()) if len(history) else 0,
        "training_seconds": float(history["seconds"].max()) if len(history) else 0.0,
        "final_epoch_loss": float(history.loc[history["epoch"] == history["epoch"].max(), "loss"].mean())
        if len(history) else float("nan"),
        "temperature": float(1.0 / encoder.model.logit_scale.detach().exp()),
        "prompt_template": template,
        "prompts": prompts,
        "auc": aucs,
        "positives": positives,
        "negatives": negatives,
        "min_auc": min(finite) if finite else float("nan"),
        "target_auc": target_auc,
        "meets_target": bool(finite) and min(finite) >= target_auc,
    }
    logger.info(
        "encoder_training: held-out min AUC %.3f over %d finding(s), target %.2f: %s",
        metrics["min_auc"], len(finite), target_auc, "met" if metrics["meets_target"] else "NOT met",
    )
    return _json_safe(metrics)


def _json_safe(value: Any) -> Any:
    """NaN becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
