"""*Predict* dock widget: GNN scores in a worker, instant re-thresholding, result + attention layers.

Layers (stable names, updated in place on re-run): ``segger transcripts`` (coloured by cell),
``segger cells`` (outlines; Shapes up to a few thousand cells, Labels beyond) and
``segger attention`` (Vectors coloured by attention weight).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QWidget,
)

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row, dspin, spin
from segger.napari._forms import param_form
from segger.napari._outlines import OutlineJob
from segger.napari._viewer import find_layer, set_face_colors, upsert_layer
from segger.napari._plots import HistogramPlot
from segger.napari.layers import (
    LAYER_ATTENTION,
    LAYER_CELLS,
    LAYER_TRANSCRIPTS,
    assignment_feature,
    attention_to_vectors,
    cell_colors_and_ids,
    result_to_points,
)
from segger.progress import Progress

#: the Vectors layer of "Explain a picked transcript"
LAYER_EXPLAIN = "segger explain"
#: the clicked transcript's tx→tx neighbours whose attention differs from uniform
LAYER_EXPLAIN_NEIGHBOURS = "segger explain neighbours"
#: neighbours whose lift (weight × number of neighbours) is within this fraction of 1 are not drawn
UNIFORM_TOLERANCE = 0.25
#: slider resolution (the box next to it takes any value)
CUT_STEPS = 1000
#: warn when more than this share of the transcripts would become fragments
FRAGMENT_WARNING = 0.5

#: the PredictConfig fields of the "Assignment" form (score_cut sits next to its slider)
#: (max_fragment_size stays a plain QSpinBox: magicgui's int spin box clamps every keystroke, so "12"
#: could not be typed over a minimum of 2)
PREDICT_FIELDS = ("score_cut", "fragments", "max_fragment_extent", "max_distance")
PREDICT_LABELS = {"fragments": "Group leftover transcripts into fragments", "max_fragment_size": "max fragment size",
                  "max_fragment_extent": "max fragment extent", "max_distance": "reach"}

EDGE_TYPES = {
    "transcript → nucleus": ("tx", "belongs", "bd"),
    "transcript → transcript": ("tx", "neighbors", "tx"),
}


#: the model combo's entry for the bundled pretrained model (before it is loaded)
BUNDLED = "bundled"


def bundled_note() -> str:
    """One honest line about the bundled model (from its card), with a link to the card."""
    from segger.models.pretrained import CARD_MD, HERE, model_card

    try:
        lung = model_card()["benchmark"]["datasets"]["lung"]["verdict"]["pretrained"]["vs_nearest_nucleus"]
        diff = f" ({100 * lung['mutual_agreement_difference']:+.1f} points of agreement on its own lung crop)"
    except (KeyError, TypeError):
        diff = ""
    url = (HERE / CARD_MD).as_uri()
    return ("Bundled model: trained on the small lung crop only. Out of the box it does not beat "
            f"assigning each transcript to its nearest nucleus{diff}; fine-tuned on your data (Train) it "
            f"does on the breast crop. <a href='{url}'>Model card</a>")


def _load_bundled():
    """``(model, vocab, info)`` of the bundled pretrained model (worker thread)."""
    from segger.models.pretrained import bundled_checkpoint, load_pretrained
    from segger.workflows import vocab_rule

    model, _, vocab, _, payload = load_pretrained()
    model.eval()
    metrics = payload.get("metrics", {}) or {}
    return model, vocab, {"checkpoint": str(bundled_checkpoint()), "min_coverage": vocab_rule(payload),
                          "vocab": vocab, "metrics": metrics, "history": [], "source": "bundled",
                          "epochs": int(metrics.get("epoch") or 0)}


def _kind_name(layer: Any) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__.lower()


def recolor_points(layer: Any, result, codes: Any = None, outline_index: dict | None = None) -> None:
    """Update a result Points layer for a new assignment: 3 features + the RGBA array only
    (positions, genes and the other features are left as they are). ``codes``: the
    :class:`segger.prediction.AssignCodes` of ``result`` (no factorisation of the ids);
    ``outline_index``: the outlines' palette index per cell (transcripts match their outline)."""
    colors, cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID], outline_index, codes=codes)
    feats = layer.features.copy(deep=False)
    feats[S.SEGGER_CELL_ID] = cell_ids
    feats[S.SCORE] = result[S.SCORE].to_numpy(dtype=np.float32)
    feats[S.ASSIGNMENT] = assignment_feature(result[S.ASSIGNMENT]) if codes is None else codes.kind_categorical()
    layer.features = feats
    set_face_colors(layer, colors)


