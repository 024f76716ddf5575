"""Fixtures of the residual_1 and residual_2 tests: the synthetic study of tests/pipelines/phenotyping/study.py, phenotyped (phenotyping's own conftest overrides `study` for its tests)."""

from __future__ import annotations

import copy
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
def study(study_module):
    """The study's inputs plus phenotype_sentence_embeddings (w), made by the phenotyping nodes.

    Shared by the tests of a module: tests copy before they change anything.
    """
    data = study_module.make_study(n_patients=150)
    params = study_module.PHENOTYPING_PARAMS
    scores = score_phenotypes(
        data["image_embeddings"], data["phenotype_embeddings"], data["image_manifest"], params, "cpu"
    )
    data["phenotype_sentence_embeddings"] = embed_phenotypes(
        scores, data["phenotype_embeddings"], data["image_manifest"], data["report_mentions"], data["medclip_encoder"], params
    )
    return data


@pytest.fixture
def residual_1_params(study_module):
    return copy.deepcopy(study_module.RESIDUAL_1_PARAMS)


@pytest.fixture
def residual_2_params(study_module):
    return copy.deepcopy(study_module.RESIDUAL_2_PARAMS)
