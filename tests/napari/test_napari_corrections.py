"""Correction mode and fine-tuning on corrections in a headless viewer (issue 4 items 1–3, 5).

Clicks are simulated by calling the widget's viewer mouse callback with a fake event at a
transcript's world coordinate (press, then release at the same place), keys through napari's own
keymap handler on the active layer, and the buttons by ``click()``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt

from segger import schema as S
from segger.napari.layers import (
    LAYER_CHANGES,
    LAYER_CORRECTIONS,
    LAYER_SELECTION,
    LAYER_TRANSCRIPTS,
    UNASSIGNED_RGBA,
    PointIndex,
    hash_colors,
    points_in_polygons,
    result_to_points,
    split_by_line,
    split_by_seeds,
    update_result_rows,
)

from _napari_helpers import dock_widget, wait_job

pytestmark = pytest.mark.gui

NAME = "Correct & fine-tune"


@pytest.fixture
def errors(monkeypatch):
    import napari.utils.notifications as N

    seen: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: seen.append(str(msg)))
    return seen


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """Sidecars of bundled samples go to $XDG_CACHE_HOME: keep them in the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "napari-segger" / "corrections"


class _Event:
    def __init__(self, pos, modifiers=()):
        self.position, self.type, self.modifiers = tuple(float(v) for v in pos), "mouse_press", tuple(modifiers)


def click(widget, viewer, yx, modifiers=()):
    """Press + release (no drag) at world (y, x) through the widget's viewer mouse callback — the
    one registered in ``viewer.mouse_drag_callbacks`` (a fake event to an unregistered handler
    would prove nothing)."""
    ev = _Event(yx, modifiers)
    handler = widget.interaction.on_mouse
    registered = [cb for cb in viewer.mouse_drag_callbacks if cb == handler]
    assert registered, "the correction widget's mouse callback is not registered on the viewer"
    gen = registered[0](viewer, ev)
    if gen is None:
        return
    next(gen)
    ev.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def press(viewer, key):
    """Press ``key`` the way napari's canvas does: active layer's keymaps first, then the viewer's."""
    from napari.utils.key_bindings import KeymapHandler

    real = getattr(viewer, "__wrapped__", viewer)
    active = real.layers.selection.active
    handler = KeymapHandler()
    handler.keymap_providers = [real] if active is None else [active, real]
    handler.press_key(key)
    handler.release_key(key)


def _cells(viewer):
    return viewer.layers[LAYER_TRANSCRIPTS].features[S.SEGGER_CELL_ID].astype(str).to_numpy()


# ------------------------------------------------------------------------------------ pure helpers
def test_point_index_hits_in_world_coordinates():
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 100, (5000, 2))
    scale, translate = np.array([0.5, 0.5]), np.array([10.0, -3.0])

    class L:  # layer-like: pixels + scale/translate
        pass

    lay = L()
    lay.name, lay.data, lay.scale, lay.translate = "p", data, scale, translate
    index = PointIndex.from_layer(lay)
    world = data * scale + translate
    for i in (0, 17, 4999):
        assert index.nearest(*(world[i] + 0.01), max_dist=0.1) == i
    assert index.nearest(-1000, -1000, max_dist=1.0) == -1
    # a polygon (lasso) and a rectangle: same answer as brute force
    poly = np.array([[20, 5], [40, 10], [35, 40], [15, 30]], float)
    rect = np.array([[40, 30], [40, 45], [55, 45], [55, 30]], float)
    got = index.inside([poly, rect])
    import shapely

    want = [i for i, (y, x) in enumerate(world)
            if shapely.Polygon(poly[:, ::-1]).covers(shapely.Point(x, y))
            or shapely.Polygon(rect[:, ::-1]).covers(shapely.Point(x, y))]
    np.testing.assert_array_equal(got, want)
    assert len(points_in_polygons(world, [poly[:2]])) == 0  # degenerate: no area


def test_split_helpers():
    yx = np.array([[0, 0], [0, 1], [0, 9], [0, 10]], float)
    np.testing.assert_array_equal(split_by_seeds(yx, [0, 0], [0, 10]), [False, False, True, True])
    # a vertical line at x = 5 (drawn top to bottom), extended past its ends
    line = np.array([[-1, 5], [1, 5]], float)
    side = split_by_line(np.array([[0, 0], [0, 10], [50, 2], [-50, 8]], float), line)
    assert side[0] != side[1] and side[2] == side[0] and side[3] == side[1]
    # a bent path: each point is judged by its nearest segment
    path = np.array([[-10, 5], [0, 5], [0, 20]], float)
    side = split_by_line(np.array([[-5, 0], [-5, 10], [5, 10], [-2, 18]], float), path)
    assert side[0] != side[1] and side[1] != side[2]


