"""Run a core progress generator in a napari generator worker — the one pattern every widget uses.

* the core ``iter_*`` generator runs in a ``napari.qt.threading`` worker thread;
* each :class:`segger.progress.Progress` it yields advances a ``napari.utils.progress`` bar (activity
  dock) and the widget's own bar, on the main thread;
* **Cancel** sets a flag that the worker checks after every yield: the core generator is then
  closed *in the worker thread* (so its ``finally`` — stop the trainer, free GPU memory — never
  blocks the GUI), and the job returns :data:`CANCELLED`;
* results are applied only in main-thread slots (``returned``), never from the worker;
* any error becomes one ``show_error`` line and the controls come back; the progress bar is
  always closed (``finished``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Generator, Iterable

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from segger.errors import SeggerError, one_line
from segger.progress import Progress
from segger.utils.gc import hold_existing, release_existing

log = logging.getLogger("segger.napari")

#: the napari activity bar is updated at most this often (our own panel bar on every event)
PBAR_INTERVAL_S = 0.25
#: the panel's own bar and status line: at most this often within one stage
PANEL_INTERVAL_S = 0.1

class _Cancelled:
    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return "CANCELLED"


CANCELLED = _Cancelled()


def notify_error(exc: BaseException) -> None:
    """Show one line for ``exc`` in napari (never a traceback dialog); log the traceback."""
    from napari.utils.notifications import show_error

    log.debug("segger error", exc_info=exc)
    show_error(one_line(exc))


class JobError(SeggerError):
    """A ``RuntimeError`` raised by the work (e.g. torch running out of memory), re-raised under
    another type: superqt's worker treats a ``RuntimeError`` as "worker deleted" and would drop
    it silently instead of emitting ``errored``."""


def _drive(factory: Callable[[], Generator], cancel: threading.Event) -> Generator:
    """Worker-side loop: forward events, stop at the next event once ``cancel`` is set."""
    try:
        gen = factory()
        try:
            while True:
                if cancel.is_set():
                    gen.close()  # runs the core's cleanup in this (worker) thread
                    return CANCELLED
                try:
                    event = next(gen)
                except StopIteration as stop:
                    return stop.value
                yield event
        finally:
            gen.close()
    except RuntimeError as exc:
        raise JobError(one_line(exc)) from exc


class RunPanel(QWidget):
    """Progress bar + status line + Cancel button shown under a widget's controls."""

    def __init__(self, parent: QWidget | None = None, cancellable: bool = True) -> None:
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        row.addWidget(self.bar, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop at the next step (training keeps the last good weights)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setVisible(cancellable)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)


