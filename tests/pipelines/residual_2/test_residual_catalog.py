"""The catalog entries of phenotyping, study_design, residual_1 and residual_2: every output is named,
versioned and layered, and a run through the real dataset types writes readable files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from medclip_residuals.pipelines.phenotyping import create_pipeline as phenotyping
from medclip_residuals.pipelines.phenotyping.params import PhenotypingParams
from medclip_residuals.pipelines.residual_1 import create_pipeline as residual_1
from medclip_residuals.pipelines.residual_1.params import Residual1Params
from medclip_residuals.pipelines.residual_2 import create_pipeline as residual_2
from medclip_residuals.pipelines.residual_2.params import Residual2Params
from medclip_residuals.pipelines.study_design import create_pipeline as study_design
from medclip_residuals.pipelines.study_design.params import StudyDesignParams
from medclip_residuals.utils.params import ParameterError

CONF = Path(__file__).parents[3] / "conf" / "base"
FILES = ("02_intermediate", "03_primary", "05_model_input", "06_models_heads", "07_model_output", "08_reporting_residuals")


def catalog_entries() -> dict:
    entries = {}
    for name in FILES:
        entries.update(yaml.safe_load((CONF / "catalog" / f"{name}.yml").read_text()))
    return entries


def pipelines():
    return phenotyping() + study_design() + residual_1() + residual_2()


def test_every_output_is_in_the_catalog_versioned_with_a_layer():
    entries = catalog_entries()
    for output in pipelines().all_outputs():
        assert output in entries, f"{output} is not in conf/base/catalog"
        assert entries[output].get("versioned") is True, output
        assert entries[output]["metadata"]["kedro-viz"]["layer"], output


def test_parameter_files_hold_one_dict_per_pipeline():
    for name in ("phenotyping", "study_design", "residual_1", "residual_2"):
        params = yaml.safe_load((CONF / f"parameters_{name}.yml").read_text())
        assert list(params) == [name]


def test_parameters_of_every_environment_parse():
    """Every key of the YAML is a field of the pipeline's parameter class and vice versa."""
    from kedro.config import OmegaConfigLoader

    classes = {
        "phenotyping": PhenotypingParams, "study_design": StudyDesignParams,
        "residual_1": Residual1Params, "residual_2": Residual2Params,
    }
    for env in ("base", "medclip_vit"):
        loader = OmegaConfigLoader(
            str(CONF.parent), base_env="base", default_run_env=env, merge_strategy={"parameters": "soft"}
        )
        parameters = loader["parameters"]
        for name, cls in classes.items():
            cls.parse(parameters[name], name)


def test_an_old_or_misspelt_key_is_refused_with_the_known_ones(base_params):
    raw = base_params("study_design")
    raw["logistic"] = raw.pop("classifier")
    with pytest.raises(ParameterError, match=r"study_design: unknown key 'logistic' \(known: auto_exclude, bootstrap, classifier"):
        StudyDesignParams.parse(raw, "study_design")


@pytest.mark.slow
def test_a_run_writes_every_output_through_the_catalog(
    tmp_path, study, phenotyping_params, study_design_params, residual_2_params, base_params
):
    config = {name: entry for name, entry in catalog_entries().items() if name in pipelines().all_outputs()}
    for entry in config.values():
        entry["filepath"] = str(tmp_path / entry["filepath"])
    catalog = DataCatalog.from_config(config)
    inputs = {k: v for k, v in study.items() if k != "phenotype_sentence_embeddings"}
    inputs.update(
        {
            "params:phenotyping": phenotyping_params,
            "params:study_design": dict(study_design_params, targets=["Pneumonia"]),
            "params:residual_1": base_params("residual_1", sweep={"top_k": [1], "strategies": ["mean"]}),
            "params:residual_2": residual_2_params,
            "params:device": "cpu",
            "params:seed": 1234,
        }
    )
    for name, value in inputs.items():
        catalog[name] = MemoryDataset(value, copy_mode="assign" if name == "medclip_encoder" else None)
    SequentialRunner().run(pipelines(), catalog)
    for name, entry in config.items():
        written = list(Path(entry["filepath"]).glob(f"*/{Path(entry['filepath']).name}"))
        assert len(written) == 1, f"{name}: expected one versioned file under {entry['filepath']}"
        if name.endswith("_plot"):
            assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            catalog.load(name)
    heads = catalog.load("residual_2_heads")
    assert "Pneumonia/residual_2" in heads["metadata"]["heads"]
