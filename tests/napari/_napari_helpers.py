"""Helpers for the napari plugin tests (unique module name: tests/ has no packages)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED = Path(os.environ.get("SEGGER_SHARED_DATA", "/work/shared/data"))
PACKAGED = Path(__file__).resolve().parents[2] / "src" / "segger" / "sample_data"
# Screenshots land in docs/images/ only when asked (`make screenshots`); a plain `make test`
# writes them to a scratch folder so it never leaves changes in the working tree.
IMAGES = (Path(__file__).resolve().parents[2] / "docs" / "images" if os.environ.get("SEGGER_UPDATE_SCREENSHOTS") == "1"
          else Path(tempfile.gettempdir()) / "segger-screenshots")
IMAGES.mkdir(parents=True, exist_ok=True)


def _pick(packaged_name: str, shared_name: str) -> Path | None:
    # the packaged crops are what users get: test those first
    if (PACKAGED / packaged_name / "transcripts.parquet").is_file():
        return PACKAGED / packaged_name
    if (SHARED / shared_name / "transcripts.parquet").is_file():
        return SHARED / shared_name
    return None


LUNG = _pick("xenium_lung", "xenium_lung_segger")
SEGTRAQ = _pick("xenium_breast", "xenium_breast_segtraq")


def dock_widget(viewer, name: str):
    """Open a Segger dock widget through the manifest; return the widget instance."""
    dock, widget = viewer.window.add_plugin_dock_widget("napari-segger", name)
    return widget


def wait_job(qtbot, widget, timeout: int = 120_000) -> None:
    """Wait until the widget's background job has finished (signals handled on the main thread)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
