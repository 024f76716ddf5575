"""Fixtures of the study_design, residual_1 and residual_2 tests: the synthetic study of
tests/pipelines/phenotyping/study.py, phenotyped (phenotyping's own conftest overrides `study`
for its tests), and conf/base's parameters with the study's overrides."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from medclip_residuals.pipelines.phenotyping.nodes import embed_phenotypes, score_phenotypes


def load_study_module():
    name = "medclip_residuals_test_study"
    if name not in sys.modules:
        path = Path(__file__).parent / "phenotyping" / "study.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def study_module():
    return load_study_module()


@pytest.fixture(scope="module")
def study(study_module, base_params):
    """The study's inputs plus phenotype_sentence_embeddings (w), made by the phenotyping nodes.

    Shared by the tests of a module: tests copy before they change anything.
    """
    data = study_module.make_study(
        base_params("data_validation", report_rules=str(study_module.RULES_FILE)), n_patients=150
    )
    params = base_params("phenotyping", study_module.PHENOTYPING_OVERRIDES)
    scores = score_phenotypes(
        data["image_embeddings"], data["phenotype_embeddings"], data["image_manifest"], params, "cpu"
    )
    data["phenotype_sentence_embeddings"] = embed_phenotypes(
        scores, data["phenotype_embeddings"], data["image_manifest"], data["report_mentions"], data["medclip_encoder"], params
    )
    return data


@pytest.fixture
def phenotyping_params(study_module, base_params):
    return base_params("phenotyping", study_module.PHENOTYPING_OVERRIDES)


@pytest.fixture
def study_design_params(study_module, base_params):
    return base_params("study_design", study_module.STUDY_DESIGN_OVERRIDES)


@pytest.fixture
def study_split(study, study_design_params):
    """The study's roles, made by the study_design node (seed 1234)."""
    from medclip_residuals.pipelines.study_design.nodes import make_study_split

    return make_study_split(study["image_manifest"], study_design_params, 1234)


@pytest.fixture
def residual_2_params(study_module, base_params):
    return base_params("residual_2", study_module.RESIDUAL_2_OVERRIDES)
