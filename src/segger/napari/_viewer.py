"""Main-thread helpers that put LayerDataTuples into a viewer, updating layers by name in place."""

from __future__ import annotations

from typing import Any

import numpy as np


def find_layer(viewer: Any, name: str):
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def _kind(layer: Any) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__.lower()


def upsert_layer(viewer: Any, layer_data: tuple):
    """Add ``(data, kwargs, type)`` or, when a layer of that name exists, update it in place.

    Points, Vectors and Labels are updated in place (data, features, colours), keeping the
    user's visibility/opacity and their position in the layer list; Shapes (or a change of
    layer type, e.g. Shapes → Labels beyond the polygon limit) are replaced at the same index.
    Call on the main thread only.
    """
    data, kwargs, kind = layer_data
    kwargs = dict(kwargs)
    name = kwargs["name"]
    existing = find_layer(viewer, name)
    if existing is not None and _kind(existing) == kind and kind in ("points", "vectors", "labels"):
        _update(existing, data, kwargs, kind)
        return existing
    index = None
    keep = {}
    if existing is not None:
        index = list(viewer.layers).index(existing)
        keep = {"visible": existing.visible, "opacity": existing.opacity}
        viewer.layers.remove(existing)
    adder = getattr(viewer, f"add_{kind}")
    kwargs.update(keep)
    layer = adder(data, **kwargs)
    if index is not None:
        cur = list(viewer.layers).index(layer)
        if cur != index:
            viewer.layers.move(cur, index)
    return layer


def _update(layer: Any, data: Any, kwargs: dict, kind: str) -> None:
    if kind == "points":
        same = np.shape(layer.data) == np.shape(data) and np.array_equal(layer.data, data)
        if not same:
            layer.data = data
        if "features" in kwargs:
            layer.features = kwargs["features"]
        if "face_color" in kwargs:
            layer.face_color = kwargs["face_color"]
        if "size" in kwargs and not same:
            layer.size = kwargs["size"]
    elif kind == "vectors":
        layer.data = data
        if "features" in kwargs:
            layer.features = kwargs["features"]
        for key in ("edge_colormap", "edge_contrast_limits", "edge_color", "edge_width"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
    elif kind == "labels":
        layer.data = data
        for key in ("scale", "translate", "features"):
            if key in kwargs:
                setattr(layer, key, kwargs[key])
    if "metadata" in kwargs:
        layer.metadata = {**dict(layer.metadata), **kwargs["metadata"]}
    layer.refresh()
