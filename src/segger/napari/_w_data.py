"""*Data & graph* dock widget: transcripts layer + nuclei → ``build_graph`` in a worker."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QLabel, QPushButton

from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row, layer_kind
from segger.napari._forms import param_form
from segger.napari.layers import (
    LAYER_TX_EDGES,
    METADATA_KEY,
    graph_edges_to_vectors,
    layer_scale_translate,
    shapes_to_nuclei,
)
from segger.progress import Progress

DERIVED = "(derived from nuclear transcripts)"
#: the GraphParams fields of the "Graph parameters" form (their tooltips: the fields' help)
GRAPH_FIELDS = ("k_tx", "dist_tx", "k_bd", "dist_bd", "use_z")
GRAPH_LABELS = {"k_tx": "k tx–tx", "dist_tx": "max tx–tx distance", "k_bd": "k candidate nuclei",
                "dist_bd": "max tx–nucleus distance", "use_z": "3-D neighbours (use z)"}
#: above this many transcripts, Build graph first warns and offers to crop to the current view
LARGE_LAYER_POINTS = 2_000_000

TIPS = {
    "points": "Points layer of transcripts (positions in µm; scale/translate are honoured).",
    "gene": "Feature of the Points layer that holds the gene name of each transcript.",
    "nuclei": (
        "Nuclei: a Shapes layer of polygons, a Labels layer (e.g. Cellpose/StarDist run on DAPI; "
        "its scale = µm per pixel and translate are honoured), or approximated from the vendor's "
        "nuclear transcripts (convex hull per vendor cell; an approximation)."
    ),
    "edges": f"After building, draw the transcript–transcript edges as a Vectors layer ('{LAYER_TX_EDGES}').",
    "crop": (
        "Build the graph only for the transcripts the canvas shows now (zoom / pan first), and the "
        "nuclei near them: minutes and gigabytes less on a whole slide."
    ),
}


def current_view(viewer: Any) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` in world units (µm) of what the 2-D canvas shows now."""
    real = getattr(viewer, "__wrapped__", viewer)
    size = getattr(getattr(real, "canvas", None), "size", None) or getattr(real, "_canvas_size", None)
    if size is None:
        raise SeggerInputError("cannot tell which area the canvas shows; untick 'Only the current view'")
    camera = getattr(getattr(real, "scene", None), "camera", None) or real.camera  # napari ≥ 0.9: scene.camera
    h, w = (float(v) for v in tuple(size)[-2:])
    cy, cx = (float(v) for v in np.asarray(camera.center, dtype=float)[-2:])
    zoom = float(camera.zoom)
    return cx - w / 2 / zoom, cy - h / 2 / zoom, cx + w / 2 / zoom, cy + h / 2 / zoom


def _default_gene_feature(layer: Any) -> str | None:
    feats = layer.features
    meta = (layer.metadata or {}).get(METADATA_KEY, {}) or {}
    for cand in (meta.get("gene_feature"), "gene", "feature_name", "target", "gene_name"):
        if cand and cand in feats.columns:
            return cand
    for col in feats.columns:
        if feats[col].dtype == object or str(feats[col].dtype) in ("category", "string"):
            return col
    return None


