"""Every parameter group parses into its typed class, in conf/base and in each environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from medclip_residuals.parameters import PARAMETER_CLASSES, check_parameters
from medclip_residuals.settings import CONFIG_LOADER_ARGS
from medclip_residuals.utils.params import ParameterError

CONF = Path(__file__).resolve().parents[1] / "conf"
ENVIRONMENTS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name not in ("base", "local"))


def parameters_of(env: str) -> dict:
    loader = OmegaConfigLoader(str(CONF), base_env="base", default_run_env=env,
                               merge_strategy=CONFIG_LOADER_ARGS["merge_strategy"])
    return dict(loader["parameters"])


@pytest.mark.parametrize("env", ["base", *ENVIRONMENTS])
def test_every_group_of_every_environment_parses(env):
    params = parameters_of(env)
    typed = check_parameters(params)
    assert set(PARAMETER_CLASSES) <= set(typed), "a typed class without its YAML group"
    assert set(typed) == set(params)


def test_an_unknown_group_is_refused_with_the_known_ones(project_parameters):
    with pytest.raises(ParameterError, match=r"unknown group 'explainabilty' \(known: .*explainability"):
        check_parameters({**project_parameters, "explainabilty": {}})


def test_a_key_that_moved_says_where(project_parameters):
    with pytest.raises(ParameterError, match=r"residual_1.targets moved to study_design.targets"):
        check_parameters({**project_parameters, "residual_1": {**project_parameters["residual_1"], "targets": "auto"}})
    with pytest.raises(ParameterError, match=r"encoder_training.test_fraction moved to study_design.split.fractions"):
        check_parameters({**project_parameters, "encoder_training": {**project_parameters["encoder_training"], "test_fraction": 0.2}})


def test_a_wrong_key_inside_a_group_is_named(project_parameters):
    bad = {**project_parameters, "study_design": {**project_parameters["study_design"], "tragets": "auto"}}
    with pytest.raises(ParameterError, match=r"study_design: unknown key 'tragets'"):
        check_parameters(bad)
    with pytest.raises(ParameterError, match=r"seed must be int"):
        check_parameters({**project_parameters, "seed": "1234"})
