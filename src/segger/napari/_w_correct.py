"""*Correct & fine-tune* dock widget: fix assignments by clicking, learn from the fixes, re-predict.

Correction mode (keyboard-first; the keys are shown on the buttons):

* **select** transcripts of ``segger transcripts``: click one (Shift+click adds / removes), or draw
  rectangles (R), lassos (Shift+P), polygons (P) or ellipses (E) in the ``segger selection`` Shapes
  layer. A click is hit-tested with a KD-tree built once per layer data (microseconds per click
  instead of napari's full scan);
* **target** cell: press T (or the button) then click one of its transcripts or its nucleus, or
  Ctrl/Alt+click directly;
* **actions**: Assign [A] the selection to the target, Unassign [U] it, Merge [M] the selection's
  cell(s) into the target, Split [S] a cell by two seed transcripts (click, Shift+click) or by a
  line (L) drawn across it in ``segger selection``; Undo [Ctrl+Z] / Redo [Ctrl+Shift+Z];
* **Fine-tune [F]**: :func:`segger.corrections.finetune_and_repredict` in a worker (progress,
  Cancel), then the layers are updated in place and ``segger changes`` marks what else changed.

Every edit goes to a :class:`segger.corrections.CorrectionStore` saved atomically to a sidecar file
of the input data (restored when the same data is opened again); ``segger corrections`` marks the
corrected transcripts and ``segger transcripts`` is recoloured row by row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QGridLayout, QLabel, QPushButton, QWidget

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row, dspin, spin
from segger.napari._jobs import notify_error
from segger.napari._state import data_source_of
from segger.corrections.edits import apply_corrections, changed_transcripts
from segger.napari._correct_interaction import (  # noqa: F401 - re-exported
    CLICK_TOLERANCE_PX,
    SHORTCUTS,
    VIEWER_ONLY,
    CorrectionInteraction,
)
from segger.napari._correct_session import CorrectionSession
from segger.napari._outlines import OutlineJob
from segger.napari._viewer import find_layer, lock_layer, set_face_colors
from segger.napari.layers import (
    CHANGED_RGBA,
    CORRECTED_RGBA,
    LAYER_CELLS,
    LAYER_CHANGES,
    LAYER_CORRECTIONS,
    LAYER_SELECTED,
    LAYER_SELECTION,
    LAYER_TRANSCRIPTS,
    SELECTED_RGBA,
    UNITS,
    PointIndex,
    marker_points,
    result_layer_update,
    shapes_to_world_polygons,
    update_result_rows,
)
from segger.progress import Progress



def correction_sidecar(source: dict) -> Path | None:
    """Sidecar file of the corrections of the data in ``source`` (``{"path", "sample"}``).

    Data read from a folder or table: :func:`segger.corrections.sidecar_path` (next to it when
    writable, else the user cache). A bundled sample: always the cache folder that
    ``sidecar_path`` uses (never inside the installed package), named after the sample key so it
    survives re-installs. None when the source is unknown (corrections are then kept in memory).
    """
    from segger.corrections.store import SIDECAR_SUFFIX, sidecar_path

    path, sample = source.get("path"), source.get("sample")
    if sample:
        from segger.utils.outdir import user_cache_dir

        return user_cache_dir("corrections") / f"sample-{sample}{SIDECAR_SUFFIX}"
    if not path:
        return None
    return sidecar_path(path)


class _FinetunedRun:
    """What the other widgets need of ``state.run`` after a fine-tune: the weights, a history,
    the model's configuration, and ``save_checkpoint`` (Train's Save / Export's model file)."""

    def __init__(self, model, bundle, base_run, history: list[dict], config) -> None:
        self.model = model
        self.bundle = bundle
        self.history = list(history)
        self.config = config
        self.model_config = getattr(base_run, "model_config", None) or getattr(model, "config", None)
        self.info: dict = {"finetuned_from_corrections": True}

    def save_checkpoint(self, path: str | Path) -> Path:
        from segger.training import save_checkpoint

        if self.model_config is None:
            raise SeggerInputError("this model has no configuration to save; train or load a checkpoint first")
        save_checkpoint(path, self.model, self.model_config, self.bundle.vocab, self.bundle.params,
                        train_config={"finetune": self.config.to_dict()},
                        metrics=self.history[-1] if self.history else {})
        return Path(path)


