"""TensorDictDataset: named arrays and JSON metadata in one versioned safetensors file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from kedro.io import DataCatalog, DatasetError, Version
from safetensors import safe_open

from medclip_residuals.datasets import TensorDictDataset


def sample():
    return {
        "tensors": {
            "a/weight": np.arange(6, dtype=np.float64).reshape(2, 3),
            "b": np.array([1.5, -2.0], dtype=np.float32),
            "count": np.array([3, 4], dtype=np.int64),
            "mask": np.array([[True, False]]),
        },
        "metadata": {"targets": ["Pneumonia", "Pleural Effusion"], "fit": {"r2": 0.5, "alpha": None}},
    }


def test_round_trip_keeps_values_dtypes_and_metadata(tmp_path):
    dataset = TensorDictDataset(filepath=str(tmp_path / "x.safetensors"))
    assert not dataset.exists()
    dataset.save(sample())
    assert dataset.exists()
    loaded = dataset.load()
    assert loaded["metadata"] == sample()["metadata"]
    for name, array in sample()["tensors"].items():
        assert loaded["tensors"][name].dtype == array.dtype
        np.testing.assert_array_equal(loaded["tensors"][name], array)
    # a plain safetensors file: any safetensors reader sees the tensors and the JSON
    with safe_open(str(tmp_path / "x.safetensors"), framework="np") as handle:
        assert sorted(handle.keys()) == sorted(sample()["tensors"])
        assert json.loads(handle.metadata()["json"]) == sample()["metadata"]


def test_plain_dict_and_torch_tensors(tmp_path):
    dataset = TensorDictDataset(filepath=str(tmp_path / "y.safetensors"))
    dataset.save({"t": torch.ones(2, 2, requires_grad=True), "n": np.zeros(3)})
    loaded = dataset.load()
    assert loaded["metadata"] == {}
    np.testing.assert_array_equal(loaded["tensors"]["t"], np.ones((2, 2), dtype=np.float32))


def test_versions_do_not_overwrite_each_other(tmp_path):
    path = str(tmp_path / "heads.safetensors")
    first = TensorDictDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z"))
    first.save({"tensors": {"x": np.array([1.0])}, "metadata": {"run": 1}})
    second = TensorDictDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z"))
    second.save({"tensors": {"x": np.array([2.0])}, "metadata": {"run": 2}})
    assert TensorDictDataset(filepath=path, version=Version(None, None)).load()["metadata"] == {"run": 2}
    old = TensorDictDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None)).load()
    assert old["metadata"] == {"run": 1} and old["tensors"]["x"][0] == 1.0
    assert (tmp_path / "heads.safetensors" / "2026-01-01T00.00.00.000Z" / "heads.safetensors").is_file()


def test_catalog_yaml_entry_and_preview(tmp_path):
    catalog = DataCatalog.from_config(
        {
            "heads": {
                "type": "medclip_residuals.datasets.TensorDictDataset",
                "filepath": str(tmp_path / "h.safetensors"),
                "versioned": True,
                "metadata": {"kedro-viz": {"layer": "models"}},
            }
        }
    )
    catalog.save("heads", sample())
    assert catalog.load("heads")["metadata"]["targets"] == ["Pneumonia", "Pleural Effusion"]
    preview = json.loads(catalog.get("heads").preview())
    assert preview["tensors"]["a/weight"] == {"shape": [2, 3], "dtype": "float64"}


def test_bad_data_is_a_clear_error(tmp_path):
    dataset = TensorDictDataset(filepath=str(tmp_path / "z.safetensors"))
    with pytest.raises(DatasetError, match="only numeric and bool"):
        dataset.save({"s": np.array(["a", "b"], dtype=object)})
    with pytest.raises(DatasetError, match="not JSON-serialisable"):
        dataset.save({"tensors": {"x": np.zeros(1)}, "metadata": {"f": object()}})
    with pytest.raises(DatasetError, match="saves a dict"):
        dataset.save([np.zeros(1)])
    (tmp_path / "broken.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(DatasetError, match="not a safetensors file"):
        TensorDictDataset(filepath=str(tmp_path / "broken.safetensors")).load()
