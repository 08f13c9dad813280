"""Screenshots of every step of the Segger panel with real results → docs/images/ (used by the README).

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
    """Every step of the one Segger panel on the bundled lung crop, driven by real clicks:
    Data → Predict with the bundled model (no training) → Train (fine-tune the bundled model) →
    Predict → attention → Review/QC (cell table, review queue) → Correct → Export."""
    LEFT = Qt.MouseButton.LeftButton
    IMAGES.mkdir(parents=True, exist_ok=True)
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-segger", "xenium_lung")
    dock, panel = viewer.window.add_plugin_dock_widget("napari-segger", "Segger")
    qtbot.waitUntil(lambda: panel.ready, timeout=120_000)
    docks = {"panel": dock}

    def tab(name):
        bar = panel.tabs.tabBar()
        i = panel.STEPS.index(name)
        qtbot.mouseClick(bar, LEFT, pos=bar.tabRect(i).center())
        assert panel.tabs.currentIndex() == i, name
        step = panel.step(name)
        qtbot.wait(50)
        # in a real window the step fits the dock: no sideways scrolling, no cut labels (defect 6)
        assert not step.scroll.horizontalScrollBar().isVisible(), (name, dock.width())
        return step

    def click(button):
        assert button.isEnabled(), button.text()
        qtbot.mouseClick(button, LEFT)

    written = []
    data = tab("Data")
    click(data.build_button)
    wait_job(qtbot, data, 120_000)
    assert panel.state.bundle is not None
    viewer.reset_view()
    written.append(_shoot(viewer, qtbot, docks, "panel_data", "panel"))

    pred = tab("Predict")  # the bundled pretrained model: cells without training
    click(pred.predict_button)
    wait_job(qtbot, pred, 300_000)
    qtbot.waitUntil(lambda: not pred.outline_busy, timeout=120_000)
    for name in ("lung nuclei",):
        if name in viewer.layers:
            viewer.layers[name].visible = False
    layer = viewer.layers["segger transcripts"]
    cy, cx = np.median(np.asarray(layer.data), axis=0)
    cam = getattr(getattr(viewer, "scene", None), "camera", None) or viewer.camera
    cam.center = (cy, cx)
    cam.zoom = cam.zoom * 2.5  # close enough to see the outlines
    written.append(_shoot(viewer, qtbot, docks, "panel_predict_bundled", "panel"))

    train = tab("Train")  # the default start: fine-tune the bundled model
    train.epochs.setValue(3)
    train.device_combo.setCurrentText("cpu")
    click(train.train_button)
    wait_job(qtbot, train, 600_000)
    assert panel.state.model is not None
    written.append(_shoot(viewer, qtbot, docks, "panel_train", "panel"))

    pred = tab("Predict")
    click(pred.predict_button)
    wait_job(qtbot, pred, 300_000)
    qtbot.waitUntil(lambda: not pred.outline_busy, timeout=120_000)
    written.append(_shoot(viewer, qtbot, docks, "panel_predict", "panel"))
    pred.edge_type.setCurrentText("transcript → nucleus")
    click(pred.attention_button)
    wait_job(qtbot, pred, 300_000)
    cam.zoom = cam.zoom * 1.5
    written.append(_shoot(viewer, qtbot, docks, "panel_attention", "panel"))

    qc = tab("Review/QC")
    click(qc.qc_button)
    wait_job(qtbot, qc, 300_000)
    qtbot.waitUntil(lambda: qc.review.next_button.isEnabled(), timeout=60_000)
    click(qc.review.next_button)  # the first cell of the review queue
    qc.scroll.ensureWidgetVisible(qc.review.table)  # show the queue and the cell table
    qtbot.wait(300)
    written.append(_shoot(viewer, qtbot, docks, "panel_review", "panel"))

    tab("Correct")
    written.append(_shoot(viewer, qtbot, docks, "panel_correct", "panel"))

    export = tab("Export")
    export.export(tmp_path / "export")
    wait_job(qtbot, export, 300_000)
    viewer.reset_view()
    written.append(_shoot(viewer, qtbot, docks, "panel_export", "panel"))
    for p in written:
        assert p.is_file() and p.stat().st_size > 5_000, p
