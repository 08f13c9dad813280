"""*Whole-slide region* dock widget: a whole-slide output folder seen region by region.

The napari reader opens an output folder with more than :data:`segger.napari._reader.WHOLE_SLIDE_ROWS`
transcripts without reading them: it shows the slide's extent (a rectangle outline, ``segger slide
extent``) and docks this widget. **Load current view** loads the transcripts and cell outlines inside
the camera's view, **Load drawn rectangle** those inside the last rectangle drawn on the ``segger
region`` Shapes layer (or the selected one). The region is read by
:class:`segger.export.region.RegionSource` (only the parquet row groups — tiles — that meet it; the
outlines from the outlines file) in a worker, which also builds the layer data; the result layers
(``segger transcripts``, ``segger cells``) are replaced on the main thread. Reopened from the Plugins
menu (*Whole-slide region*), the widget points at the slide whose extent layer the viewer shows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import QLabel, QPushButton

from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row, spin

#: the dock name (one widget per viewer, re-pointed when another whole slide is opened)
DOCK_NAME = "Whole-slide region"
LAYER_EXTENT = "segger slide extent"
LAYER_REGION = "segger region"
EXTENT_RGBA = np.array([[1.0, 0.85, 0.3, 1.0]], dtype=np.float32)


def extent_to_layer(extent: tuple[float, float, float, float], *, name: str = LAYER_EXTENT,
                    metadata: dict | None = None) -> tuple:
    """The slide bounds ``(x0, y0, x1, y1)`` µm as a Shapes LayerDataTuple: one rectangle outline."""
    from segger.napari.layers import METADATA_KEY, UNITS

    x0, y0, x1, y1 = (float(v) for v in extent)
    rect = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
    span = max(x1 - x0, y1 - y0, 1.0)
    meta = {METADATA_KEY: {"kind": "slide_extent", "extent_um": [x0, y0, x1, y1], **(metadata or {})}}
    kwargs = dict(name=name, shape_type="rectangle", edge_color=EXTENT_RGBA, face_color=np.zeros((1, 4)),
                  edge_width=max(span / 400.0, 1.0), units=UNITS, metadata=meta)
    return ([rect], kwargs, "shapes")


def view_bbox(viewer: Any) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` µm the 2-D camera shows: its centre ± half the canvas over the zoom
    (canvas pixels per µm)."""
    v = getattr(viewer, "__wrapped__", viewer)
    if v.dims.ndisplay != 2:
        raise SeggerInputError("the region of the view needs the 2-D view: switch napari to 2D first")
    h, w = (float(s) for s in v.canvas.size)
    zoom = float(v.camera.zoom)
    if not (zoom > 0 and h > 0 and w > 0):
        raise SeggerInputError("the viewer has no canvas to take a view from")
    cy, cx = (float(c) for c in v.camera.center[-2:])
    hy, hx = h / zoom / 2.0, w / zoom / 2.0
    return (cx - hx, cy - hy, cx + hx, cy + hy)