class DataGraphWidget(SeggerWidget):
    """Choose transcripts and nuclei, set graph parameters, build the graph (in a worker)."""

    cancellable = False

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        from segger.data import GraphParams

        form = self.group("Input")
        self.points_combo = self.layer_combo(
            ["Points"],
            prefer=lambda l: ((l.metadata or {}).get(METADATA_KEY, {}) or {}).get("kind") == "transcripts",
        )
        add_row(form, "Transcripts", self.points_combo, TIPS["points"])
        self.gene_combo = QComboBox()
        add_row(form, "Gene feature", self.gene_combo, TIPS["gene"])
        self.nuclei_combo = self.layer_combo(
            ["Shapes", "Labels"], extra=[DERIVED],
            prefer=lambda l: ((l.metadata or {}).get(METADATA_KEY, {}) or {}).get("kind") == "nuclei",
        )
        add_row(form, "Nuclei", self.nuclei_combo, TIPS["nuclei"])
        self.crop_view = QCheckBox("Only the current view (crop)")
        self.crop_view.setToolTip(TIPS["crop"])
        form.addRow(self.crop_view)
        self._large_confirmed: tuple | None = None

        form = self.group("Graph parameters")
        # generated from GraphParams' declarations (help, unit, range, default: segger.params)
        self.graph_form = param_form(GraphParams, GRAPH_FIELDS, labels=GRAPH_LABELS)
        self.graph_form.add_rows(form)
        self.k_tx, self.dist_tx, self.k_bd, self.dist_bd, self.use_z = (
            self.graph_form.native(n) for n in GRAPH_FIELDS)
        self.show_edges = QCheckBox("Show tx–tx edges layer")
        self.show_edges.setToolTip(TIPS["edges"])
        form.addRow(self.show_edges)

        self.build_button = QPushButton("Build graph")
        self.build_button.setToolTip("Build the transcript/nucleus graph in the background")
        self.body.addWidget(self.build_button)
        self.summary = QLabel("No graph yet.")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self.body.addStretch(1)

        self.points_combo.currentIndexChanged.connect(self._update_genes)
        self.build_button.clicked.connect(self.build)
        self.set_controls(self.build_button, self.points_combo, self.nuclei_combo, self.gene_combo, self.crop_view)
        self._update_genes()

    # ---------------------------------------------------------------------------------------
    def reset_choices(self, *_: Any) -> None:
        super().reset_choices()
        self._update_genes()

    def _update_genes(self, *_: Any) -> None:
        layer = self.points_combo.current_layer()
        current = self.gene_combo.currentText()
        self.gene_combo.blockSignals(True)
        self.gene_combo.clear()
        if layer is not None:
            cols = [str(c) for c in layer.features.columns]
            self.gene_combo.addItems(cols)
            pick = current if current in cols else _default_gene_feature(layer)
            if pick is not None:
                self.gene_combo.setCurrentText(pick)
        self.gene_combo.blockSignals(False)

    def params(self):
        """The GraphParams of the form (the fields it does not show: their defaults)."""
        return self.graph_form.value()

    def _collect_inputs(self):
        """Turn the chosen layers into workflow inputs on the main thread (:mod:`._inputs`): the
        sample's own tables while the layers are unchanged, else the tables read from the layers."""
        from segger.napari._inputs import GraphInputs, crop_transcripts, linked_sample, transcripts_of

        points = self.points_combo.current_layer()
        if points is None:
            raise SeggerInputError(
                "no transcripts Points layer; open a sample (File ▸ Open Sample ▸ Segger) or a "
                "Xenium/MERSCOPE/CosMx folder first"
            )
        gene = self.gene_combo.currentText() or None
        tx, sample = transcripts_of(points, gene)
        inputs = GraphInputs(transcripts=tx, points=points.name, gene=gene, nuclei_mode="", sample=sample,
                             from_sample={"transcripts": sample is not None, "nuclei": False})
        if self.crop_view.isChecked():
            crop = current_view(self.viewer)
            inputs.transcripts = crop_transcripts(tx, crop)
            if len(inputs.transcripts) == 0:
                raise SeggerInputError(
                    f"no transcript of layer '{points.name}' is in the current view; pan or zoom to them, "
                    "or untick 'Only the current view'"
                )
            inputs.crop = crop
        nuclei_layer = self.nuclei_combo.current_layer()
        if nuclei_layer is None:
            if self.nuclei_combo.currentText() != DERIVED:
                raise SeggerInputError("choose a nuclei layer (Shapes or Labels) or the derived option")
            inputs.nuclei_mode = "derived"
            return inputs
        kind = layer_kind(nuclei_layer)
        if kind not in ("Shapes", "Labels"):
            raise SeggerInputError(
                f"layer '{nuclei_layer.name}' is a {kind} layer; nuclei must be Shapes or Labels"
            )
        inputs.nuclei_mode = f"{kind.lower()}:{nuclei_layer.name}"
        nuc_sample = linked_sample(nuclei_layer, "nuclei")
        if nuc_sample is not None and (sample is None or nuc_sample is sample):
            inputs.nuclei = nuc_sample.nuclei  # the polygons the layer was made from (not a raster's trace)
            inputs.from_sample["nuclei"] = True
        elif kind == "Shapes":
            inputs.nuclei = shapes_to_nuclei(nuclei_layer)
        else:  # copy the pixels here; polygons are traced in the worker
            scale, translate = layer_scale_translate(nuclei_layer)
            inputs.labels = (np.asarray(nuclei_layer.data), scale, translate, nuclei_layer.name)
        return inputs

    def _large_layer_guard(self) -> bool:
        """True when the chosen layer is very large and the user has not chosen yet between a crop
        and all of it: then warn (non-modal) and offer the crop; Build graph again uses everything."""
        points = self.points_combo.current_layer()
        n = len(points.data) if points is not None else 0
        if n <= LARGE_LAYER_POINTS or self.crop_view.isChecked() or self._large_confirmed == (points.name, n):
            return False
        from napari.utils.notifications import show_warning

        self._large_confirmed = (points.name, n)
        msg = (f"layer '{points.name}' has {n:,} transcripts (more than {LARGE_LAYER_POINTS:,}): the graph of "
               "all of them takes minutes and several GB. Tick 'Only the current view' to build on what "
               "the canvas shows (zoom in first), or press Build graph again to use them all")
        show_warning(msg)
        self.panel.status.setText(f"large layer ({n:,} transcripts): crop to the current view, or press "
                                  "Build graph again for all")
        self.crop_view.setFocus()
        return True

    def build(self) -> None:
        """Start building the graph (button)."""
        if self._large_layer_guard():
            return
        inputs = self.guarded(self._collect_inputs)
        if inputs is None:
            return
        params = self.guarded(lambda: self.params().validate())
        if params is None:
            return
        show_edges = self.show_edges.isChecked()

        def job():
            from segger.data import build_graph
            from segger.napari._inputs import resolve_nuclei

            if inputs.labels is not None:
                yield Progress("graph", 0, 3, "tracing nuclei in the label image")
            elif inputs.nuclei_mode == "derived":
                yield Progress("graph", 0, 3, "approximating nuclei from nuclear transcripts")
            nuclei = resolve_nuclei(inputs, params.dist_bd)
            n_tx, n_bd = len(inputs.transcripts), len(nuclei)
            yield Progress("graph", 1, 3, f"building the graph ({n_tx:,} transcripts, {n_bd:,} nuclei)")
            bundle = build_graph(inputs.transcripts, nuclei, params)
            edges = None
            if show_edges:
                yield Progress("graph", 2, 3, "preparing the edges layer")
                edges = graph_edges_to_vectors(bundle)
            yield Progress("graph", 3, 3, "done")
            return bundle, edges

        self.job.start(job, desc="Build graph", on_done=lambda out: self._apply(out, inputs, params))

    def _apply(self, out, inputs, params) -> None:
        from segger.napari._viewer import upsert_layer

        bundle, edges = out
        self.state.set_bundle(bundle, inputs.source(params))
        self.state.spatial_sample = inputs.sample
        s = bundle.summary()
        self.summary.setText(
            f"{s['n_tx']:,} transcripts, {s['n_bd']:,} nuclei; edges: {s['n_tx_tx']:,} tx–tx, "
            f"{s['n_belongs']:,} tx–nucleus (belongs), {s['n_candidates']:,} candidates"
        )
        self.panel.status.setText("Build graph: done")
        if edges is not None:
            upsert_layer(self.viewer, edges)
