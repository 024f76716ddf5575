"""Keys, the shard store and shard planning, without a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medclip_residuals.distributed.keys import array_digest, content_digests, image_keys, row_key, vision_fingerprint
from medclip_residuals.distributed.shards import RowSources, plan_shards
from medclip_residuals.distributed.store import MAX_INDEX_FILES, ShardStore, ShardStoreLocationError, resolve_store_root


def test_an_image_key_follows_the_file_and_a_missing_file_is_named(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"12345")
    manifest = pd.DataFrame({"image_id": ["a"], "image_path": [str(path)]})
    first = image_keys(manifest)["a"]
    assert first == {"path": str(path), "size": 5, "mtime_ns": path.stat().st_mtime_ns}
    assert image_keys(manifest) == {"a": first}
    os.utime(path, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    assert image_keys(manifest)["a"] != first

    missing = pd.DataFrame({"image_id": ["a", "b"], "image_path": [str(path), str(tmp_path / "b.png")]})
    with pytest.raises(FileNotFoundError, match=r"image_manifest row 1 \(image_id 'b'\) \[image_path\] .*b.png"):
        image_keys(missing)


def test_the_vision_fingerprint_changes_with_a_weight_and_only_then(tiny_demo_encoder):
    a, same, other_seed = (tiny_demo_encoder(["x y"], seed=s) for s in (0, 0, 1))
    assert vision_fingerprint(a) == vision_fingerprint(same) != vision_fingerprint(other_seed)
    before = vision_fingerprint(a)
    with torch.no_grad():
        next(a.vision_model.parameters()).view(-1)[0] += 1e-3
    assert vision_fingerprint(a) != before
    with torch.no_grad():  # the text model plays no part in an image embedding
        next(same.text_model.parameters()).view(-1)[0] += 1.0
    assert vision_fingerprint(same) == before


def test_digests_see_values_dtype_and_shape():
    rows = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert content_digests(rows) == [array_digest(rows[0]), array_digest(rows[1])]
    assert array_digest(rows) != array_digest(rows.astype(np.float64)) != array_digest(rows.reshape(3, 2))
    assert row_key("a", 1) == row_key("a", 1) != row_key("a", 2)


def test_shards_follow_row_order_and_their_key_names_rows_and_batching():
    keys = [f"k{i}" for i in range(7)]
    shards = plan_shards([0, 2, 3, 4, 6], keys, 2, {"batch_size": 2})
    assert [s.positions for s in shards] == [(0, 2), (3, 4), (6,)]
    assert len({s.key for s in shards}) == 3
    assert plan_shards([0, 2], keys, 2, {"batch_size": 2})[0].key == shards[0].key
    assert plan_shards([0, 2], keys, 2, {"batch_size": 1})[0].key != shards[0].key
    assert plan_shards([0, 2], [*keys[:2], "changed", *keys[3:]], 2, {"batch_size": 2})[0].key != shards[0].key


def test_the_store_writes_whole_shards_and_rows_come_back_in_order(tmp_path):
    store = ShardStore(tmp_path, "image_embeddings")
    shards = plan_shards([1, 3, 4], ["a", "b", "c", "d", "e"], 2, {})
    for shard in shards:
        store.put(shard.key, np.full((len(shard), 3), shard.number + 10, dtype=np.float32))
    assert all(store.has(s.key) for s in shards) and not list(store.shards.glob(".*"))  # no partial files left
    previous = np.arange(6, dtype=np.float32).reshape(2, 3)
    sources = RowSources(5, shards, {0: 1, 2: 0})
    rows = sources.rows(0, 5, store, lambda r: previous[r], (3,), np.float32)
    np.testing.assert_array_equal(rows[:, 0], [3, 10, 0, 10, 11])
    np.testing.assert_array_equal(sources.rows(2, 4, store, lambda r: previous[r], (3,), np.float32)[:, 0], [0, 10])
    with pytest.raises(RuntimeError, match=r"rows \[2\] of 5 are neither reused nor in a shard"):
        RowSources(5, shards, {0: 1})
    assert store.remove([s.key for s in shards]) == 2 and not store.has(shards[0].key)


def test_the_index_finds_rows_whose_content_the_previous_version_holds(tmp_path):
    store = ShardStore(tmp_path, "heatmaps")
    store.add_to_index(["k0", "k1"], ["c0", "c1"])
    store.add_to_index(["k1"], ["c1-other-run"])
    assert store.load_index() == {"k0": {"c0"}, "k1": {"c1", "c1-other-run"}}
    # k0 made c0, which the previous version holds at row 5; k1's contents are not there; k2 unknown
    assert store.reusable(["k2", "k0", "k1"], {"c0": 5, "zzz": 0}) == {1: 5}
    for i in range(MAX_INDEX_FILES + 1):
        store.add_to_index([f"x{i}"], [f"y{i}"])
    assert len(store.load_index()) == MAX_INDEX_FILES + 3
    assert len(list(store.index_folder.glob("*.parquet"))) == 1  # merged


def test_the_store_never_lies_inside_the_dataset(tmp_path):
    assert resolve_store_root("data/shard_store", tmp_path, "data/01_raw/x") == (tmp_path / "data/shard_store").resolve()
    with pytest.raises(ShardStoreLocationError, match="lies inside data_root"):
        resolve_store_root(str(tmp_path / "users" / "store"), tmp_path, str(tmp_path / "users"))
    assert resolve_store_root("data/s", Path(tmp_path), None).name == "s"


def test_a_caption_key_follows_its_contrast_set():
    """A sharded run reuses a stored map only for the same target: switching
    contrast_findings none -> max must not reuse the plain maps, and rows without a contrast
    set keep their keys (maps stored before stay reusable)."""
    from medclip_residuals.distributed.heatmaps import heatmap_row_keys
    from medclip_residuals.explain.generate import CaptionTargets

    rng = np.random.default_rng(0)
    texts = ["there is pneumonia", "there is a nodule", "there is edema", "a report"]
    captions = CaptionTargets({t: rng.standard_normal(4).astype(np.float32) for t in texts},
                              rng.standard_normal(4).astype(np.float32), set())

    def keys(contrast_texts: list[list[str]], reduce: str) -> list[str]:
        plan = pd.DataFrame({"image_id": ["a", "a", "a"], "kind": ["caption"] * 3, "head": [""] * 3,
                             "text": ["there is pneumonia", "there is pneumonia", "a report"],
                             "contrast_texts": contrast_texts, "contrast_reduce": [reduce, reduce, ""]})
        return heatmap_row_keys(plan, {"a": {"sha256": "x"}}, ("vision", "hirescam"), captions, {}, {})

    plain = keys([[], [], []], "")
    with_max = keys([["there is a nodule"], ["there is edema"], []], "max")
    with_mean = keys([["there is a nodule"], ["there is edema"], []], "mean")
    assert plain[0] == plain[1] and len({plain[0], with_max[0], with_max[1], with_mean[0]}) == 4
    assert plain[2] == with_max[2] == with_mean[2]
    # a reduction over the contrast caption alone is a target of its own too
    assert keys([[], [], []], "max")[0] not in {plain[0], with_max[0]}
