"""Contrastive (CLIP loss) training of a MedCLIP encoder on image/report pairs.

The `demo` profile starts from random weights (MedCLIP's classes on small Swin/BERT configs),
the published profiles from MedCLIP's weights (`build_start_encoder`). `fit_contrastive` runs
the training loop; the pieces it is made of are here too, each testable alone: the loss
(`clip_loss`) and its match targets (`text_groups`, `ReportSimilarity`, `label_matrix`,
`match_weights`), the optional local term (`local_alignment_logits` on `LayerTokens`), the
schedule (`learning_rate_at`), the augmentation (`augment`), report sentence sampling
(`sample_sentences`) and the projection heads' centring (`center_projection_heads`).

What makes a small Swin learn from scratch here (it stalls at chance with default settings):
MedCLIP's input normalisation (done by `preprocess`), a 4-pixel patch, AdamW with a linear
warmup then a cosine decay at a moderate rate (too high a rate collapses every embedding to
one point in the first epoch), projection heads centred on the backbones' mean feature before
training (fresh backbones give all inputs nearly the same feature), MedCLIP's learnable
temperature, gradient clipping, and mild augmentation that keeps left and right (no
horizontal flip: reports name the patient's side). Identical reports in a batch count as
matches, and optionally so do studies that share findings (MedCLIP's semantic matching,
`label_match_weight`).

Example:
    >>> settings = ContrastiveTraining.parse(raw_settings, "encoder_training")  # doctest: +SKIP
    >>> history = fit_contrastive(encoder, images, reports, settings, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.nn import functional as F

from medclip_residuals.data.labels import CHEXPERT_FINDINGS, apply_uncertainty
from medclip_residuals.data.preprocess import MEDCLIP_MEAN, MEDCLIP_STD
from medclip_residuals.data.study_split import rows_in_role
from medclip_residuals.models.compute import plan_compute
from medclip_residuals.models.embed import autocast_context
from medclip_residuals.models.encoder import MedCLIPEncoder, eval_mode
from medclip_residuals.models.image_source import ImageSource, as_image_source
from medclip_residuals.models.medclip_loader import EncoderParams, build_demo_encoder, load_encoder
from medclip_residuals.utils.params import Parameters
from medclip_residuals.utils.progress import progress_bar

logger = logging.getLogger(__name__)

# Black (0) after MedCLIP's normalisation: what augmentation fills uncovered pixels with.
_BLACK = -MEDCLIP_MEAN / MEDCLIP_STD
# The largest logit scale MedCLIP's compute_logits allows (a temperature of 1/100).
_MAX_LOGIT_SCALE = 4.6052
HISTORY_COLUMNS = ["epoch", "step", "loss", "local_loss", "learning_rate", "temperature", "seconds"]


@dataclass(frozen=True)
class Augmentation(Parameters):
    """Limits of the random, side-preserving augmentation (each drawn uniformly in +- limit)."""

    rotate_degrees: float
    scale: float
    translate: float  # a fraction of the image side
    brightness: float
    contrast: float
    noise: float  # standard deviation, in pixel units of [0, 1]


@dataclass(frozen=True)
class LocalAlignment(Parameters):
    """The local (token-to-text) term of the loss (`local_alignment_logits`)."""

    weight: float  # the term's weight next to the global CLIP loss (0: off)
    pool_temperature: float  # softmax temperature of the tokens' cosines when pooling them
    layer: str | None  # the vision layer whose tokens are aligned; null: the last stage


@dataclass(frozen=True)
class ContrastiveTraining(Parameters):
    """The settings `fit_contrastive` reads (keys of `encoder_training`)."""

    epochs: int
    batch_size: int
    # AdamW, linear warmup to learning_rate, then cosine decay to min_learning_rate
    learning_rate: float
    min_learning_rate: float
    warmup_epochs: float
    weight_decay: float
    grad_clip_norm: float  # 0: no clipping
    # probability that a report of several sentences is replaced by one of them for a step
    sentence_sampling: float
    # weight of the partial matches of studies that share CheXpert findings (0: none)
    label_match_weight: float
    # soft matches from the reports' TF-IDF overlap at this temperature (null or 0: none)
    soft_target_temperature: float | None
    augment: Augmentation | None  # null: no augmentation
    # a second CLIP loss on one layer's tokens, pooled by their similarity to each text
    # (null or weight 0: the global loss only)
    local_alignment: LocalAlignment | None
    # bf16 autocast of the forward pass (the loss and the optimiser stay float32); auto: where
    # the device computes bf16 natively (models/compute.py)
    bf16: bool | Literal["auto"]


# --------------------------------------------------------------------------------------------
# The pairs and the encoder training starts from
# --------------------------------------------------------------------------------------------


def training_pairs(image_manifest: pd.DataFrame, study_split: pd.DataFrame) -> pd.DataFrame:
    """The images of the study's `encoder_train` role that have a report, sorted by image_id."""
    missing = [c for c in ("image_id", "image_path", "report") if c not in image_manifest.columns]
    if missing:
        raise ValueError(f"image_manifest lacks the column(s) {missing}; it has {list(image_manifest.columns)}")
    rows = rows_in_role(image_manifest, study_split, "encoder_train")
    rows = rows[rows["report"].fillna("").astype(str).str.strip() != ""].reset_index(drop=True)
    if len(rows) < 2:
        raise ValueError(
            f"{len(rows)} encoder_train image(s) with a report: contrastive training needs at least 2 "
            "(study_design.split.fractions.encoder_train gives the encoder its patients)"
        )
    return rows


