"""Screenshots of each dock widget with real results → docs/images/ (used by the README).

Needs a real display with OpenGL: Qt's offscreen platform cannot render the canvas, and an
unshown viewer screenshots all black. When this pytest process runs offscreen (the default, see
conftest), the test re-runs itself in a child pytest under Xvfb (``QT_QPA_PLATFORM=xcb``) and is
skipped when Xvfb is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from _napari_helpers import IMAGES, wait_job

pytestmark = [pytest.mark.display, pytest.mark.gui, pytest.mark.slow]

CHILD_ENV = "SEGGER_SCREENSHOT_CHILD"
HERE = Path(__file__).resolve()


def _has_prediction() -> bool:
    try:
        import segger.prediction as P
    except ImportError:
        return False
    return all(hasattr(P, n) for n in ("iter_predict", "PredictConfig", "attention_edges"))


def _direct_display() -> bool:
    return bool(os.environ.get("DISPLAY")) and os.environ.get("QT_QPA_PLATFORM") not in ("offscreen", "minimal")


def _not_black(img: np.ndarray) -> bool:
    return img.ndim == 3 and float(img[..., :3].std()) > 5.0


def _shoot(viewer, qtbot, docks, name: str, keep: str, widget=None) -> Path:
    """Show only the ``keep`` dock, let the canvas draw, save the whole window (and the widget)."""
    for key, dock in docks.items():
        dock.setVisible(key == keep)
    qtbot.wait(400)
    path = IMAGES / f"napari_{name}.png"
    img = viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    for _ in range(10):
        if _not_black(img):
            break
        qtbot.wait(300)
        img = viewer.screenshot(path=str(path), canvas_only=False, flash=False)
    assert _not_black(img), f"{name}: screenshot is blank"
    if widget is not None:
        assert widget.grab().save(str(IMAGES / f"widget_{keep}.png"))
    return path


def test_widget_screenshots(request, tmp_path):
    if not (os.environ.get(CHILD_ENV) == "1" or _direct_display()):
        xvfb = request.getfixturevalue("xvfb_display")
        env = {**os.environ, CHILD_ENV: "1", "QT_QPA_PLATFORM": "xcb", "DISPLAY": xvfb}
        env.pop("NAPARI_ASYNC", None)
        cmd = [sys.executable, "-m", "pytest", f"{HERE}::test_widget_screenshots", "-q", "-rs",
               "-p", "no:cacheprovider", "-x", "-W", "ignore::DeprecationWarning"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                              cwd=HERE.parents[2])
        tail = (proc.stdout + proc.stderr)[-4000:]
        if proc.returncode == 0 and " skipped" in proc.stdout and " passed" not in proc.stdout:
            reason = next((l for l in proc.stdout.splitlines() if l.startswith("SKIPPED")), tail)
            pytest.skip("screenshot child skipped: " + reason.strip())
        assert proc.returncode == 0, tail
        return
    if not _has_prediction():
        pytest.skip("segger.prediction not available yet")
    _run_screenshots(request.getfixturevalue("make_napari_viewer"), request.getfixturevalue("qtbot"), tmp_path)


def _run_screenshots(make_napari_viewer, qtbot, tmp_path):
    IMAGES.mkdir(parents=True, exist_ok=True)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-segger", "xenium_lung")
    names = {"data": "Data & graph", "train": "Train / fine-tune", "predict": "Predict",
             "qc": "QC", "export": "Export"}
    docks, widgets = {}, {}
    for key, title in names.items():
        dock, widget = viewer.window.add_plugin_dock_widget("napari-segger", title)
        docks[key], widgets[key] = dock, widget

    data = widgets["data"]
    data.show_edges.setChecked(True)
    data.build_button.click()
    wait_job(qtbot, data, 120_000)
    assert data.state.bundle is not None
    viewer.reset_view()
    written = [_shoot(viewer, qtbot, docks, "data_graph", "data", widgets["data"])]
    viewer.layers["segger tx-tx edges"].visible = False

    train = widgets["train"]
    train.epochs.setValue(4)
    # a new model of this size (the default start is fine-tuning the bundled model)
    qtbot.mouseClick(train.new_radio, Qt.MouseButton.LeftButton, pos=train.new_radio.rect().center())
    train.size_combo.setCurrentText("small")
    train.device_combo.setCurrentText("cpu")
    train.train_button.click()
    wait_job(qtbot, train, 600_000)
    assert train.state.model is not None
    written.append(_shoot(viewer, qtbot, docks, "train", "train", widgets["train"]))

    pred = widgets["predict"]
    pred.predict_button.click()
    wait_job(qtbot, pred, 300_000)
    qtbot.waitUntil(lambda: not pred.outline_busy, timeout=120_000)
    viewer.layers["lung nuclei"].visible = False
    written.append(_shoot(viewer, qtbot, docks, "predict", "predict", widgets["predict"]))

    pred.edge_type.setCurrentText("transcript → nucleus")
    pred.attention_button.click()
    wait_job(qtbot, pred, 300_000)
    # zoom onto the middle of the crop so edges are visible
    layer = viewer.layers["segger transcripts"]
    cy, cx = np.median(np.asarray(layer.data), axis=0)
    cam = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
    cam.center = (cy, cx)
    cam.zoom = cam.zoom * 3
    written.append(_shoot(viewer, qtbot, docks, "attention", "predict"))
    viewer.reset_view()

    qc = widgets["qc"]
    qc.qc_button.click()
    wait_job(qtbot, qc, 300_000)
    if qc.report and qc.report.get("mecr_flagged_cells"):
        qc.select_cell(qc.report["mecr_flagged_cells"][0])
    else:
        ids = layer.features["segger_cell_id"].astype(str)
        qc.select_cell(ids[ids != "UNASSIGNED"].iloc[0])
    written.append(_shoot(viewer, qtbot, docks, "qc", "qc", widgets["qc"]))

    export = widgets["export"]
    export.export(tmp_path / "export")
    wait_job(qtbot, export, 300_000)
    written.append(_shoot(viewer, qtbot, docks, "export", "export", widgets["export"]))

    written += [IMAGES / f"widget_{key}.png" for key in widgets]
    for p in written:
        assert p.is_file() and p.stat().st_size > 5_000, p
