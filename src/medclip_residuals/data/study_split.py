"""The study's one split: every patient gets one role, made once, read by every pipeline.

Roles:
- `encoder_train`: the encoder's contrastive training pairs (empty with published weights);
- `head_train`: the residual heads and the map `f` of residual_2;
- `validation`: every choice made by looking at numbers (CAM method and layers, thresholds);
- `test`: every reported figure.

No patient is in two roles, so the encoder never sees a validation or test patient. Patients
are dealt into `folds` stratified groups (StratifiedGroupKFold on each image's pattern of
positive targets, seeded), and whole folds go to the roles in proportion to their fractions.
A manifest column such as `split` (MIMIC-CXR's train / validate / test, CheXpert's train /
valid) wins when present: its value names the roles a patient may take, and patients are
dealt among those roles only.

Example:
    >>> manifest = pd.DataFrame({"image_id": list("abcd"), "patient_id": ["p1", "p1", "p2", "p3"],
    ...                          "split": ["train", "train", "test", "train"]})
    >>> settings = StudySplitSettings.parse({
    ...     "fractions": {"encoder_train": 0.0, "head_train": 0.8, "validation": 0.0, "test": 0.2},
    ...     "stratify": False, "folds": 20, "manifest_column": "split",
    ...     "manifest_roles": {"train": ["head_train"], "test": ["test"]}}, "study_design.split")
    >>> assign_roles(manifest, settings, [], seed=0)["role"].tolist()
    ['head_train', 'head_train', 'test', 'head_train']
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from medclip_residuals.data.targets import patient_ids, target_values
from medclip_residuals.utils.params import ParameterError, Parameters

Role = Literal["encoder_train", "head_train", "validation", "test"]
ROLES: tuple[str, ...] = ("encoder_train", "head_train", "validation", "test")
SPLIT_COLUMNS = ("image_id", "patient_id", "role")


@dataclass(frozen=True)
class RoleFractions(Parameters):
    """The share of patients each role gets (they sum to 1)."""

    encoder_train: float
    head_train: float
    validation: float
    test: float

    def as_dict(self) -> dict[str, float]:
        return {role: getattr(self, role) for role in ROLES}

    def check(self, where: str) -> None:
        values = self.as_dict()
        negative = [role for role, value in values.items() if value < 0]
        if negative:
            raise ParameterError(f"{where}: fractions must be >= 0, got {', '.join(f'{r} {values[r]}' for r in negative)}")
        if not math.isclose(sum(values.values()), 1.0, abs_tol=1e-6):
            raise ParameterError(f"{where}: the fractions must sum to 1, they sum to {sum(values.values()):g}")
        if self.head_train <= 0 or self.test <= 0:
            raise ParameterError(f"{where}: head_train and test need a share above 0 (the heads are fitted and scored there)")


@dataclass(frozen=True)
class StudySplitSettings(Parameters):
    """params:study_design.split."""

    fractions: RoleFractions
    # deal patients by the pattern of positive targets, so each role keeps their prevalence
    stratify: bool
    # patients are dealt into this many folds: the fractions are met in steps of 1 / folds
    folds: int
    # a manifest column that decides roles where present (null: none)
    manifest_column: str | None
    # its values (compared lower-case) -> the roles a patient with that value may take
    manifest_roles: dict[str, tuple[Role, ...]]

    def check(self, where: str) -> None:
        if self.folds < 2:
            raise ParameterError(f"{where}.folds must be >= 2, got {self.folds}")
        for value, roles in self.manifest_roles.items():
            if not roles:
                raise ParameterError(f"{where}.manifest_roles.{value}: name at least one role")


def _stratification_keys(manifest: pd.DataFrame, patients: np.ndarray, targets: Sequence[str], n_folds: int) -> np.ndarray:
    """Each image's pattern of positive targets, patterns held by fewer patients than folds pooled."""
    if not targets:
        return np.zeros(len(manifest), dtype=object)
    positives = np.column_stack(
        [np.nan_to_num(target_values(manifest, t, "u_zeros")) for t in targets]
    ).astype(int)
    keys = pd.Series(["".join(map(str, row)) for row in positives])
    counts = keys.map(pd.Series(patients).groupby(keys.to_numpy()).nunique())
    keys[counts.to_numpy() < n_folds] = "rare"
    if (keys == "rare").any() and pd.Series(patients[keys == "rare"]).nunique() < n_folds:
        keys[keys == "rare"] = keys.mode().iloc[0] if (keys != "rare").any() else "all"
    return keys.to_numpy()


