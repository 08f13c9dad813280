"""Issue 12 #4 and #8 in the panel: the cells layer is coloured from an 8-colour palette such that
touching outlines never share a colour, fragments are outlined too, a translucent fill toggles
on and off, and the result layer is locked (a click with it active adds no vertex).
On the lung crop, predicted with the bundled model (no training); real Qt clicks."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from qtpy.QtCore import Qt

from segger import schema as S
from segger.napari.layers import LAYER_CELLS
from segger.napari.layers.results import FILL_ALPHA, OUTLINE_PALETTE

from _napari_helpers import center_on, click_canvas, real_viewer, wait_job
from _napari_helpers import go_tab as _tab

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def predicted(make_napari_viewer_proxy, qtbot, lung_dir, monkeypatch):
    import napari.utils.notifications as N

    errors: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: errors.append(str(msg)))
    viewer = make_napari_viewer_proxy()
    dock, panel = real_viewer(viewer).window.add_plugin_dock_widget("napari-segger", "Segger")
    qtbot.waitUntil(lambda: panel.ready, timeout=60_000)
    viewer.open_sample("napari-segger", "xenium_lung")
    d = _tab(qtbot, panel, "Data")
    qtbot.mouseClick(d.build_button, LEFT)
    wait_job(qtbot, d, 60_000)
    p = _tab(qtbot, panel, "Predict")
    qtbot.mouseClick(p.predict_button, LEFT)
    wait_job(qtbot, p, 180_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    assert not errors, errors
    return viewer, panel, p


def _click_box(qtbot, box):
    """A real click on a check box's indicator (the dock is not shown: use the style's rect)."""
    from qtpy.QtWidgets import QStyle, QStyleOptionButton

    opt = QStyleOptionButton()
    box.initStyleOption(opt)
    rect = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, opt, box)
    qtbot.mouseClick(box, LEFT, pos=rect.center())


def _polygons(layer):
    return np.array([shapely.Polygon(np.asarray(v)[:, ::-1]) for v in layer.data], dtype=object)


def test_touching_outlines_never_share_a_colour_and_fill_toggles(predicted, qtbot):
    viewer, panel, p = predicted
    layer = viewer.layers[LAYER_CELLS]
    edge = np.asarray(layer.edge_color)
    assert len(edge) == len(layer.data) > 100
    # a categorical palette of 8 distinguishable colours
    dist = np.abs(edge[:, None, :3] - OUTLINE_PALETTE[None, :, :].astype(float)).max(axis=2).min(axis=1)
    assert dist.max() < 1e-3
    assert len({tuple(c) for c in edge[:, :3]}) >= 4
    # no two touching outlines (within 0.5 µm) share an edge colour
    polys = _polygons(layer)
    a, b = shapely.STRtree(polys).query(polys, predicate="dwithin", distance=0.5)
    pairs = a < b
    assert pairs.sum() > 50  # the crop's cells do touch
    same = np.all(np.isclose(edge[a[pairs]], edge[b[pairs]]), axis=1)
    assert not same.any(), f"{same.sum()} touching pairs share a colour"
    # fragments are outlined too
    res = panel.state.result
    frag_ids = set(res.loc[res[S.ASSIGNMENT].astype(str) == "fragment", S.SEGGER_CELL_ID].astype(str))
    drawn = set(layer.features["cell_id"].astype(str))
    if frag_ids:
        assert frag_ids & drawn
    # the translucent fill: a real click on the checkbox, in place
    assert np.allclose(np.asarray(layer.face_color)[:, 3], 0.0)
    _click_box(qtbot, p.fill)
    assert p.fill.isChecked()
    face = np.asarray(viewer.layers[LAYER_CELLS].face_color)
    assert np.allclose(face[:, 3], FILL_ALPHA)
    assert np.allclose(face[:, :3], edge[:, :3])
    _click_box(qtbot, p.fill)
    assert np.allclose(np.asarray(viewer.layers[LAYER_CELLS].face_color)[:, 3], 0.0)


def test_a_click_on_the_locked_cells_layer_adds_no_vertex(predicted, qtbot):
    from napari.utils.notifications import notification_manager  # noqa: F401 - napari loaded

    viewer, panel, p = predicted
    layer = viewer.layers[LAYER_CELLS]
    real = real_viewer(viewer)
    real.layers.selection.active = real.layers[LAYER_CELLS]
    n_shapes, n_vertices = len(layer.data), sum(len(v) for v in layer.data)
    layer.mode = "add_polygon"  # as napari's key or mode button would: bounced back
    assert str(layer.mode) == "pan_zoom"
    yx = np.asarray(layer.data[0]).mean(axis=0)
    center_on(viewer, yx, zoom=8.0)
    click_canvas(qtbot, viewer, yx)
    click_canvas(qtbot, viewer, yx + 2.0)
    layer = viewer.layers[LAYER_CELLS]
    assert len(layer.data) == n_shapes and sum(len(v) for v in layer.data) == n_vertices
    assert str(layer.mode) == "pan_zoom"


def _points_match_outlines(viewer) -> tuple[float, dict]:
    """Fraction of assigned transcripts whose colour is their cell outline's edge colour, and the
    outline colour per cell id."""
    from segger.napari.layers import LAYER_TRANSCRIPTS

    cells = viewer.layers[LAYER_CELLS]
    edge = {cid: tuple(np.round(c[:3], 3)) for cid, c in
            zip(cells.features["cell_id"].astype(str), np.asarray(cells.edge_color))}
    pts = viewer.layers[LAYER_TRANSCRIPTS]
    ids = pts.features[S.SEGGER_CELL_ID].astype(str).to_numpy()
    face = np.round(np.asarray(pts.face_color)[:, :3], 3)
    drawn = np.isin(ids, list(edge))
    match = [tuple(f) == edge[i] for i, f in zip(ids[drawn], face[drawn])]
    return float(np.mean(match)), edge


def test_transcripts_take_their_outline_colour_and_keep_it_when_the_cut_moves(predicted, qtbot):
    viewer, panel, p = predicted
    frac, before = _points_match_outlines(viewer)
    assert len(before) > 100
    assert frac == 1.0  # every drawn cell's transcripts have its outline's colour
    # move the score cut with real key presses in the exact-value box
    p.cut_box.setFocus()
    p.cut_box.selectAll()
    qtbot.keyClicks(p.cut_box, "0.7")
    qtbot.keyClick(p.cut_box, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: panel.state.result_params.get("score_cut") == pytest.approx(0.7), timeout=10_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    frac, after = _points_match_outlines(viewer)
    assert frac == 1.0
    kept = [after[c] == before[c] for c in set(before) & set(after)]
    assert len(kept) > 100 and np.mean(kept) > 0.95  # cells keep their colour across re-thresholds
