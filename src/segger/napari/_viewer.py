"""Main-thread helpers that put LayerDataTuples into a viewer, updating layers by name in place."""

from __future__ import annotations

from typing import Any

import weakref

import numpy as np


def find_layer(viewer: Any, name: str):
    for layer in viewer.layers:
        if layer.name == name:
            return layer
    return None


def set_face_colors(layer: Any, colors: np.ndarray) -> None:
    """Set a Points layer's face colours with one canvas refresh instead of two.

    napari refreshes the whole vispy Points visual on both the ``face_color`` event and the colour
    manager's ``colors`` event (each ≈0.2–0.4 s at a million points, mostly per-point symbol
    strings); the second refresh is skipped by blocking ``events.face_color`` during the set.
    """
    with layer.events.face_color.blocker():
        layer.face_color = colors


def zoom_to(viewer: Any, yx: tuple[float, float], extent: float) -> None:
    """Centre the camera on world ``yx`` (µm) and zoom so that ``extent`` µm fill about a third of
    the canvas (the one "go to this cell" of the Review table, the queue and the QC lists)."""
    real = getattr(viewer, "__wrapped__", viewer)
    try:
        size = real.window._qt_viewer.canvas.size
    except Exception:  # noqa: BLE001 - a headless ViewerModel has no canvas
        size = None
    size = size or (600, 800)
    viewer.camera.center = (float(yx[0]), float(yx[1]))
    viewer.camera.zoom = float(min(size[-2:]) / (3.0 * max(float(extent), 5.0)))


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and getattr(a, "__wrapped__", a) is getattr(b, "__wrapped__", b)


def _kind(layer: Any) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__.lower()


#: modes a locked result layer may be in (no drawing, no selecting/deleting of its data)
_SAFE_MODES = ("pan_zoom", "transform")
_LOCKED: "weakref.WeakSet" = weakref.WeakSet()


def lock_layer(layer: Any) -> None:
    """Make a Segger result layer read-only in the UI: its edit modes bounce back to pan/zoom
    (napari's keys, e.g. P or T on a Shapes layer, and the mode buttons), with one notice."""
    real = getattr(layer, "__wrapped__", layer)
    if real in _LOCKED:
        return
    _LOCKED.add(real)

    def guard(event=None):
        mode = str(getattr(real, "mode", "pan_zoom"))
        if mode not in _SAFE_MODES:
            real.mode = "pan_zoom"
            from napari.utils.notifications import show_info

            show_info(f"'{real.name}' is a Segger result layer (read-only); correct cells in the Correct step")

    real.events.mode.connect(guard)
    guard()


def is_locked(layer: Any) -> bool:
    return getattr(layer, "__wrapped__", layer) in _LOCKED


def upsert_layer(viewer: Any, layer_data: tuple, lock: bool = True):
    """Add ``(data, kwargs, type)`` or, when a layer of that name exists, update it in place.

    Points, Vectors and Labels are updated in place (data, features, colours), keeping the
    user's visibility/opacity and their position in the layer list; Shapes (or a change of
    layer type, e.g. Shapes → Labels beyond the polygon limit) are replaced at the same index.
    Call on the main thread only.
    """
    data, kwargs, kind = layer_data
    kwargs = dict(kwargs)
    if "units" not in kwargs:  # every segger layer is in µm: napari warns about layers of mixed units
        from segger.napari.layers import UNITS

        kwargs["units"] = UNITS
    name = kwargs["name"]
    existing = find_layer(viewer, name)
    # a Points layer of another length (a new dataset) is replaced, never resized in place: a
    # hidden layer resized in place keeps per-point state of the old length (napari IndexError)
    same_points = kind != "points" or existing is None or len(existing.data) == len(data)
    if existing is not None and _kind(existing) == kind and kind in ("points", "vectors", "labels") and same_points:
        _update(existing, data, kwargs, kind)
        if lock:
            lock_layer(existing)
        return existing
    active = viewer.layers.selection.active
    was_active = existing is not None and _same(active, existing)
    index = None
    keep = {}
    if existing is not None:
        index = list(viewer.layers).index(existing)
        if same_points:  # the user's display settings of this result survive a re-run
            keep = {"visible": existing.visible, "opacity": existing.opacity}
        viewer.layers.remove(existing)
    adder = getattr(viewer, f"add_{kind}")
    kwargs.update(keep)
    layer = adder(data, **kwargs)
    if index is not None:
        cur = list(viewer.layers).index(layer)
        if cur != index:
            viewer.layers.move(cur, index)
    # adding a layer makes it active: give the user back the layer they were working on
    if was_active:
        viewer.layers.selection.active = layer
    elif active is not None and any(_same(active, l) for l in viewer.layers):
        viewer.layers.selection.active = active
    if lock:
        lock_layer(layer)
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
