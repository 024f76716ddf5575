"""The heatmap plan: which (image, target) pairs get a heatmap, one row each, in order.

Targets: the image's own report (group "report", when non-empty), every caption (group
"phrase"), a per-finding prompt (group "finding", e.g. "there is pleural effusion") for the
grounding metrics, and the chosen heads (groups "image", "residual_1", "residual_2") on the
images where the head's finding is localized (`head_images="localized"`) or on every image
(`"all"`). `findings` lists, per row, the localized findings its heatmap is scored against
(a caption: those it names, or, for a report that names none, all of the image's; a head:
its own finding; a head of an outcome, which no region shows, every localized finding of
the image: does it look at a finding at all); `named` lists every finding a caption names,
present on the image or not.

The per-finding prompts (`Grounding`) serve the two grounding metrics of explain/evaluate.py:
on images with a localized finding, the prompt of each finding the image has (true
captions: caption specificity where an image has two kinds or more, and the true-caption hit
rate per finding) and `distractors_per_image` prompts of findings it does not have (a
seeded draw among the dataset's localized kinds: the distractor hit rate).

`contrast_texts` / `contrast_reduce` carry a caption target's contrast set when
`contrast_findings` is "mean" or "max": the prompts of every localized kind the caption does
not name, subtracted as their mean or max similarity (explain/targets.py `caption_target`).

The maps that `explain/generate.py` makes follow the plan row for row; `heatmaps_of_plan`
checks that a set of maps belongs to a plan before anything reads them.

Example:
    >>> plan = build_plan(manifest, localizations, [], captions=["there is pneumonia"],  # doctest: +SKIP
    ...                   include_report_captions=True, finding_synonyms={}, head_images="localized",
    ...                   max_images=None, prefer_localized=True, seed=0, grounding=None,
    ...                   contrast_findings="none")
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from medclip_residuals.data.labels import CHEXPERT_FINDINGS
from medclip_residuals.datasets.heatmap_store import ArrayHeatmaps, HeatmapChunk, HeatmapStore
from medclip_residuals.utils.params import ParameterError, Parameters

HeadVariant = Literal["image", "residual_1", "residual_2"]
HEAD_VARIANTS: tuple[str, ...] = get_args(HeadVariant)
ContrastFindings = Literal["none", "mean", "max"]
PLAN_COLUMNS = [
    "row", "image_id", "target_id", "kind", "group", "text", "head", "findings", "named",
    "contrast_texts", "contrast_reduce",
]
FINDING_GROUP = "finding"


@dataclass(frozen=True)
class Grounding(Parameters):
    """Per-finding prompts for the grounding metrics (`params:explainability.grounding`).

    Args:
        prompt_template: a finding's prompt, "{finding}" replaced by its lower-cased name.
        prompts: finding -> its own prompt (a string, or a list whose first entry is used).
        finding_prompt_images: which images get the prompt of each localized finding they
            have: "localized" (every image with one: the true-caption hit rate per finding,
            beside the distractor rate), "multi_finding" (images with two kinds or more: what
            caption specificity needs) or "none".
        distractors_per_image: prompts of findings an image does not have, per image with a
            localized finding (a seeded draw among the dataset's localized kinds); 0: none.
    """

    prompt_template: str
    prompts: dict[str, str | tuple[str, ...]]
    finding_prompt_images: Literal["localized", "multi_finding", "none"]
    distractors_per_image: int

    def check(self, where: str) -> None:
        if "{finding}" not in self.prompt_template:
            raise ParameterError(f"{where}.prompt_template {self.prompt_template!r} has no '{{finding}}'")
        for finding, prompt in self.prompts.items():
            first = prompt if isinstance(prompt, str) else (prompt[0] if prompt else "")
            if not first.strip():
                raise ParameterError(f"{where}.prompts.{finding} is empty")
        if self.distractors_per_image < 0:
            raise ParameterError(f"{where}.distractors_per_image must be >= 0, got {self.distractors_per_image}")

    def prompt(self, finding: str) -> str:
        """The one prompt of `finding` (the first of a list): its entry in `prompts`, else the template."""
        own = self.prompts.get(finding)
        if own is None:
            return self.prompt_template.format(finding=finding.lower())
        return (own if isinstance(own, str) else own[0]).strip()


def findings_named_in(text: str, synonyms: Mapping[str, str] | None = None) -> list[str]:
    """CheXpert findings a caption names (whole words, any case), plus synonym phrases."""
    lowered = f" {str(text).lower()} "
    named = [name for name in CHEXPERT_FINDINGS if re.search(rf"\b{re.escape(name.lower())}\b", lowered)]
    for phrase, finding in (synonyms or {}).items():
        if re.search(rf"\b{re.escape(str(phrase).lower())}\b", lowered) and finding not in named:
            named.append(finding)
    return named


def head_names(heads: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(name, finding, variant) of every head in a TensorDictDataset of heads."""
    if not heads:
        return []
    out = []
    for name in heads.get("metadata", {}).get("heads", {}):
        finding, _, variant = name.rpartition("/")
        if finding and variant in HEAD_VARIANTS:
            out.append((name, finding, variant))
    return out


def localized_findings(image_localizations: pd.DataFrame) -> dict[str, set[str]]:
    """image_id -> the findings localized on that image."""
    localized: dict[str, set[str]] = {}
    for image_id, finding in image_localizations[["image_id", "finding"]].astype(str).itertuples(index=False):
        localized.setdefault(image_id, set()).add(finding)
    return localized


def cell_list(value: Any) -> list[str]:
    """A list cell of the plan (`findings`, `named`, `contrast_texts`): a list, or a numpy
    array once read back from Parquet; None or NaN: empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [str(item) for item in value]


def finding_order(findings: Collection[str]) -> list[str]:
    """Findings in CheXpert's order, any others after them alphabetically."""
    rank = {name: k for k, name in enumerate(CHEXPERT_FINDINGS)}
    return sorted(set(findings), key=lambda name: (rank.get(name, len(rank)), name))


def labelled_findings(image_manifest: pd.DataFrame, findings: Collection[str]) -> dict[str, set[str]]:
    """image_id -> those of `findings` its manifest labels positive (1) or uncertain (-1):
    a caption naming one of them is not a distractor, localized or not."""
    columns = [name for name in findings if name in image_manifest.columns]
    ids = image_manifest["image_id"].astype(str).tolist()
    labelled: dict[str, set[str]] = {image_id: set() for image_id in ids}
    for name in columns:
        values = pd.to_numeric(image_manifest[name], errors="coerce").to_numpy(dtype=float)
        for image_id, value in zip(ids, values):
            if value in (1.0, -1.0):
                labelled[image_id].add(name)
    return labelled


def draw_distractors(image_id: str, candidates: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` of `candidates` for one image, in the candidates' order: a draw seeded by the
    run's seed and the image id, so an image draws the same whichever images are planned."""
    if count <= 0 or not candidates:
        return []
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(str(image_id).encode("utf-8"))])
    keep = set(rng.choice(len(candidates), size=min(count, len(candidates)), replace=False).tolist())
    return [name for k, name in enumerate(candidates) if k in keep]


def sample_images(
    image_ids: Sequence[str], size: int, seed: int, localized: Collection[str], prefer_localized: bool
) -> list[str]:
    """A seeded sample of `size` ids, sorted; with `prefer_localized`, localized ids first.

    Args:
        image_ids: the ids to draw from, in a fixed order (sorted), each once.
        size: how many to keep (all of them when there are fewer).
        seed: the seed of the permutation.
        localized: the ids that have a localized finding.
        prefer_localized: take the localized ids before the others (in the seeded order).
    """
    order = list(np.random.default_rng(seed).permutation(len(image_ids)))
    if prefer_localized:
        order.sort(key=lambda k: image_ids[k] not in localized)  # stable: keeps the seeded order
    return sorted(image_ids[k] for k in order[:size])


def build_plan(
    image_manifest: pd.DataFrame,
    image_localizations: pd.DataFrame,
    heads: Sequence[tuple[str, str, str]],
    *,
    captions: Sequence[str],
    include_report_captions: bool,
    finding_synonyms: Mapping[str, str],
    head_images: Literal["localized", "all"],
    max_images: int | None,
    prefer_localized: bool,
    seed: int,
    grounding: Grounding | None,
    contrast_findings: ContrastFindings,
) -> pd.DataFrame:
    """The plan (columns `PLAN_COLUMNS`), one row per heatmap, image by image.

    Images are the manifest's, sorted by image_id; `max_images` keeps a seeded sample
    (`sample_images`). Per image: the report, the captions, the per-finding prompts (true,
    then distractors, each in CheXpert's order), the heads.

    Args:
        image_manifest: image_id and report per image.
        image_localizations: image_id and finding per localized region.
        heads: (name, finding, variant) of the heads to explain (`head_names`).
        captions: the phrases explained on every image.
        include_report_captions: also explain each image's own report (when non-empty).
        finding_synonyms: extra phrase -> finding pairs for `findings_named_in`.
        head_images: "localized": a head's maps only where its finding is localized; "all".
        max_images: None: every image; N: a seeded sample of N.
        prefer_localized: the sample takes localized images first.
        seed: the sample's seed (and the distractors').
        grounding: the per-finding prompts and where they go; None: no per-finding prompts
            (and `contrast_findings` must be "none").
        contrast_findings: "mean" / "max": every caption row carries the prompts of the
            localized kinds it does not name as its contrast set; "none": no set.
    """
    if grounding is None and contrast_findings != "none":
        raise ValueError(f"contrast_findings={contrast_findings!r} needs the per-finding prompts (grounding)")
    localized = localized_findings(image_localizations)
    kinds = finding_order(set().union(*localized.values()) if localized else set())
    prompts = {name: grounding.prompt(name) for name in kinds} if grounding is not None else {}
    labelled = labelled_findings(image_manifest, kinds)
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).sort_values("image_id")
    ids = manifest["image_id"].tolist()
    if max_images is not None and max_images < len(ids):
        keep = set(sample_images(ids, max_images, seed, localized, prefer_localized))
        manifest = manifest[manifest["image_id"].isin(keep)]
    phrases = [caption.strip() for caption in captions]

    reduce = "" if contrast_findings == "none" else contrast_findings

    def contrast(named: Sequence[str]) -> list[str]:
        return [prompts[name] for name in kinds if name not in named] if reduce else []

    def caption_row(image_id: str, target_id: str, group: str, text: str, scored: list, named: list) -> tuple:
        return (image_id, target_id, "caption", group, text, "", scored, named, contrast(named), reduce)

    rows = []
    for image_id, report in manifest[["image_id", "report"]].astype(str).itertuples(index=False):
        found = localized.get(image_id, set())
        if include_report_captions and report.strip():
            named = findings_named_in(report, finding_synonyms)
            # the localized findings the report names; all of them when it names none
            scored = [f for f in named if f in found] or sorted(found)
            rows.append(caption_row(image_id, "caption:report", "report", report.strip(), scored, named))
        for index, caption in enumerate(phrases):
            named = findings_named_in(caption, finding_synonyms)
            rows.append(caption_row(image_id, f"caption:{index}", "phrase", caption, [f for f in named if f in found], named))
        if grounding is not None and found:
            true = grounding.finding_prompt_images == "localized" or (
                grounding.finding_prompt_images == "multi_finding" and len(found) >= 2
            )
            for name in finding_order(found) if true else []:
                rows.append(caption_row(image_id, f"{FINDING_GROUP}:{name}", FINDING_GROUP, prompts[name], [name], [name]))
            absent = [name for name in kinds if name not in found and name not in labelled.get(image_id, set())]
            for name in draw_distractors(image_id, absent, grounding.distractors_per_image, seed):
                rows.append(caption_row(image_id, f"{FINDING_GROUP}:{name}", FINDING_GROUP, prompts[name], [], [name]))
        for name, finding, variant in heads:
            if finding in CHEXPERT_FINDINGS:
                scored = [finding] if finding in found else []
            else:  # an outcome (heart failure, an admission): judged by whether it looks at any finding
                scored = sorted(found)
            if head_images == "all" or scored:
                rows.append((image_id, f"head:{name}", "head", variant, "", name, scored, [], [], ""))
    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS[1:])
    plan.insert(0, "row", np.arange(len(plan), dtype=np.int64))
    return plan


def as_heatmap_source(heatmaps: Any) -> HeatmapStore | ArrayHeatmaps:
    """What scoring and the grid read: a `HeatmapStore`, or maps held in memory
    (an `ArrayHeatmaps`, or a TensorDictDataset payload saved before the chunked store)."""
    if isinstance(heatmaps, HeatmapChunk):
        raise TypeError(
            f"heatmaps is one chunk (rows {heatmaps.start}-{heatmaps.start + len(heatmaps) - 1} of {heatmaps.total}): "
            "compute_heatmaps yields chunks, which only an appending dataset keeps; declare `heatmaps` as "
            "medclip_residuals.datasets.heatmap_store.HeatmapStoreDataset (a MemoryDataset keeps only the last chunk)"
        )
    if hasattr(heatmaps, "chunks") and hasattr(heatmaps, "rows"):
        return heatmaps
    if isinstance(heatmaps, Mapping) and "heatmaps" in (heatmaps.get("tensors") or {}):
        return ArrayHeatmaps(heatmaps["tensors"]["heatmaps"], heatmaps.get("metadata"))
    raise TypeError(f"heatmaps must be a HeatmapStore or ArrayHeatmaps, got {type(heatmaps).__name__}")


def heatmaps_of_plan(heatmaps: Any, heatmap_plan: pd.DataFrame) -> HeatmapStore | ArrayHeatmaps:
    """The maps as a source (`as_heatmap_source`), once checked to be this plan's, row for row."""
    source = as_heatmap_source(heatmaps)
    stored = source.metadata
    if (
        len(source) != len(heatmap_plan)
        or not np.array_equal(heatmap_plan["row"].to_numpy(), np.arange(len(heatmap_plan)))
        or stored.get("target_id", heatmap_plan["target_id"].tolist()) != heatmap_plan["target_id"].tolist()
        or stored.get("image_id", heatmap_plan["image_id"].tolist()) != heatmap_plan["image_id"].tolist()
    ):
        raise ValueError(
            f"heatmaps ({len(source)}) and heatmap_plan ({len(heatmap_plan)} rows) do not belong to the same run"
        )
    return source