def _folds_per_role(weights: Mapping[str, float], n_folds: int) -> dict[str, int]:
    """Whole folds per role, in proportion to the weights (largest remainder), every role
    with a weight above 0 getting at least one fold when there are folds enough."""
    total = sum(weights.values())
    exact = {role: n_folds * weight / total for role, weight in weights.items()}
    counts = {role: int(math.floor(value)) for role, value in exact.items()}
    for role in sorted(exact, key=lambda r: exact[r] - counts[r], reverse=True)[: n_folds - sum(counts.values())]:
        counts[role] += 1
    wanted = [role for role, weight in weights.items() if weight > 0]
    for role in wanted:
        if counts[role] == 0 and n_folds >= len(wanted):
            donor = max(counts, key=lambda r: counts[r])
            counts[donor] -= 1
            counts[role] += 1
    return counts


def _deal(
    rows: np.ndarray, patients: np.ndarray, keys: np.ndarray, weights: Mapping[str, float], folds: int, seed: int
) -> np.ndarray:
    """Roles for the images `rows` (indices), whole patients at a time."""
    weights = {role: w for role, w in weights.items() if w > 0}
    group = patients[rows]
    n_patients = len(set(group))
    if len(weights) == 1 or n_patients == 1:
        return np.full(len(rows), max(weights, key=lambda r: weights[r]), dtype=object)
    n_folds = min(folds, n_patients)
    fold_of = np.empty(len(rows), dtype=int)
    if len(set(keys[rows])) > 1:
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for fold, (_, members) in enumerate(splitter.split(np.zeros(len(rows)), keys[rows], groups=group)):
            fold_of[members] = fold
    else:  # nothing to stratify on: a seeded deal of the sorted patients
        unique = np.array(sorted(set(group)))
        shuffled = unique[np.random.default_rng(seed).permutation(len(unique))]
        fold_by_patient = {patient: i % n_folds for i, patient in enumerate(shuffled)}
        fold_of[:] = [fold_by_patient[p] for p in group]
    counts = _folds_per_role({role: weights.get(role, 0.0) for role in ROLES if role in weights}, n_folds)
    role_of_fold = [role for role in ROLES if role in counts for _ in range(counts[role])]
    return np.array([role_of_fold[f] for f in fold_of], dtype=object)


def _manifest_groups(
    manifest: pd.DataFrame, patients: np.ndarray, settings: StudySplitSettings
) -> dict[tuple[str, ...], np.ndarray]:
    """Image rows grouped by the roles the manifest's split column allows (all roles where it
    is absent or empty)."""
    column = settings.manifest_column
    everything = {ROLES: np.arange(len(manifest))}
    if column is None or column not in manifest.columns:
        return everything
    values = manifest[column].fillna("").astype(str).str.strip().str.lower().to_numpy()
    known = {key.strip().lower(): tuple(roles) for key, roles in settings.manifest_roles.items()}
    unknown = sorted({v for v in values if v and v not in known})
    if unknown:
        first = [manifest.index[values == u][0] for u in unknown[:3]]
        raise ValueError(
            f"image_manifest column {column!r} has value(s) {unknown} that study_design.split.manifest_roles "
            f"does not name (e.g. image_id {', '.join(map(repr, first))}); known: {sorted(known)}"
        )
    by_patient = pd.Series(values).groupby(patients).agg(lambda v: sorted(set(v)))
    mixed = by_patient[by_patient.map(len) > 1]
    if len(mixed):
        patient = mixed.index[0]
        raise ValueError(
            f"image_manifest column {column!r} puts patient {patient!r} in {mixed.iloc[0]} at once "
            f"({len(mixed)} such patients): a patient's images must share one split"
        )
    groups: dict[tuple[str, ...], list[int]] = {}
    for row, value in enumerate(values):
        groups.setdefault(known[value] if value else ROLES, []).append(row)
    return {roles: np.array(rows) for roles, rows in groups.items()}


