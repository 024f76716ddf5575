"""The registry lists every pipeline folder once, in an order its data can flow, and composes the selections."""

from __future__ import annotations

import pkgutil

from medclip_residuals import pipelines as package
from medclip_residuals.pipeline_registry import PIPELINE_ORDER, SELECTIONS, register_pipelines


def test_every_pipeline_folder_is_registered_once():
    folders = sorted(m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg)
    assert sorted(PIPELINE_ORDER) == folders and len(set(PIPELINE_ORDER)) == len(PIPELINE_ORDER)


def test_each_pipeline_reads_only_what_the_raw_data_or_an_earlier_pipeline_makes():
    registered = register_pipelines()
    made = {"manifest", "localizations"} | {"demo_images", "demo_masks", "demo_marker"}
    for name in PIPELINE_ORDER:
        pipeline = registered[name]
        needed = {i for i in pipeline.inputs() if not i.startswith("params:") and i != "parameters"}
        assert needed <= made, f"{name} reads {sorted(needed - made)} before any earlier pipeline makes it"
        made |= pipeline.all_outputs()


def test_selections_are_sums_of_registered_pipelines():
    registered = register_pipelines()
    for selection, names in SELECTIONS.items():
        assert set(registered[selection].nodes) == {n for name in names for n in registered[name].nodes}
    assert "encoder_training" not in SELECTIONS["__default__"] and SELECTIONS["demo"] == PIPELINE_ORDER
