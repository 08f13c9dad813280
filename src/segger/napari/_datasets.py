"""Datasets in one viewer: opening another dataset removes the previous dataset's layers and
Segger's result layers and resets the session (graph, prediction, result; trained models stay)."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QTimer

from segger.napari._state import SeggerState


#: layers Segger makes (removed when another dataset is opened)
def _result_layer_names() -> tuple[str, ...]:
    from segger.napari.layers import (
        LAYER_ATTENTION, LAYER_CELLS, LAYER_CHANGES, LAYER_CORRECTIONS, LAYER_HIGHLIGHT, LAYER_SELECTED,
        LAYER_SELECTION, LAYER_TRANSCRIPTS, LAYER_TX_EDGES,
    )

    return (LAYER_TRANSCRIPTS, LAYER_CELLS, LAYER_ATTENTION, LAYER_TX_EDGES, LAYER_SELECTION, LAYER_SELECTED,
            LAYER_CORRECTIONS, LAYER_CHANGES, LAYER_HIGHLIGHT)


DATA_KINDS = ("transcripts", "nuclei", "image")


def _dataset_key(layer: Any) -> str | None:
    meta = ((getattr(layer, "metadata", None) or {}).get("segger", {}) or {})
    if meta.get("kind") not in DATA_KINDS:
        return None
    return str(meta.get("sample") or meta.get("source") or "") or None


def watch_datasets(viewer: Any, state: SeggerState) -> None:
    """Once per viewer: a new dataset's layers replace the previous dataset's (see module doc)."""
    if getattr(state, "_watching", False):
        return
    state._watching = True
    state.dataset = next((k for k in map(_dataset_key, viewer.layers) if k), None)
    pending: dict = {}

    def cleanup():
        new = pending.pop("key", None)
        if new is None or new == state.dataset:
            return
        old = state.dataset
        state.dataset = new
        if old is None:
            return
        names = set(_result_layer_names())
        doomed = [l for l in list(viewer.layers)
                  if l.name in names or (_dataset_key(l) is not None and _dataset_key(l) != new)]
        for layer in doomed:
            viewer.layers.remove(layer)
        state.reset_data()
        from napari.utils.notifications import show_info

        show_info(f"New dataset: removed {len(doomed)} layer(s) of the previous one; build its graph in Data")

    def on_inserted(event):
        key = _dataset_key(event.value)
        if key is not None and key != state.dataset:
            pending["key"] = key
            QTimer.singleShot(0, cleanup)  # after the reader has added all of its layers

    viewer.layers.events.inserted.connect(on_inserted)