def _button(text: str, key: str | None, tip: str) -> QPushButton:
    b = QPushButton(f"{text} [{key}]" if key else text)
    b.setToolTip(tip + (f"  Shortcut: {key}" if key else ""))
    return b


class CorrectWidget(SeggerWidget):
    """Fix assignments by clicking, fine-tune the model on the fixes, re-predict locally."""

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        # -- correction mode ---------------------------------------------------------------
        form = self.group("Correction mode")
        self.mode_button = QPushButton("Correction mode: off")
        self.mode_button.setCheckable(True)
        self.mode_button.setToolTip(
            "On: clicks on the canvas select transcripts of 'segger transcripts' and the keys shown "
            "on the buttons act on them (they override napari's keys on the segger layers)."
        )
        form.addRow(self.mode_button)
        hint = QLabel(
            "Click a transcript to select it (Shift+click adds); draw rectangles (R) or lassos "
            f"(Shift+P) in '{LAYER_SELECTION}' to select many. Pick the target cell with T then a "
            "click on one of its transcripts or its nucleus (or Ctrl/Alt+click)."
        )
        hint.setWordWrap(True)
        form.addRow(hint)
        self.selection_label = QLabel("Selection: none. Target: none.")
        self.selection_label.setWordWrap(True)
        form.addRow(self.selection_label)

        grid_box = QWidget()
        grid = QGridLayout(grid_box)
        grid.setContentsMargins(0, 0, 0, 0)
        k = {a: lab for a, (_, lab) in SHORTCUTS.items()}
        self.target_button = _button("Pick target", k["start_pick_target"],
                                     "The next click on a transcript or a nucleus picks the target cell.")
        self.clear_button = _button("Clear", k["clear_selection"], "Clear the selection and the target.")
        self.assign_button = _button("Assign", k["assign"], "Move the selected transcripts to the target cell.")
        self.unassign_button = _button("Unassign", k["unassign"], "Mark the selected transcripts unassigned.")
        self.merge_button = _button("Merge", k["merge"],
                                    "Move every transcript of the selection's cell(s) into the target cell.")
        self.split_button = _button(
            "Split", k["split"],
            "Split a cell (the target, or the cell of the selection) by two seed transcripts (click, "
            f"Shift+click: each transcript goes to the nearer seed) or by a line (L) drawn in '{LAYER_SELECTION}'.",
        )
        self.undo_button = _button("Undo", k["undo"], "Undo the last correction.")
        self.redo_button = _button("Redo", k["redo"], "Redo the last undone correction.")
        for i, b in enumerate((self.target_button, self.clear_button, self.assign_button, self.unassign_button,
                               self.merge_button, self.split_button, self.undo_button, self.redo_button)):
            grid.addWidget(b, i // 2, i % 2)
        form.addRow(grid_box)

        # -- corrections file --------------------------------------------------------------
        form = self.group("Corrections")
        self.file_label = QLabel("No data yet.")
        self.file_label.setWordWrap(True)
        form.addRow(self.file_label)
        self.export_button = QPushButton("Export corrections…")
        self.export_button.setToolTip("Write the corrections in force (one row per transcript) as CSV or parquet")
        form.addRow(self.export_button)

        # -- fine-tuning -------------------------------------------------------------------
        from segger.corrections import FinetuneConfig

        d = FinetuneConfig()
        form = self.group("Fine-tune on corrections")
        self.steps = add_row(form, "steps", spin(1, 1000, d.steps, "Optimiser steps on the corrections"))
        self.weight = add_row(form, "correction weight",
                              dspin(0.1, 100.0, d.correction_weight,
                                    "Loss weight of a corrected link relative to a nucleus link (replay)"))
        self.radius = add_row(form, "re-predict radius",
                              dspin(1.0, 1000.0, 30.0, "Transcripts within this distance of a correction are "
                                    "re-predicted", suffix=" µm"))
        self.margin = add_row(form, "graph margin",
                              dspin(0.0, 1000.0, 40.0, "Graph context around the re-predicted transcripts",
                                    suffix=" µm"))
        self.finetune_button = _button("Fine-tune", k["finetune"],
                                       "Fine-tune the model on the corrections (background), re-predict the "
                                       "neighbourhoods they touch and update the layers.")
        self.body.addWidget(self.finetune_button)
        self.summary = QLabel("Run Predict first; then correct and fine-tune.")
        self.summary.setWordWrap(True)
        self.body.addWidget(self.summary)
        self.body.addStretch(1)

        # -- state: the session model (no Qt) and the viewer bindings ---------------------
        self.active = False
        self.session = CorrectionSession(get_store=lambda: self.state.corrections)
        self.interaction = CorrectionInteraction(
            self.viewer, on_click=self.click, on_key=self._run_key,
            enabled=lambda: self.active and self.session.base_result is not None,
            on_error=lambda exc: self.guarded(self._raise, exc), layer=self._result_layer)
        self._history: list[dict] = []
        self.last_changed = np.zeros(0, dtype=np.int64)
        self._outline_timer = QTimer(self)
        self._outline_timer.setSingleShot(True)
        self._outline_timer.setInterval(600)
        self._outline_timer.timeout.connect(self._update_outlines)

        self.mode_button.toggled.connect(self.set_active)
        self.target_button.clicked.connect(self.start_pick_target)
        self.clear_button.clicked.connect(self.clear_selection)
        self.assign_button.clicked.connect(self.assign)
        self.unassign_button.clicked.connect(self.unassign)
        self.merge_button.clicked.connect(self.merge)
        self.split_button.clicked.connect(self.split)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.export_button.clicked.connect(self._export_dialog)
        self.finetune_button.clicked.connect(self.finetune)
        self.state.bundle_changed.connect(self._on_bundle)
        self.state.result_changed.connect(self._on_result)
        self.state.model_changed.connect(self.refresh_enabled)
        self.state.prediction_changed.connect(self.refresh_enabled)
        self.interaction.connect()
        self.set_controls(self.finetune_button, self.steps, self.weight, self.radius, self.margin)
        self._on_bundle()
        self._on_result()
    # =========================================================================================
    # data, store, result
    # =========================================================================================
    @property
    def store(self):
        return self.state.corrections

    @property
    def _cells(self) -> np.ndarray | None:
        """The cells shown (corrections applied): :attr:`CorrectionSession.cells` (benchmarks read it)."""
        return self.session.cells

    def _on_bundle(self) -> None:
        """New graph: find where its data came from and open that data's corrections."""
        if self.state.bundle is None:
            self.refresh_enabled()
            return
        source = data_source_of(self.viewer, (self.state.bundle_source or {}).get("points"))
        path = correction_sidecar(source)
        store = self.store
        same = store is not None and (
            (store.path is not None and path is not None and Path(store.path) == path)
            or (store.path is None and path is None)  # unknown source: keep the in-memory log
        )
        if same:
            self.refresh_enabled()  # same data (e.g. a rebuilt graph): keep the open log
            return
        self.open_corrections(path, source)

    def open_corrections(self, path: str | os.PathLike | None, source: dict | None = None) -> None:
        """Use the corrections in ``path`` (restored if the file exists; saved there on every change)."""
        from segger.corrections import CorrectionStore

        try:
            store = CorrectionStore.load(path) if path is not None else CorrectionStore(None, autosave=False)
            note = ""
        except Exception as exc:  # noqa: BLE001 - a bad sidecar must not block the session
            notify_error(exc)
            store = CorrectionStore(None, autosave=False)
            note = f" The file {path} could not be read: fix or delete it; corrections are not saved now."
        self.state.set_corrections(store, source or {})
        n = len(store)
        if path is None:
            self.file_label.setText("Data source unknown: corrections are kept in memory only; use Export."
                                    + note)
        else:
            self.file_label.setText(
                (f"Restored {n:,} correction(s) from " if n else "Corrections are saved to ") + f"{path}" + note
            )
        if self.session.base_result is not None:
            self._sync()
        self.refresh_enabled()

    def _on_result(self) -> None:
        result = self.state.result
        if result is None:
            self.session.clear_base()
            self.clear_selection()
            self.refresh_enabled()
            return
        if result is self.session.published:
            return  # our own corrected result coming back
        self._set_base(result)

    def _set_base(self, result: pd.DataFrame, full: bool = False) -> None:
        """A new model assignment (Predict, re-threshold, fine-tune): apply the corrections to it."""
        self.session.base_result = result  # for _result_layer
        layer = self._result_layer()
        corrected = None
        if not full and layer is not None and "corrected" in layer.features.columns:
            # Predict has just drawn this (uncorrected) result: only corrected rows differ
            corrected = layer.features["corrected"].to_numpy(dtype=bool)
        self.session.set_base(result, self.state.prediction, corrected)
        self._sync(full=full or layer is None)
        self.refresh_enabled()

    def _result_layer(self):
        layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        base = self.session.base_result
        if layer is None or base is None or len(layer.data) != len(base):
            return None
        return layer

    def corrected_cells(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(cell per transcript with corrections applied, corrected mask, effective corrections)."""
        return self.session.corrected_cells()

    def _sync(self, full: bool = False) -> None:
        """Bring the layers and the shared result in line with the corrections (the session says
        which rows changed; only those are redrawn, ≈0.1 s at a million points)."""
        up = self.session.update(full=full, shown=self.state.result)
        if up is None:
            return
        if up.result is not None and self.state.result is not up.result:
            self.state.set_result(up.result, None)
        layer = self._result_layer()
        if layer is not None:
            if up.rows is None:
                feats, colors = result_layer_update(layer.features, up.result, up.corrected)
            elif len(up.rows):
                feats, colors = update_result_rows(layer.features, layer.face_color, up.rows, up.cells,
                                                   up.kinds, up.flags)
            else:
                feats = None
            if feats is not None:
                layer.features = feats
                set_face_colors(layer, colors)
        self._draw_corrections(up.effective, up.corrected)
        if find_layer(self.viewer, LAYER_CELLS) is not None:
            self._outline_timer.start()
        self.state.corrections_changed.emit()
        self._update_labels()

    def _draw_corrections(self, eff: pd.DataFrame, corrected: np.ndarray) -> None:
        rows, feats = self.session.corrected_markers(eff, corrected)
        if self._result_layer() is None and not len(rows):
            return
        self._put_markers(LAYER_CORRECTIONS, self._world_yx(rows), CORRECTED_RGBA, feats, size=2.5)

    def _world_yx(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        index, r = self.interaction.index, self.session.base_result
        if index is not None and len(index) == len(r):
            return index.yx[rows]
        return np.column_stack([r[S.Y].to_numpy(float)[rows], r[S.X].to_numpy(float)[rows]])

    def _put_markers(self, name: str, yx: np.ndarray, rgba, features: dict, size: float = 2.5):
        """Create or update (in place) a ring-marker Points layer; keep the active layer active."""
        data, kwargs, _ = marker_points(yx, name=name, rgba=rgba, features=features or None, size=size)
        layer = find_layer(self.viewer, name)
        if layer is None:
            if len(data) == 0:
                return None
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_points(data, **kwargs)  # gets the keys in correction mode (inserted)
            lock_layer(layer)
            if active is not None:
                self.viewer.layers.selection.active = active
            return layer
        layer.data = data
        layer.features = kwargs["features"]
        if len(data):
            layer.size = size
            layer.face_color = kwargs["face_color"]
            layer.border_color = kwargs["border_color"]
        layer.refresh()
        return layer

    # =========================================================================================
    # correction mode: the interaction module's callbacks
    # =========================================================================================
    def set_active(self, on: bool) -> None:
        """Correction mode on/off: the canvas click handler and the keys (also via the button)."""
        on = bool(on)
        if self.mode_button.isChecked() != on:
            self.mode_button.setChecked(on)  # re-enters through toggled
            return
        self.active = on
        self.mode_button.setText(f"Correction mode: {'on' if on else 'off'}")
        if on:
            self._ensure_selection_layer()
            self.interaction.bind_all()
            self.interaction.prebuild_index()
        else:
            self.interaction.unbind_all()
            self.session.picking = False
        self._update_labels()

    def _ensure_selection_layer(self):
        layer = find_layer(self.viewer, LAYER_SELECTION)
        if layer is None:
            layer = self.viewer.add_shapes(
                name=LAYER_SELECTION, edge_color="cyan", face_color=[0, 1, 1, 0.08], edge_width=0.5,
                units=UNITS, metadata={"segger": {"kind": "selection"}},
            )
            layer.mode = "pan_zoom"
            layer.events.data.connect(lambda *_: self._update_labels())
        return layer

    def _run_key(self, action: str) -> None:
        if not self.active:
            return
        if action == "finetune" and self.busy:
            return
        getattr(self, action)()

    @staticmethod
    def _raise(exc):
        raise exc

    def click(self, y: float, x: float, add: bool = False, target: bool = False) -> int:
        """A click at world (y, x) µm: select the transcript hit (``add``: toggle it into the
        selection), or pick the target cell (``target`` or after Pick target [T]). Returns the hit row."""
        if target or self.session.picking:
            self.session.picking = False
            self.pick_target_at(y, x)
            self._clear_error()
            return -1
        row = self.hit_test(y, x)
        if row < 0:
            if not add:
                self.clear_selection()
            return row
        self.session.click_row(row, add)
        self._clear_error()
        self._selection_changed()
        return row

    def _clear_error(self) -> None:
        """A success replaces the error line of an earlier miss."""
        if self.panel.status.text().startswith("error:"):
            self.panel.status.setText("")

    def point_index(self) -> PointIndex:
        """KD-tree of ``segger transcripts`` in world µm (:class:`._correct_interaction.CorrectionInteraction`)."""
        return self.interaction.point_index()

    def hit_test(self, y: float, x: float, max_dist: float | None = None) -> int:
        """Row of the transcript nearest to world (y, x) µm within the click tolerance, or -1."""
        return self.interaction.hit_test(y, x, max_dist)

    def nucleus_at(self, y: float, x: float) -> str | None:
        """bd id of the nucleus polygon containing world (y, x) µm."""
        return self.interaction.nucleus_at(self.state.bundle, y, x)

    # =========================================================================================
    # selection and target
    # =========================================================================================
    def selection_rows(self) -> np.ndarray:
        """Rows selected by clicks and by the areas drawn in ``segger selection`` (sorted)."""
        areas, _ = shapes_to_world_polygons(find_layer(self.viewer, LAYER_SELECTION))
        inside = self.interaction.inside(areas) if areas and self.session.base_result is not None else None
        return self.session.selection_rows(inside)

    def select_rows(self, rows, add: bool = False) -> None:
        """Select transcripts by row (programmatic selection)."""
        self.session.select_rows(rows, add)
        self._selection_changed()

    def _clear_drawn(self) -> None:
        layer = find_layer(self.viewer, LAYER_SELECTION)
        if layer is not None and len(layer.data):
            layer.data = []

    def clear_selection(self) -> None:
        self.session.clear_selection()
        self._clear_drawn()
        self._selection_changed()

    def start_pick_target(self) -> None:
        """The next click picks the target cell (button / T). A drawing tool of ``segger selection``
        (lasso, rectangle, …) is put down first, so the click picks instead of drawing."""
        sel = find_layer(self.viewer, LAYER_SELECTION)
        if sel is not None and str(sel.mode) != "pan_zoom":
            sel.mode = "pan_zoom"
        self.session.start_pick_target()
        self._update_labels()

    def pick_target_at(self, y: float, x: float) -> str | None:
        """Target = the cell of the transcript clicked, else the nucleus clicked."""
        self.session.require_result()
        cell = self.session.target_at(self.hit_test(y, x), lambda: self.nucleus_at(y, x))
        self._update_labels()
        return cell

    def set_target(self, cell: str | None) -> None:
        self.session.set_target(cell)
        self._update_labels()

    @property
    def target(self) -> str | None:
        return self.session.target

    def _selection_changed(self) -> None:
        if self.session.base_result is not None:
            rows = np.asarray(self.session.clicked, dtype=np.int64)
            if len(rows) or find_layer(self.viewer, LAYER_SELECTED) is not None:
                self._put_markers(LAYER_SELECTED, self._world_yx(rows), SELECTED_RGBA, {}, size=2.0)
        self._update_labels()

    def _update_labels(self) -> None:
        if not self.session.has_result:
            self.selection_label.setText(self.session.selection_text(np.zeros(0, np.int64)))
            return
        rows = self.selection_rows() if self.active or self.session.clicked else np.zeros(0, np.int64)
        self.selection_label.setText(self.session.selection_text(rows))

    # =========================================================================================
    # actions: the session's edits, then the layers
    # =========================================================================================
    def _require_result(self) -> None:
        self.session.require_result()

    def _act(self, edit) -> int | None:
        try:
            self.session.require_result()
            n, verb = edit()
        except Exception as exc:  # noqa: BLE001 - one line to the user, UI stays usable
            self.guarded(self._raise, exc)
            return None
        self._clear_drawn()  # the drawn selection is consumed
        self._sync()
        self._selection_changed()
        self.panel.status.setText(f"{verb}: {n:,} transcript(s); {len(self.store):,} correction(s) "
                                  f"({self.session.where_saved()})")
        self.refresh_enabled()
        return n

    def assign(self) -> int | None:
        """Assign [A]: the selected transcripts go to the target cell."""
        return self._act(lambda: self.session.assign(self.selection_rows()))

    def unassign(self) -> int | None:
        """Unassign [U]: the selected transcripts become unassigned."""
        return self._act(lambda: self.session.unassign(self.selection_rows()))

    def merge(self) -> int | None:
        """Merge [M]: every transcript of the selection's cell(s) moves into the target cell."""
        return self._act(lambda: self.session.merge(self.selection_rows()))

    def split(self) -> int | None:
        """Split [S]: two seed transcripts (each transcript goes to the nearer seed) or a line
        drawn in ``segger selection``; the part with the cell's nucleus keeps the cell id."""
        def edit():
            selected = self.selection_rows() if self.session.target is None and not self.session.clicked else []
            _, lines = shapes_to_world_polygons(find_layer(self.viewer, LAYER_SELECTION))
            return self.session.split(selected, self._world_yx, lines, self._nucleus_centre)
        return self._act(edit)

    def _nucleus_centre(self, cell: str) -> np.ndarray | None:
        bundle = self.state.bundle
        if bundle is None:
            return None
        nuc = bundle.nuclei
        hit = np.flatnonzero(nuc[S.BD_ID].astype(str).to_numpy() == str(cell))
        if len(hit) == 0:
            return None
        return np.array([float(nuc[S.Y].iloc[hit[0]]), float(nuc[S.X].iloc[hit[0]])])

    def undo(self) -> bool:
        """Undo [Ctrl+Z] the last correction."""
        return self._undo_redo("undo")

    def redo(self) -> bool:
        """Redo [Ctrl+Shift+Z] the last undone correction."""
        return self._undo_redo("redo")

    def _undo_redo(self, which: str) -> bool:
        try:
            done = self.session.undo_redo(which)
        except Exception as exc:  # noqa: BLE001
            self.guarded(self._raise, exc)
            return False
        if not done:
            from napari.utils.notifications import show_info

            show_info(f"nothing to {which}")
            return False
        self._sync()
        self.panel.status.setText(f"{which.capitalize()}: {len(self.store):,} correction(s) in force")
        self.refresh_enabled()
        return True

    def export_corrections(self, path: str | os.PathLike) -> Path | None:
        """Write the corrections in force (CSV, or parquet by suffix)."""
        if self.store is None:
            self.guarded(self._raise, SeggerInputError("no corrections yet; build the graph and correct first"))
            return None
        out = self.guarded(self.store.export, path)
        if out is not None:
            self.panel.status.setText(f"Exported {len(self.store):,} correction(s) to {out}")
        return out

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export corrections", "segger_corrections.csv",
                                              "CSV (*.csv);;Parquet (*.parquet)")
        if path:
            self.export_corrections(path)

    # =========================================================================================
    # fine-tuning
    # =========================================================================================
    def refresh_enabled(self) -> None:
        has = self.session.can_edit
        for b in (self.assign_button, self.unassign_button, self.merge_button, self.split_button,
                  self.target_button, self.clear_button):
            b.setEnabled(has)
        self.undo_button.setEnabled(self.session.can_undo)
        self.redo_button.setEnabled(self.session.can_redo)
        self.export_button.setEnabled(self.store is not None)
        if not self.busy:
            self.finetune_button.setEnabled(self.state.model is not None and self.state.prediction is not None)
        if self.session.base_result is None:
            self.summary.setText("Run Predict first; then correct and fine-tune.")
        elif self.summary.text().startswith("Run Predict first"):
            self.summary.setText("Turn Correction mode on, click transcripts, pick a target (T), press A/U/M/S; "
                                 "then Fine-tune [F].")
        self._update_labels()

    def finetune_config(self):
        from segger.corrections import FinetuneConfig

        return FinetuneConfig(steps=int(self.steps.value()), correction_weight=float(self.weight.value()))

    def finetune(self) -> None:
        """Fine-tune [F] on the corrections in a worker; then update the layers in place."""
        try:
            self._require_result()
            if self.state.model is None or self.state.prediction is None:
                raise SeggerInputError("fine-tuning needs a trained model and its prediction; run Train and Predict first")
            if len(self.store) == 0:
                raise SeggerInputError("no corrections to learn from yet; assign, unassign, merge or split some "
                                       "transcripts first")
        except Exception as exc:  # noqa: BLE001
            self.guarded(self._raise, exc)
            return
        from segger.corrections import finetune_and_repredict

        eff = self.store.effective().copy()
        model, pred = self.state.model, self.state.prediction
        base_run = self.state.run
        cfg = self.finetune_config()
        radius, margin = float(self.radius.value()), float(self.margin.value())
        params = dict(self.state.result_params or {})
        before = self.session.cells.astype(str)
        tx_index = self.session.tx_index
        self._history = []

        def job():
            t0 = time.perf_counter()
            new_model, new_pred, _after, _changed = yield from finetune_and_repredict(
                model, pred, eff, cfg, radius=radius, margin=margin)
            yield Progress("predict", 1, 1, "applying the new assignment")
            base = new_pred.assign(score_cut=params.get("score_cut"), fragments=params.get("fragments"))
            after = apply_corrections(base, eff)  # the one rule (as the CLI's fine-tune applies them)
            cells = after[S.SEGGER_CELL_ID].to_numpy(dtype=object)
            corrected = after["corrected"].to_numpy(dtype=bool)
            ok = tx_index.get_indexer(eff["transcript_id"]) >= 0
            changed = changed_transcripts(before, cells, exclude=corrected)
            moved_to = cells[changed].astype(str)
            return dict(model=new_model, prediction=new_pred, base=base, changed=changed,
                        changed_from=before[changed], changed_to=moved_to,
                        seconds=time.perf_counter() - t0, n_corrections=int(ok.sum()))

        def on_yield(ev):
            if isinstance(ev, Progress) and ev.metrics and "correction_loss" in ev.metrics:
                self._history.append(dict(ev.metrics))

        def done(out):
            self._apply_finetune(out, base_run, cfg)

        def cancelled():
            self.summary.setText("Fine-tune cancelled: the model and the assignments are unchanged.")

        self.job.start(job, desc="Fine-tune", on_yield=on_yield, on_done=done, on_cancel=cancelled,
                       total=cfg.steps)

    def _apply_finetune(self, out: dict, base_run, cfg) -> None:
        bundle = out["prediction"].bundle
        run = _FinetunedRun(out["model"], bundle, base_run, self._history, cfg)
        run.info.update(seconds=out["seconds"], n_corrections=out["n_corrections"])
        n = (self.state.models[-1]["id"] + 1) if self.state.models else 1
        self.state.set_model(out["model"], run, {"finetuned": True, "n_corrections": out["n_corrections"],
                                                 "vocab": bundle.vocab,
                                                 "history": list(self._history), "seconds": out["seconds"]},
                             label=f"model {n} (fine-tuned on {out['n_corrections']:,} corrections)")
        self.state.set_prediction(out["prediction"])
        self._set_base(out["base"], full=True)
        changed = np.asarray(out["changed"], dtype=np.int64)
        self.last_changed = changed
        feats = {S.TX_ID: self.session.tx_ids[changed], "before": out["changed_from"], "after": out["changed_to"]}
        if len(changed) or find_layer(self.viewer, LAYER_CHANGES) is not None:
            self._put_markers(LAYER_CHANGES, self._world_yx(changed), CHANGED_RGBA, feats, size=2.0)
        last = self._history[-1] if self._history else {}
        loss = last.get("correction_loss")
        self.summary.setText(
            f"Fine-tuned on {out['n_corrections']:,} correction(s) in {out['seconds']:.1f} s"
            + (f" (correction loss {loss:.3f})" if loss is not None else "")
            + f"; {len(changed):,} other transcript(s) changed cell (ringed in '{LAYER_CHANGES}')."
        )
        self.panel.status.setText(f"Fine-tune: done, {len(changed):,} other transcript(s) changed cell")
        self.refresh_enabled()

    # =========================================================================================
    # cell outlines follow the corrections (debounced, off the GUI thread)
    # =========================================================================================
    def _update_outlines(self) -> None:
        """Outlines follow the edits (only when the user shows them)."""
        result = self.state.result
        if result is None or find_layer(self.viewer, LAYER_CELLS) is None:
            return
        OutlineJob.of(self.viewer).start(result, on_error=notify_error)

    @property
    def outline_busy(self) -> bool:
        return OutlineJob.of(self.viewer).busy or self._outline_timer.isActive()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.interaction.disconnect()
        super().closeEvent(event)
