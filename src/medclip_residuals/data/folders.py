"""Which folders the project may write its demo dataset into, and which data_root is the demo's.

The demo_data pipeline writes `manifest.csv`, `localizations.csv`, `images/` and `masks/`
into `data_root`, and replaces what is there. So it writes only into a folder that does not
exist yet, an empty folder, or a folder that carries the demo's own marker file (written
first by every demo_data run); anything else may be a user's dataset and is refused before
anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

DEMO_MARKER = ".medclip_residuals_demo"
# The marker's first line, so that a stray file of the same name is not taken for ours.
DEMO_MARKER_HEADER = "medclip_residuals demo dataset"


def absolute_root(data_root: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """`data_root` as an absolute, normalised path (relative paths are taken from `base`)."""
    root = Path(os.path.expanduser(os.fspath(data_root)))
    if not root.is_absolute():
        root = Path(base or os.getcwd()) / root
    return os.path.normpath(str(root))


def is_demo_folder(data_root: str | os.PathLike) -> bool:
    """Whether `data_root` carries the marker that the demo_data pipeline writes."""
    marker = Path(data_root) / DEMO_MARKER
    try:
        with open(marker, encoding="utf-8") as handle:
            return handle.readline().strip().startswith(DEMO_MARKER_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def demo_target_refusal(data_root: str | os.PathLike) -> str | None:
    """Why demo_data must not write into `data_root`, or None when it may.

    It may write into a folder that does not exist, an empty folder, or one marked as the
    demo's own. A file in place of the folder, or a folder with any other content, is refused.
    """
    root = Path(data_root)
    if not root.exists():
        return None
    if not root.is_dir():
        return f"demo_data would write its phantom dataset into {root}, which is a file, not a folder."
    if is_demo_folder(root):
        return None
    entries = sorted(entry.name for entry in root.iterdir())
    if not entries:
        return None
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    return (
        f"demo_data would write its phantom dataset into {root}, which is not empty ({shown}) "
        f"and is not a demo folder (no {DEMO_MARKER} marker). Nothing was written. The demo "
        "writes only into an empty folder or one it made: run demo_data without "
        "`--params data_root=...`, or point data_root at an empty folder. To analyse your own "
        "images, write manifest.csv as docs/DATA_CONTRACT.md describes and run data_validation."
    )
