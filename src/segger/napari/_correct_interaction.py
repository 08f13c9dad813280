"""Mouse, keys and hit tests of correction mode (no Qt widgets).

:class:`CorrectionInteraction` registers one viewer mouse callback (a click = press + release
without a drag), binds the correction keys (:data:`SHORTCUTS`) on the viewer and on every Segger
layer's own keymap while correction mode is on (a layer's instance keymap wins over its class
keys, e.g. Points' A = select all), and hit-tests clicks: the transcript of ``segger transcripts``
nearest to a click (a KD-tree built once per layer data and transform) and the nucleus polygon
under it. What a click or a key *means* is the widget's business (callbacks).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari._viewer import find_layer
from segger.napari.layers import (
    LAYER_ATTENTION,
    LAYER_CELLS,
    LAYER_CHANGES,
    LAYER_CORRECTIONS,
    LAYER_SELECTED,
    LAYER_SELECTION,
    LAYER_TRANSCRIPTS,
    LAYER_TX_EDGES,
    PointIndex,
)

#: action -> (napari key binding, label shown on the button)
SHORTCUTS = {
    "assign": ("A", "A"),
    "unassign": ("U", "U"),
    "merge": ("M", "M"),
    "split": ("S", "S"),
    "start_pick_target": ("T", "T"),
    "finetune": ("F", "F"),
    "undo": ("Control-Z", "Ctrl+Z"),
    "redo": ("Control-Shift-Z", "Ctrl+Shift+Z"),
    "clear_selection": ("Escape", "Esc"),
}
#: keys bound on the viewer only (layers keep theirs: Escape finishes a shape being drawn)
VIEWER_ONLY = ("clear_selection",)
CLICK_TOLERANCE_PX = 6.0
#: the layers whose keymaps get the correction keys (whichever is active must not shadow them)
KEYED_LAYERS = (LAYER_TRANSCRIPTS, LAYER_SELECTION, LAYER_CORRECTIONS, LAYER_CHANGES, LAYER_SELECTED,
                LAYER_CELLS, LAYER_ATTENTION, LAYER_TX_EDGES)


def click_modifiers(event: Any) -> tuple[bool, bool]:
    """``(add, target)`` of a mouse event: Shift adds to the selection, Ctrl/Alt/Meta picks the target."""
    mods = {str(getattr(m, "name", m)) for m in (getattr(event, "modifiers", None) or ())}
    return "Shift" in mods, bool(mods & {"Control", "Alt", "Meta"})


class CorrectionInteraction:
    """The viewer-level bindings of correction mode and the hit tests on its layers.

    ``on_click(y, x, add, target)``: a click at world (y, x) µm; ``on_key(action)``: a key of
    :data:`SHORTCUTS`; ``enabled()``: whether clicks count now; ``on_error(exc)``: an exception of
    a click (never raised into napari's event loop); ``layer()``: the result Points layer the
    session corrects (None: use ``segger transcripts`` as it is).
    """

    def __init__(self, viewer: Any, *, on_click: Callable, on_key: Callable[[str], None],
                 enabled: Callable[[], bool], on_error: Callable[[BaseException], None],
                 layer: Callable[[], Any] = lambda: None) -> None:
        self.viewer = viewer
        self.on_click, self.on_key, self.enabled, self.on_error = on_click, on_key, enabled, on_error
        self.layer = layer
        self.keys_on = False
        self.bound: list[tuple[Any, str]] = []
        self.index: PointIndex | None = None
        self.index_key = None
        self._index_lock = threading.Lock()
        self._nuclei_tree = None
        self._nuclei_for = None

    # ----------------------------------------------------------------------------- viewer level
    def connect(self) -> None:
        """Register the mouse callback and watch for Segger layers added in correction mode."""
        self.viewer.mouse_drag_callbacks.append(self.on_mouse)
        self.viewer.layers.events.inserted.connect(self.on_layer_inserted)

    def disconnect(self) -> None:
        self.unbind_all()
        try:
            self.viewer.layers.events.inserted.disconnect(self.on_layer_inserted)
        except (TypeError, ValueError, RuntimeError):
            pass
        try:
            self.viewer.mouse_drag_callbacks.remove(self.on_mouse)
        except ValueError:
            pass

    def on_mouse(self, viewer, event):
        """Viewer mouse callback: a click (press + release without drag) goes to ``on_click``."""
        if not self.enabled():
            return
        active = self.viewer.layers.selection.active
        if active is not None and active.name == LAYER_SELECTION and getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return  # drawing a selection shape
        start = tuple(event.position)
        yield
        while event.type == "mouse_move":
            yield
        if event.type == "mouse_release" and np.allclose(start, tuple(event.position), atol=1e-6):
            add, target = click_modifiers(event)
            y, x = (float(v) for v in np.asarray(event.position, dtype=float)[-2:])
            try:
                self.on_click(y, x, add=add, target=target)
            except Exception as exc:  # noqa: BLE001 - never raise into napari's event loop
                self.on_error(exc)

    # ----------------------------------------------------------------------------- keys
    def binding_targets(self) -> list:
        return [self.viewer] + [l for l in (find_layer(self.viewer, n) for n in KEYED_LAYERS) if l is not None]

    def bind_all(self) -> None:
        self.keys_on = True
        for target in self.binding_targets():
            self.bind_keys(target)

    def bind_keys(self, target: Any) -> None:
        """Bind the correction keys on ``target``'s own keymap."""
        is_viewer = target is self.viewer
        for action, (key, _) in SHORTCUTS.items():
            if action in VIEWER_ONLY and not is_viewer:
                continue

            def handler(_provider, _action=action):
                self.on_key(_action)

            try:
                target.bind_key(key, handler, overwrite=True)
            except Exception:  # noqa: BLE001 - a layer that refuses a key keeps its own
                continue
            self.bound.append((target, key))

    def unbind_all(self) -> None:
        self.keys_on = False
        for target, key in self.bound:
            try:
                target.bind_key(key, None)
            except Exception:  # noqa: BLE001 - layer already gone
                pass
        self.bound.clear()

    def on_layer_inserted(self, event) -> None:
        """A Segger layer added (or replaced, e.g. the outlines) in correction mode gets the keys."""
        if not self.keys_on:
            return
        layer = event.value
        if getattr(layer, "name", None) in KEYED_LAYERS:
            self.bind_keys(layer)

    # ----------------------------------------------------------------------------- hit tests
    def tolerance(self) -> float:
        """Hit radius in µm: half a point, plus a few screen pixels at the current zoom (at high
        zoom the pixels are tiny, the drawn disc is what the user aims at)."""
        layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        size = 1.0
        if layer is not None and np.size(layer.size):
            size = float(np.asarray(layer.size).ravel()[0]) * float(np.asarray(layer.scale)[-1])
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        camera = getattr(scene, "camera", None) if scene is not None else None
        if camera is None:
            camera = getattr(self.viewer, "camera", None)
        zoom = float(getattr(camera, "zoom", 1.0) or 1.0)
        return size / 2.0 + CLICK_TOLERANCE_PX / zoom

    @staticmethod
    def layer_key(layer) -> tuple:
        data = layer.data
        return (id(data), len(data), tuple(np.asarray(layer.scale, float)[-2:]),
                tuple(np.asarray(layer.translate, float)[-2:]))

    def point_index(self) -> PointIndex:
        """KD-tree of ``segger transcripts`` in world µm, built once per layer data (and transform)."""
        layer = self.layer() or find_layer(self.viewer, LAYER_TRANSCRIPTS)
        if layer is None:
            raise SeggerInputError(f"no '{LAYER_TRANSCRIPTS}' layer; run Predict first")
        key = self.layer_key(layer)
        with self._index_lock:
            if self.index is None or self.index_key != key:
                self.index = PointIndex.from_layer(layer)
                self.index_key = key
            return self.index

    def prebuild_index(self) -> None:
        """Build the KD-tree in a background thread (about 0.5 s at a million points)."""
        layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        if layer is None:
            return
        key = self.layer_key(layer)
        if self.index_key == key:
            return
        from segger.napari.layers import _world_yx

        try:
            yx = _world_yx(layer, np.asarray(layer.data))
        except Exception:  # noqa: BLE001 - built (and reported) at the first click instead
            return

        def build():
            index = PointIndex(yx)
            with self._index_lock:
                if self.index_key != key:
                    self.index, self.index_key = index, key

        threading.Thread(target=build, name="segger-kdtree", daemon=True).start()

    def hit_test(self, y: float, x: float, max_dist: float | None = None) -> int:
        """Row of the transcript nearest to world (y, x) µm within the click tolerance, or -1."""
        return self.point_index().nearest(y, x, self.tolerance() if max_dist is None else max_dist)

    def inside(self, areas: list) -> np.ndarray:
        """Rows of the transcripts inside the world (y, x) polygons ``areas``."""
        return self.point_index().inside(areas)

    def nucleus_at(self, bundle: Any, y: float, x: float) -> str | None:
        """bd id of the nucleus polygon of ``bundle`` containing world (y, x) µm."""
        if bundle is None or S.GEOMETRY not in bundle.nuclei.columns or len(bundle.nuclei) == 0:
            return None
        import shapely

        if self._nuclei_for is not bundle:
            self._nuclei_tree = shapely.STRtree(bundle.nuclei[S.GEOMETRY].to_numpy())
            self._nuclei_for = bundle
        hits = self._nuclei_tree.query(shapely.Point(x, y), predicate="intersects")
        if len(hits) == 0:
            return None
        return str(bundle.nuclei[S.BD_ID].astype(str).to_numpy()[int(hits[0])])
