"""`params:explainability` as `ExplainabilityParams`: conf/base and every environment parse,
and a bad key or value is refused with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from medclip_residuals.explain.evaluate import ScoringSettings
from medclip_residuals.explain.interpretation import RegionGeometry
from medclip_residuals.pipelines.explainability.params import ExplainabilityParams
from medclip_residuals.utils.params import ParameterError

CONF = Path(__file__).resolve().parents[3] / "conf"


def test_conf_base_and_the_medclip_vit_environment_parse(base_params) -> None:
    from kedro.config import OmegaConfigLoader

    params = ExplainabilityParams.parse(base_params("explainability"), "explainability")
    assert isinstance(params.scoring, ScoringSettings) and isinstance(params.regions, RegionGeometry)
    # the per-finding prompts are the encoder's evaluation prompts (interpolated in the YAML)
    evaluation = base_params("encoder_training")["evaluation"]
    assert params.grounding.prompt_template == evaluation["prompt_template"]
    assert params.grounding.prompt("Lung Lesion") == evaluation["prompts"]["Lung Lesion"][0]
    assert params.grounding.prompt("Pleural Effusion") == evaluation["prompt_template"].format(finding="pleural effusion")
    assert params.grid.sample_size >= 1 and params.chunk_size >= 1
    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="medclip_vit",
                               merge_strategy={"parameters": "soft"})
    assert ExplainabilityParams.parse(loader["parameters"]["explainability"], "explainability") == params


def test_unknown_and_missing_keys_are_refused(base_params) -> None:
    with pytest.raises(ParameterError, match=r"unknown key 'methd' \(known: .*method"):
        ExplainabilityParams.parse(base_params("explainability", methd="gradcam"), "explainability")
    raw = base_params("explainability")
    del raw["scoring"]["confidence"]
    with pytest.raises(ParameterError, match=r"explainability.scoring: missing confidence"):
        ExplainabilityParams.parse(raw, "explainability")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"method": "gradcan"}, r"explainability.method: unknown CAM method 'gradcan'"),
    ({"heads": ["image", "residual_3"]}, r"explainability.heads\[1\]: 'residual_3' is not one of"),
    ({"head_images": "some"}, r"explainability.head_images: 'some' is not one of 'localized', 'all'"),
    ({"batch_size": 0}, r"explainability.batch_size must be >= 1"),
    ({"chunk_size": 0}, r"explainability.chunk_size must be a whole number of heatmaps >= 1, got 0"),
    ({"captions": ["ok", ""]}, r"explainability.captions\[1\] is an empty phrase"),
    ({"contrast_caption": " "}, r"explainability.contrast_caption is an empty phrase"),
    ({"shift_smoothing_px": [0, 0]}, r"explainability.shift_smoothing_px: .*lists a shift twice"),
    ({"regions": {"lungs": [0.5, 0.1, 0.4, 0.8]}}, r"explainability.regions: region 'lungs' must be"),
    ({"contrast_findings": "min"}, r"explainability.contrast_findings: 'min' is not one of 'none', 'mean', 'max'"),
    ({"grounding": {"prompt_template": "there is"}}, r"explainability.grounding.prompt_template .* has no"),
    ({"grounding": {"prompts": {"Lung Lesion": []}}}, r"explainability.grounding.prompts.Lung Lesion is empty"),
    ({"grounding": {"distractors_per_image": -1}}, r"explainability.grounding.distractors_per_image must be >= 0"),
    ({"grounding": {"finding_prompt_images": "all"}}, r"finding_prompt_images: 'all' is not one of"),
    ({"grid": {"two_finding_images": -1}}, r"explainability.grid: two_finding_images and sample_size must be >= 0"),
])
def test_bad_values_name_their_key(base_params, overrides: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        ExplainabilityParams.parse(base_params("explainability", overrides), "explainability")
