"""`MedCLIPEncoderDataset`: a MedCLIP encoder as a versioned folder, or a pointer to MedCLIP's weights.

Saved form (a folder, no pickle): `model.safetensors` (the MedCLIPModel state dict),
`config.json` (profile, the backbone configurations, image size, text length) and
`tokenizer/`. Loading rebuilds the `medclip` classes through the same builder as training.

```yaml
medclip_encoder:                      # written by encoder_training
  type: medclip_residuals.datasets.MedCLIPEncoderDataset
  filepath: data/06_models/medclip_encoder
  versioned: true

medclip_encoder:                      # load-only: the published MedCLIP-ViT weights
  type: medclip_residuals.datasets.MedCLIPEncoderDataset
  filepath: /models/medclip-vit       # the folder that holds pytorch_model.bin
  load_args:
    profile: medclip_vit              # or medclip_resnet
    vision_backbone_dir: /models/swin-tiny-patch4-window7-224   # null: the Hugging Face cache
    text_backbone_dir: /models/Bio_ClinicalBERT                 # null: the Hugging Face cache
    allow_download: false
```

`load_args.device` (default "cpu") places the loaded model; nodes move it where they need it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractVersionedDataset, DatasetError, Version, get_protocol_and_path
from kedro_datasets._typing import JSONPreview

from medclip_residuals.models.encoder import MedCLIPEncoder
from medclip_residuals.models.medclip_loader import (
    CONFIG_FILE,
    PUBLISHED_PROFILES,
    WEIGHTS_NAME,
    load_encoder_folder,
    load_published_encoder,
    save_encoder_folder,
)

# What a pointer to the published weights assumes for the load_args it is not given.
PUBLISHED_LOAD_ARGS: dict[str, Any] = {
    "vision_backbone_dir": None,
    "text_backbone_dir": None,
    "allow_download": False,
    "text_max_length": 77,  # MedCLIP's tokenizer limit
}


class MedCLIPEncoderDataset(AbstractVersionedDataset[MedCLIPEncoder, MedCLIPEncoder]):
    """A `MedCLIPEncoder` saved as safetensors + config + tokenizer, or MedCLIP's published weights."""

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        if protocol != "file":
            raise DatasetError(f"MedCLIPEncoderDataset stores local folders only, got {filepath!r}")
        super().__init__(filepath=PurePosixPath(path), version=version)
        load_args = {"device": "cpu", **(load_args or {})}
        self._device = load_args.pop("device")
        self._profile = load_args.pop("profile", None)
        self._published = self._profile in PUBLISHED_PROFILES
        unknown = sorted(set(load_args) - set(PUBLISHED_LOAD_ARGS if self._published else ()))
        if unknown:
            raise DatasetError(
                f"{filepath}: unknown load_args {unknown}; a saved encoder folder takes `device`, a pointer "
                f"to the published weights also `profile` and {', '.join(PUBLISHED_LOAD_ARGS)}"
            )
        self._published_args = {**PUBLISHED_LOAD_ARGS, **load_args}
        if self._published and version is not None:
            raise DatasetError(
                f"{filepath}: a pointer to MedCLIP's published weights is read-only and cannot be versioned"
            )
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": str(self._filepath),
            "version": self._version,
            "profile": self._profile or "saved encoder",
        }

    def load(self) -> MedCLIPEncoder:
        if self._published:
            return load_published_encoder(
                profile=self._profile,
                weights_dir=str(self._filepath),
                device=self._device,
                **self._published_args,
            )
        return load_encoder_folder(Path(str(self._get_load_path())), device=self._device)

    def save(self, data: MedCLIPEncoder) -> None:
        if self._published:
            raise DatasetError(
                f"{self._filepath} points at MedCLIP's published weights and is read-only; "
                "save a fine-tuned encoder to a folder entry without `load_args.profile`"
            )
        if not isinstance(data, MedCLIPEncoder):
            raise DatasetError(f"MedCLIPEncoderDataset saves a MedCLIPEncoder, got {type(data).__name__}")
        target = Path(str(self._get_save_path()))
        # Write next to the target and rename, so that a failed save leaves no half folder.
        staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            save_encoder_folder(data, staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _exists(self) -> bool:
        if self._published:
            return (Path(str(self._filepath)) / WEIGHTS_NAME).is_file()
        try:
            load_path = Path(str(self._get_load_path()))
        except DatasetError:
            return False
        return (load_path / CONFIG_FILE).is_file()

    def preview(self) -> JSONPreview:
        """The saved configuration (profile, backbones, image size), for kedro-viz."""
        if self._published:
            return JSONPreview(json.dumps({"profile": self._profile, "weights_dir": str(self._filepath)}))
        config_path = Path(str(self._get_load_path())) / CONFIG_FILE
        return JSONPreview(config_path.read_text(encoding="utf-8"))