def build_start_encoder(params: EncoderParams, train_reports: Sequence[str], seed: int) -> MedCLIPEncoder:
    """The model training starts from: random `demo` weights (tokenizer from the training
    reports), or the published MedCLIP weights for `medclip_vit` / `medclip_resnet` (or the
    saved encoder of `encoder_dir`)."""
    if params.profile == "demo":
        return build_demo_encoder(params.demo, train_reports, seed=seed)
    return load_encoder(params)


def set_temperature(encoder: MedCLIPEncoder, temperature: float) -> None:
    """Start MedCLIP's learnable temperature at `temperature` (its logit scale is log(1/t))."""
    with torch.no_grad():
        encoder.model.logit_scale.fill_(math.log(1.0 / temperature))


def temperature_of(model: torch.nn.Module) -> float:
    """The temperature of a MedCLIP model's logits: 1 / exp(logit_scale)."""
    return float(1.0 / model.logit_scale.detach().exp())


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------


def augment(batch: torch.Tensor, augmentation: Augmentation | None, generator: torch.Generator) -> torch.Tensor:
    """Random small rotation, zoom and shift, contrast/brightness and noise; never a flip.

    `batch` is (B, C, S, S) MedCLIP-normalised; pixels moved in from outside are black.
    With `augmentation` None the batch is returned unchanged.
    """
    if augmentation is None:
        return batch
    count = batch.shape[0]

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(count, generator=generator) * 2 - 1) * float(limit)

    angle = uniform(augmentation.rotate_degrees) * math.pi / 180
    scale = 1 + uniform(augmentation.scale)
    shift_x, shift_y = uniform(augmentation.translate) * 2, uniform(augmentation.translate) * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift_x], dim=1), torch.stack([sin, cos, shift_y], dim=1)], dim=1
    ).to(batch.device, batch.dtype)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    moved = F.grid_sample(batch - _BLACK, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + _BLACK
    contrast = (1 + uniform(augmentation.contrast)).to(batch.device).view(-1, 1, 1, 1)
    brightness = uniform(augmentation.brightness).to(batch.device).view(-1, 1, 1, 1) / MEDCLIP_STD
    moved = (moved - _BLACK) * contrast + _BLACK + brightness
    noise = float(augmentation.noise)
    if noise > 0:
        moved = moved + torch.randn(moved.shape, generator=generator).to(batch.device) * (noise / MEDCLIP_STD)
    return moved


# --------------------------------------------------------------------------------------------
# Loss, match targets and schedule
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


def label_matrix(rows: pd.DataFrame) -> np.ndarray | None:
    """(N, K) finding indicators from the CheXpert columns, uncertain counting half (the
    `u_half` policy of data/labels.py), or None when the manifest has no label column."""
    columns = [name for name in CHEXPERT_FINDINGS if name in rows.columns]
    if not columns:
        return None
    values = rows[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return apply_uncertainty(values, "u_half").astype(np.float32)


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


def local_alignment_logits(tokens: torch.Tensor, text_embeddings: torch.Tensor, pool_temperature: float) -> torch.Tensor:
    """(B_img, B_txt) similarities of each image's tokens to each text, pooled over the tokens.

    `tokens` (B_img, L, D): one layer's tokens in the joint space (`LayerTokens`, unnormalised);
    `text_embeddings` (B_txt, D), L2-normalised. Per image and text, the tokens' cosines
    with the text are averaged with softmax(cosine / pool_temperature) weights: the score is
    carried by the tokens that look most like the text (PACL's patch pooling; GLoRIA and
    FILIP pool word-to-region similarities in the same spirit). A CLIP loss on these
    scores asks that the tokens where a finding lies, and not those of another image or
    another finding, match the text naming it: what a similarity map at token level shows.
    """
    cosine = torch.einsum("ild,jd->ijl", F.normalize(tokens.float(), dim=-1), text_embeddings.float())
    weights = torch.softmax(cosine / pool_temperature, dim=-1)
    return (weights * cosine).sum(dim=-1)


class LayerTokens:
    """Records one layer's tokens during a forward pass and carries them to the joint space,
    each token alone (`explain.token_similarity`'s steps: the tokens its maps of that layer
    show). The default, the last stage (Swin: `model.layernorm`; ResNet: `model.layer4`),
    needs only the projection head, and the image embedding is the projection of these
    tokens' mean, so one forward pass gives both; MedCLIP's forward is not touched (a
    forward hook). An earlier layer (e.g. `model.encoder.layers.1.blocks.-1`) has smaller
    receptive fields; its tokens go through the remaining blocks with each token attending
    only to itself (MaskCLIP's path).
    """

    def __init__(self, vision_encoder: torch.nn.Module, layer: str | None = None) -> None:
        from medclip_residuals.explain.layers import resolve_target_layer
        from medclip_residuals.explain.token_similarity import token_steps

        if layer is None:
            layer = "model.layernorm" if hasattr(vision_encoder, "projection_head") else "model.layer4"
        self.layer, module = resolve_target_layer(vision_encoder, layer)
        self.steps = token_steps(vision_encoder, self.layer)
        self.tokens: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._record)

    def _record(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        output = output[0] if isinstance(output, tuple) else output  # a Swin block's hidden states
        self.tokens = output.flatten(2).transpose(1, 2) if output.ndim == 4 else output  # (B, L, C)

    def projected(self) -> torch.Tensor:
        """The last forward's tokens in the joint space, (B, L, D)."""
        if self.tokens is None:
            raise RuntimeError(f"no forward pass recorded the tokens of {self.layer}")
        tokens = self.tokens
        for step in self.steps:
            tokens = step(tokens)
        return tokens

    def remove(self) -> None:
        self.handle.remove()
        self.tokens = None


# --------------------------------------------------------------------------------------------
# Report sentences
# --------------------------------------------------------------------------------------------


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
            chosen.append(sentences[int(torch.randint(len(sentences), (1,), generator=generator))])
        else:
            chosen.append(report)
    return chosen


# --------------------------------------------------------------------------------------------
# Projection heads
# --------------------------------------------------------------------------------------------


def projection_heads(encoder: MedCLIPEncoder) -> dict[str, torch.nn.Linear]:
    """MedCLIP's two projection layers: the vision head (ResNet: its `fc`) and the text head."""
    vision = encoder.model.vision_model
    head = vision.projection_head if hasattr(vision, "projection_head") else vision.model.fc
    return {"vision": head, "text": encoder.model.text_model.projection_head}


def _mean_cosine(values: torch.Tensor, weight: torch.Tensor) -> float:
    embedded = F.normalize(values @ weight.t(), dim=-1)
    n = len(embedded)
    return float(((embedded @ embedded.t()).sum() - n) / max(1, n * (n - 1)))


def center_projection_heads(
    encoder: MedCLIPEncoder,
    pixels: torch.Tensor | ImageSource,
    reports: Sequence[str],
    sample: int = 256,
    batch_size: int = 64,
) -> dict[str, float]:
    """Remove the backbones' shared mean feature from both projection heads (an init, no training).

    Freshly initialised backbones give nearly the same feature for every input: every logit
    is then alike and the CLIP loss starts flat. Projecting the mean direction u out of each
    head, W <- W (I - u u^T), spreads the initial embeddings without touching MedCLIP's
    forward. Returns the mean pairwise cosine of the embeddings before and after, on
    `sample` evenly spaced pairs.
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
            for chunk, images in zip(chunks, as_image_source(pixels).batches(chunks)):
                encoder.encode_images(images)
                tokens = encoder.tokenize([reports[i] for i in chunk.tolist()])
                encoder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
    finally:
        for hook in hooks:
            hook.remove()

    report = {}
    with torch.no_grad():
        for name, head in heads.items():
            values = torch.cat(features[name]).to(head.weight.device)
            direction = F.normalize(values.mean(dim=0), dim=0)
            before = _mean_cosine(values, head.weight)
            head.weight -= torch.outer(head.weight @ direction, direction)
            report[f"{name}_cosine_before"], report[f"{name}_cosine_after"] = before, _mean_cosine(values, head.weight)
    return report


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


def _label_vectors(labels: np.ndarray | None, label_weight: float) -> torch.Tensor | None:
    if labels is None or label_weight <= 0:
        return None
    return F.normalize(torch.as_tensor(np.asarray(labels), dtype=torch.float32), dim=1)


def _batch_loss(
    encoder: MedCLIPEncoder,
    images: torch.Tensor,
    tokens: dict[str, torch.Tensor],
    match: torch.Tensor,
    bf16: bool,
    layer_tokens: LayerTokens | None,
    local: LocalAlignment | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch's loss (the CLIP loss, plus the weighted local term where it is on) and the
    local term alone (None where off)."""
    model = encoder.model
    with autocast_context(encoder.device, bf16):
        image_embeddings = encoder.encode_images(images)
        text_embeddings = encoder.encode_tokens(tokens["input_ids"], tokens["attention_mask"])
        token_embeddings = layer_tokens.projected() if layer_tokens is not None else None
    loss = clip_loss(model.compute_logits(image_embeddings, text_embeddings), match)  # clamps the temperature
    if local is None or token_embeddings is None:
        return loss, None
    pooled = local_alignment_logits(token_embeddings, text_embeddings, local.pool_temperature)
    local_loss = clip_loss(pooled * model.logit_scale.exp(), match)
    return loss + local.weight * local_loss, local_loss


def _optimise(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_norm: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()


def fit_contrastive(
    encoder: MedCLIPEncoder,
    pixels: torch.Tensor | ImageSource,
    reports: Sequence[str],
    settings: ContrastiveTraining,
    seed: int,
    on_epoch_end: Callable[[int, MedCLIPEncoder], None] | None = None,
    labels: np.ndarray | None = None,
) -> pd.DataFrame:
    """Train `encoder` in place with the CLIP loss on (pixels[i], reports[i]) pairs.

    AdamW, linear warmup then cosine decay, gradient clipping, MedCLIP's learnable (clamped)
    temperature, side-preserving augmentation. With `labels` (N, K) and
    `label_match_weight` > 0, pairs whose images share findings are partial matches
    (MedCLIP's semantic matching). `pixels`: a cached (N, 1, S, S) tensor or an
    `ImageSource` (cached or streamed: the same numbers). Returns one history row per step
    (`HISTORY_COLUMNS`); the last partial batch of an epoch is dropped (in-batch negatives).
    """
    model, device = encoder.model, encoder.device
    bf16 = plan_compute(device, bf16=settings.bf16).bf16
    batch_size = min(settings.batch_size, len(reports))
    steps_per_epoch = len(reports) // batch_size
    total_steps = settings.epochs * steps_per_epoch
    warmup_steps = round(settings.warmup_epochs * steps_per_epoch)
    peak, floor = settings.learning_rate, settings.min_learning_rate
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=peak, betas=(0.9, 0.98), eps=1e-6)
    temperature = settings.soft_target_temperature
    similarity = ReportSimilarity(reports, temperature) if temperature else None
    label_vectors = _label_vectors(labels, settings.label_match_weight)
    generator = torch.Generator().manual_seed(seed)
    reports = list(reports)
    source = as_image_source(pixels)
    local = settings.local_alignment if settings.local_alignment and settings.local_alignment.weight > 0 else None
    layer_tokens = LayerTokens(encoder.vision_model, local.layer) if local else None

    history = []
    step = 0
    started = time.perf_counter()
    model.train()
    try:
        for epoch in range(settings.epochs):
            order = torch.randperm(len(reports), generator=generator)
            # the epoch's batches are fixed here, so a streamed source can decode ahead
            indices = [order[k * batch_size : (k + 1) * batch_size] for k in range(steps_per_epoch)]
            bar = progress_bar(zip(indices, source.batches(indices)), total=steps_per_epoch,  # the epoch's log line follows
                               desc=f"encoder epoch {epoch + 1}/{settings.epochs}", leave=False, log_lines=0)
            epoch_losses = []
            for index, batch in bar:
                images = augment(batch, settings.augment, generator).to(device)
                texts = sample_sentences([reports[i] for i in index.tolist()], settings.sentence_sampling, generator)
                tokens = encoder.tokenize(texts)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate_at(step, total_steps, warmup_steps, peak, floor)
                match = match_weights(texts, index, similarity, label_vectors, settings.label_match_weight)
                loss, local_loss = _batch_loss(encoder, images, tokens, match, bf16, layer_tokens, local)
                _optimise(model, optimizer, loss, settings.grad_clip_norm)
                value = float(loss.detach())
                epoch_losses.append(value)
                history.append({
                    "epoch": epoch + 1,
                    "step": step + 1,
                    "loss": value,
                    "local_loss": float(local_loss.detach()) if local_loss is not None else float("nan"),
                    "learning_rate": optimizer.param_groups[0]["lr"],
                    "temperature": temperature_of(model),
                    "seconds": time.perf_counter() - started,
                })
                bar.set_postfix(loss=f"{value:.3f}")
                step += 1
            logger.info(
                "encoder_training: epoch %d/%d mean loss %.4f (%.0f s)",
                epoch + 1, settings.epochs, float(np.mean(epoch_losses)) if epoch_losses else float("nan"),
                time.perf_counter() - started,
            )
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, encoder)
                model.train()
    finally:
        if layer_tokens is not None:
            layer_tokens.remove()
    with torch.no_grad():
        model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
    model.eval()
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


# --------------------------------------------------------------------------------------------
# The history
# --------------------------------------------------------------------------------------------


def history_summary(history: pd.DataFrame) -> dict[str, Any]:
    """Epochs, training seconds and the last epoch's mean loss (NaN without history)."""
    if not len(history):
        return {"epochs": 0, "training_seconds": 0.0, "final_epoch_loss": float("nan")}
    last = history["epoch"].max()
    return {
        "epochs": int(last),
        "training_seconds": float(history["seconds"].max()),
        "final_epoch_loss": float(history.loc[history["epoch"] == last, "loss"].mean()),
    }


def loss_curve_figure(history: pd.DataFrame) -> Figure:
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
