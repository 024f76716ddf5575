"""Fixtures of the phenotyping tests: a smaller synthetic study (study.py), made afresh for
every test (tests/pipelines/conftest.py has the module-scoped, phenotyped one)."""

from __future__ import annotations

import pytest


@pytest.fixture
def study(study_module, base_params):
    return study_module.make_study(
        base_params("data_validation", report_rules=str(study_module.RULES_FILE)), n_patients=60
    )
