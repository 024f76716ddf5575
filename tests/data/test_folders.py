"""Where demo_data may write: a new, empty or demo-marked folder, never a user's."""

from __future__ import annotations

from pathlib import Path

from medclip_residuals.data.folders import DEMO_MARKER, demo_target_refusal, is_demo_folder


def _mark_demo(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("medclip_residuals demo dataset (procedural chest X-ray phantoms)\nseed: 1\n")


def test_demo_may_write_into_a_new_an_empty_or_its_own_folder(tmp_path):
    assert demo_target_refusal(tmp_path / "not_yet") is None
    (tmp_path / "empty").mkdir()
    assert demo_target_refusal(tmp_path / "empty") is None
    _mark_demo(tmp_path / "demo")
    (tmp_path / "demo" / "manifest.csv").write_text("image_id,image_path\n")
    assert is_demo_folder(tmp_path / "demo")
    assert demo_target_refusal(tmp_path / "demo") is None


def test_demo_refuses_a_folder_with_a_users_files_a_foreign_marker_or_a_file(tmp_path):
    users = tmp_path / "users"
    (users / "images").mkdir(parents=True)
    (users / "images" / "a.png").write_bytes(b"not really a png")
    refusal = demo_target_refusal(users)
    assert refusal is not None and "not empty (images)" in refusal and "docs/DATA_CONTRACT.md" in refusal
    # a file of the marker's name that the demo did not write does not make the folder the demo's
    (users / DEMO_MARKER).write_text("something else\n")
    assert not is_demo_folder(users) and demo_target_refusal(users) is not None
    (tmp_path / "a_file").write_text("x")
    assert "is a file" in demo_target_refusal(tmp_path / "a_file")