def rectangle_bbox(layer: Any) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` µm of the selected shape of ``layer`` (else its last one), in world units."""
    from segger.napari.layers import _world_yx

    if layer is None or len(layer.data) == 0:
        raise SeggerInputError(f"draw a rectangle on the '{LAYER_REGION}' layer first (select it, press R, "
                               "drag on the canvas)")
    sel = sorted(getattr(layer, "selected_data", ()) or ())
    i = sel[-1] if sel else len(layer.data) - 1
    yx = _world_yx(layer, np.asarray(layer.data[i]))
    return (float(yx[:, 1].min()), float(yx[:, 0].min()), float(yx[:, 1].max()), float(yx[:, 0].max()))


def outlines_to_layer(outlines, *, metadata: dict | None = None, max_shapes: int | None = None) -> tuple:
    """The region's outlines as :func:`segger.napari.layers.cells_to_layer` makes them (Shapes up to
    ``max_shapes``, default ``MAX_SHAPES``; a Labels raster beyond)."""
    from segger.napari.layers import MAX_SHAPES, cells_to_layer

    return cells_to_layer(outlines, metadata=metadata, max_shapes=MAX_SHAPES if max_shapes is None else max_shapes)


def region_layers(source: Any, bbox) -> tuple[tuple, tuple | None, dict]:
    """Worker side: read the region and build its layer data — ``(transcripts Points, cells layer or
    None, stats)``. Touches no layer."""
    from segger.napari.layers import result_to_points

    tx, outlines = source.load(bbox)
    stats = dict(source.last_stats)
    meta = {"source": str(source.folder), "region_um": stats["bbox"], "whole_slide": True}
    points = result_to_points(tx, metadata=meta)
    cells = outlines_to_layer(outlines, metadata=meta) if outlines is not None and len(outlines) else None
    return points, cells, stats


class RegionWidget(SeggerWidget):
    """Load a region of a whole-slide output into the result layers (see the module docstring)."""

    cancellable = False

    def __init__(self, napari_viewer: Any, source: Any = None, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        self.source = None
        self.last_stats: dict[str, Any] = {}
        form = self.group("Whole slide")
        self.slide_label = QLabel("Open a segger output folder (File ▸ Open Folder).")
        self.slide_label.setWordWrap(True)
        form.addRow(self.slide_label)
        from segger.export.region import MAX_REGION_TRANSCRIPTS

        self.max_transcripts = add_row(form, "Max transcripts", spin(
            10_000, 50_000_000, MAX_REGION_TRANSCRIPTS,
            "A region holding more transcripts is refused (zoom in or draw a smaller rectangle)"))
        self.max_transcripts.setSingleStep(100_000)
        self.load_view_button = QPushButton("Load current view")
        self.load_view_button.setToolTip("Load the transcripts and cell outlines inside the viewer's view")
        self.load_rect_button = QPushButton("Load drawn rectangle")
        self.load_rect_button.setToolTip(f"Load the region of the rectangle drawn on the '{LAYER_REGION}' layer")
        self.body.addWidget(self.load_view_button)
        self.body.addWidget(self.load_rect_button)
        tip = QLabel(f"Zoom in and press Load current view, or draw a rectangle on '{LAYER_REGION}' "
                     "(select it, press R, drag) and press Load drawn rectangle.")
        tip.setWordWrap(True)
        self.body.addWidget(tip)
        self.loaded = QLabel("Nothing loaded yet.")
        self.loaded.setWordWrap(True)
        self.body.addWidget(self.loaded)
        self.body.addStretch(1)
        self.load_view_button.clicked.connect(self.load_view)
        self.load_rect_button.clicked.connect(self.load_rectangle)
        self.set_controls(self.load_view_button, self.load_rect_button, self.max_transcripts)
        from segger.napari.layers.shapes import fast_triangulation

        fast_triangulation()  # here (main thread), not in the worker that builds the outlines
        if source is None:
            source = self._shown_slide()
        if source is not None:
            self.set_source(source)
        self.refresh_enabled()

    def _shown_slide(self) -> str | None:
        """The output folder of the ``segger slide extent`` layer in the viewer (reopened from the
        Plugins menu after the dock was closed), when it still is one."""
        from segger.utils.outdir import is_output_folder
        from segger.napari._viewer import find_layer

        layer = find_layer(self.viewer, LAYER_EXTENT) if self.viewer is not None else None
        folder = (getattr(layer, "metadata", None) or {}).get("segger", {}).get("source")
        return folder if folder and is_output_folder(Path(folder)) else None

    # ---------------------------------------------------------------------------------------
    def set_source(self, source: Any) -> None:
        """Point the widget at a whole-slide output (folder path or :class:`RegionSource`): shows its
        extent and makes the ``segger region`` layer."""
        from segger.export.region import RegionSource

        if not isinstance(source, RegionSource):
            source = RegionSource(source)
        self.source = source
        x0, y0, x1, y1 = source.extent
        self.slide_label.setText(
            f"{source.folder.name}: {source.n_rows:,} transcripts in {source.n_row_groups} row groups (tiles); "
            f"slide x {x0:,.0f}–{x1:,.0f} µm, y {y0:,.0f}–{y1:,.0f} µm "
            f"({(x1 - x0) / 1000:.1f} × {(y1 - y0) / 1000:.1f} mm)")
        self._ensure_layers()
        self.refresh_enabled()

    def _ensure_layers(self) -> None:
        from segger.napari._viewer import find_layer, upsert_layer

        src = self.source
        if src is None:
            return
        extent = find_layer(self.viewer, LAYER_EXTENT)
        mine = extent is not None and extent.metadata.get("segger", {}).get("source") == str(src.folder)
        if not mine:
            upsert_layer(self.viewer, extent_to_layer(src.extent, metadata={"source": str(src.folder)}))
        if find_layer(self.viewer, LAYER_REGION) is None:
            from segger.napari.layers import UNITS

            x0, y0, x1, y1 = src.extent
            self.viewer.add_shapes(name=LAYER_REGION, shape_type="rectangle", edge_color="cyan",
                                   face_color=[0, 0, 0, 0], edge_width=max(max(x1 - x0, y1 - y0) / 1000.0, 1.0),
                                   units=UNITS)

    def refresh_enabled(self) -> None:
        if self.busy:
            return
        ok = self.source is not None
        self.load_view_button.setEnabled(ok)
        self.load_rect_button.setEnabled(ok)

    # ---------------------------------------------------------------------------------------
    def load_view(self) -> None:
        """Load the region the camera shows."""
        bbox = self.guarded(view_bbox, self.viewer)
        if bbox is not None:
            self.load(bbox)

    def load_rectangle(self) -> None:
        """Load the region of the rectangle on the ``segger region`` layer."""
        from segger.napari._viewer import find_layer

        bbox = self.guarded(rectangle_bbox, find_layer(self.viewer, LAYER_REGION))
        if bbox is not None:
            self.load(bbox)

    def load(self, bbox) -> None:
        """Read ``bbox`` ``(x0, y0, x1, y1)`` µm in a worker, then replace the result layers."""
        src = self.source
        if src is None:
            self.guarded(self._raise, SeggerInputError("open a whole-slide output folder first"))
            return
        src.max_transcripts = int(self.max_transcripts.value())

        def job():
            from segger.progress import Progress

            x0, y0, x1, y1 = bbox
            yield Progress("region", 0, 2, f"reading {x1 - x0:,.0f} × {y1 - y0:,.0f} µm")
            out = region_layers(src, bbox)
            yield Progress("region", 1, 2, "adding the layers")
            return out

        self.job.start(job, desc="Load region", on_done=self._show_region)

    def _show_region(self, value) -> None:
        """Main thread: the region's layer data into the viewer."""
        from segger.napari._viewer import find_layer, upsert_layer
        from segger.napari.layers import LAYER_CELLS

        points, cells, stats = value
        upsert_layer(self.viewer, points)
        if cells is not None:
            upsert_layer(self.viewer, cells)
        else:
            old = find_layer(self.viewer, LAYER_CELLS)
            if old is not None:  # never leave the outlines of another region on screen
                self.viewer.layers.remove(old)
        self.last_stats = stats
        x0, y0, x1, y1 = stats["bbox"]
        n_cells = "no outlines file" if stats["n_outlines"] is None else f"{stats['n_outlines']:,} cells"
        secs = stats["transcripts_s"] + stats["outlines_s"]
        self.loaded.setText(
            f"Loaded x {x0:,.0f}–{x1:,.0f}, y {y0:,.0f}–{y1:,.0f} µm: {stats['n_transcripts']:,} transcripts, "
            f"{n_cells}; read {stats['row_groups_read']} of {stats['row_groups']} row groups in {secs:.2f} s")
        self.panel.status.setText(f"Load region: {stats['n_transcripts']:,} transcripts")

    @staticmethod
    def _raise(exc):
        raise exc


def dock_region_widget(viewer: Any, source: Any) -> RegionWidget:
    """The viewer's *Whole-slide region* widget (docked now if missing), pointed at ``source``."""
    v = getattr(viewer, "__wrapped__", viewer)
    docked = dict(getattr(v.window, "dock_widgets", {}) or {})
    widget = docked.get(DOCK_NAME)
    if not isinstance(widget, RegionWidget):  # one opened from the Plugins menu has napari's dock name
        widget = next((w for w in docked.values() if isinstance(w, RegionWidget)), None)
    if isinstance(widget, RegionWidget):
        widget.set_source(source)
        return widget
    widget = RegionWidget(v, source)
    v.window.add_dock_widget(widget, name=DOCK_NAME, area="right")
    return widget


def open_whole_slide(folder: str | os.PathLike) -> list[tuple]:
    """Reader side of a whole-slide output: the extent layer, and the widget docked in the current
    viewer once napari has added it (no viewer, e.g. a script: the layer only)."""
    from segger.export.region import RegionSource

    source = RegionSource(Path(folder))
    layer = extent_to_layer(source.extent, metadata={"source": str(source.folder), "n_transcripts": source.n_rows})
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no Qt viewer: the layer alone
        viewer = None
    if viewer is not None:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, lambda: dock_region_widget(viewer, source))
    return [layer]
