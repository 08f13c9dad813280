"""Dock widgets in a headless viewer (pytest-qt + make_napari_viewer_proxy, Qt offscreen).

``make_napari_viewer_proxy`` hands the widgets the same proxy a plugin gets and makes any layer
change from a worker thread raise, so these tests also prove results are applied on the main
thread only.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from segger import schema as S
from segger.napari.layers import (
    LAYER_ATTENTION,
    LAYER_CELLS,
    LAYER_TRANSCRIPTS,
    LAYER_TX_EDGES,
    UNASSIGNED_RGBA,
    hash_colors,
)

from _napari_helpers import dock_widget, wait_job

pytestmark = pytest.mark.gui

WIDGETS = ("Data & graph", "Train / fine-tune", "Predict", "QC", "Export")


def _has_prediction() -> bool:
    try:
        import segger.prediction as P
    except ImportError:
        return False
    return all(hasattr(P, n) for n in ("iter_predict", "PredictConfig", "attention_edges"))


needs_prediction = pytest.mark.skipif(not _has_prediction(), reason="segger.prediction not available yet")


def _kind(layer) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__


def _layers_named(viewer, name):
    return [l for l in viewer.layers if l.name == name]


@pytest.fixture
def errors(monkeypatch):
    """Collect show_error messages (and fail on a traceback dialog, which napari never shows here)."""
    import napari.utils.notifications as N

    seen: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: seen.append(str(msg)))
    return seen


# ------------------------------------------------------------------------------------ opening
def test_every_widget_opens_through_the_manifest(make_napari_viewer_proxy):
    from segger.napari import _widgets as W

    viewer = make_napari_viewer_proxy()
    classes = (W.DataGraphWidget, W.TrainWidget, W.PredictWidget, W.QCWidget, W.ExportWidget)
    for name, cls in zip(WIDGETS, classes):
        widget = dock_widget(viewer, name)
        assert isinstance(widget, cls)
    # all widgets of one viewer share one state
    states = {id(w.state) for w in (dock_widget(viewer, n) for n in WIDGETS)}
    assert len(states) == 1


@pytest.mark.parametrize("key,prefix", [("xenium_lung", "lung"), ("xenium_breast", "breast")])
def test_open_sample_data(make_napari_viewer_proxy, key, prefix):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-segger", key)
    names = [l.name for l in viewer.layers]
    assert f"{prefix} transcripts" in names and f"{prefix} nuclei" in names
    pts = viewer.layers[f"{prefix} transcripts"]
    assert "gene" in pts.features.columns and len(pts.data) > 10_000
    assert "10x Genomics" in pts.metadata["segger"]["attribution"]
    # the Data & graph widget picks them up by itself
    w = dock_widget(viewer, "Data & graph")
    assert w.points_combo.current_layer().name == f"{prefix} transcripts"
    assert w.gene_combo.currentText() == "gene"
    assert w.nuclei_combo.current_layer().name == f"{prefix} nuclei"


# ------------------------------------------------------------------------------------ errors
def test_missing_gene_feature_shows_error_and_ui_stays_usable(make_napari_viewer_proxy, qtbot, errors):
    viewer = make_napari_viewer_proxy()
    viewer.add_points(np.random.default_rng(0).uniform(0, 50, (100, 2)), name="bare points")
    viewer.add_shapes([np.array([[0, 0], [0, 10], [10, 10], [10, 0]])], shape_type="polygon", name="nuc")
    w = dock_widget(viewer, "Data & graph")
    w.points_combo.select_layer("bare points")
    assert w.gene_combo.count() == 0
    w.build_button.click()
    assert errors and "layer 'bare points' has no feature 'gene'" in errors[-1]
    assert "choose the gene feature" in errors[-1]
    assert "\n" not in errors[-1]
    assert w.build_button.isEnabled() and not w.busy
    assert w.state.bundle is None


def test_wrong_nuclei_layer_in_worker_shows_error(make_napari_viewer_proxy, qtbot, errors, lung_sample):
    from segger.napari.layers import transcripts_to_points

    viewer = make_napari_viewer_proxy()
    d, kw, _ = transcripts_to_points(lung_sample.transcripts.head(2000), name="tx")
    viewer.add_points(d, **kw)
    viewer.add_labels(np.zeros((50, 50), dtype=np.int32), name="empty masks")
    w = dock_widget(viewer, "Data & graph")
    w.nuclei_combo.select_layer("empty masks")
    w.build()
    wait_job(qtbot, w)
    assert errors and "segment nuclei first" in errors[-1]
    assert w.build_button.isEnabled() and w.state.bundle is None
    assert w.panel.bar.maximum() > 0  # busy indicator stopped
    # the same widget then works with good input
    box = np.array([[2200, 2250], [2200, 2260], [2210, 2260], [2210, 2250]], float)  # (y, x) µm
    viewer.add_shapes([box], shape_type="polygon", name="box nucleus")
    w.nuclei_combo.select_layer("box nucleus")
    w.build()
    wait_job(qtbot, w)
    assert w.state.bundle is not None and w.state.bundle.summary()["n_bd"] == 1


def test_labels_nuclei_from_a_segmentation_plugin(make_napari_viewer_proxy, qtbot, errors, lung_sample):
    """A Labels layer in pixels (scale, translate) — as Cellpose/StarDist on DAPI would give."""
    from segger.napari.layers import RASTER_PIXEL_UM, nuclei_to_layer, transcripts_to_points

    viewer = make_napari_viewer_proxy()
    d, kw, _ = transcripts_to_points(lung_sample.transcripts, name="tx")
    viewer.add_points(d, **kw)
    labels, lkw, kind = nuclei_to_layer(lung_sample.nuclei, max_shapes=0)  # force the raster
    assert kind == "labels" and lkw["scale"] == (RASTER_PIXEL_UM, RASTER_PIXEL_UM)
    viewer.add_labels(labels, scale=lkw["scale"], translate=lkw["translate"], name="cellpose masks")
    w = dock_widget(viewer, "Data & graph")
    w.nuclei_combo.select_layer("cellpose masks")
    w.build()
    wait_job(qtbot, w, 60_000)
    assert not errors, errors
    s = w.state.bundle.summary()
    assert abs(s["n_bd"] - len(lung_sample.nuclei)) <= 3
    got = w.state.bundle.nuclei[[S.X, S.Y]].to_numpy()
    want = lung_sample.nuclei[[S.X, S.Y]].to_numpy()
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(want).query(got)
    assert np.median(dist) < 0.5  # µm: the raster lands where the polygons are


# ------------------------------------------------------------------------------------ pipeline
def _build(viewer, qtbot, sample="xenium_lung", edges=False):
    viewer.open_sample("napari-segger", sample)
    w = dock_widget(viewer, "Data & graph")
    w.show_edges.setChecked(edges)
    w.build_button.click()
    wait_job(qtbot, w, 60_000)
    assert w.state.bundle is not None, w.panel.status.text()
    return w


def _tiny(train, epochs=1):
    train.epochs.setValue(epochs)
    # a new model of this size (the default start is fine-tuning the bundled model)
    from qtpy.QtTest import QTest

    QTest.mouseClick(train.new_radio, Qt.MouseButton.LeftButton, pos=train.new_radio.rect().center())
    train.size_combo.setCurrentText("tiny")
    train.device_combo.setCurrentText("cpu")


@pytest.mark.slow
def test_build_graph_reports_counts_and_edges_layer(make_napari_viewer_proxy, qtbot, errors):
    viewer = make_napari_viewer_proxy()
    w = _build(viewer, qtbot, edges=True)
    s = w.state.bundle.summary()
    assert f"{s['n_tx']:,} transcripts" in w.summary.text()
    assert s["n_tx"] == len(viewer.layers["lung transcripts"].data)
    edges = viewer.layers[LAYER_TX_EDGES]
    assert _kind(edges) == "Vectors" and 0 < len(edges.data) <= s["n_tx_tx"]
    # rebuilding updates the edges layer in place
    w.build_button.click()
    wait_job(qtbot, w, 60_000)
    assert len(_layers_named(viewer, LAYER_TX_EDGES)) == 1
    assert not errors


@pytest.mark.slow
def test_train_then_cancel_keeps_weights_and_reenables(make_napari_viewer_proxy, qtbot, errors, tmp_path):
    viewer = make_napari_viewer_proxy()
    _build(viewer, qtbot)
    t = dock_widget(viewer, "Train / fine-tune")
    assert t.train_button.isEnabled()
    _tiny(t, epochs=200)
    seen = []

    def on_progress(ev):
        if ev.metrics.get("loss") is not None:
            seen.append(ev)
            if len(seen) == 2:
                t.panel.cancel_button.click()

    t.job.started.connect(lambda: t.worker.yielded.connect(on_progress))
    t.train_button.click()
    assert t.busy and not t.train_button.isEnabled() and t.panel.cancel_button.isEnabled()
    wait_job(qtbot, t, 120_000)
    assert not errors, errors
    assert t.job.cancelled
    assert t.state.model is not None and t.state.model_info["cancelled"] is True
    assert len(t.state.run.history) < 200
    assert t.train_button.isEnabled() and t.save_button.isEnabled()
    assert not t.panel.cancel_button.isEnabled()
    assert "cancelled" in t.info.text()
    # the kept weights are usable: save them
    out = t.save_checkpoint(tmp_path / "cancelled.pt")
    assert out is not None and out.is_file()


@needs_prediction
@pytest.mark.slow
def test_build_train_predict_layers_update_in_place(make_napari_viewer_proxy, qtbot, errors, tmp_path):
    viewer = make_napari_viewer_proxy()
    _build(viewer, qtbot)
    t = dock_widget(viewer, "Train / fine-tune")
    _tiny(t, epochs=2)
    t.train_button.click()
    wait_job(qtbot, t, 180_000)
    assert not errors, errors
    assert t.state.model is not None and len(t.state.run.history) == 2
    assert "loss" in t.plot.series and len(t.plot.series["loss"]) >= 2
    ckpt = t.save_checkpoint(tmp_path / "m.pt")
    assert ckpt.is_file()

    p = dock_widget(viewer, "Predict")
    assert p.predict_button.isEnabled()
    p.predict_button.click()
    wait_job(qtbot, p, 180_000)
    assert not errors, errors
    n_tx = p.state.bundle.summary()["n_tx"]
    res_layer = viewer.layers[LAYER_TRANSCRIPTS]
    assert _kind(res_layer) == "Points" and len(res_layer.data) == n_tx
    feats = res_layer.features
    for col in (S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT, S.GENE):
        assert col in feats.columns
    ids = feats[S.SEGGER_CELL_ID].astype(str).to_numpy()
    fc = np.asarray(res_layer.face_color)
    un = ids == S.UNASSIGNED
    if un.any():
        np.testing.assert_allclose(fc[un][0], UNASSIGNED_RGBA, atol=1e-6)
    assigned = np.flatnonzero(~un)
    assert assigned.size > 0
    cid = ids[assigned[0]]
    np.testing.assert_allclose(fc[assigned[0]], hash_colors([cid])[0], atol=1e-6)
    assert not viewer.layers["lung transcripts"].visible  # input hidden under the result
    qtbot.waitUntil(lambda: not p.outline_busy and bool(_layers_named(viewer, LAYER_CELLS)), timeout=60_000)
    cells = viewer.layers[LAYER_CELLS]
    assert _kind(cells) in ("Shapes", "Labels")

    # re-threshold: instant, same layers, recoloured
    before_ids = ids.copy()
    frac_before = (~un).mean()
    p.set_score_cut(0.95)
    assert p.state.result_params["score_cut"] == pytest.approx(0.95)
    # exact rule (fragments on or off): a transcript stays with a nucleus's cell ⇔ it did and its score ≥ cut
    kind1 = feats[S.ASSIGNMENT].astype(str).isin(["nucleus", "cytoplasm"]).to_numpy()
    feats2 = viewer.layers[LAYER_TRANSCRIPTS].features
    kind2 = feats2[S.ASSIGNMENT].astype(str).isin(["nucleus", "cytoplasm"]).to_numpy()
    keep = kind1 & (feats[S.SCORE].to_numpy() >= 0.95)
    np.testing.assert_array_equal(kind2, keep)
    assert kind1.sum() > keep.sum()  # the cut removed some: the check above is not vacuous
    p.fragments.setChecked(False)
    ids3 = viewer.layers[LAYER_TRANSCRIPTS].features[S.SEGGER_CELL_ID].astype(str).to_numpy()
    assert (ids3 != S.UNASSIGNED).mean() <= frac_before + 1e-9
    assert len(viewer.layers[LAYER_TRANSCRIPTS].features) == n_tx
    p.set_score_cut(0.5)
    p.fragments.setChecked(True)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    np.testing.assert_array_equal(
        viewer.layers[LAYER_TRANSCRIPTS].features[S.SEGGER_CELL_ID].astype(str).to_numpy(), before_ids
    )

    # attention edges
    p.edge_type.setCurrentText("transcript → nucleus")
    p.top_k.setValue(1)
    p.attention_button.click()
    wait_job(qtbot, p, 120_000)
    assert not errors, errors
    att = viewer.layers[LAYER_ATTENTION]
    assert _kind(att) == "Vectors" and len(att.data) > 0
    w = att.features["weight"].to_numpy()
    assert np.isfinite(w).all() and (w >= 0).all()

    # run everything again: layers are updated, never duplicated
    n_layers = len(viewer.layers)
    p.predict_button.click()
    wait_job(qtbot, p, 180_000)
    p.attention_button.click()
    wait_job(qtbot, p, 120_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    for name in (LAYER_TRANSCRIPTS, LAYER_CELLS, LAYER_ATTENTION):
        assert len(_layers_named(viewer, name)) == 1, name
    assert len(viewer.layers) == n_layers

    # QC against the vendor cell id, then inspect one cell
    q = dock_widget(viewer, "QC")
    assert q.reference.currentText() == "cell_id"
    q.qc_button.click()
    wait_job(qtbot, q, 120_000)
    assert not errors, errors
    assert q.table.rowCount() >= 6
    assert q.table.item(1, 0).text() == "fraction assigned"
    assert q.table.item(1, 2).text() not in ("", "–")  # reference column filled
    assert q.hist.counts and sum(q.hist.counts) > 0
    q.select_cell(cid)
    assert f"cell {cid}" in q.cell_info.text() and "vendor cell" in q.cell_info.text()
    assert q.cell_at(*res_layer.data[assigned[0]]) == ids[assigned[0]]
    # a click (press + release, no drag) on a transcript shows its cell
    other = assigned[-1]

    class _Event:
        def __init__(self, pos):
            self.position, self.type = tuple(pos), "mouse_press"

    ev = _Event(res_layer.data[other])
    gen = q._on_mouse(viewer, ev)
    next(gen)
    ev.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    assert f"cell {ids[other]}" in q.cell_info.text()

    # export
    e = dock_widget(viewer, "Export")
    assert e.export_button.isEnabled()
    e.checks["model"].setChecked(True)
    e.export(tmp_path / "out")
    wait_job(qtbot, e, 120_000)
    assert not errors, errors
    # the file names of `segger segment`'s output folder (segger.utils.outdir), and its run JSON
    for name in ("segger_transcripts.parquet", "segger_boundaries.parquet", "segger_cells.h5ad",
                 "qc.json", "model/last.pt", "segger_run.json"):
        assert (tmp_path / "out" / name).is_file(), name


@needs_prediction
@pytest.mark.slow
def test_fine_tune_from_checkpoint_and_load(make_napari_viewer_proxy, qtbot, errors, tmp_path):
    viewer = make_napari_viewer_proxy()
    _build(viewer, qtbot)
    t = dock_widget(viewer, "Train / fine-tune")
    _tiny(t, epochs=1)
    t.train_button.click()
    wait_job(qtbot, t, 120_000)
    ckpt = t.save_checkpoint(tmp_path / "base.pt")
    first = t.state.model
    t.ckpt_radio.setChecked(True)
    t.ckpt_path.setText(str(ckpt))
    t.train_button.click()
    wait_job(qtbot, t, 120_000)
    assert not errors, errors
    assert t.state.model is not None and t.state.model is not first
    t.load_button.click()
    wait_job(qtbot, t, 60_000)
    assert not errors, errors
    assert "Loaded base.pt" in t.info.text()
    # a missing checkpoint is a one-line error, UI usable
    t.ckpt_path.setText(str(tmp_path / "nope.pt"))
    t.train_button.click()
    assert errors and "does not exist" in errors[-1]
    assert t.train_button.isEnabled()


def _open_progress_bars() -> int:
    from napari.utils import progress

    return len(progress._all_instances)


def test_runtime_error_in_worker_reaches_the_user(make_napari_viewer_proxy, qtbot, errors):
    """torch errors are RuntimeErrors, which superqt would drop silently: they must show up."""
    from segger.progress import Progress

    viewer = make_napari_viewer_proxy()
    w = dock_widget(viewer, "Predict")
    before = _open_progress_bars()

    def boom():
        yield Progress("x", 0, 2, "working")
        raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")

    w.job.start(boom, desc="Boom")
    wait_job(qtbot, w)
    assert errors and errors[-1] == "RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    assert "failed" in w.panel.status.text()
    assert _open_progress_bars() == before  # the napari progress bar was closed
    assert not w.panel.cancel_button.isEnabled()


def test_cancel_closes_the_core_generator_in_the_worker(make_napari_viewer_proxy, qtbot, errors):
    import threading

    from segger.progress import Progress

    viewer = make_napari_viewer_proxy()
    w = dock_widget(viewer, "Predict")
    gate = threading.Event()
    closed = []

    def slow():
        try:
            yield Progress("x", 0, 1000, "started")
            gate.wait(10)
            for i in range(1, 1000):
                yield Progress("x", i, 1000, "step")
        finally:
            closed.append(threading.current_thread() is not threading.main_thread())

    w.job.start(slow, desc="Slow")
    assert w.job.start(slow, desc="Slow") is None  # already running: refused, not queued
    qtbot.waitUntil(lambda: w.panel.status.text() == "Slow: started", timeout=10_000)
    w.job.cancel()
    gate.set()
    wait_job(qtbot, w)
    assert w.job.cancelled and not errors
    assert closed == [True]  # the core generator was closed in the worker thread


def test_upsert_replaces_layer_type_in_place(make_napari_viewer_proxy):
    """Cell outlines switch from Shapes to Labels past MAX_SHAPES: still one layer, same slot."""
    import pandas as pd
    import shapely

    from segger.napari._viewer import upsert_layer
    from segger.napari.layers import cells_to_layer

    viewer = make_napari_viewer_proxy()
    viewer.add_points(np.zeros((2, 2)), name="below")
    geoms = [shapely.box(5 * i, 0, 5 * i + 3, 3) for i in range(20)]
    bd = pd.DataFrame({"cell_id": [f"c{i}" for i in range(20)], "geometry": geoms})
    upsert_layer(viewer, cells_to_layer(bd, max_shapes=100))
    viewer.add_points(np.zeros((2, 2)), name="above")
    assert _kind(viewer.layers[LAYER_CELLS]) == "Shapes"
    viewer.layers[LAYER_CELLS].opacity = 0.3
    upsert_layer(viewer, cells_to_layer(bd, max_shapes=10))
    assert [l.name for l in viewer.layers] == ["below", LAYER_CELLS, "above"]
    assert _kind(viewer.layers[LAYER_CELLS]) == "Labels"
    assert viewer.layers[LAYER_CELLS].opacity == pytest.approx(0.3)  # the user's setting is kept