class Job(QObject):
    """Owns one worker at a time for a widget: start, progress, cancel, finish.

    ``controls`` are disabled while the job runs and re-enabled when it ends, however it ends.
    """

    started = Signal()
    finished = Signal()  # after every run, success, error or cancel (main thread)

    def __init__(self, panel: RunPanel, controls: Iterable[QWidget] = (), parent: QObject | None = None):
        super().__init__(parent)
        self.panel = panel
        self.controls = list(controls)
        self.worker = None
        self.pbar = None
        self.cancelled = False
        self.last_error: BaseException | None = None
        self._cancel = threading.Event()
        panel.cancel_button.clicked.connect(self.cancel)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def cancel(self) -> None:
        """Ask the running job to stop at its next step."""
        if self.worker is not None:
            self._cancel.set()
            self.panel.status.setText("cancelling at the next step…")
            self.panel.cancel_button.setEnabled(False)

    def start(
        self,
        factory: Callable[[], Generator[Progress, None, Any]],
        *,
        desc: str,
        on_yield: Callable[[Progress], None] | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
        total: int | None = None,
    ):
        """Run ``factory()`` (a core progress generator, created in the worker) in a thread."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        if self.worker is not None:
            from napari.utils.notifications import show_info

            show_info(f"{desc} is already running; wait for it or press Cancel")
            return None
        self._cancel = threading.Event()
        self.cancelled = False
        self.last_error = None
        for w in self.controls:
            w.setEnabled(False)
        self.panel.cancel_button.setEnabled(True)
        self.panel.bar.setRange(0, 0)  # busy until the first event gives a total
        self.panel.status.setText(f"{desc}…")
        self.pbar = progress(total=total or 0, desc=desc)
        self._pbar_shown = self._panel_shown = 0.0
        self._stage = None
        self._desc = desc

        worker = create_worker(_drive, factory, self._cancel, _ignore_errors=True, _start_thread=False)
        self.worker = worker

        done = {"returned": False}

        def _yielded(ev: Any) -> None:
            if done["returned"]:  # never let a late progress event overwrite the final status
                return
            if isinstance(ev, Progress):
                self._show(ev)
            if on_yield is not None:
                try:
                    on_yield(ev)
                except Exception as exc:  # a display problem must not kill the job
                    log.debug("on_yield failed", exc_info=exc)

        def _returned(value: Any) -> None:
            done["returned"] = True
            if value is CANCELLED:
                self.cancelled = True
                self.panel.status.setText(f"{desc}: cancelled")
                if on_cancel is not None:
                    try:
                        on_cancel()
                    except Exception as exc:
                        self._error(exc)
                return
            self.panel.status.setText(f"{desc}: done")
            if on_done is not None:
                try:
                    on_done(value)  # may replace the status line
                except Exception as exc:
                    self._error(exc)

        def _errored(exc: BaseException) -> None:
            self._error(exc)

        worker.yielded.connect(_yielded)
        worker.returned.connect(_returned)
        worker.errored.connect(_errored)
        worker.finished.connect(self._finish)
        self.started.emit()
        hold_existing()  # full GC pauses would stall the GUI thread (segger.utils.gc)
        self._gc_held = True
        worker.start()
        return worker

    # ---------------------------------------------------------------------------------------
    def _show(self, ev: Progress) -> None:
        # widget first, napari's bar last: updating the napari bar may process pending events,
        # so the job's ``returned``/``finished`` can run re-entrantly inside ``pbar.update``.
        now = time.perf_counter()
        last = bool(ev.total and ev.step >= ev.total)
        text = f"{self._desc}: {ev.message}" if ev.message else None
        # each update relays out the panel (and napari's activity dock): at most PANEL_INTERVAL_S
        # apart, except a new stage's first message and the last step
        if not last and now - self._panel_shown < PANEL_INTERVAL_S and ev.stage == self._stage:
            return
        self._panel_shown, self._stage = now, ev.stage
        bar = self.panel.bar
        if ev.total:
            if bar.maximum() != ev.total:
                bar.setRange(0, int(ev.total))
            bar.setValue(int(min(ev.step, ev.total)))
        if text is not None and self.panel.status.text() != text:
            self.panel.status.setText(text)
        pbar = self.pbar
        if pbar is None:
            return
        if now - self._pbar_shown < PBAR_INTERVAL_S and not last:
            return  # napari's activity bar redraws its dock on every update: at most 4 per second
        self._pbar_shown = now
        if ev.message:
            pbar.set_description(f"{self._desc}: {ev.message}"[:80])
        if ev.total and self.pbar is pbar:
            if pbar.total != ev.total:
                pbar.total = int(ev.total)
            delta = int(min(ev.step, ev.total)) - int(pbar.n)
            if delta > 0 and self.pbar is pbar:
                pbar.update(delta)

    def _error(self, exc: BaseException) -> None:
        self.last_error = exc
        self.panel.status.setText(f"{self._desc} failed: {one_line(exc)}")
        notify_error(exc)

    def _finish(self) -> None:
        if getattr(self, "_gc_held", False):
            self._gc_held = False
            release_existing()
        if self.pbar is not None:
            try:
                self.pbar.close()
            finally:
                self.pbar = None
        bar = self.panel.bar
        ok = not (self.cancelled or self.last_error)
        if bar.maximum() == 0:  # never got a total: stop the busy animation
            bar.setRange(0, 1)
            bar.setValue(1 if ok else 0)
        elif ok:
            bar.setValue(bar.maximum())
        self.panel.cancel_button.setEnabled(False)
        self.worker = None
        for w in self.controls:
            w.setEnabled(True)
        self.finished.emit()
