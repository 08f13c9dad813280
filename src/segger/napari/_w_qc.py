"""*QC* dock widget: metrics table, score histogram, MECR-flagged cells, click a cell for its stats."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
)

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari._common import SeggerWidget, add_row
from segger.napari._plots import HistogramPlot
from segger.napari._viewer import find_layer, zoom_to
from segger.napari.layers import LAYER_CELLS, LAYER_HIGHLIGHT, LAYER_TRANSCRIPTS
from segger.progress import Progress
from segger.validation import qc_rows

NO_REFERENCE = "(none)"


def _cell_yx(result, cell_id: str) -> np.ndarray:
    m = result[S.SEGGER_CELL_ID].astype(str).to_numpy() == str(cell_id)
    return np.column_stack([result[S.Y].to_numpy(float)[m], result[S.X].to_numpy(float)[m]])


def zoom_to_cell(viewer, result, cell_id: str) -> None:
    """Centre the canvas on a cell and zoom so that it fills about a third of the view."""
    if result is None:
        return
    yx = _cell_yx(result, cell_id)
    if not len(yx):
        return
    lo, hi = yx.min(axis=0), yx.max(axis=0)
    zoom_to(viewer, tuple((lo + hi) / 2), float(np.max(hi - lo)))


def highlight_cell(viewer, result, cell_id: str) -> None:
    """Ring the picked cell (its transcripts' hull, 1 µm out) in ``segger highlight``."""
    import shapely

    from segger.napari._viewer import upsert_layer
    from segger.napari.layers import polygons_to_yx

    yx = _cell_yx(result, cell_id) if result is not None else np.zeros((0, 2))
    if not len(yx):
        return
    hull = shapely.MultiPoint(yx[:, ::-1]).convex_hull.buffer(1.0)
    ring = polygons_to_yx([hull])
    data = (ring, dict(name=LAYER_HIGHLIGHT, shape_type="polygon", edge_color="yellow", edge_width=0.8,
                       face_color=[1, 1, 0, 0.0], features={"cell_id": [str(cell_id)]},
                       metadata={"segger": {"kind": "highlight", "cell_id": str(cell_id)}}), "shapes")
    upsert_layer(viewer, data)


def cell_stats(result, cell_id: str, reference_column: str | None = None) -> dict:
    """Stats of one segger cell from the result table (vectorised masks, no loops over cells)."""
    ids = result[S.SEGGER_CELL_ID].astype(str).to_numpy()
    m = ids == str(cell_id)
    n = int(m.sum())
    out: dict = {"cell_id": str(cell_id), "n_transcripts": n}
    if n == 0:
        return out
    sub = result.loc[m]
    out["mean_score"] = float(sub[S.SCORE].mean())
    out["centroid"] = (float(sub[S.X].mean()), float(sub[S.Y].mean()))
    out["assignment"] = {str(k): int(v) for k, v in sub[S.ASSIGNMENT].astype(str).value_counts().items()}
    out["top_genes"] = [(str(g), int(c)) for g, c in sub[S.GENE].astype(str).value_counts().head(8).items()]
    if reference_column and reference_column in sub.columns:
        ref = sub[reference_column].astype(str)
        ref = ref[~ref.isin(["UNASSIGNED", "None", "nan", "-1", ""])]
        if len(ref):
            vc = ref.value_counts()
            out["reference"] = (str(vc.index[0]), float(vc.iloc[0] / n))
        else:
            out["reference"] = (S.UNASSIGNED, 0.0)
    return out


def cells_without_fragments(result):
    """(result with fragment transcripts unassigned, number of fragments, their transcripts)."""
    if S.ASSIGNMENT not in result.columns:
        return result, 0, 0
    frag = (result[S.ASSIGNMENT].astype(str) == "fragment").to_numpy()
    if not frag.any():
        return result, 0, 0
    out = result.copy(deep=False)
    ids = out[S.SEGGER_CELL_ID].to_numpy(dtype=object).copy()
    n_frag = int(len(np.unique(ids[frag].astype(str))))
    ids[frag] = S.UNASSIGNED
    out[S.SEGGER_CELL_ID] = ids
    return out, n_frag, int(frag.sum())


def format_cell_stats(st: dict) -> str:
    if st.get("n_transcripts", 0) == 0:
        return f"cell {st.get('cell_id')}: no transcripts at this score cut"
    lines = [
        f"<b>cell {st['cell_id']}</b>: {st['n_transcripts']:,} transcripts, mean score {st['mean_score']:.3f}",
        "assignment: " + ", ".join(f"{k} {v:,}" for k, v in st["assignment"].items()),
        "top genes: " + ", ".join(f"{g} ({c})" for g, c in st["top_genes"]),
    ]
    if "reference" in st:
        rid, frac = st["reference"]
        lines.append(f"vendor cell: {rid} holds {frac:.0%} of its transcripts")
    return "<br>".join(lines)


class QCWidget(SeggerWidget):
    """QC of the current result; compare with the vendor cell id; inspect single cells."""

    cancellable = False

    def __init__(self, napari_viewer: Any, parent=None) -> None:
        super().__init__(napari_viewer, parent)
        form = self.group("Settings")
        self.reference = QComboBox()
        self.reference.addItem(NO_REFERENCE)
        add_row(form, "Reference", self.reference,
                "Column of the vendor's cell id to compare with (e.g. Xenium cell_id)")
        self.pick = QCheckBox("Pick cells by clicking")
        self.pick.setToolTip("Click a transcript on the canvas to show the stats of its Segger cell")
        self.pick.setChecked(True)
        form.addRow(self.pick)
        self.qc_button = QPushButton("Compute QC")
        self.body.addWidget(self.qc_button)
        self.counts = QLabel("")
        self.counts.setWordWrap(True)
        self.body.addWidget(self.counts)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["metric", "segger", "reference"])
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(180)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setTextElideMode(Qt.TextElideMode.ElideNone)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumWidth(0)
        self.table.setWordWrap(True)
        self.body.addWidget(self.table)
        self.hist = HistogramPlot(title="score histogram (red: score cut)")
        self.body.addWidget(self.hist)
        mecr_label = QLabel(
            "MECR (mutually exclusive co-expression rate): gene pairs that are almost never seen in "
            "the same nucleus (e.g. markers of two cell types); a cell holding both likely merges "
            "two cells. Lower is better. Cells holding such pairs (click to zoom to one):")
        mecr_label.setToolTip("Pairs among the 60 most detected nuclear genes with a co-occurrence rate ≤ 0.03 "
                              "in nuclei; MECR is averaged over cells with ≥ 5 transcripts")
        mecr_label.setWordWrap(True)
        self.body.addWidget(mecr_label)
        self.flagged = QListWidget()
        self.flagged.setMaximumHeight(120)
        self.flagged.setToolTip("Click to inspect; double-click to centre the view on the cell")
        self.body.addWidget(self.flagged)
        self.cell_info = QLabel("Click a transcript or a flagged cell.")
        self.cell_info.setWordWrap(True)
        self.body.addWidget(self.cell_info)
        from segger.napari._w_review import ReviewPanel  # cell table + review queue (issue 12 #6, #11)

        self.review = ReviewPanel(self.viewer)
        self.group("Review: cell table and queue").addRow(self.review)
        self.body.addStretch(1)
        self.report: dict | None = None
        self._tree = None
        self._tree_for = None

        self.qc_button.clicked.connect(self.compute)
        self.flagged.itemClicked.connect(lambda it: self.select_cell(it.data(256), center=True))
        self.state.result_changed.connect(self._on_result)
        self.state.cell_selected.connect(self._show_cell)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self.set_controls(self.qc_button, self.reference)
        self._on_result()

    # ---------------------------------------------------------------------------------------
    def refresh_enabled(self) -> None:
        if not self.busy:
            self.qc_button.setEnabled(self.state.result is not None)

    def _on_result(self) -> None:
        result = self.state.result
        current = self.reference.currentText()
        self.reference.clear()
        self.reference.addItem(NO_REFERENCE)
        if result is not None and S.CELL_ID in result.columns:
            self.reference.addItem(S.CELL_ID)
            self.reference.setCurrentText(current if current != NO_REFERENCE or self.report else S.CELL_ID)
        if result is not None:
            self.hist.set_marker(self.state.result_params.get("score_cut"))
            if self.report is not None:
                self.cell_info.setText("Result changed; press Compute QC to update the metrics.")
        self.refresh_enabled()

    def reference_column(self) -> str | None:
        ref = self.reference.currentText()
        return None if ref in ("", NO_REFERENCE) else ref

    def compute(self) -> None:
        """Compute the QC report of the current result (background)."""
        result = self.state.result
        if result is None:
            self.guarded(self._raise, SeggerInputError("no result yet; run Predict first"))
            return
        ref = self.reference_column()

        def job():
            from segger.validation import qc_report

            yield Progress("qc", 0, 1, "computing metrics")
            # cell metrics over nucleus-anchored cells only (as Predict counts them); fragments
            # are reported apart (core helper wanted: qc_report(..., fragments_as_cells=False))
            cells_only, n_frag, n_frag_tx = cells_without_fragments(result)
            report = qc_report(cells_only, reference_column=ref)
            report["n_fragments"], report["n_fragment_transcripts"] = n_frag, n_frag_tx
            if S.ASSIGNMENT in result.columns:
                report["assignment_counts"] = {str(k): int(v) for k, v in
                                               result[S.ASSIGNMENT].astype(str).value_counts().items()}
            return report

        self.job.start(job, desc="QC", on_done=self._apply)

    @staticmethod
    def _raise(exc):
        raise exc

    def _apply(self, report: dict) -> None:
        self.report = report
        rows = qc_rows(report)
        n_tx = max(int(report.get("n_transcripts") or 0), 1)
        rows.insert(3, ("fragments (no nucleus; not counted as cells)",
                        f"{report.get('n_fragments', 0):,} ({report.get('n_fragment_transcripts', 0) / n_tx:.1%} of transcripts)",
                        "-"))
        tpc = report.get("transcripts_per_cell") or {}
        self.counts.setText(
            f"<b>{int(tpc.get('n_cells') or 0):,}</b> cells holding {report.get('fraction_assigned') or 0:.1%} of "
            f"the transcripts; <b>{report.get('n_fragments', 0):,}</b> fragments apart")
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)
        self.table.resizeRowsToContents()
        score = report.get("score") or {}
        self.hist.set_data(score.get("bins") or [], score.get("counts") or [])
        self.hist.set_marker(self.state.result_params.get("score_cut"))
        self.flagged.clear()
        cells = report.get("mecr_flagged_cells") or []
        counts = report.get("mecr_flagged_counts") or [0] * len(cells)
        for cid, n in zip(cells, counts):
            item = QListWidgetItem(f"{cid}  ({n} exclusive pair{'s' if n != 1 else ''})")
            item.setData(256, str(cid))  # Qt.UserRole
            self.flagged.addItem(item)
        if not cells:
            item = QListWidgetItem("none" if report.get("mecr") is not None else "needs a reference column")
            self.flagged.addItem(item)
        self.panel.status.setText("QC: done")

    # --- single cells -----------------------------------------------------------------------
    def select_cell(self, cell_id: str | None, center: bool = False) -> None:
        if not cell_id:
            return
        self.state.cell_selected.emit(str(cell_id))
        if center:
            zoom_to_cell(self.viewer, self.state.result, str(cell_id))

    def _show_cell(self, cell_id: str) -> None:
        result = self.state.result
        if result is None:
            return
        st = cell_stats(result, cell_id, self.reference_column())
        self.cell_info.setText(format_cell_stats(st))
        highlight_cell(self.viewer, result, cell_id)
        layer = find_layer(self.viewer, LAYER_CELLS)
        if layer is not None and type(getattr(layer, "__wrapped__", layer)).__name__ == "Labels":
            try:
                feats = layer.features
                hit = np.flatnonzero(feats["cell_id"].astype(str).to_numpy() == str(cell_id))
                if hit.size:
                    layer.selected_label = int(feats["index"].to_numpy()[hit[0]])
            except Exception:  # noqa: BLE001 - highlighting is optional
                pass

    def cell_at(self, y: float, x: float, max_dist: float = 3.0) -> str | None:
        """Segger cell id of the transcript nearest to world (y, x) µm, within ``max_dist``."""
        result = self.state.result
        if result is None:
            return None
        if self._tree_for is not result:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(np.column_stack([result[S.X].to_numpy(float), result[S.Y].to_numpy(float)]))
            self._tree_for = result
        d, i = self._tree.query([x, y], k=1)
        if not np.isfinite(d) or d > max_dist:
            return None
        return str(result[S.SEGGER_CELL_ID].iloc[int(i)])

    def _on_mouse(self, viewer, event):
        """Viewer mouse callback: a click (press + release without drag) picks a cell."""
        if not self.pick.isChecked() or self.state.result is None:
            return
        start = tuple(event.position)
        yield
        while event.type == "mouse_move":
            yield
        if event.type == "mouse_release" and np.allclose(start, tuple(event.position), atol=1e-6):
            top = find_layer(self.viewer, LAYER_TRANSCRIPTS)
            pos = np.asarray(event.position)[-2:]
            if top is not None:
                pos = (pos - np.asarray(top.translate)[-2:]) / np.asarray(top.scale)[-2:]
            cid = self.cell_at(float(pos[0]), float(pos[1]))
            if cid is not None:
                self.state.cell_selected.emit(cid)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.review.unbind_keys()
        try:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        except ValueError:
            pass
        super().closeEvent(event)
