"""The Review section of the Review/QC step (issue 12 items 6 and 11) driven by real Qt events:
the sortable cell table (header and row clicks), the review queue (Next / Previous buttons and
the ``]`` / ``[`` keys on the canvas) and colour-by with its legend, on the bundled lung crop
after a tiny train + predict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import QPoint, Qt

from segger import schema as S
from segger.napari.layers import LAYER_HIGHLIGHT, LAYER_TRANSCRIPTS

from _napari_helpers import key_canvas, real_viewer, wait_job
from _napari_helpers import open_panel as _panel, go_tab as _tab, click_button as _click

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


def _session(viewer, qtbot):
    """Open the lung crop, build, train 1 tiny epoch, predict; the Review/QC step's panel."""
    panel = _panel(viewer, qtbot)
    viewer.open_sample("napari-segger", "xenium_lung")
    d = _tab(qtbot, panel, "Data")
    _click(qtbot, d.build_button)
    wait_job(qtbot, d, 60_000)
    t = _tab(qtbot, panel, "Train")
    t.epochs.setValue(1)
    # a new model of this size (the default start is fine-tuning the bundled model)
    qtbot.mouseClick(t.new_radio, Qt.MouseButton.LeftButton, pos=t.new_radio.rect().center())
    t.size_combo.setCurrentText("tiny")
    t.device_combo.setCurrentText("cpu")
    _click(qtbot, t.train_button)
    wait_job(qtbot, t, 180_000)
    p = _tab(qtbot, panel, "Predict")
    _click(qtbot, p.predict_button)
    wait_job(qtbot, p, 180_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    qc = _tab(qtbot, panel, "Review/QC")
    review = qc.review
    qtbot.waitUntil(lambda: review._built_for is panel.state.result, timeout=60_000)
    return panel, review


def _click_header(qtbot, table, col):
    header = table.horizontalHeader()
    x = header.sectionViewportPosition(col) + header.sectionSize(col) // 2
    qtbot.mouseClick(header.viewport(), LEFT, pos=QPoint(x, header.height() // 2))


def _click_row(qtbot, table, row):
    table.scrollTo(table.model().index(row, 0))
    rect = table.visualRect(table.model().index(row, 0))
    qtbot.mouseClick(table.viewport(), LEFT, pos=rect.center())


def _center(viewer):
    return np.asarray(real_viewer(viewer).camera.center, dtype=float)[-2:]


def test_cell_table_queue_and_colour_by(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    panel, review = _session(viewer, qtbot)
    result = panel.state.result
    review.resize(700, 900)
    review.show()
    table, model = review.table, review.model

    # --- the table: one row per assigned cell, numbers from the result
    assigned = result[S.SEGGER_CELL_ID].astype(str)
    assigned = assigned[~assigned.isin([S.UNASSIGNED, "", "None", "nan", "-1"])]
    assert model.rowCount() == assigned.nunique() > 10
    frame = model.frame.set_index("cell_id")
    counts = assigned.value_counts()
    assert (frame.loc[counts.index, "n_transcripts"].to_numpy() == counts.to_numpy()).all()
    assert (frame["area_um2"] > 0).all()

    # clicking the "transcripts" header sorts by it; a second click reverses
    tcol = 2
    _click_header(qtbot, table, tcol)
    n1 = model.frame["n_transcripts"].to_numpy()
    assert (np.diff(n1) >= 0).all() or (np.diff(n1) <= 0).all()
    _click_header(qtbot, table, tcol)
    n2 = model.frame["n_transcripts"].to_numpy()
    assert (np.diff(n2) >= 0).all() or (np.diff(n2) <= 0).all()
    assert n1[0] != n2[0]
    # the shown text follows the sort
    assert model.data(model.index(0, tcol)) == str(int(n2[0]))

    # clicking a row centres the camera on that cell's centroid and rings it
    row = 3
    want = model.cell_row(row)
    _click_row(qtbot, table, row)
    np.testing.assert_allclose(_center(viewer), [want["y"], want["x"]], atol=1e-3)
    ring = real_viewer(viewer).layers[LAYER_HIGHLIGHT]
    assert ring.metadata["segger"]["cell_id"] == str(want["cell_id"])

    # --- the review queue: Next, Next (buttons), ] (key) then [ (key) → rank 1
    queue = review.queue
    assert queue is not None and len(queue) >= 3, review.reason.text()
    assert "press Next" in review.reason.text()
    _click(qtbot, review.next_button)
    _click(qtbot, review.next_button)
    layer = real_viewer(viewer).layers[LAYER_TRANSCRIPTS]
    real_viewer(viewer).layers.selection.active = layer
    key_canvas(qtbot, viewer, Qt.Key.Key_BracketRight)
    assert review.pos == 2
    key_canvas(qtbot, viewer, Qt.Key.Key_BracketLeft)
    q = queue.iloc[review.pos]
    assert int(q["rank"]) == 1
    np.testing.assert_allclose(_center(viewer), [q["y"], q["x"]], atol=1e-3)
    assert review.position.text() == f"2 of {len(queue)}"
    assert str(q["reason"]) in review.reason.text() and str(q["cell_id"]) in review.reason.text()
    # the picked cell's row is selected in the table
    sel = table.selectionModel().selectedRows()
    assert len(sel) == 1 and model.cell_row(sel[0].row())["cell_id"] == str(q["cell_id"])
    # the table shows the queue's reason and MECR pairs for queued cells
    frame = model.frame.set_index("cell_id")
    assert frame.loc[str(q["cell_id"]), "reason"] == q["reason"]

    # --- colour by score: a legend and new face colours (viridis of the score)
    before = np.asarray(layer.face_color).copy()
    review.color_by.setCurrentText("score")
    after = np.asarray(layer.face_color)
    # a colour bar (5 stops) with its end values, not swatches
    text = review.legend.text()
    assert "score" in text and text.count("bgcolor") == 5 and "0.00" in text and "1.00" in text
    assert not np.allclose(before, after)
    from napari.utils.colormaps import ensure_colormap

    s = result[S.SCORE].to_numpy(float)
    i = int(np.flatnonzero(np.isfinite(s))[0])
    np.testing.assert_allclose(after[i], ensure_colormap("viridis").map(np.clip([s[i]], 0, 1))[0], atol=1e-3)
    review.color_by.setCurrentText("gene")
    assert "gene" in review.legend.text() and "■" in review.legend.text()
    # colour by cell: each cell's outline colour, as the Predict step draws them
    from segger.napari.layers import LAYER_CELLS

    review.color_by.setCurrentText("cell")
    qtbot.waitUntil(lambda: LAYER_CELLS in viewer.layers, timeout=60_000)
    cells_layer = viewer.layers[LAYER_CELLS]
    edge = dict(zip(cells_layer.features["cell_id"].astype(str), np.round(np.asarray(cells_layer.edge_color)[:, :3], 3)))
    ids = layer.features[S.SEGGER_CELL_ID].astype(str).to_numpy()
    face = np.round(np.asarray(layer.face_color)[:, :3], 3)
    drawn = np.flatnonzero(np.isin(ids, list(edge)))
    assert len(drawn) > 1000 and all((face[i] == edge[ids[i]]).all() for i in drawn)
    review.color_by.setCurrentText("QC metric")
    assert "priority" in review.legend.text()

    # --- a correction (the state's result changes): queue and table are rebuilt
    gone = str(q["cell_id"])
    changed = result.copy()
    changed[S.SEGGER_CELL_ID] = changed[S.SEGGER_CELL_ID].astype(object)
    changed.loc[changed[S.SEGGER_CELL_ID].astype(str) == gone, S.SEGGER_CELL_ID] = S.UNASSIGNED
    _tab(qtbot, panel, "Correct")
    panel.state.set_result(changed)
    qtbot.wait(50)
    assert review._built_for is not changed  # waits while another step is shown
    _tab(qtbot, panel, "Review/QC")
    qtbot.waitUntil(lambda: review._built_for is changed, timeout=60_000)
    assert gone not in set(review.queue["cell_id"].astype(str))
    assert gone not in set(model.frame["cell_id"].astype(str))
    assert model.rowCount() == assigned.nunique() - 1
    # colour mode kept after the rebuild
    assert "priority" in review.legend.text()


def test_cell_table_model_sorts_numbers_not_text():
    from segger.napari._w_review import CellTableModel, cell_table

    result = pd.DataFrame({S.SEGGER_CELL_ID: ["a"] * 12 + ["b"] * 3 + ["c"] * 5 + [S.UNASSIGNED] * 2,
                           S.X: np.r_[np.arange(12.0), 20, 21, 22, 40, 41, 42, 43, 44, 0, 1],
                           S.Y: np.r_[np.arange(12.0) % 3, 0, 1, 0, 5, 6, 5, 6, 7, 0, 0],
                           S.SCORE: np.linspace(0, 1, 22), S.GENE: ["g"] * 22, S.ASSIGNMENT: ["nucleus"] * 22})
    t = cell_table(result)
    assert list(t["cell_id"]) == ["a", "b", "c"]
    assert list(t["n_transcripts"]) == [12, 3, 5]
    m = CellTableModel()
    m.set_frame(t)
    m.sort(2, Qt.SortOrder.DescendingOrder)
    assert [m.data(m.index(r, 0)) for r in range(3)] == ["a", "c", "b"]
