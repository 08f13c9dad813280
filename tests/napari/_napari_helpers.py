"""Helpers for the napari plugin tests (unique module name: tests/ has no packages)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SHARED = Path(os.environ.get("SEGGER_SHARED_DATA", "/work/shared/data"))
PACKAGED = Path(__file__).resolve().parents[2] / "src" / "segger" / "sample_data"
# Screenshots land in docs/images/ only when asked (`make screenshots`); a plain `make test`
# writes them to a scratch folder so it never leaves changes in the working tree.
IMAGES = (Path(__file__).resolve().parents[2] / "docs" / "images" if os.environ.get("SEGGER_UPDATE_SCREENSHOTS") == "1"
          else Path(tempfile.gettempdir()) / "segger-screenshots")
IMAGES.mkdir(parents=True, exist_ok=True)


def _pick(packaged_name: str, shared_name: str) -> Path | None:
    # the packaged crops are what users get: test those first
    if (PACKAGED / packaged_name / "transcripts.parquet").is_file():
        return PACKAGED / packaged_name
    if (SHARED / shared_name / "transcripts.parquet").is_file():
        return SHARED / shared_name
    return None


LUNG = _pick("xenium_lung", "xenium_lung_segger")
SEGTRAQ = _pick("xenium_breast", "xenium_breast_segtraq")


def dock_widget(viewer, name: str):
    """Open a Segger dock widget through the manifest; return the widget instance."""
    dock, widget = viewer.window.add_plugin_dock_widget("napari-segger", name)
    return widget


def wait_job(qtbot, widget, timeout: int = 120_000) -> None:
    """Wait until the widget's background job has finished (signals handled on the main thread)."""
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


# --- real Qt input on the canvas and the widgets ----------------------------------------------
def real_viewer(viewer):
    """The napari Viewer behind the plugin proxy (tests only: the Qt canvas is private API)."""
    return getattr(viewer, "__wrapped__", viewer)


def canvas_widget(viewer):
    return real_viewer(viewer).window._qt_viewer.canvas.native


def world_to_canvas(viewer, yx):
    """Canvas pixel (QPoint) of world (y, x) µm through vispy's own scene transform."""
    from qtpy.QtCore import QPoint

    canvas = real_viewer(viewer).window._qt_viewer.canvas
    p = canvas.view.scene.transform.map([float(yx[1]), float(yx[0]), 0.0, 1.0])
    return QPoint(int(round(p[0] / p[3])), int(round(p[1] / p[3])))


def click_canvas(qtbot, viewer, yx, modifier=None):
    """A real left click (press + release) on the canvas at world (y, x) µm."""
    from qtpy.QtCore import Qt

    mod = modifier if modifier is not None else Qt.KeyboardModifier.NoModifier
    qtbot.mouseClick(canvas_widget(viewer), Qt.MouseButton.LeftButton, mod, world_to_canvas(viewer, yx))


def move_canvas(qtbot, viewer, yx, buttons=None):
    """A real mouse-move event on the canvas at world (y, x) µm, delivered to the widget.

    ``qtbot.mouseMove`` moves the system cursor, which an offscreen or hidden window never sees;
    a QMouseEvent sent to the canvas widget is what Qt itself delivers on a move. vispy drops
    moves closer than 10 ms apart, so this waits 20 ms after each."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    w = canvas_widget(viewer)
    pos = QPointF(world_to_canvas(viewer, yx))
    btn = buttons if buttons is not None else Qt.MouseButton.NoButton
    ev = QMouseEvent(QEvent.Type.MouseMove, pos, QPointF(w.mapToGlobal(pos.toPoint())), Qt.MouseButton.NoButton,
                     btn, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(w, ev)
    qtbot.wait(20)


def key_canvas(qtbot, viewer, key, modifier=None):
    """A real key press on the canvas (napari's key bindings listen there)."""
    from qtpy.QtCore import Qt

    mod = modifier if modifier is not None else Qt.KeyboardModifier.NoModifier
    qtbot.keyClick(canvas_widget(viewer), key, mod)


def center_on(viewer, yx, zoom: float | None = None) -> None:
    cam = real_viewer(viewer).camera
    cam.center = (float(yx[0]), float(yx[1]))
    if zoom is not None:
        cam.zoom = float(zoom)


def wheel(widget, delta: int = -120) -> None:
    """A real mouse-wheel event over ``widget`` (as when the user scrolls the dock)."""
    from qtpy.QtCore import QPoint, QPointF, Qt
    from qtpy.QtGui import QWheelEvent
    from qtpy.QtWidgets import QApplication

    pos = QPointF(widget.width() / 2, widget.height() / 2)
    ev = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos.toPoint())), QPoint(0, 0), QPoint(0, delta),
                     Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                     False)
    QApplication.sendEvent(widget, ev)


# --- the one Segger panel, driven by real clicks ----------------------------------------------
def open_panel(viewer, qtbot):
    """Open the Segger panel through the manifest and wait until its steps are built."""
    dock, panel = real_viewer(viewer).window.add_plugin_dock_widget("napari-segger", "Segger")
    qtbot.waitUntil(lambda: panel.ready, timeout=60_000)
    return panel


def go_tab(qtbot, panel, name):
    """A real click on the step's tab (which must be enabled); returns the step widget."""
    from qtpy.QtCore import Qt

    bar = panel.tabs.tabBar()
    i = panel.STEPS.index(name)
    assert panel.tabs.isTabEnabled(i), name
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(i).center())
    assert panel.tabs.currentIndex() == i, name
    return panel.step(name)


def click_button(qtbot, button):
    """A real left click on an enabled button."""
    from qtpy.QtCore import Qt

    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
