"""Review section of the *Review/QC* step (issue 12 items 6 and 11).

* a sortable **cell table** (one row per cell: id, kind, transcripts, area, mean score, MECR
  pairs, review reason); clicking a row selects the cell (``state.cell_selected``: the QC step
  rings it in ``segger highlight``) and centres and zooms the camera on its centroid;
* **colour by** cell / gene / score / QC metric (the cell's review priority) for
  ``segger transcripts``, with a small legend;
* the **review queue** (:func:`segger.validation.review_queue`): Next / Previous (``]`` / ``[``
  on the viewer) jump the camera to the doubtful cells in order and show why each is queued.
  The table and the queue are rebuilt when the result changes (Predict, corrections).

Per-cell numbers come from :func:`segger.export.cell_boundaries` (convex outlines: area and
centroid) and the queue's own ``mecr_pairs`` / ``reason`` columns: no second scorer here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from segger import schema as S
from segger.napari._state import get_state
from segger.napari._viewer import find_layer, set_face_colors, zoom_to
from segger.napari.layers import LAYER_TRANSCRIPTS

#: (column of the table frame, header)
TABLE_COLUMNS = (
    ("cell_id", "cell"),
    ("kind", "kind"),
    ("n_transcripts", "transcripts"),
    ("area_um2", "area µm²"),
    ("mean_score", "mean score"),
    ("mecr_pairs", "MECR pairs"),
    ("reason", "review"),
)
COLOR_MODES = ("cell", "gene", "score", "QC metric")
NEXT_KEY, PREV_KEY = "]", "["
UNASSIGNED_IDS = (S.UNASSIGNED, "", "None", "nan", "-1")
LEGEND_STOPS = 5
LEGEND_GENES = 10


# --------------------------------------------------------------------------------------------
# tables (no Qt)
# --------------------------------------------------------------------------------------------
def cell_table(result: pd.DataFrame, queue: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per assigned cell: ``cell_id, kind, n_transcripts, area_um2, mean_score,
    mecr_pairs, priority, reason, x, y`` (x, y: the outline centroid, µm)."""
    from segger.export import cell_boundaries

    ids = result[S.SEGGER_CELL_ID].astype(str)
    keep = ~ids.isin(UNASSIGNED_IDS).to_numpy()
    sub = result.loc[keep]
    sid = ids[keep].to_numpy()
    g = pd.DataFrame({"cell_id": sid, "score": pd.to_numeric(sub[S.SCORE], errors="coerce").to_numpy(float)
                      if S.SCORE in sub else np.nan,
                      "frag": (sub[S.ASSIGNMENT].astype(str) == "fragment").to_numpy()
                      if S.ASSIGNMENT in sub else False,
                      "x": sub[S.X].to_numpy(float), "y": sub[S.Y].to_numpy(float)})
    agg = g.groupby("cell_id", sort=True).agg(n_transcripts=("score", "size"), mean_score=("score", "mean"),
                                               frag=("frag", "any"), mx=("x", "mean"), my=("y", "mean"))
    out = agg.reset_index()
    out["kind"] = np.where(out["frag"].to_numpy(), "fragment", "nucleus")
    out["area_um2"] = np.nan
    out["x"], out["y"] = out["mx"], out["my"]
    if len(out):
        tmp = pd.DataFrame({S.SEGGER_CELL_ID: sid, S.X: g["x"].to_numpy(), S.Y: g["y"].to_numpy()})
        bounds = cell_boundaries(tmp, method="convex", min_transcripts=1).set_index("cell_id")
        pos = bounds.index.astype(str)
        at = pd.Index(out["cell_id"]).get_indexer(pos)
        ok = at >= 0
        out.loc[at[ok], "area_um2"] = bounds["area_um2"].to_numpy(float)[ok]
        out.loc[at[ok], "x"] = bounds["centroid_x"].to_numpy(float)[ok]
        out.loc[at[ok], "y"] = bounds["centroid_y"].to_numpy(float)[ok]
    out["mecr_pairs"] = 0
    out["priority"] = 0.0
    out["reason"] = ""
    if queue is not None and len(queue):
        q = queue.assign(cell_id=queue["cell_id"].astype(str)).set_index("cell_id")
        at = q.index.get_indexer(out["cell_id"])
        ok = at >= 0
        out.loc[ok, "mecr_pairs"] = q["mecr_pairs"].to_numpy()[at[ok]].astype(int)
        out.loc[ok, "priority"] = q["priority"].to_numpy(float)[at[ok]]
        out.loc[ok, "reason"] = q["reason"].astype(str).to_numpy()[at[ok]]
    cols = [c for c, _ in TABLE_COLUMNS] + ["priority", "x", "y"]
    return out[cols].reset_index(drop=True)