def assignment_counts(result, codes: Any = None) -> tuple[int, int, int, int, int]:
    """(cells, fragments, transcripts in cells, in fragments, unassigned) of a result table;
    from the integer codes when given (a bincount instead of hashing a million id strings)."""
    if codes is not None:
        kind = np.asarray(codes.kind)
        cc = np.asarray(codes.cell_codes)
        in_cell, in_frag = kind <= 1, kind == 2
        n_cats = len(codes.categories)
        n_cells = int(np.count_nonzero(np.bincount(cc[in_cell], minlength=n_cats)))
        n_frag = int(np.count_nonzero(np.bincount(cc[in_frag], minlength=n_cats)))
        return n_cells, n_frag, int(in_cell.sum()), int(in_frag.sum()), int((kind == 3).sum())
    kind = result[S.ASSIGNMENT].astype(str).to_numpy()
    ids = result[S.SEGGER_CELL_ID].to_numpy()
    in_cell = np.isin(kind, ["nucleus", "cytoplasm"])
    in_frag = kind == "fragment"
    return (pd.unique(ids[in_cell]).size, pd.unique(ids[in_frag]).size, int(in_cell.sum()),
            int(in_frag.sum()), int((kind == "none").sum()))


class PredictWidget(SeggerWidget):
    """Score candidate cells with the trained model, then threshold and draw the result."""

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        self._build_model_source()
        form = self.group("Assignment")
        srow = QWidget()
        hl = QHBoxLayout(srow)
        hl.setContentsMargins(0, 0, 0, 0)
        self.cut_slider = QSlider(Qt.Orientation.Horizontal)
        self.cut_slider.setRange(0, CUT_STEPS)
        self.cut_slider.setValue(CUT_STEPS // 2)
        self.cut_slider.setSingleStep(10)
        self.cut_slider.setPageStep(100)
        # generated from PredictConfig's declarations (help, unit, range, default: segger.params)
        from segger.prediction import PredictConfig

        self.predict_form = param_form(PredictConfig, PREDICT_FIELDS, labels=PREDICT_LABELS,
                                       options={"score_cut": {"decimals": 3, "step": 0.01},
                                                "max_distance": {"unset": "estimated"}})
        self.cut_box = self.predict_form.native("score_cut")
        self.cut_slider.setValue(int(round(self.cut_box.value() * CUT_STEPS)))
        self.cut_label = self.cut_box  # the value shown next to the slider
        hl.addWidget(self.cut_slider, 1)
        hl.addWidget(self.cut_box)
        add_row(form, "score cut", srow,
                "Minimum score to join a cell. Moving it re-thresholds the cached scores instantly "
                "(no GNN re-run).")
        self.hist = HistogramPlot(title="scores (red line: cut)")
        self.hist.setToolTip("How many transcripts have each best-candidate score: transcripts left of the "
                             "red line leave their cell (unassigned, or a fragment beyond the reach)")
        form.addRow(self.hist)
        self.counts = QLabel("")
        self.counts.setWordWrap(True)
        form.addRow(self.counts)
        self.predict_form.add_rows(form, PREDICT_FIELDS[1:2])
        dflt = PredictConfig()
        self.max_frag_size = add_row(form, "max fragment size", spin(
            1, 1_000_000, dflt.max_fragment_size,
            "A nucleus-free group with more transcripts than this is not one cell: left unassigned"))
        self.predict_form.add_rows(form, PREDICT_FIELDS[2:])
        self.fragments, self.max_frag_extent, self.reach = (self.predict_form.native(n) for n in PREDICT_FIELDS[1:])
        self.outlines = QCheckBox(f"Draw cell outlines ('{LAYER_CELLS}')")
        self.outlines.setChecked(True)
        form.addRow(self.outlines)
        self.fill = QCheckBox("Translucent fill")
        self.fill.setToolTip("Fill each outline with its colour at low opacity (touching cells never share a colour)")
        form.addRow(self.fill)
        from segger.training import available_devices

        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        add_row(form, "device", self.device_combo, "Where the GNN runs (auto = CUDA when available)")
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Score every transcript's candidate cells with the model (background)")
        self.body.addWidget(self.predict_button)
        self.summary = QLabel("Train or load a model first.")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)

        form = self.group("Attention edges")
        self.edge_type = QComboBox()
        self.edge_type.addItems(list(EDGE_TYPES))
        add_row(form, "edges", self.edge_type,
                "transcript → nucleus: which nucleus each transcript attended to; "
                "transcript → transcript: which neighbours it attended to")
        self.att_layer = add_row(form, "GNN layer", spin(-10, 10, -1, "Attention layer (-1 = last)"))
        self.head = QComboBox()
        self.head.addItems(["mean", "max"])
        add_row(form, "head", self.head, "Mean or max over heads, or one head")
        self.top_k = add_row(form, "top k", spin(1, 50, 3, "Strongest edges kept per transcript"))
        self.min_weight = add_row(form, "min weight", dspin(0.0, 1.0, 0.0, "Drop edges weaker than this",
                                                            decimals=3, step=0.05))
        self.attention_button = QPushButton("Show attention")
        self.attention_button.setToolTip(f"Draw attention weights as a Vectors layer ('{LAYER_ATTENTION}')")
        self.body.addWidget(self.attention_button)
        self._build_explain()
        self.body.addStretch(1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._update_outlines)
        self._codes = None  # (result, AssignCodes) of the shown result, when it came from assign_with_codes
        self._assign_timer = QTimer(self)
        self._assign_timer.setSingleShot(True)
        self._assign_timer.setInterval(10)
        self._assign_timer.timeout.connect(self.reassign)

        self.cut_slider.valueChanged.connect(self._on_cut)
        self.cut_box.valueChanged.connect(self._on_cut_box)
        self.fragments.toggled.connect(lambda *_: self.reassign())
        for w in (self.max_frag_size, self.max_frag_extent, self.reach):
            w.valueChanged.connect(lambda *_: self._assign_timer.start())
        self.outlines.toggled.connect(lambda *_: self._timer.start())
        self.fill.toggled.connect(self._apply_fill)
        self.predict_button.clicked.connect(self.predict)
        self.attention_button.clicked.connect(self.show_attention)
        self.explain_button.toggled.connect(self._on_explain_mode)
        self.state.bundle_changed.connect(self.refresh_enabled)
        self.state.model_changed.connect(self._on_model)
        self.state.prediction_changed.connect(self.refresh_enabled)
        self.set_controls(self.predict_button, self.model_combo, self.attention_button, self.edge_type, self.att_layer,
                          self.head, self.top_k, self.min_weight, self.device_combo)
        self._on_model()

    # ---------------------------------------------------------------------------------------
    @property
    def score_cut(self) -> float:
        return float(self.cut_box.value())

    def set_score_cut(self, value: float) -> None:
        """Set the score cut and re-threshold now (programmatic; the slider coalesces drags)."""
        self.cut_box.setValue(float(value))  # moves the slider too, then re-thresholds
        self._assign_timer.stop()
        self.reassign()

    def _on_cut_box(self, value: float) -> None:
        v = int(round(value * CUT_STEPS))
        if self.cut_slider.value() != v:
            self.cut_slider.blockSignals(True)
            self.cut_slider.setValue(v)
            self.cut_slider.blockSignals(False)
        self._assign_timer.start()

    def fragment_rule(self) -> dict:
        v = self.predict_form.values()  # the reach at its lowest value: None (estimated)
        return {"max_fragment_size": int(self.max_frag_size.value()),
                **{k: v[k] for k in ("max_fragment_extent", "max_distance")}}

    def refresh_enabled(self) -> None:
        if self.busy:
            return
        st = self.state
        ready = st.bundle is not None and (st.model is not None or self._use_bundled())
        self.predict_button.setEnabled(ready)
        self.attention_button.setEnabled(st.bundle is not None and st.model is not None)
        has_pred = st.prediction is not None
        for w in (self.cut_slider, self.cut_box, self.fragments, self.max_frag_size, self.max_frag_extent,
                  self.reach):
            w.setEnabled(has_pred)
        if not ready:
            self.summary.setText("Build a graph (Data) and train or load a model (Train) first."
                                 if st.bundle is None else "Train or load a model first (Train).")
            self.counts.setText("")
            self.hist.set_data([], [])
        elif not has_pred:
            self.summary.setText(f"Ready: press Predict to segment with {self._chosen_label()}.")
            self.counts.setText("")
            self.hist.set_data([], [])
        elif st.stale:
            self.summary.setText(
                f"The layers show {st.model_label(st.prediction_model_id)}; the current model is "
                f"{st.model_label()}: press Predict to update them.")
        elif st.result is not None:
            self.summary.setText(self._summary_text(st.result))

    def _on_model(self) -> None:
        heads = None
        run = self.state.run
        if run is not None:
            heads = getattr(getattr(run, "model_config", None), "heads", None)
        self.head.clear()
        self.head.addItems(["mean", "max"] + [str(i) for i in range(int(heads or 0))])
        self._fill_model_combo()
        self.refresh_enabled()

    def _on_cut(self, value: int) -> None:
        self.cut_box.blockSignals(True)
        self.cut_box.setValue(value / CUT_STEPS)
        self.cut_box.blockSignals(False)
        # coalesce a drag's many valueChanged events into one re-threshold per event-loop pass
        self._assign_timer.start()

    # ---------------------------------------------------------------------------------------
    def predict(self) -> None:
        """Run the GNN over the graph (button); then threshold and draw."""
        if self.state.bundle is None or (self.state.model is None and not self._use_bundled()):
            self.guarded(self._raise, SeggerInputError("build a graph and train or load a model first"))
            return
        load_bundled = self._select_chosen_model()
        model, bundle = self.state.model, self.state.bundle
        cut, frags = self.score_cut, self.fragments.isChecked()
        device = self.device_combo.currentText()
        rule = self.fragment_rule()
        vocab = self.state.model_vocab()
        vrule = {"checkpoint": self.state.model_info.get("checkpoint"),
                "min_coverage": self.state.model_info.get("min_coverage")}
        prefer = self._outline_index()
        holder: dict = {}

        def job():
            nonlocal bundle, model, vocab
            from segger.prediction import PredictConfig, iter_predict

            if load_bundled:
                yield Progress("predict", 0, None, "loading the bundled pretrained model")
                model, vocab, info = _load_bundled()
                holder["bundled"] = (model, info)
                vrule.update(checkpoint=info["checkpoint"], min_coverage=info["min_coverage"])
            if vocab is not None and list(vocab.genes) != list(bundle.vocab.genes):
                # another gene panel than the model's: the CLI's one rule (refuse < 50 % coverage
                # unless the checkpoint declares its own, as the bundled model does; genes it does
                # not know get its unknown token)
                from segger.workflows import bundle_for_vocabulary

                yield Progress("predict", 0, None, "matching the genes to the model's vocabulary")
                bundle, holder["warnings"] = bundle_for_vocabulary(bundle, vocab, vrule["checkpoint"],
                                                                   min_coverage=vrule["min_coverage"])
                holder["bundle"] = bundle
            config = PredictConfig(score_cut=cut, fragments=frags, device=device, **rule)
            prediction = yield from iter_predict(model, bundle, config)
            result, codes = prediction.assign_with_codes(score_cut=cut, fragments=frags)
            yield Progress("predict", 1, 1, "preparing layers")
            points = result_to_points(result, codes=codes, outline_index=prefer)
            return prediction, (result, codes), points

        def done(out):
            if "bundled" in holder:  # the bundled model joins the session's history
                m, info = holder["bundled"]
                self.state.set_model(m, None, info, label="bundled pretrained model", source="bundled")
            self.vocab_note.setText(" ".join(holder.get("warnings") or []))
            self.vocab_note.setVisible(bool(holder.get("warnings")))
            if holder.get("warnings"):
                from napari.utils.notifications import show_warning

                for w in holder["warnings"]:
                    show_warning(w)
            if "bundle" in holder:  # the graph with the model's gene tokens replaces the old one
                self.state.set_bundle(holder["bundle"], {**self.state.bundle_source, "vocab": "model"})
            self._apply_prediction(out)

        self.job.start(job, desc="Predict", on_done=done)

    # --- which model Predict uses: one of the session's, or the bundled pretrained model ----
    def _build_model_source(self) -> None:
        from segger.napari._state import bundled_available

        form = self.group("Model")
        self.model_combo = QComboBox()
        add_row(form, "model", self.model_combo,
                "Which model Predict uses: one of this session's models (an earlier one = revert to it), "
                "or the bundled pretrained model (no training needed)")
        self.model_note = QLabel(bundled_note() if bundled_available() else "")
        self.model_note.setWordWrap(True)
        self.model_note.setOpenExternalLinks(True)
        self.model_note.setTextFormat(Qt.TextFormat.RichText)
        form.addRow(self.model_note)
        self.vocab_note = QLabel("")
        self.vocab_note.setWordWrap(True)
        self.vocab_note.setStyleSheet("QLabel { color: #ff8c3c; }")
        self.vocab_note.hide()
        form.addRow(self.vocab_note)
        self.model_combo.currentIndexChanged.connect(lambda *_: self.refresh_enabled())

    def _fill_model_combo(self) -> None:
        from segger.napari._state import bundled_available

        st = self.state
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        for m in st.models:
            combo.addItem(m["label"] + (" (current)" if m["id"] == st.model_id else ""), m["id"])
        if st.bundled_entry() is None and bundled_available():
            combo.addItem("bundled pretrained model (no training)", BUNDLED)
        i = combo.findData(st.model_id) if st.model is not None else combo.findData(BUNDLED)
        combo.setCurrentIndex(max(i, 0))
        combo.blockSignals(False)
        self.model_note.setVisible(self._use_bundled() or (st.model_entry() or {}).get("source") == "bundled")

    def _use_bundled(self) -> bool:
        """The model combo points at the bundled model not yet loaded in this session."""
        return self.model_combo.currentData() == BUNDLED

    def _chosen_label(self) -> str:
        data = self.model_combo.currentData()
        if data == BUNDLED:
            return "the bundled pretrained model"
        return self.state.model_label(data if isinstance(data, int) else None)

    def _select_chosen_model(self) -> bool:
        """Make the combo's model the current one (reverting to an earlier one); True when the
        bundled model still has to be loaded (in the job)."""
        data = self.model_combo.currentData()
        if data == BUNDLED:
            return True
        if isinstance(data, int) and data != self.state.model_id:
            self.state.revert(data)
        return False

    @staticmethod
    def _raise(exc):
        raise exc

    def _outline_index(self) -> dict:
        """Palette index per cell of the current outlines (the transcripts take the same colour)."""
        from segger.napari.layers import outline_index

        layer = find_layer(self.viewer, LAYER_CELLS)
        return outline_index(layer) if layer is not None else {}

    def _apply_prediction(self, out) -> None:
        prediction, (result, codes), points = out
        self.state.set_prediction(prediction)
        meta = points[1].setdefault("metadata", {}).setdefault("segger", {})
        meta["model"] = self.state.model_label()
        meta["model_id"] = self.state.model_id
        existing = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        replaced = existing is not None and len(existing.data) != len(points[0])
        layer = upsert_layer(self.viewer, points)
        layer.visible = True
        if existing is None or replaced:
            self._hide_inputs()
        self._show_histogram(prediction)
        self._set_result(result, layer_done=True, codes=codes)
        self._timer.start()
        self.refresh_enabled()

    def _show_histogram(self, prediction) -> None:
        score = np.asarray(prediction.best_score, dtype=float)
        has = np.asarray(prediction.best_bd) >= 0
        counts, edges = np.histogram(score[has], bins=40, range=(0.0, 1.0))
        self.hist.set_data(edges, counts)
        self.hist.set_marker(self.score_cut)

    def _hide_inputs(self) -> None:
        """Hide the input transcripts layer once the coloured result covers it."""
        src = (self.state.bundle_source or {}).get("points")
        layer = find_layer(self.viewer, src) if src else None
        if layer is not None:
            layer.visible = False

    def reassign(self) -> None:
        """Re-threshold the cached scores and recolour in place (slider / fragments toggle)."""
        pred = self.state.prediction
        if pred is None:
            return
        try:
            self._apply_rule(pred)
            result, codes = pred.assign_with_codes(score_cut=self.score_cut, fragments=self.fragments.isChecked())
            self._set_result(result, codes=codes)
        except Exception as exc:  # noqa: BLE001
            self.guarded(self._raise, exc)
            return
        self._timer.start()

    def _apply_rule(self, pred) -> None:
        """Fragment caps and reach of the widget onto the cached prediction (no GNN re-run)."""
        import dataclasses

        rule = self.fragment_rule()
        cfg = pred.config
        if (cfg.max_fragment_size, cfg.max_fragment_extent) != (rule["max_fragment_size"], rule["max_fragment_extent"]):
            pred.config = dataclasses.replace(cfg, max_fragment_size=rule["max_fragment_size"],
                                              max_fragment_extent=rule["max_fragment_extent"])
        before = pred.max_distance
        pred.set_rule(rule["max_distance"])  # a no-op when the reach is unchanged
        if pred.max_distance != before:
            self._show_histogram(pred)

    def _summary_text(self, result, counts=None) -> str:
        n_cells, n_frag, in_cell, in_frag, n_none = counts or assignment_counts(result)
        n = max(len(result), 1)
        pred = self.state.prediction
        reach = f"; reach {pred.max_distance:.1f} µm" if pred is not None else ""
        return (f"{n_cells:,} cells ({in_cell / n:.1%} of {len(result):,} transcripts), "
                f"{n_frag:,} fragments ({in_frag / n:.1%}), {n_none / n:.1%} unassigned "
                f"at score cut {self.score_cut:.3f}{reach}; made by {self.state.model_label(self.state.prediction_model_id)}")

    def _set_result(self, result, layer_done: bool = False, codes: Any = None) -> None:
        """Show ``result`` (a re-threshold, a prediction or a correction): recolour the result layer
        in place, publish it to the session, update the counts. ``codes``: its integer form
        (:meth:`segger.prediction.Prediction.assign_with_codes`), which makes this cheap."""
        self._codes = (result, codes) if codes is not None else None
        if not layer_done:
            layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
            if layer is not None and len(layer.data) == len(result):
                recolor_points(layer, result, codes, self._outline_index())
            else:
                upsert_layer(self.viewer, result_to_points(result, codes=codes, outline_index=self._outline_index()))
        self.state.set_result(result, {"score_cut": self.score_cut, "fragments": self.fragments.isChecked(),
                                       **self.fragment_rule()})
        counts = assignment_counts(result, codes)
        n_cells, n_frag, _, in_frag, n_none = counts
        n = max(len(result), 1)
        self.summary.setText(self._summary_text(result, counts))
        self.hist.set_marker(self.score_cut)
        self.counts.setText(
            f"<b>{n_cells:,}</b> cells · <b>{n_frag:,}</b> fragments · "
            f"<b>{n_none:,}</b> unassigned transcripts")
        if in_frag / n > FRAGMENT_WARNING:
            self.counts.setText(self.counts.text() + (
                f"<br><span style='color:#ff8c3c'>Warning: {in_frag / n:.0%} of the transcripts are in "
                "fragments (no nucleus): the score cut is probably too high, or the reach too short.</span>"))

    # --- outlines, off the GUI thread, debounced, stale results dropped ---------------------
    def _update_outlines(self) -> None:
        result = self.state.result
        if result is None:
            return
        job = OutlineJob.of(self.viewer)
        if not self.outlines.isChecked():
            job.remove()
            return
        codes = self._codes[1] if self._codes is not None and self._codes[0] is result else None
        job.start(result, codes, fill=self.fill.isChecked(), on_error=lambda exc: self.guarded(self._raise, exc))

    def _apply_fill(self, *_: Any) -> None:
        """Translucent fill on/off on the cells layer, in place (no outline recomputation)."""
        from segger.napari.layers.results import outline_face_colors

        layer = find_layer(self.viewer, LAYER_CELLS)
        if layer is None:
            return
        if _kind_name(layer) == "labels":
            layer.contour = 0 if self.fill.isChecked() else 1
            return
        layer.face_color = outline_face_colors(np.asarray(layer.edge_color), self.fill.isChecked())
        layer.metadata.setdefault("segger", {})["fill"] = self.fill.isChecked()
        layer.refresh()

    @property
    def outline_busy(self) -> bool:
        return OutlineJob.of(self.viewer).busy or self._timer.isActive()

    # ---------------------------------------------------------------------------------------
    def attention_params(self) -> dict:
        head = self.head.currentText()
        return dict(
            edge_type=EDGE_TYPES[self.edge_type.currentText()],
            layer=int(self.att_layer.value()),
            head=int(head) if head.isdigit() else head,
            top_k=int(self.top_k.value()),
            min_weight=float(self.min_weight.value()),
        )

    def show_attention(self) -> None:
        """Compute attention weights (background) and draw them as ``segger attention``."""
        if self.state.bundle is None or self.state.model is None:
            self.guarded(self._raise, SeggerInputError("build a graph and train or load a model first"))
            return
        model, bundle = self.state.model, self.state.bundle
        params = self.attention_params()
        params["device"] = self.device_combo.currentText()

        def job():
            from segger.prediction import attention_edges

            yield Progress("attention", 0, 2, "reading attention weights")
            edges = attention_edges(model, bundle, **params)
            yield Progress("attention", 1, 2, f"drawing {len(edges):,} edges")
            return attention_to_vectors(
                edges, bundle.transcripts, bundle.nuclei, params["edge_type"],
                metadata={"layer": params["layer"], "head": str(params["head"]),
                          "top_k": params["top_k"], "min_weight": params["min_weight"]},
            )

        def done(layer_data):
            upsert_layer(self.viewer, layer_data)
            n = len(layer_data[0])
            self.panel.status.setText(f"Attention: {n:,} edges ({'-'.join(params['edge_type'])})")

        self.job.start(job, desc="Attention", on_done=done)

    # --------------------------------------------------------------------------------------- explain
    def _build_explain(self) -> None:
        """The "Explain a picked transcript" mode: a click on a transcript draws its candidate
        nuclei (``segger explain``) and states the rule's decision in one line."""
        from segger.prediction.explain import WEIGHT_NOTE

        self.explain_button = QPushButton("Explain a picked transcript")
        self.explain_button.setCheckable(True)
        self.explain_button.setToolTip(f"Then click a transcript: '{LAYER_EXPLAIN}' draws a line to each candidate "
                                       "nucleus, coloured by its geometry probability, and the line below says why "
                                       "it went where it went")
        self.body.addWidget(self.explain_button)
        self.explain_legend = QLabel("0  geometry probability  1")
        self.explain_legend.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.explain_legend.setStyleSheet(
            "QLabel { color: white; padding: 1px; background: qlineargradient(x1:0, y1:0, x2:1, y2:0, "
            "stop:0 #0d0887, stop:0.25 #7e03a8, stop:0.5 #cc4778, stop:0.75 #f89540, stop:1 #f0f921); }")
        self.explain_legend.setToolTip(WEIGHT_NOTE)
        self.explain_legend.setVisible(False)
        self.body.addWidget(self.explain_legend)
        self.lift_legend = QLabel("½×   neighbour attention vs uniform   2×")
        self.lift_legend.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.lift_legend.setStyleSheet(
            "QLabel { color: black; padding: 1px; background: qlineargradient(x1:0, y1:0, x2:1, y2:0, "
            "stop:0 #8e0152, stop:0.25 #de77ae, stop:0.5 #f7f7f7, stop:0.75 #7fbc41, stop:1 #276419); }")
        self.lift_legend.setToolTip(
            f"'{LAYER_EXPLAIN_NEIGHBOURS}': the clicked transcript's neighbours whose last-layer attention differs "
            f"from uniform by at least {UNIFORM_TOLERANCE:.0%}; colour = lift = weight × number of neighbours "
            "(1 = the uniform share 1/n, 2 = twice it)")
        self.lift_legend.setVisible(False)
        self.body.addWidget(self.lift_legend)
        self.explain_label = QLabel("")
        self.explain_label.setWordWrap(True)
        self.explain_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.body.addWidget(self.explain_label)
        self._explain_pick = None

    def _on_explain_mode(self, on: bool) -> None:
        from segger.napari._correct_interaction import CorrectionInteraction
        from segger.prediction.explain import WEIGHT_NOTE

        if on and self._explain_pick is None:
            self._explain_pick = CorrectionInteraction(
                self.viewer, on_click=self._explain_click, on_key=lambda _a: None,
                enabled=self.explain_button.isChecked, on_error=lambda exc: self.guarded(self._raise, exc))
            self._explain_pick.connect()
        elif not on and self._explain_pick is not None:
            self._explain_pick.disconnect()
            self._explain_pick = None
        self.explain_legend.setVisible(on)
        self.lift_legend.setVisible(on)
        self.explain_label.setText(f"Click a transcript. {WEIGHT_NOTE}." if on else "")

    def _explain_click(self, y: float, x: float, **_: Any) -> None:
        row = self._explain_pick.hit_test(y, x)
        if row >= 0:
            self.explain(row)
            return
        cell = self._explain_pick.nucleus_at(self.state.bundle, y, x) if self.state.prediction is not None else None
        if cell is None:
            self.explain_label.setText("No transcript or nucleus under the click.")
            return
        from segger.prediction import explain_cell

        _, text = explain_cell(self.state.prediction, cell, score_cut=self.score_cut)
        self.explain_label.setText(text + ".")

    def explain(self, row: int) -> str:
        """Draw transcript ``row``'s candidate edges as ``segger explain`` and show why it was assigned."""
        from segger.napari.layers import edges_to_vectors
        from segger.prediction.explain import WEIGHT_NOTE, explain_transcript

        pred = self.state.prediction
        if pred is None:
            raise SeggerInputError("no prediction yet; run Predict first")
        table, text = explain_transcript(pred, row, score_cut=self.score_cut, fragments=self.fragments.isChecked())
        tx = pred.bundle.transcripts
        src = np.array([[float(tx[S.Y].iloc[row]), float(tx[S.X].iloc[row])]])
        src = np.repeat(src, len(table), axis=0)
        dst = self._outline_points(pred.bundle.nuclei, table, src)
        layer_data = edges_to_vectors(src, dst, table["geometry_p"].to_numpy(np.float32), name=LAYER_EXPLAIN,
                                      edge_width=0.4, features={
                                          S.BD_ID: table[S.BD_ID].astype(str).to_numpy(),
                                          "distance_um": table["distance_um"].to_numpy(),
                                          "expression_logit": table["expression_logit"].to_numpy(),
                                          "chosen": table["chosen"].to_numpy()},
                                      metadata={"kind": "explain", "tx_index": int(row), "explanation": text})
        layer_data[1]["edge_contrast_limits"] = (0.0, 1.0)
        layer_data[1]["edge_colormap"] = "plasma"
        upsert_layer(self.viewer, layer_data)
        neighbours = self._explain_neighbours(row)
        self.explain_label.setText(f"Transcript {row}: {text}.\n{neighbours}\n{WEIGHT_NOTE}.")
        return text

    def _explain_neighbours(self, row: int) -> str:
        """Draw the transcript's tx→tx neighbours whose attention differs from uniform
        (``segger explain neighbours``, coloured by lift) and say how many there are."""
        from segger.napari.layers import edges_to_vectors
        from segger.prediction import transcript_attention

        model = self.state.model if not self.state.stale else None
        old = find_layer(self.viewer, LAYER_EXPLAIN_NEIGHBOURS)
        if model is None or self.state.bundle is None:
            if old is not None:
                self.viewer.layers.remove(old)
            return "Neighbour attention: the model that made these layers is not loaded."
        att = transcript_attention(model, self.state.bundle, int(row))
        n = len(att)
        far = att[(att["lift"] - 1.0).abs() >= UNIFORM_TOLERANCE]
        if not len(far):
            if old is not None:
                self.viewer.layers.remove(old)
            return (f"Its {n} neighbours all get about uniform attention (within {UNIFORM_TOLERANCE:.0%} of 1/{n}): "
                    "none drawn.")
        tx = self.state.bundle.transcripts
        yx = tx[[S.Y, S.X]].to_numpy(np.float32)
        src = np.repeat(yx[[int(row)]], len(far), axis=0)
        layer_data = edges_to_vectors(src, yx[far["src"].to_numpy()], far["lift"].to_numpy(np.float32),
                                      name=LAYER_EXPLAIN_NEIGHBOURS, colormap="PiYG", edge_width=0.3,
                                      features={"neighbour": far["src"].to_numpy(),
                                                "attention": far["weight"].to_numpy()},
                                      metadata={"kind": "explain neighbours", "tx_index": int(row)})
        layer_data[1]["edge_contrast_limits"] = (0.0, 2.0)
        upsert_layer(self.viewer, layer_data)
        top = far.iloc[0]
        return (f"{len(far)} of its {n} neighbours get attention that differs from uniform by ≥ {UNIFORM_TOLERANCE:.0%} "
                f"(drawn in '{LAYER_EXPLAIN_NEIGHBOURS}'; strongest: transcript {int(top['src'])} at "
                f"{float(top['lift']):.1f}× the uniform 1/{n}).")

    @staticmethod
    def _outline_points(nuclei: pd.DataFrame, table: pd.DataFrame, src: np.ndarray) -> np.ndarray:
        """(y, x) of each candidate nucleus's outline point nearest the transcript (its centre without a polygon)."""
        dst = table[[S.Y, S.X]].to_numpy(float)
        if S.GEOMETRY not in nuclei.columns or not len(table):
            return dst
        import shapely

        geoms = nuclei[S.GEOMETRY].to_numpy()[table["bd_index"].to_numpy()]
        for j, g in enumerate(geoms):
            if g is None or getattr(g, "is_empty", True):
                continue
            line = shapely.shortest_line(shapely.Point(src[j, 1], src[j, 0]), g.boundary)
            (px, py), (qx, qy) = line.coords
            dst[j] = (qy, qx)
        return dst
