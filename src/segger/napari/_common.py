"""Shared bits of the dock widgets: base class, layer drop-downs, form helpers."""

from __future__ import annotations

from typing import Any, Sequence

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segger.napari._jobs import Job, RunPanel, notify_error
from segger.napari._state import SeggerState, get_state


def layer_kind(layer: Any) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__


class LayerCombo(QComboBox):
    """Drop-down of the viewer's layers of some types, refreshed by ``reset_choices``.

    ``extra`` items (e.g. "(derived from nuclear transcripts)") are listed after the layers.
    Items are shown as ``name`` or, when several types are allowed, ``name [Type]``.
    """

    def __init__(self, viewer: Any, kinds: Sequence[str], extra: Sequence[str] = (), prefer=None):
        super().__init__()
        self.viewer = viewer
        self.kinds = tuple(kinds)
        self.extra = tuple(extra)
        self.prefer = prefer  # callable(layer) -> bool: picked by default when nothing chosen yet
        self.reset_choices()

    def _label(self, layer: Any) -> str:
        return layer.name if len(self.kinds) == 1 else f"{layer.name} [{layer_kind(layer)}]"

    def reset_choices(self, *_: Any) -> None:
        current = self.currentText()
        self.blockSignals(True)
        try:
            self.clear()
            layers = [l for l in self.viewer.layers if layer_kind(l) in self.kinds]
            for layer in reversed(layers):  # top of the layer list first
                self.addItem(self._label(layer), layer.name)
            for e in self.extra:
                self.addItem(e, None)
            idx = self.findText(current) if current else -1
            if idx < 0 and self.prefer is not None:
                idx = next((i for i, l in enumerate(reversed(layers)) if self.prefer(l)), -1)
            if idx < 0 and self.count():
                idx = 0
            if idx >= 0:
                self.setCurrentIndex(idx)
        finally:
            self.blockSignals(False)
        if self.currentText() != current:
            self.currentIndexChanged.emit(self.currentIndex())

    def current_layer(self):
        """The chosen layer, or None when an extra item (or nothing) is chosen."""
        name = self.currentData()
        if name is None:
            return None
        for layer in self.viewer.layers:
            if layer.name == name:
                return layer
        return None

    def select_layer(self, name: str) -> None:
        for i in range(self.count()):
            if self.itemData(i) == name:
                self.setCurrentIndex(i)
                return


def spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    w.setToolTip(tip)
    return w


def dspin(lo: float, hi: float, value: float, tip: str, decimals: int = 2, step: float = 0.5,
          suffix: str = "") -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setDecimals(decimals)
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setValue(value)
    w.setToolTip(tip)
    if suffix:
        w.setSuffix(suffix)
    return w


def add_row(form: QFormLayout, label: str, widget: QWidget, tip: str | None = None) -> QWidget:
    lab = QLabel(label)
    tip = tip or widget.toolTip()
    if tip:
        lab.setToolTip(tip)
        widget.setToolTip(tip)
    form.addRow(lab, widget)
    return widget


class SeggerWidget(QWidget):
    """Base dock widget: viewer + shared state + a scrollable body + a :class:`RunPanel`."""

    cancellable = True

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state: SeggerState = get_state(napari_viewer)
        self._combos: list[LayerCombo] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        self.body = QVBoxLayout(inner)
        self.body.setContentsMargins(2, 2, 2, 2)
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        self.panel = RunPanel(self, cancellable=self.cancellable)
        outer.addWidget(self.panel)
        self.job = Job(self.panel, parent=self)
        self.job.finished.connect(self.refresh_enabled)

    # --- helpers --------------------------------------------------------------------------
    def group(self, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setContentsMargins(6, 6, 6, 6)
        self.body.addWidget(box)
        return form

    def layer_combo(self, kinds: Sequence[str], extra: Sequence[str] = (), prefer=None) -> LayerCombo:
        combo = LayerCombo(self.viewer, kinds, extra, prefer)
        self._combos.append(combo)
        return combo

    def set_controls(self, *widgets: QWidget) -> None:
        """Widgets disabled while this widget's job runs."""
        self.job.controls = list(widgets)

    @property
    def busy(self) -> bool:
        return self.job.busy

    @property
    def worker(self):
        return self.job.worker

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when layers are added, removed, renamed or moved."""
        for combo in self._combos:
            combo.reset_choices()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.reset_choices()
        super().showEvent(event)

    def refresh_enabled(self) -> None:
        """Enable controls according to the shared state (overridden)."""

    def guarded(self, fn, *args, **kwargs):
        """Call ``fn``; show a one-line notification instead of raising."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error reaches the user as one line
            notify_error(exc)
            self.panel.status.setText(f"error: {exc}".splitlines()[0][:300])
            return None