def assign_roles(
    image_manifest: pd.DataFrame, settings: StudySplitSettings, stratify_on: Sequence[str], seed: int
) -> pd.DataFrame:
    """One role per patient for every image of the manifest.

    Args:
        image_manifest: image_id, optional patient_id (an image without one is its own
            patient), the target columns and the manifest split column when present.
        settings: the fractions, stratification, folds and manifest column.
        stratify_on: the target columns whose positive patterns each role should keep.
        seed: the seed of the deal.

    Returns:
        image_id, patient_id, role; one row per image in image_id order.

    Raises:
        ValueError: a manifest split value that no role is named for, a patient with two
            split values, or a group whose allowed roles all have a zero fraction.
    """
    manifest = image_manifest.assign(image_id=image_manifest["image_id"].astype(str)).sort_values("image_id")
    manifest = manifest.set_index("image_id", drop=False)
    patients = patient_ids(manifest, manifest["image_id"].to_numpy()).astype(str)
    keys = (
        _stratification_keys(manifest, patients, stratify_on, settings.folds)
        if settings.stratify else np.zeros(len(manifest), dtype=object)
    )
    fractions = settings.fractions.as_dict()
    roles = np.empty(len(manifest), dtype=object)
    for allowed, rows in _manifest_groups(manifest, patients, settings).items():
        weights = {role: fractions[role] for role in allowed}
        if sum(weights.values()) <= 0:
            raise ValueError(
                f"{len(rows)} image(s) may only take the role(s) {list(allowed)} (manifest column "
                f"{settings.manifest_column!r}), whose fractions are all 0 in study_design.split.fractions"
            )
        roles[rows] = _deal(rows, patients, keys, weights, settings.folds, seed)
    return pd.DataFrame({"image_id": manifest["image_id"].to_numpy(), "patient_id": patients, "role": roles.astype(str)})


def images_in_role(study_split: pd.DataFrame, *roles: str) -> set[str]:
    """The image ids of the given roles."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role(s) {unknown}; roles are {list(ROLES)}")
    return set(study_split.loc[study_split["role"].isin(roles), "image_id"].astype(str))


def rows_in_role(image_manifest: pd.DataFrame, study_split: pd.DataFrame, *roles: str) -> pd.DataFrame:
    """The manifest rows of the images in `roles`, sorted by image_id."""
    chosen = images_in_role(study_split, *roles)
    rows = image_manifest[image_manifest["image_id"].astype(str).isin(chosen)]
    return rows.sort_values("image_id").reset_index(drop=True)


def role_summary(study_split: pd.DataFrame, *roles: str) -> dict[str, object]:
    """What a metrics dataset records about the images its numbers come from."""
    rows = study_split[study_split["role"].isin(roles)]
    return {
        "role": roles[0] if len(roles) == 1 else list(roles),
        "images": int(len(rows)),
        "patients": int(rows["patient_id"].nunique()),
    }


def role_fingerprint(study_split: pd.DataFrame, role: str) -> str:
    """A SHA-256 of the sorted image ids of one role: an encoder records the fingerprint of
    the encoder_train role it was trained on, so that a later split can be checked against it."""
    ids = sorted(images_in_role(study_split, role))
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()