def test_changed_transcripts_ignores_fragment_renumbering():
    from segger.napari.layers import changed_transcripts

    before = ["c1", "c1", "fragment-0", "fragment-0", "fragment-1", "fragment-1", "fragment-1", "c2"]
    after = ["c1", "c2", "fragment-1", "fragment-1", "fragment-2", "fragment-2", "fragment-0", "c2"]
    # row 1 moved cell; fragment-0 -> fragment-1 and fragment-1 -> fragment-2 are renamings;
    # row 6 left its fragment (the others went to fragment-2)
    np.testing.assert_array_equal(changed_transcripts(before, after), [1, 6])
    exclude = np.zeros(8, bool)
    exclude[1] = True
    np.testing.assert_array_equal(changed_transcripts(before, after, exclude), [6])


def test_update_result_rows_adds_categories_and_colours():
    ids = pd.Categorical(["a", "b", S.UNASSIGNED, "a"])
    feats = pd.DataFrame({S.SEGGER_CELL_ID: ids, S.ASSIGNMENT: pd.Categorical(
        ["nucleus", "cytoplasm", "none", "nucleus"], categories=list(S.ASSIGNMENT_KINDS))})
    colors = np.zeros((4, 4), np.float32)
    f2, c2 = update_result_rows(feats, colors, np.array([1, 2]), ["new", S.UNASSIGNED], ["cytoplasm", "none"],
                                [True, True])
    assert list(f2[S.SEGGER_CELL_ID].astype(str)) == ["a", "new", S.UNASSIGNED, "a"]
    assert isinstance(f2[S.SEGGER_CELL_ID].dtype, pd.CategoricalDtype)
    np.testing.assert_allclose(c2[1], hash_colors(["new"])[0])
    np.testing.assert_allclose(c2[2], UNASSIGNED_RGBA)
    np.testing.assert_allclose(c2[0], 0)  # untouched rows keep their colour
    assert list(f2["corrected"]) == [False, True, True, False]
    assert list(feats[S.SEGGER_CELL_ID].astype(str)) == ["a", "b", S.UNASSIGNED, "a"]  # input not modified


def test_sidecar_location(tmp_path, cache):
    from segger.napari._w_correct import correction_sidecar

    data = tmp_path / "run1"
    data.mkdir()
    assert correction_sidecar({"path": str(data), "sample": None}) == tmp_path / "run1.segger-corrections.csv"
    bundled = correction_sidecar({"path": "/somewhere/site-packages/segger/sample_data/xenium_lung",
                                  "sample": "xenium_lung"})
    assert bundled.parent == cache and bundled.name == "sample-xenium_lung.segger-corrections.csv"
    assert correction_sidecar({"path": None, "sample": None}) is None


