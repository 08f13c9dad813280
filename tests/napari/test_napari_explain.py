"""Issue 12 #7 in the panel: "Explain a picked transcript" — after Predict with the bundled model on the
lung sample, a real click on a transcript draws one ``segger explain`` vector per candidate nucleus
(coloured by geometry probability, 0 → 1) and a line naming the nucleus it was assigned to.

Driven with real Qt clicks on the button and the canvas (pytest-qt)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from qtpy.QtCore import Qt
from scipy.spatial import cKDTree

from segger import schema as S
from segger.napari._w_predict import LAYER_EXPLAIN
from segger.prediction import explain_transcript

from _napari_helpers import center_on, click_canvas
from test_napari_bundled_model import _open_and_build, _predict_bundled

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as N

    seen: dict[str, list[str]] = {"error": [], "warning": []}
    monkeypatch.setattr(N, "show_error", lambda msg: seen["error"].append(str(msg)))
    monkeypatch.setattr(N, "show_warning", lambda msg: seen["warning"].append(str(msg)))
    return seen


def _pick_contested(panel):
    """An isolated transcript assigned to a nucleus, with a rival candidate (prefer one in the window)."""
    pred, result = panel.state.prediction, panel.state.result
    cells = result[S.SEGGER_CELL_ID].astype(str).to_numpy()
    ids = set(pred._nucleus_ids())
    yx = result[[S.Y, S.X]].to_numpy(float)
    d2, _ = cKDTree(yx).query(yx, k=2)
    n_cand = np.bincount(pred.cand_tx[pred.cand_d_abs <= pred.max_distance], minlength=pred.n_tx)
    ok = np.array([c in ids for c in cells]) & (n_cand >= 2) & (d2[:, 1] > 0.5)
    assert ok.any()
    rows = np.flatnonzero(ok)
    for row in rows[:300]:
        table, _ = explain_transcript(pred, int(row), score_cut=panel.step("Predict").score_cut)
        if table["in_window"].any():
            return int(row)
    return int(rows[0])


def test_click_a_transcript_explains_its_assignment(make_napari_viewer_proxy, qtbot, notes, lung_dir):
    viewer = make_napari_viewer_proxy()
    panel = _open_and_build(viewer, qtbot, "xenium_lung")
    p = _predict_bundled(qtbot, panel)
    row = _pick_contested(panel)
    result = panel.state.result
    yx = (float(result[S.Y].iloc[row]), float(result[S.X].iloc[row]))
    qtbot.mouseClick(p.explain_button, LEFT)
    assert p.explain_button.isChecked() and p.explain_legend.isVisibleTo(p)
    assert "geometry probability" in p.explain_label.text()
    center_on(viewer, yx, zoom=60.0)
    qtbot.wait(50)
    click_canvas(qtbot, viewer, yx)
    qtbot.waitUntil(lambda: LAYER_EXPLAIN in viewer.layers, timeout=10_000)
    assert not notes["error"], notes["error"]
    layer = viewer.layers[LAYER_EXPLAIN]
    assert layer.metadata["segger"]["tx_index"] == row
    table, text = explain_transcript(panel.state.prediction, row, score_cut=p.score_cut,
                                     fragments=p.fragments.isChecked())
    assert len(layer.data) == len(table) >= 2  # one vector per candidate nucleus
    np.testing.assert_allclose(layer.data[:, 0], np.repeat([yx], len(table), axis=0), atol=1e-3)
    assert tuple(layer.edge_contrast_limits) == (0.0, 1.0)
    np.testing.assert_allclose(layer.features["weight"], table["geometry_p"], atol=1e-6)
    cell = str(result[S.SEGGER_CELL_ID].iloc[row])
    chosen = table.loc[table["chosen"], S.BD_ID].tolist()
    assert chosen == [cell]
    label = p.explain_label.text()
    assert f"assigned to {cell}" in label and text in label
    assert ("moved by expression" in label) == (panel.state.prediction.nearest_bd[row] != panel.state.prediction.best_bd[row])
    # its tx→tx neighbours: drawn only where the attention differs from uniform, coloured by lift
    from segger.napari._w_predict import LAYER_EXPLAIN_NEIGHBOURS, UNIFORM_TOLERANCE
    from segger.prediction import transcript_attention

    att = transcript_attention(panel.state.model, panel.state.bundle, row)
    far = att[(att["lift"] - 1).abs() >= UNIFORM_TOLERANCE]
    assert len(att) > 0
    if len(far):
        nb = viewer.layers[LAYER_EXPLAIN_NEIGHBOURS]
        assert len(nb.data) == len(far) <= len(att)
        assert sorted(nb.features["neighbour"]) == sorted(far["src"])
        assert ((nb.features["weight"] - 1).abs() >= UNIFORM_TOLERANCE).all()
        assert tuple(nb.edge_contrast_limits) == (0.0, 2.0)
        assert f"{len(far)} of its {len(att)} neighbours" in label
    else:
        assert LAYER_EXPLAIN_NEIGHBOURS not in viewer.layers and "about uniform" in label
    assert p.lift_legend.isVisibleTo(p)
    # a transcript whose neighbours are not all near uniform: the differing ones are drawn
    yx_all = result[[S.Y, S.X]].to_numpy(float)
    d2, _ = cKDTree(yx_all).query(yx_all, k=2)
    for other in np.flatnonzero(d2[:, 1] > 0.5)[:400]:
        att = transcript_attention(panel.state.model, panel.state.bundle, int(other))
        far = att[(att["lift"] - 1).abs() >= UNIFORM_TOLERANCE]
        if 0 < len(far) < len(att):
            break
    else:
        pytest.fail("no transcript with attention that differs from uniform")
    oyx = (float(result[S.Y].iloc[other]), float(result[S.X].iloc[other]))
    center_on(viewer, oyx, zoom=60.0)
    qtbot.wait(50)
    click_canvas(qtbot, viewer, oyx)
    qtbot.waitUntil(lambda: viewer.layers[LAYER_EXPLAIN].metadata["segger"]["tx_index"] == other, timeout=10_000)
    nb = viewer.layers[LAYER_EXPLAIN_NEIGHBOURS]
    assert nb.metadata["segger"]["tx_index"] == other
    assert sorted(nb.features["neighbour"]) == sorted(far["src"]) and len(nb.data) == len(far) < len(att)
    np.testing.assert_allclose(np.sort(nb.features["weight"]), np.sort(far["lift"]), atol=1e-6)
    assert tuple(nb.edge_contrast_limits) == (0.0, 2.0)
    assert f"{len(far)} of its {len(att)} neighbours" in p.explain_label.text()
    # off again: clicks no longer explain
    qtbot.mouseClick(p.explain_button, LEFT)
    assert not p.explain_button.isChecked() and p._explain_pick is None


def test_click_a_nucleus_summarises_its_transcripts(make_napari_viewer_proxy, qtbot, notes, lung_dir):
    viewer = make_napari_viewer_proxy()
    panel = _open_and_build(viewer, qtbot, "xenium_lung")
    p = _predict_bundled(qtbot, panel)
    qtbot.mouseClick(p.explain_button, LEFT)
    nuclei = panel.state.bundle.nuclei
    result = panel.state.result
    yx_tx = result[[S.Y, S.X]].to_numpy(float)
    tree = cKDTree(yx_tx)
    # a nucleus centre with no transcript within 1 µm (the click lands on the nucleus, not a transcript)
    for _, nuc in nuclei.iterrows():
        yx = (float(nuc[S.Y]), float(nuc[S.X]))
        if tree.query(yx)[0] > 1.0 and nuc[S.GEOMETRY].contains(shapely.Point(yx[1], yx[0])):
            break
    else:
        pytest.skip("every nucleus centre has a transcript on it")
    center_on(viewer, yx, zoom=60.0)
    qtbot.wait(50)
    click_canvas(qtbot, viewer, yx)
    cid = str(nuc[S.BD_ID])
    qtbot.waitUntil(lambda: p.explain_label.text().startswith(f"{cid}:"), timeout=10_000)
    n = int((result[S.SEGGER_CELL_ID].astype(str) == cid).sum())
    assert f"{n} transcripts assigned" in p.explain_label.text() and "contested" in p.explain_label.text()
    assert not notes["error"], notes["error"]
