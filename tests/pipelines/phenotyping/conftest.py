"""Fixtures of the phenotyping tests: the synthetic study of study.py."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest


def load_study_module():
    """tests/pipelines/phenotyping/study.py, importable from any test folder."""
    name = "medclip_residuals_test_study"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("study.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def study_module():
    return load_study_module()


@pytest.fixture
def study(study_module):
    return study_module.make_study(n_patients=60)


@pytest.fixture
def phenotyping_params(study_module):
    return copy.deepcopy(study_module.PHENOTYPING_PARAMS)