def build_queue(state: Any) -> pd.DataFrame:
    """The review queue of the session: the state's Prediction with the table the viewer shows."""
    from segger.validation import review_queue

    result = state.result
    cut = (getattr(state, "result_params", None) or {}).get("score_cut")
    pred = getattr(state, "prediction", None)
    if pred is not None:
        return review_queue(pred, result=result, score_cut=cut)
    nuclei = getattr(getattr(state, "bundle", None), "nuclei", None)
    return review_queue(result, nuclei=nuclei, score_cut=cut)


# --------------------------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------------------------
def _cmap(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    from napari.utils.colormaps import ensure_colormap

    v = np.asarray(values, dtype=float)
    t = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    cols = np.asarray(ensure_colormap("viridis").map(np.nan_to_num(t)), dtype=np.float32)
    cols[~np.isfinite(v)] = (0.5, 0.5, 0.5, 1.0)
    return cols


def _hex(rgba) -> str:
    r, g, b = (int(round(255 * float(c))) for c in list(rgba)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _ramp_legend(title: str, lo: float, hi: float, fmt: str = "{:.2f}") -> list[tuple[str, str]]:
    stops = np.linspace(lo, hi, LEGEND_STOPS)
    cols = _cmap(stops, lo, hi)
    return [(_hex(c), fmt.format(s)) for c, s in zip(cols, stops)]


def transcript_colors(result: pd.DataFrame, mode: str, cells: pd.DataFrame | None = None,
                      outline_index: dict | None = None) -> tuple[np.ndarray, str, list[tuple[str, str]]]:
    """(RGBA per transcript, legend title, legend entries ``(hex colour, label)``) for ``mode``
    (``cell``: each cell's outline colour when ``outline_index`` is given, as the Predict step)."""
    from segger.napari.layers._base import colors_by_key
    from segger.napari.layers.results import cell_colors_and_ids

    if mode == "cell":
        colors, _ = cell_colors_and_ids(result[S.SEGGER_CELL_ID], outline_index)
        return colors, "colour: cell", [("#808080", "unassigned"), ("", "one colour per cell")]
    if mode == "gene":
        genes = result[S.GENE].astype(str).reset_index(drop=True)
        colors = colors_by_key(genes.to_numpy())
        top = genes.value_counts().head(LEGEND_GENES).index
        uniq = genes.drop_duplicates()
        first = pd.Series(uniq.index.to_numpy(), index=uniq.to_numpy())[top].to_numpy()
        return colors, f"colour: gene (top {len(top)})", [(_hex(colors[i]), str(g)) for g, i in zip(top, first)]
    if mode == "score":
        s = pd.to_numeric(result[S.SCORE], errors="coerce").to_numpy(float)
        return _cmap(s, 0.0, 1.0), "colour: assignment score", _ramp_legend("score", 0.0, 1.0)
    if mode == "QC metric":
        pri = np.zeros(len(result))
        if cells is not None and len(cells):
            at = pd.Index(cells["cell_id"].astype(str)).get_indexer(result[S.SEGGER_CELL_ID].astype(str))
            ok = at >= 0
            pri[ok] = cells["priority"].to_numpy(float)[at[ok]]
        hi = float(max(np.nanmax(pri) if pri.size else 0.0, 1.0))
        return (_cmap(pri, 0.0, hi), "colour: review priority of the cell (≈ transcripts likely wrong)",
                _ramp_legend("priority", 0.0, hi, "{:.1f}"))
    raise ValueError(f"colour mode must be one of {COLOR_MODES}, not {mode!r}")


def _is_ramp(entries: list[tuple[str, str]]) -> bool:
    try:
        [float(label) for _, label in entries]
    except ValueError:
        return False
    return len(entries) >= 3


def legend_html(title: str, entries: list[tuple[str, str]]) -> str:
    """The colour legend under "Colour transcripts by": a colour bar with its end values for a
    continuous scale (score, QC metric), swatches with labels for categories (gene, cell)."""
    if _is_ramp(entries):
        cells = "".join(f"<td bgcolor='{col}' width='18'>&nbsp;</td>" for col, _ in entries)
        return (f"<b>{title}</b><table cellspacing='0' cellpadding='0'><tr><td>{entries[0][1]}&nbsp;</td>"
                f"{cells}<td>&nbsp;{entries[-1][1]}</td></tr></table>")
    items = []
    for col, label in entries:
        sw = f"<span style='color:{col}'>■</span> " if col else ""
        items.append(f"{sw}{label}")
    return f"<b>{title}</b><br>" + " &nbsp; ".join(items)


# --------------------------------------------------------------------------------------------
# Qt
# --------------------------------------------------------------------------------------------
class CellTableModel(QAbstractTableModel):
    """Read-only sortable model over :func:`cell_table`'s frame."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.frame = pd.DataFrame(columns=[c for c, _ in TABLE_COLUMNS])
        self.sorted_by: tuple[int, Qt.SortOrder] | None = None

    def set_frame(self, frame: pd.DataFrame) -> None:
        self.beginResetModel()
        self.frame = frame.reset_index(drop=True)
        self.endResetModel()
        if self.sorted_by is not None:
            self.sort(*self.sorted_by)

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802,B008 (Qt)
        return 0 if parent.isValid() else len(self.frame)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802,B008 (Qt)
        return 0 if parent.isValid() else len(TABLE_COLUMNS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 (Qt)
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return TABLE_COLUMNS[section][1]
        return None

    def value(self, row: int, col: int):
        return self.frame[TABLE_COLUMNS[col][0]].iloc[row]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        v = self.value(index.row(), index.column())
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            if isinstance(v, (float, np.floating)):
                return "" if not np.isfinite(v) else f"{v:.3f}" if TABLE_COLUMNS[index.column()][0] == "mean_score" \
                    else f"{v:.1f}"
            return str(v)
        if role == Qt.ItemDataRole.UserRole:
            return v
        return None

    def sort(self, column: int, order=Qt.SortOrder.AscendingOrder) -> None:
        self.sorted_by = (column, order)
        if not len(self.frame):
            return
        self.layoutAboutToBeChanged.emit()
        self.frame = self.frame.sort_values(TABLE_COLUMNS[column][0], kind="mergesort",
                                            ascending=order == Qt.SortOrder.AscendingOrder,
                                            na_position="last").reset_index(drop=True)
        self.layoutChanged.emit()

    def cell_row(self, row: int) -> pd.Series:
        return self.frame.iloc[row]


class ReviewPanel(QWidget):
    """Cell table, colour-by with legend and the review queue (hosted by the QC step)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = get_state(napari_viewer)
        self.queue: pd.DataFrame | None = None
        self.cells: pd.DataFrame | None = None
        self.pos = -1
        self._built_for = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)

        # --- review queue
        title = QLabel("<b>Review queue</b>: the cells the model is least sure of, most doubtful first "
                       f"(Next <b>{NEXT_KEY}</b>, Previous <b>{PREV_KEY}</b> on the canvas).")
        title.setWordWrap(True)
        lay.addWidget(title)
        row = QWidget()
        hl = QHBoxLayout(row)
        hl.setContentsMargins(0, 0, 0, 0)
        self.prev_button = QPushButton(f"◀ Previous [{PREV_KEY}]")
        self.next_button = QPushButton(f"Next [{NEXT_KEY}] ▶")
        self.prev_button.setToolTip("Jump the view to the previous cell of the review queue")
        self.next_button.setToolTip("Jump the view to the next cell of the review queue")
        self.position = QLabel("")
        hl.addWidget(self.prev_button)
        hl.addWidget(self.next_button)
        hl.addWidget(self.position, 1)
        lay.addWidget(row)
        self.reason = QLabel("")
        self.reason.setWordWrap(True)
        lay.addWidget(self.reason)

        # --- colour by + legend
        crow = QWidget()
        cl = QHBoxLayout(crow)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(QLabel("Colour transcripts by"))
        self.color_by = QComboBox()
        self.color_by.addItems(COLOR_MODES)
        self.color_by.setToolTip("Recolour 'segger transcripts': by cell, gene, assignment score, or the "
                                 "review priority of each transcript's cell")
        cl.addWidget(self.color_by, 1)
        lay.addWidget(crow)
        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.legend)

        # --- cell table
        self.table_label = QLabel("Cells (click a header to sort, a row to zoom to the cell):")
        self.table_label.setWordWrap(True)
        lay.addWidget(self.table_label)
        self.model = CellTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicatorShown(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(200)
        lay.addWidget(self.table)

        self._rebuild_timer = QTimer(self)
        self._rebuild_timer.setSingleShot(True)
        self._rebuild_timer.setInterval(0)
        self._rebuild_timer.timeout.connect(self.rebuild)

        self.next_button.clicked.connect(self.next)
        self.prev_button.clicked.connect(self.previous)
        self.table.clicked.connect(self._on_row)
        self.color_by.currentTextChanged.connect(lambda _: self.apply_colors())
        self._dirty = False
        self._watched: list = []
        self.state.result_changed.connect(self._on_result)
        self.state.cell_selected.connect(self._show_row)
        self._bind_keys()
        self._update_position()
        if self.state.result is not None:
            self._on_result()

    # ------------------------------------------------------------------------------ building
    def _page_hidden(self) -> bool:
        """True when a tab (stacked page) above this panel shows another page: the rebuild waits
        until the page is shown (corrections in the Correct step do not pay for it)."""
        w = self
        while w is not None:
            p = w.parentWidget()
            if isinstance(p, QStackedWidget):
                if p not in self._watched:
                    self._watched.append(p)
                    p.currentChanged.connect(self._maybe_rebuild)
                if p.currentWidget() is not w:
                    return True
            w = p
        return False

    def _on_result(self) -> None:
        self._dirty = True
        self._maybe_rebuild()

    def _maybe_rebuild(self, *_: Any) -> None:
        try:
            if self._dirty and not self._page_hidden():
                self._rebuild_timer.start()
        except RuntimeError:  # widget already deleted
            pass

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._maybe_rebuild()
        super().showEvent(event)

    def rebuild(self) -> None:
        """Queue + table of the current result (after Predict or a correction)."""
        result = self.state.result
        self._dirty = False
        if result is None:
            self.queue, self.cells, self.pos, self._built_for = None, None, -1, None
            self.model.set_frame(self.model.frame.iloc[:0])
            self._update_position()
            return
        if result is self._built_for:
            return
        current = self.current_cell()
        try:
            self.queue = build_queue(self.state)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, the table still works
            self.queue = None
            self.reason.setText(f"Review queue unavailable: {type(exc).__name__}: {exc}".splitlines()[0])
        self.cells = cell_table(result, self.queue)
        self._built_for = result
        self.model.set_frame(self.cells)
        self.table_label.setText(f"{len(self.cells):,} cells (click a header to sort, a row to zoom to the cell):")
        # keep the place in the queue when the same cell is still queued
        self.pos = -1
        if current is not None and self.queue is not None:
            hit = np.flatnonzero(self.queue["cell_id"].astype(str).to_numpy() == current)
            self.pos = int(hit[0]) if hit.size else -1
        self._update_position()
        if self.color_by.currentText() != "cell":
            self.apply_colors()

    def current_cell(self) -> str | None:
        if self.queue is None or not (0 <= self.pos < len(self.queue)):
            return None
        return str(self.queue["cell_id"].iloc[self.pos])

    # ------------------------------------------------------------------------------ camera
    def _world(self, y: float, x: float) -> tuple[float, float]:
        layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        if layer is None:
            return y, x
        sc = np.asarray(layer.scale, dtype=float)[-2:]
        tr = np.asarray(layer.translate, dtype=float)[-2:]
        return float(y * sc[0] + tr[0]), float(x * sc[1] + tr[1])

    def jump(self, y: float, x: float, cell_id: str | None = None) -> None:
        """Centre the camera on (y, x) µm, zoomed so that the cell fills about a third of the view."""
        extent = 20.0
        result = self.state.result
        if cell_id is not None and result is not None:
            m = result[S.SEGGER_CELL_ID].astype(str).to_numpy() == str(cell_id)
            if m.any():
                xs, ys = result[S.X].to_numpy(float)[m], result[S.Y].to_numpy(float)[m]
                extent = float(max(xs.max() - xs.min(), ys.max() - ys.min(), 5.0))
        zoom_to(self.viewer, self._world(float(y), float(x)), extent)

    def select(self, cell_id: str, y: float, x: float) -> None:
        self.jump(y, x, cell_id)
        self.state.cell_selected.emit(str(cell_id))

    def _on_row(self, index) -> None:
        if not index.isValid():
            return
        row = self.model.cell_row(index.row())
        self.select(str(row["cell_id"]), float(row["y"]), float(row["x"]))

    def _show_row(self, cell_id: str) -> None:
        """A cell picked elsewhere (canvas click, MECR list, queue): select its table row."""
        try:
            hit = np.flatnonzero(self.model.frame["cell_id"].astype(str).to_numpy() == str(cell_id))
            if hit.size:
                self.table.selectRow(int(hit[0]))
                self.table.scrollTo(self.model.index(int(hit[0]), 0))
        except RuntimeError:  # widget already deleted
            pass

    # ------------------------------------------------------------------------------ queue
    def step(self, delta: int) -> None:
        if self._rebuild_timer.isActive() or self._dirty:
            self._rebuild_timer.stop()
            self.rebuild()
        if self.queue is None or not len(self.queue):
            self._update_position()
            return
        n = len(self.queue)
        self.pos = 0 if self.pos < 0 and delta > 0 else int(np.clip(self.pos + delta, 0, n - 1))
        q = self.queue.iloc[self.pos]
        self.select(str(q["cell_id"]), float(q["y"]), float(q["x"]))
        self._update_position()

    def next(self) -> None:
        self.step(+1)

    def previous(self) -> None:
        self.step(-1)

    def _update_position(self) -> None:
        n = 0 if self.queue is None else len(self.queue)
        self.prev_button.setEnabled(n > 0 and self.pos > 0)
        self.next_button.setEnabled(n > 0 and self.pos < n - 1)
        if self.state.result is None:
            self.position.setText("")
            self.reason.setText("Run Predict first.")
        elif n == 0:
            self.position.setText("0 of 0")
            if self.queue is not None:
                self.reason.setText("Nothing to review: no doubtful cells.")
        elif self.pos < 0:
            self.position.setText(f"– of {n}")
            self.reason.setText(f"{n:,} cells queued; press Next to start.")
        else:
            q = self.queue.iloc[self.pos]
            self.position.setText(f"{self.pos + 1} of {n}")
            self.reason.setText(f"<b>cell {q['cell_id']}</b> ({q['kind']}, {int(q['n_transcripts'])} transcripts, "
                                f"priority {float(q['priority']):.1f}): {q['reason']}")

    # ------------------------------------------------------------------------------ keys
    def _bind_keys(self) -> None:
        self._bound = []
        for key, fn in ((NEXT_KEY, self.next), (PREV_KEY, self.previous)):
            def handler(_viewer, _fn=fn):
                _fn()

            try:
                self.viewer.bind_key(key, handler, overwrite=True)
                self._bound.append(key)
            except Exception:  # noqa: BLE001 - a viewer without key bindings (tests, proxies)
                pass

    def unbind_keys(self) -> None:
        for key in self._bound:
            try:
                self.viewer.bind_key(key, None)
            except Exception:  # noqa: BLE001
                pass
        self._bound = []

    # ------------------------------------------------------------------------------ colours
    def apply_colors(self) -> None:
        result = self.state.result
        layer = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        mode = self.color_by.currentText()
        if result is None or layer is None or len(layer.data) != len(result):
            self.legend.setText("")
            return
        from segger.napari.layers import LAYER_CELLS, outline_index

        cells_layer = find_layer(self.viewer, LAYER_CELLS)
        colors, title, entries = transcript_colors(result, mode, self.cells,
                                                   outline_index(cells_layer) if cells_layer is not None else None)
        set_face_colors(layer, colors)
        self.legend.setText(legend_html(title, entries))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.unbind_keys()
        super().closeEvent(event)