# ------------------------------------------------------------------------------------ fast GUI flow
def _toy_result(n_per=40, seed=0):
    """Three touching 'cells' of transcripts along x, with a nucleus id each."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, cx in enumerate((10.0, 20.0, 30.0)):
        xy = rng.normal([cx, 10.0], 2.0, (n_per, 2))
        for j, (x, y) in enumerate(xy):
            rows.append((k * 1000 + j, x, y, f"g{j % 5}", f"cell{k}"))
    df = pd.DataFrame(rows, columns=[S.TX_ID, S.X, S.Y, S.GENE, S.SEGGER_CELL_ID])
    df[S.Z] = 0.0
    df[S.SCORE] = np.float32(0.9)
    df[S.ASSIGNMENT] = pd.Categorical(["cytoplasm"] * len(df), categories=list(S.ASSIGNMENT_KINDS))
    return df


def _toy_viewer(make_napari_viewer_proxy, sidecar):
    from segger.napari._viewer import upsert_layer

    viewer = make_napari_viewer_proxy()
    result = _toy_result()
    upsert_layer(viewer, result_to_points(result))
    w = dock_widget(viewer, NAME)
    w.open_corrections(sidecar)
    w.state.set_result(result, {"score_cut": 0.5})
    return viewer, w, result


def test_widget_opens_and_refuses_without_a_result(make_napari_viewer_proxy, errors):
    from segger.napari._widgets import CorrectWidget

    viewer = make_napari_viewer_proxy()
    w = dock_widget(viewer, NAME)
    assert isinstance(w, CorrectWidget)
    for b, key in ((w.assign_button, "[A]"), (w.unassign_button, "[U]"), (w.merge_button, "[M]"),
                   (w.split_button, "[S]"), (w.undo_button, "[Ctrl+Z]"), (w.redo_button, "[Ctrl+Shift+Z]"),
                   (w.finetune_button, "[F]")):
        assert b.text().endswith(key)
    assert not w.assign_button.isEnabled() and not w.finetune_button.isEnabled()
    w.finetune()
    assert errors and "run Predict first" in errors[-1] and "\n" not in errors[-1]
    assert dock_widget(viewer, "Predict").state is w.state


def test_click_assign_undo_redo_sidecar_and_restore(make_napari_viewer_proxy, qtbot, errors, tmp_path):
    sidecar = tmp_path / "data.segger-corrections.csv"
    viewer, w, result = _toy_viewer(make_napari_viewer_proxy, sidecar)
    layer = viewer.layers[LAYER_TRANSCRIPTS]
    layer_id = id(getattr(layer, "__wrapped__", layer))
    w.set_active(True)
    assert w.mode_button.isChecked() and LAYER_SELECTION in [l.name for l in viewer.layers]
    cells = _cells(viewer)
    r = int(np.flatnonzero(cells == "cell0")[0])
    other = int(np.flatnonzero(cells == "cell1")[0])
    # click a transcript -> selected; Ctrl+click a transcript of cell1 -> target cell1
    click(w, viewer, layer.data[r])
    np.testing.assert_array_equal(w.selection_rows(), [r])
    click(w, viewer, layer.data[other], modifiers=("Control",))
    assert w.target == "cell1"
    assert "Target: cell1" in w.selection_label.text()
    # the A key (napari's Points 'A' would select all points) assigns
    viewer.layers.selection.active = viewer.layers[LAYER_TRANSCRIPTS]
    press(viewer, "A")
    assert not errors, errors
    cells = _cells(viewer)
    assert cells[r] == "cell1"
    np.testing.assert_allclose(np.asarray(layer.face_color)[r], hash_colors(["cell1"])[0], atol=1e-6)
    assert bool(layer.features["corrected"].iloc[r])
    assert id(getattr(viewer.layers[LAYER_TRANSCRIPTS], "__wrapped__", viewer.layers[LAYER_TRANSCRIPTS])) == layer_id
    marks = viewer.layers[LAYER_CORRECTIONS]
    assert len(marks.data) == 1
    np.testing.assert_allclose(marks.data[0], layer.data[r])
    assert marks.features["new_cell"].iloc[0] == "cell1" and marks.features["previous_cell"].iloc[0] == "cell0"
    assert w.state.result[S.SEGGER_CELL_ID].iloc[r] == "cell1"  # QC / Export see the correction
    saved = pd.read_csv(sidecar)
    assert list(saved["transcript_id"]) == [result[S.TX_ID].iloc[r]] and saved["new_cell"].iloc[0] == "cell1"
    # undo / redo update the layer, the markers and the sidecar
    w.undo_button.click()
    assert _cells(viewer)[r] == "cell0" and not bool(layer.features["corrected"].iloc[r])
    assert len(viewer.layers[LAYER_CORRECTIONS].data) == 0
    assert len(pd.read_csv(sidecar)) == 0
    press(viewer, "Control-Shift-Z")
    assert _cells(viewer)[r] == "cell1" and len(viewer.layers[LAYER_CORRECTIONS].data) == 1
    # rectangle selection in 'segger selection' + Unassign [U]
    sel = viewer.layers[LAYER_SELECTION]
    box = np.array([[5, 27], [5, 33], [15, 33], [15, 27]], float)  # (y, x) µm around cell2's centre
    sel.add_rectangles(box)
    inside = np.flatnonzero((result[S.X].between(27, 33) & result[S.Y].between(5, 15)).to_numpy())
    np.testing.assert_array_equal(w.selection_rows(), np.union1d(inside, []))
    w.unassign_button.click()
    assert not errors, errors
    cells = _cells(viewer)
    assert (cells[inside] == S.UNASSIGNED).all()
    np.testing.assert_allclose(np.asarray(layer.face_color)[inside], np.tile(UNASSIGNED_RGBA, (len(inside), 1)))
    assert len(sel.data) == 0  # the selection is consumed
    n_corr = len(w.store)
    assert n_corr == 1 + len(inside)
    # split cell0 by two seeds, then merge the new part back
    c0 = np.flatnonzero(_cells(viewer) == "cell0")
    xs = result[S.X].to_numpy()[c0]
    a, b = int(c0[np.argmin(xs)]), int(c0[np.argmax(xs)])
    w.set_target(None)
    click(w, viewer, layer.data[a])
    click(w, viewer, layer.data[b], modifiers=("Shift",))
    w.split_button.click()
    assert not errors, errors
    cells = _cells(viewer)
    assert (cells == "cell0-split-1").sum() > 0 and (cells == "cell0").sum() > 0
    click(w, viewer, layer.data[b])
    w.set_target("cell0")
    w.merge_button.click()
    assert not errors, errors
    assert (_cells(viewer) == "cell0-split-1").sum() == 0
    # a second split of the same cell gets a fresh id; undo it
    click(w, viewer, layer.data[a])
    click(w, viewer, layer.data[b], modifiers=("Shift",))
    w.set_target(None)
    w.split()
    assert (_cells(viewer) == "cell0-split-2").sum() > 0 and (_cells(viewer) == "cell0-split-1").sum() == 0
    w.undo()
    assert (_cells(viewer) == "cell0-split-2").sum() == 0
    effective = w.store.effective()
    # errors: an action without a target is one line and changes nothing
    w.set_target(None)
    click(w, viewer, layer.data[r])
    w.assign_button.click()
    assert errors and "no target cell" in errors[-1]
    assert len(w.store.effective()) == len(effective)
    assert w.assign_button.isEnabled()

    # reopen the same data in a new viewer: the sidecar restores the same corrections
    viewer2, w2, _ = _toy_viewer(make_napari_viewer_proxy, sidecar)
    pd.testing.assert_frame_equal(
        w2.store.effective().sort_values("transcript_id").reset_index(drop=True)[["transcript_id", "new_cell"]],
        effective.sort_values("transcript_id").reset_index(drop=True)[["transcript_id", "new_cell"]],
        check_dtype=False,
    )
    np.testing.assert_array_equal(_cells(viewer2), _cells(viewer))
    assert len(viewer2.layers[LAYER_CORRECTIONS].data) == len(effective)
    assert "Restored" in w2.file_label.text()
    # export
    out = w2.export_corrections(tmp_path / "fixes.parquet")
    assert out is not None and len(pd.read_parquet(out)) == len(effective)


# ------------------------------------------------------------------------------------ real data
def _pipeline(viewer, qtbot, sample="xenium_lung", epochs=1):
    viewer.open_sample("napari-segger", sample)
    d = dock_widget(viewer, "Data & graph")
    d.build_button.click()
    wait_job(qtbot, d, 60_000)
    assert d.state.bundle is not None, d.panel.status.text()
    t = dock_widget(viewer, "Train / fine-tune")
    t.epochs.setValue(epochs)
    # a new model of this size (the default start is fine-tuning the bundled model)
    qtbot.mouseClick(t.new_radio, Qt.MouseButton.LeftButton, pos=t.new_radio.rect().center())
    t.size_combo.setCurrentText("tiny")
    t.device_combo.setCurrentText("cpu")
    return d, t


def _predict(viewer, qtbot):
    p = dock_widget(viewer, "Predict")
    p.outlines.setChecked(False)  # keep the test short: no outline layer
    p.predict_button.click()
    wait_job(qtbot, p, 180_000)
    assert LAYER_TRANSCRIPTS in [l.name for l in viewer.layers]
    return p


@pytest.mark.slow
def test_click_assign_finetune_updates_layers_on_real_data(make_napari_viewer_proxy, qtbot, errors, cache):
    viewer = make_napari_viewer_proxy()
    _, t = _pipeline(viewer, qtbot)
    t.train_button.click()
    wait_job(qtbot, t, 180_000)
    assert t.state.model is not None, errors
    _predict(viewer, qtbot)
    w = dock_widget(viewer, NAME)
    state = w.state
    sidecar = cache / "sample-xenium_lung.segger-corrections.csv"
    assert str(sidecar) in w.file_label.text()
    assert w.finetune_button.isEnabled()

    # error path 1: fine-tune with no corrections
    w.finetune_button.click()
    assert errors and "no corrections to learn from" in errors[-1]
    assert not w.busy and w.finetune_button.isEnabled()
    # error path 2: a correction naming no transcript/nucleus of this graph fails in the worker
    w.store.record("assign", [-12345], ["nowhere"], "no-such-cell")
    w.finetune_button.click()
    wait_job(qtbot, w, 120_000)
    assert "none of the corrections names a transcript and a nucleus" in errors[-1]
    assert w.finetune_button.isEnabled() and "failed" in w.panel.status.text()
    assert w.undo() and len(w.store) == 0
    errors.clear()

    # click a transcript of one nucleus cell, Ctrl+click a transcript of a neighbouring cell, assign
    layer = viewer.layers[LAYER_TRANSCRIPTS]
    w.set_active(True)
    res = state.result
    bd_ids = set(state.bundle.nuclei[S.BD_ID].astype(str))
    cells = _cells(viewer)
    kind = res[S.ASSIGNMENT].astype(str).to_numpy()
    cand = np.flatnonzero((kind == "cytoplasm") & np.isin(cells, list(bd_ids)))
    r = int(cand[len(cand) // 2])
    yx = np.asarray(layer.data, float)
    from scipy.spatial import cKDTree

    d, nb = cKDTree(yx).query(yx[r], k=60)
    nb = [int(j) for j in nb if cells[j] != cells[r] and cells[j] in bd_ids]
    assert nb, "no neighbouring cell"
    target_row = nb[0]
    target = cells[target_row]
    click(w, viewer, yx[r])
    np.testing.assert_array_equal(w.selection_rows(), [r])
    w.start_pick_target()
    click(w, viewer, yx[target_row])
    assert w.target == target
    press(viewer, "A")
    assert not errors, errors
    assert _cells(viewer)[r] == target
    np.testing.assert_allclose(np.asarray(layer.face_color)[r], hash_colors([target])[0], atol=1e-6)
    assert sidecar.is_file() and len(pd.read_csv(sidecar)) == 1
    # the nucleus of a cell also picks it as target
    nuc = state.bundle.nuclei.iloc[0]
    c = nuc[S.GEOMETRY].representative_point()
    w.set_target(None)
    w.start_pick_target()
    click(w, viewer, (c.y, c.x))
    assert w.target == str(nuc[S.BD_ID])

    # Cancel stops at the next step and leaves the model and the assignments as they were
    old_model, old_pred = state.model, state.prediction
    cells_before = _cells(viewer).copy()
    w.steps.setValue(500)

    def cancel_on_step(ev):
        if getattr(ev, "metrics", None) and "correction_loss" in ev.metrics:
            w.panel.cancel_button.click()

    w.job.started.connect(lambda: w.job.worker.yielded.connect(cancel_on_step))
    w.finetune_button.click()
    wait_job(qtbot, w, 180_000)
    w.job.started.disconnect()
    assert w.job.cancelled and not errors, errors
    assert state.model is old_model and state.prediction is old_pred
    assert "cancelled" in w.summary.text() and w.finetune_button.isEnabled()
    np.testing.assert_array_equal(_cells(viewer), cells_before)

    # fine-tune (tiny, few steps) in the worker; layers updated in place
    n_layers = len(viewer.layers)
    w.steps.setValue(3)
    press(viewer, "F")
    assert w.busy and not w.finetune_button.isEnabled()
    wait_job(qtbot, w, 180_000)
    assert not errors, errors
    assert state.model is not old_model and state.prediction is not old_pred
    assert state.run.save_checkpoint(cache.parent / "ft.pt").is_file()
    assert "Fine-tuned on 1 correction(s)" in w.summary.text()
    assert viewer.layers[LAYER_TRANSCRIPTS] is layer or len([l for l in viewer.layers if l.name == LAYER_TRANSCRIPTS]) == 1
    assert _cells(viewer)[r] == target  # the correction still holds
    assert bool(viewer.layers[LAYER_TRANSCRIPTS].features["corrected"].iloc[r])
    assert state.result[S.SEGGER_CELL_ID].iloc[r] == target and bool(state.result["corrected"].iloc[r])
    # the difference layer marks exactly the other transcripts that changed cell
    changed = w.last_changed
    assert r not in set(changed.tolist())
    names = [l.name for l in viewer.layers]
    if len(changed):
        assert len(viewer.layers[LAYER_CHANGES].data) == len(changed)
        assert n_layers + 1 == len(viewer.layers)
    else:
        assert LAYER_CHANGES not in names and n_layers == len(viewer.layers)
    assert f"{len(changed):,} other transcript(s) changed cell" in w.summary.text()
    # undo after fine-tuning: the transcript goes back to what the fine-tuned model says
    w.undo()
    base = state.prediction.assign(**{k: v for k, v in state.result_params.items() if k in ("score_cut", "fragments")})
    assert _cells(viewer)[r] == base[S.SEGGER_CELL_ID].iloc[r]
    w.redo()
    assert _cells(viewer)[r] == target

    # the same sample opened again in a new viewer: the corrections come back from the sidecar
    viewer2 = make_napari_viewer_proxy()
    d2, _ = _pipeline(viewer2, qtbot)
    w2 = dock_widget(viewer2, NAME)
    assert len(w2.store) == 1 and "Restored 1 correction(s)" in w2.file_label.text()
    w2.state.set_model(state.model, None, {})
    _predict(viewer2, qtbot)
    assert _cells(viewer2)[r] == target
    assert len(viewer2.layers[LAYER_CORRECTIONS].data) == 1
    assert not errors, errors


def test_lasso_then_reassign_with_real_mouse_and_keys(make_napari_viewer_proxy, qtbot, errors, tmp_path):
    """Issue 12 #8, a lasso "reassign to": Shift+P on the canvas, a freehand lasso drawn with the
    mouse around part of cell2 (click, move, click), T and a click on a cell1 transcript, A."""
    import shapely

    from _napari_helpers import center_on, click_canvas, key_canvas, move_canvas

    viewer, w, result = _toy_viewer(make_napari_viewer_proxy, tmp_path / "lasso.segger-corrections.csv")
    real = getattr(viewer, "__wrapped__", viewer)
    real.window._qt_viewer.canvas.size = (600, 800)
    qtbot.mouseClick(w.mode_button, Qt.MouseButton.LeftButton)
    assert w.active
    layer = viewer.layers[LAYER_TRANSCRIPTS]
    yx = np.asarray(layer.data, dtype=float)
    center_on(viewer, (10.0, 20.0), zoom=18.0)
    real.layers.selection.active = real.layers[LAYER_SELECTION]
    key_canvas(qtbot, viewer, Qt.Key.Key_P, Qt.KeyboardModifier.ShiftModifier)
    sel = viewer.layers[LAYER_SELECTION]
    assert str(sel.mode) == "add_polygon_lasso"
    # a lasso around the right half of cell2 (x 30..36, y 5..15 µm), drawn point by point
    ring = [(5.0, 30.0), (5.0, 33.0), (5.0, 36.0), (10.0, 36.0), (15.0, 36.0), (15.0, 33.0), (15.0, 30.0),
            (10.0, 30.0)]
    click_canvas(qtbot, viewer, ring[0])
    for p in ring[1:]:
        move_canvas(qtbot, viewer, p)
    click_canvas(qtbot, viewer, ring[-1])
    assert len(sel.data) == 1
    poly = shapely.Polygon(np.asarray(sel.data[0])[:, ::-1])
    inside = np.flatnonzero(shapely.contains_xy(poly, yx[:, 1], yx[:, 0]))
    assert len(inside) > 5
    np.testing.assert_array_equal(w.selection_rows(), inside)
    # T, then a click on a transcript of cell1 picks the target (the lasso tool does not draw it)
    cells = _cells(viewer)
    t = int(np.flatnonzero(cells == "cell1")[0])
    key_canvas(qtbot, viewer, Qt.Key.Key_T)
    center_on(viewer, yx[t], zoom=40.0)
    click_canvas(qtbot, viewer, yx[t])
    assert w.target == "cell1", w.panel.status.text()
    assert len(viewer.layers[LAYER_SELECTION].data) == 1  # no second lasso was started
    key_canvas(qtbot, viewer, Qt.Key.Key_A)
    assert not errors, errors
    cells = _cells(viewer)
    assert (cells[inside] == "cell1").all()
    assert (cells[np.setdiff1d(np.flatnonzero(result[S.SEGGER_CELL_ID] == "cell2"), inside)] == "cell2").all()
    assert len(w.store) == len(inside)
