"""Shared bits of the dock widgets: base class, layer drop-downs, form helpers."""

from __future__ import annotations

from typing import Any, Sequence

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QScrollArea,
    QScrollBar,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from segger.napari._jobs import Job, RunPanel, notify_error
from segger.napari._state import SeggerState, get_state


def layer_kind(layer: Any) -> str:
    return type(getattr(layer, "__wrapped__", layer)).__name__


class _WheelGuard(QObject):
    """Wheel over an unfocused spin box / combo / slider scrolls the dock instead of changing
    the value (the value changes only after the user clicked into the control)."""

    def eventFilter(self, obj, event):  # noqa: N802 (Qt)
        if event.type() == QEvent.Type.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            parent = obj.parentWidget()
            while parent is not None and not isinstance(parent, QScrollArea):
                parent = parent.parentWidget()
            if parent is not None:
                QApplication.sendEvent(parent.verticalScrollBar(), event)
            return True
        return False


_WHEEL_GUARD: _WheelGuard | None = None


def guard_wheel_on(w: QWidget) -> None:
    """Install the wheel guard on one value control (spin box, combo, slider); others are left alone."""
    global _WHEEL_GUARD
    if _WHEEL_GUARD is None:
        _WHEEL_GUARD = _WheelGuard()
    if isinstance(w, (QAbstractSpinBox, QComboBox, QAbstractSlider)) and not isinstance(w, QScrollBar):
        if w.property("segger_wheel_guard"):
            return
        w.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        w.installEventFilter(_WHEEL_GUARD)
        w.setProperty("segger_wheel_guard", True)


def guard_wheel(root: QWidget) -> None:
    """Install the wheel guard on every value control under ``root``."""
    for w in root.findChildren(QWidget):
        guard_wheel_on(w)
        if isinstance(w, QComboBox):
            # a long layer name must not widen the dock: the combo elides instead
            w.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            w.setMinimumContentsLength(8)


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
        from segger.napari._datasets import watch_datasets

        watch_datasets(napari_viewer, self.state)
        self._combos: list[LayerCombo] = []
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # never clip: a dock narrower than the content gets a scrollbar (the content is kept
        # narrow — wrapping form rows, eliding combos — so that it rarely needs one)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.scroll = scroll
        inner = QWidget()
        self.inner = inner
        self.body = QVBoxLayout(inner)
        self.body.setContentsMargins(2, 2, 2, 2)
        scroll.setWidget(inner)
        outer.addWidget(scroll)
        self.panel = RunPanel(self, cancellable=self.cancellable)
        outer.addWidget(self.panel)
        self.job = Job(self.panel, parent=self)
        self.job.finished.connect(self.refresh_enabled)
        #: the session's "what next" line (same text in every widget, from the shared state)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        self.hint.setObjectName("segger_hint")
        self.body.addWidget(self.hint)
        for sig in (self.state.bundle_changed, self.state.model_changed, self.state.prediction_changed,
                    self.state.result_changed, self.state.corrections_changed):
            sig.connect(self._refresh_hint)
        self._refresh_hint()

    # --- helpers --------------------------------------------------------------------------
    def _refresh_hint(self, *_: Any) -> None:
        try:
            self.hint.setText(self.state.next_step()[1])
        except RuntimeError:  # widget already deleted
            pass

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        guard_wheel(self)
        self.reset_choices()
        self.refresh_enabled()
        self._refresh_hint()
        super().showEvent(event)

    def group(self, title: str) -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
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
