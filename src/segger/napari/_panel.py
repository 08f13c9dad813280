"""The one Segger panel: a single dock with the steps as tabs (Data → Train → Predict →
Review/QC → Correct → Export), each enabled when its inputs exist, under one "what next" line.

The first panel of a session imports PyTorch (6–20 s the first time) in a background thread and
shows a busy bar meanwhile, so the window never freezes. It also watches the layer list: opening
another dataset removes the previous dataset's layers and Segger's result layers and resets the
session (graph, prediction, result; trained models stay in the history).
"""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QTabWidget, QVBoxLayout, QWidget

from segger.napari._state import bundled_available, get_state

from segger.napari._datasets import DATA_KINDS, watch_datasets  # noqa: F401 - re-exported


class _Importer(QObject):
    done = Signal(str)  # "" or the error line


_TORCH_READY = threading.Event()


def _import_heavy() -> str:
    try:
        import segger.corrections  # noqa: F401
        import segger.data  # noqa: F401
        import segger.prediction  # noqa: F401
        import segger.training  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - shown in the panel
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    _TORCH_READY.set()
    return ""


class SeggerPanel(QWidget):
    """A single dock: the steps of a Segger session as tabs."""

    STEPS = ("Data", "Train", "Predict", "Review/QC", "Correct", "Export")

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = get_state(napari_viewer)
        watch_datasets(napari_viewer, self.state)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("QLabel { font-weight: bold; padding: 4px; }")
        lay.addWidget(self.hint)
        self.loading = QLabel("Loading PyTorch and the Segger model code (the first time takes 10–20 s)…")
        self.loading.setWordWrap(True)
        self.busy_bar = QProgressBar()
        self.busy_bar.setRange(0, 0)  # busy animation
        lay.addWidget(self.loading)
        lay.addWidget(self.busy_bar)
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setElideMode(Qt.TextElideMode.ElideNone)
        self.tabs.hide()
        lay.addWidget(self.tabs, 1)
        self.steps: dict[str, QWidget] = {}
        self.ready = False
        for sig in (self.state.bundle_changed, self.state.model_changed, self.state.prediction_changed,
                    self.state.result_changed, self.state.corrections_changed):
            sig.connect(self.refresh)
        self._importer = _Importer()
        self._importer.done.connect(self._build)
        if _TORCH_READY.is_set():
            QTimer.singleShot(0, lambda: self._build(""))
        else:
            threading.Thread(target=lambda: self._importer.done.emit(_import_heavy()),
                             name="segger-import", daemon=True).start()
        self.refresh()

    # ---------------------------------------------------------------------------------------
    def _build(self, error: str) -> None:
        if self.ready:
            return
        if error:
            self.loading.setText(f"Could not load Segger's model code: {error}")
            self.busy_bar.setRange(0, 1)
            return
        from segger.napari._common import guard_wheel
        from segger.napari._w_correct import CorrectWidget
        from segger.napari._w_data import DataGraphWidget
        from segger.napari._w_export import ExportWidget
        from segger.napari._w_predict import PredictWidget
        from segger.napari._w_qc import QCWidget
        from segger.napari._w_train import TrainWidget

        for name, cls in zip(self.STEPS, (DataGraphWidget, TrainWidget, PredictWidget, QCWidget, CorrectWidget,
                                          ExportWidget)):
            w = cls(self.viewer)
            w.hint.hide()  # the panel shows the one hint above the tabs
            self.steps[name] = w
            self.tabs.addTab(w, name)
        guard_wheel(self)
        self.loading.hide()
        self.busy_bar.hide()
        self.tabs.show()
        self.fit_width()
        self.ready = True
        self.refresh()

    def fit_width(self) -> int:
        """The dock never opens narrower than its widest step needs (no horizontal scrolling, no cut
        labels): the panel's minimum width = the widest step's minimum + the scroll bar and frames."""
        need = 0
        for w in self.steps.values():
            scroll = getattr(w, "scroll", None)
            inner = getattr(w, "inner", None)
            if scroll is None or inner is None:
                continue
            extra = scroll.verticalScrollBar().sizeHint().width() + 2 * scroll.frameWidth()
            need = max(need, inner.minimumSizeHint().width() + extra)
        margins = self.layout().contentsMargins()
        need += margins.left() + margins.right() + 24  # the tab widget's frame and page margins
        self.setMinimumWidth(need)
        return need

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when layers change: pass it on to the steps."""
        for w in self.steps.values():
            w.reset_choices()

    def enabled_steps(self) -> dict[str, bool]:
        st = self.state
        has_result = st.result is not None
        return {"Data": True, "Train": st.bundle is not None,
                # the bundled pretrained model predicts without training
                "Predict": st.bundle is not None and (st.model is not None or bundled_available()),
                "Review/QC": has_result, "Correct": has_result, "Export": has_result}

    def refresh(self, *_: Any) -> None:
        step, text = self.state.next_step()
        self.hint.setText(text)
        if not self.ready:
            return
        for i, (name, ok) in enumerate(self.enabled_steps().items()):
            self.tabs.setTabEnabled(i, ok)
            self.tabs.setTabToolTip(i, "" if ok else {
                "Train": "Build a graph in Data first", "Predict": "Build a graph in Data first",
            }.get(name, "Run Predict first"))

    def step(self, name: str) -> QWidget:
        return self.steps[name]

    def go(self, name: str) -> None:
        self.tabs.setCurrentIndex(self.STEPS.index(name))
