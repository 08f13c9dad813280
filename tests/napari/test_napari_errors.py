"""GUI error paths (issue 6, items 1, 5 and 6), headless (Qt offscreen, make_napari_viewer_proxy).

For each worker — build, train, load, predict, fine-tune, export — the core function it calls is
monkeypatched to fail part-way, and the widget must: show one error notification (no traceback),
re-enable its controls, close its progress bars (napari's and its own), and leave the layers and
the shared state as they were. Malformed inputs opened through the reader raise one
:class:`SeggerInputError` that napari shows as a notification (valid-but-odd ones: a warning), and
a very large transcripts layer makes *Data & graph* warn and offer a crop instead of freezing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari.layers import LAYER_TRANSCRIPTS, result_to_points
from segger.progress import Progress

from _napari_helpers import dock_widget, wait_job

pytestmark = pytest.mark.gui

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


# ------------------------------------------------------------------------------------ helpers
@pytest.fixture
def notes(monkeypatch):
    """Capture napari error / warning notifications (the widgets import them at call time)."""
    import napari.utils.notifications as N

    seen = {"error": [], "warning": [], "info": []}
    monkeypatch.setattr(N, "show_error", lambda msg: seen["error"].append(str(msg)))
    monkeypatch.setattr(N, "show_warning", lambda msg: seen["warning"].append(str(msg)))
    monkeypatch.setattr(N, "show_info", lambda msg: seen["info"].append(str(msg)))
    return seen


def _real(layer):
    return getattr(layer, "__wrapped__", layer)


def layers_snapshot(viewer) -> list[tuple]:
    out = []
    for layer in viewer.layers:
        real = _real(layer)
        data = layer.data
        n = len(data) if not hasattr(data, "shape") else data.shape[0]
        feats = getattr(layer, "features", None)
        cells = tuple(feats[S.SEGGER_CELL_ID].astype(str)) if feats is not None and S.SEGGER_CELL_ID in feats else ()
        out.append((layer.name, type(real).__name__, id(real), n, bool(layer.visible), cells))
    return out


def open_bars() -> int:
    from napari.utils import progress

    return len(progress._all_instances)


def assert_recovered(widget, controls, notes, layers_before, bars_before, fragment: str) -> None:
    """One error line shown; the widget is idle with its controls back; nothing else changed."""
    assert len(notes["error"]) == 1, notes["error"]
    msg = notes["error"][0]
    assert fragment in msg and "\n" not in msg and "Traceback" not in msg
    assert not widget.busy and widget.worker is None
    for c in controls:
        assert c.isEnabled(), c.text() if hasattr(c, "text") else c
    assert not widget.panel.cancel_button.isEnabled()
    assert widget.panel.bar.maximum() > 0  # the busy animation stopped
    assert "failed" in widget.panel.status.text()
    assert open_bars() == bars_before  # napari's progress bar was closed
    assert layers_snapshot(widget.viewer) == layers_before


def _tables(n_side=3, per_cell=60):
    import shapely

    rng = np.random.default_rng(0)
    tx_rows, nuc = [], []
    for k in range(n_side * n_side):
        cx, cy = 10.0 + 20 * (k // n_side), 10.0 + 20 * (k % n_side)
        geom = shapely.Point(cx, cy).buffer(3.0, quad_segs=8)
        nuc.append({S.BD_ID: f"cell-{k}", S.GEOMETRY: geom, S.X: cx, S.Y: cy, S.BD_SOURCE: "polygon"})
        xy = rng.normal([cx, cy], 4.0, (per_cell, 2))
        inside = shapely.contains_xy(geom, xy[:, 0], xy[:, 1])
        tx_rows.append(pd.DataFrame({S.X: xy[:, 0], S.Y: xy[:, 1], S.Z: 0.0,
                                     S.GENE: rng.choice([f"G{(k % 3) * 4 + g}" for g in range(4)], per_cell),
                                     S.QV: 40.0, S.NUCLEAR: inside, S.CELL_ID: f"cell-{k}"}))
    tx = pd.concat(tx_rows, ignore_index=True)
    tx.insert(0, S.TX_ID, np.arange(len(tx), dtype=np.int64))
    return tx, pd.DataFrame(nuc)


def _viewer_with_inputs(make_napari_viewer_proxy):
    from segger.napari.layers import nuclei_to_layer, transcripts_to_points

    viewer = make_napari_viewer_proxy()
    tx, nuc = _tables()
    d, kw, _ = transcripts_to_points(tx, name="tx")
    viewer.add_points(d, **kw)
    data, nkw, kind = nuclei_to_layer(nuc, name="nuclei")
    assert kind == "shapes"
    viewer.add_shapes(data, **nkw)
    return viewer, tx, nuc


def _bundle():
    from segger.data import build_graph

    tx, nuc = _tables()
    return build_graph(tx, nuc)


def _tiny_model(bundle):
    from segger.models import SeggerLinkModel, build_hetero_model
    from segger.training import TrainConfig

    cfg = TrainConfig(hidden_channels=8, out_channels=8, heads=1, num_mid_layers=0).model_config(len(bundle.vocab))
    return SeggerLinkModel(build_hetero_model(**cfg.to_dict()), spatial=True).eval()


def _toy_result(n_per=40):
    rng = np.random.default_rng(0)
    rows = []
    for k, cx in enumerate((10.0, 20.0, 30.0)):
        for j, (x, y) in enumerate(rng.normal([cx, 10.0], 2.0, (n_per, 2))):
            rows.append((k * 1000 + j, x, y, f"g{j % 5}", f"cell{k}"))
    df = pd.DataFrame(rows, columns=[S.TX_ID, S.X, S.Y, S.GENE, S.SEGGER_CELL_ID])
    df[S.Z] = 0.0
    df[S.SCORE] = np.float32(0.9)
    df[S.ASSIGNMENT] = pd.Categorical(["cytoplasm"] * len(df), categories=list(S.ASSIGNMENT_KINDS))
    return df


def _failing(exc: BaseException, steps: int = 2):
    """A core progress generator that reports ``steps`` events, then raises ``exc``."""
    def gen(*_args, **_kwargs):
        for i in range(steps):
            yield Progress("work", i, steps + 1, f"step {i}", {"loss": 1.0 / (i + 1)})
        raise exc
    return gen


# ------------------------------------------------------------------------------------ workers
def test_build_worker_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch):
    import segger.data

    viewer, _, _ = _viewer_with_inputs(make_napari_viewer_proxy)
    w = dock_widget(viewer, "Data & graph")
    w.points_combo.select_layer("tx")
    w.nuclei_combo.select_layer("nuclei")
    w.show_edges.setChecked(True)

    def boom(*_a, **_k):
        raise RuntimeError(CUDA_OOM)  # a RuntimeError: superqt would drop it without the JobError wrap

    monkeypatch.setattr(segger.data, "build_graph", boom)
    before, bars = layers_snapshot(viewer), open_bars()
    w.build_button.click()
    assert w.busy and not w.build_button.isEnabled()
    wait_job(qtbot, w)
    assert_recovered(w, [w.build_button, w.points_combo, w.nuclei_combo, w.gene_combo, w.crop_view],
                     notes, before, bars, "out of memory")
    assert w.state.bundle is None and w.summary.text() == "No graph yet."


def test_train_worker_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch):
    import segger.training

    viewer, _, _ = _viewer_with_inputs(make_napari_viewer_proxy)
    t = dock_widget(viewer, "Train / fine-tune")
    bundle = _bundle()
    t.state.set_bundle(bundle, {"points": "tx"})

    class FailingRun:
        def __init__(self, bundle, config, checkpoint=None, **kw):
            self.bundle, self.config = bundle, config

        iter_train = _failing(RuntimeError(CUDA_OOM), steps=3)

    monkeypatch.setattr(segger.training, "TrainingRun", FailingRun)
    t.epochs.setValue(2)
    # a new model of this size (the default start is fine-tuning the bundled model)
    qtbot.mouseClick(t.new_radio, Qt.MouseButton.LeftButton, pos=t.new_radio.rect().center())
    t.size_combo.setCurrentText("tiny")
    before, bars = layers_snapshot(viewer), open_bars()
    t.train_button.click()
    wait_job(qtbot, t)
    assert_recovered(t, [t.train_button, t.load_button, t.epochs, t.lr, t.device_combo, t.size_combo,
                         t.new_radio, t.ckpt_radio], notes, before, bars, "out of memory")
    assert t.state.model is None and t.state.run is None and t.state.bundle is bundle
    assert not t.save_button.isEnabled()  # nothing to save


def test_load_checkpoint_worker_error(make_napari_viewer_proxy, qtbot, notes, tmp_path):
    """A pickle file posing as a checkpoint: refused in the worker, one line, nothing loaded."""
    import os
    import pickle

    marker = tmp_path / "code-was-run"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    viewer, _, _ = _viewer_with_inputs(make_napari_viewer_proxy)
    t = dock_widget(viewer, "Train / fine-tune")
    t.state.set_bundle(_bundle(), {"points": "tx"})
    evil = tmp_path / "model.pt"
    evil.write_bytes(pickle.dumps({"format": "segger-checkpoint", "x": Payload()}))
    t.ckpt_radio.setChecked(True)
    t.ckpt_path.setText(str(evil))
    before, bars = layers_snapshot(viewer), open_bars()
    t.load_button.click()
    wait_job(qtbot, t)
    assert_recovered(t, [t.train_button, t.load_button], notes, before, bars, "refused")
    assert t.state.model is None and not marker.exists()


def test_predict_worker_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch):
    import segger.prediction

    viewer, _, _ = _viewer_with_inputs(make_napari_viewer_proxy)
    p = dock_widget(viewer, "Predict")
    bundle = _bundle()
    p.state.set_bundle(bundle, {"points": "tx"})
    p.state.set_model(_tiny_model(bundle))
    monkeypatch.setattr(segger.prediction, "iter_predict", _failing(ValueError("tile 3 has no candidates")))
    before, bars = layers_snapshot(viewer), open_bars()
    p.predict_button.click()
    wait_job(qtbot, p)
    assert_recovered(p, [p.predict_button, p.attention_button, p.device_combo], notes, before, bars,
                     "ValueError: tile 3 has no candidates")
    assert p.state.prediction is None and p.state.result is None
    assert LAYER_TRANSCRIPTS not in [l.name for l in viewer.layers]
    assert viewer.layers["tx"].visible  # the input was not hidden under a result that never came
    assert not p.cut_slider.isEnabled()


def test_finetune_worker_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch, tmp_path):
    import segger.corrections
    from segger.napari._viewer import upsert_layer

    viewer = make_napari_viewer_proxy()
    result = _toy_result()
    upsert_layer(viewer, result_to_points(result))
    w = dock_widget(viewer, "Correct & fine-tune")
    w.open_corrections(tmp_path / "data.segger-corrections.csv")
    w.state.set_result(result, {"score_cut": 0.5})
    w.select_rows([0, 1, 2])
    w.set_target("cell1")
    assert w.assign() == 3 and not notes["error"]
    w.state.set_model(object())  # the fine-tune core is replaced: placeholders are enough
    w.state.set_prediction(object())
    assert w.finetune_button.isEnabled()
    monkeypatch.setattr(segger.corrections, "finetune_and_repredict", _failing(RuntimeError(CUDA_OOM), steps=2))
    store_before = w.store.effective().copy()
    state_before = (w.state.model, w.state.prediction, w.state.result)
    before, bars = layers_snapshot(viewer), open_bars()
    w.finetune_button.click()
    wait_job(qtbot, w)
    assert_recovered(w, [w.finetune_button, w.steps, w.weight, w.radius, w.margin], notes, before, bars,
                     "out of memory")
    assert (w.state.model, w.state.prediction, w.state.result) == state_before
    pd.testing.assert_frame_equal(w.store.effective(), store_before)  # the corrections are kept


def test_export_worker_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch, tmp_path):
    from segger.export import writers

    viewer = make_napari_viewer_proxy()
    e = dock_widget(viewer, "Export")
    e.state.set_result(_toy_result(), {"score_cut": 0.5})
    out = tmp_path / "out"
    out.mkdir()
    (out / "segger_transcripts.parquet").write_bytes(b"previous export")

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "write_transcripts", full_disk)
    before, bars = layers_snapshot(viewer), open_bars()
    e.export(out)
    wait_job(qtbot, e)
    assert_recovered(e, [e.export_button, e.folder, e.browse_button], notes, before, bars, "No space left")
    assert (out / "segger_transcripts.parquet").read_bytes() == b"previous export"
    assert [p.name for p in out.iterdir()] == ["segger_transcripts.parquet"]  # no temporary files


def test_widget_works_again_after_an_error(make_napari_viewer_proxy, qtbot, notes, monkeypatch):
    """After a failed build the same widget builds the graph (the failure left nothing behind)."""
    import segger.data

    viewer, tx, nuc = _viewer_with_inputs(make_napari_viewer_proxy)
    w = dock_widget(viewer, "Data & graph")
    w.points_combo.select_layer("tx")
    w.nuclei_combo.select_layer("nuclei")
    real = segger.data.build_graph
    def fail_once(*_a, **_k):
        raise SeggerInputError("first attempt fails")

    monkeypatch.setattr(segger.data, "build_graph", fail_once)
    w.build()
    wait_job(qtbot, w)
    assert notes["error"] == ["first attempt fails"]
    monkeypatch.setattr(segger.data, "build_graph", real)
    w.build()
    wait_job(qtbot, w)
    assert notes["error"] == ["first attempt fails"]
    assert w.state.bundle is not None and w.state.bundle.summary()["n_tx"] == len(tx)


# ------------------------------------------------------------------------------------ large layers
def test_large_layer_warns_and_offers_a_crop(make_napari_viewer_proxy, qtbot, notes, monkeypatch):
    import segger.napari._w_data as D

    monkeypatch.setattr(D, "LARGE_LAYER_POINTS", 300)  # the real threshold is 2 million
    viewer, tx, nuc = _viewer_with_inputs(make_napari_viewer_proxy)
    w = dock_widget(viewer, "Data & graph")
    w.points_combo.select_layer("tx")
    w.nuclei_combo.select_layer("nuclei")
    before = layers_snapshot(viewer)
    # 1. a large layer: a warning offering the crop, and no work started
    w.build_button.click()
    assert not w.busy and w.state.bundle is None
    assert len(notes["warning"]) == 1 and "540 transcripts" in notes["warning"][0]
    assert "Only the current view" in notes["warning"][0] and not notes["error"]
    assert "crop" in w.panel.status.text()
    assert layers_snapshot(viewer) == before
    # 2. crop to the current view: only the transcripts the canvas shows (and the nuclei near them)
    real = getattr(viewer, "__wrapped__", viewer)
    camera = getattr(getattr(real, "scene", None), "camera", None) or real.camera
    camera.center = (0.0, 20.0, 20.0)
    camera.zoom = max(real.canvas.size) / 25.0  # about 25 µm across
    x0, y0, x1, y1 = D.current_view(viewer)
    assert x0 < 20 < x1 and y0 < 20 < y1 and (x1 - x0) < 60
    w.crop_view.setChecked(True)
    w.build_button.click()
    wait_job(qtbot, w)
    assert not notes["error"], notes["error"]
    b = w.state.bundle
    inside = (tx[S.X].between(x0, x1) & tx[S.Y].between(y0, y1)).to_numpy()
    assert b is not None and b.summary()["n_tx"] == int(inside.sum()) < len(tx)
    assert b.transcripts[S.X].between(x0, x1).all() and b.transcripts[S.Y].between(y0, y1).all()
    assert 0 < b.summary()["n_bd"] < len(nuc)
    assert w.state.bundle_source["crop"] == pytest.approx((x0, y0, x1, y1))
    # 3. no crop: the warning came once for this layer, so Build graph now uses everything
    w.crop_view.setChecked(False)
    w.build_button.click()
    wait_job(qtbot, w)
    assert len(notes["warning"]) == 1
    assert w.state.bundle.summary()["n_tx"] == len(tx)


def test_crop_with_nothing_in_view_is_one_line(make_napari_viewer_proxy, qtbot, notes):
    viewer, _, _ = _viewer_with_inputs(make_napari_viewer_proxy)
    w = dock_widget(viewer, "Data & graph")
    w.points_combo.select_layer("tx")
    w.nuclei_combo.select_layer("nuclei")
    real = getattr(viewer, "__wrapped__", viewer)
    (getattr(getattr(real, "scene", None), "camera", None) or real.camera).center = (0.0, 5000.0, 5000.0)
    w.crop_view.setChecked(True)
    w.build_button.click()
    assert notes["error"] and "no transcript of layer 'tx' is in the current view" in notes["error"][-1]
    assert not w.busy and w.build_button.isEnabled() and w.state.bundle is None


# ------------------------------------------------------------------------------------ malformed inputs
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
READ_ERRORS = ["missing-gene-column", "decimal-commas", "truncated-transcripts", "empty-polygons-file",
               "duplicate-transcript-ids", "all-filtered-by-qv", "vertex-x-as-text"]
READ_WARNINGS = ["some-nan-xy", "self-intersecting-polygons", "pixel-coordinates", "single-nucleus"]


@pytest.fixture(scope="module")
def gui_corpus_base(tmp_path_factory):
    from _reliability_corpus import SAMPLE, make_base

    if not (SAMPLE / "transcripts.parquet").is_file():
        pytest.skip("packaged xenium_lung sample not available")
    return make_base(tmp_path_factory.mktemp("gui-corpus") / "base")


@pytest.mark.parametrize("name", READ_ERRORS + READ_WARNINGS)
def test_malformed_input_through_the_reader(name, make_napari_viewer_proxy, notes, gui_corpus_base, tmp_path,
                                            tree_sha256):
    """napari shows the reader's one-line error as its notification; the viewer stays usable."""
    from _reliability_corpus import BY_NAME, copy_base

    case = BY_NAME[name]
    folder = copy_base(gui_corpus_base, tmp_path / "input")
    inp = case.make(folder)
    before_files = tree_sha256(folder)
    viewer = make_napari_viewer_proxy()
    viewer.add_points(np.zeros((3, 2)), name="already open")
    before = layers_snapshot(viewer)
    if case.expect == "error":
        with pytest.raises(SeggerInputError) as info:
            viewer.open(str(inp), plugin="napari-segger")
        msg = " ".join(str(info.value).split())
        for frag in case.fragments:
            assert frag.lower() in msg.lower(), (frag, msg)
        assert layers_snapshot(viewer) == before
    else:
        viewer.open(str(inp), plugin="napari-segger")
        assert any(all(f.lower() in w.lower() for f in case.fragments) for w in notes["warning"]), notes["warning"]
        assert len(viewer.layers) > len(before)
    assert tree_sha256(folder) == before_files
    viewer.add_points(np.ones((2, 2)), name="still usable")
    assert viewer.layers[-1].name == "still usable"
