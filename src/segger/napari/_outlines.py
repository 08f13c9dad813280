"""The ``segger cells`` outlines of the session's result, computed off the GUI thread.

One :class:`OutlineJob` per viewer (kept on its :class:`~segger.napari._state.SeggerState`) serves
the Predict step (after a prediction or a re-threshold) and the Correct step (after edits): one
computation in flight, a newer result queued behind it and stale ones dropped; the outlines keep
their colours where they still do not clash with a neighbour, keep the translucent fill the user
chose, say which model made them, and the transcripts take their outline's colour.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from segger import schema as S
from segger.napari._state import get_state
from segger.napari._viewer import find_layer, set_face_colors, upsert_layer
from segger.napari.layers import LAYER_CELLS, LAYER_TRANSCRIPTS, cell_colors_and_ids, outline_index


def layer_fill(layer: Any) -> bool:
    """Whether a cells layer shows the translucent fill (its metadata, set by ``cells_to_layer``)."""
    if layer is None:
        return False
    return bool(((layer.metadata or {}).get("segger") or {}).get("fill", False))


class OutlineJob:
    """Recompute ``segger cells`` for a result in a worker thread and apply it on the GUI thread.

    ``start(result, codes)`` returns at once; :attr:`busy` is True until the layer is up to date.
    ``codes`` (:class:`segger.prediction.AssignCodes` of ``result``) makes the transcripts'
    recolour cheap. Errors go to ``on_error`` of the widget that started the job.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self.state = get_state(viewer)
        self._worker = None
        self._pending: tuple | None = None

    @classmethod
    def of(cls, viewer: Any) -> "OutlineJob":
        state = get_state(viewer)
        job = getattr(state, "outline_job", None)
        if job is None:
            job = state.outline_job = cls(viewer)
        return job

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._pending is not None

    def start(self, result: Any, codes: Any = None, *, fill: bool | None = None,
              on_error: Callable[[BaseException], None] | None = None) -> None:
        """Outlines for ``result`` (queued behind the one in flight; only the newest is drawn)."""
        self._pending = (result, codes, fill, on_error)
        if self._worker is None:
            self._run_pending()

    def _run_pending(self) -> None:
        if self._pending is None:
            return
        result, codes, fill, on_error = self._pending
        self._pending = None
        if result is not self.state.result:
            return  # superseded before it started
        from napari.qt.threading import create_worker

        from segger.napari.layers import cells_to_layer

        current = find_layer(self.viewer, LAYER_CELLS)
        prefer = outline_index(current) if current is not None else {}
        fill = layer_fill(current) if fill is None else bool(fill)
        made_by = {"model": self.state.model_label(self.state.prediction_model_id),
                   "model_id": self.state.prediction_model_id}

        def work():
            from segger.export.writers import cell_boundaries

            return cells_to_layer(cell_boundaries(result), metadata=made_by, fill=fill, prefer=prefer)

        def done(layer_data):
            if self.state.result is not result or self._pending is not None:
                return  # a newer result is on its way
            layer = upsert_layer(self.viewer, layer_data)
            if layer_data[2] == "labels":
                layer.contour = 0 if fill else 1  # outlines only, like the Shapes version
            self.match_points(result, codes, prefer)

        def failed(exc):
            if on_error is not None:
                on_error(exc)

        def finished():
            self._worker = None
            self._run_pending()

        worker = create_worker(work, _ignore_errors=True, _start_thread=False)
        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self._worker = worker
        worker.start()

    def match_points(self, result: Any, codes: Any = None, before: dict | None = None) -> None:
        """Give the transcripts their outline's colour (skipped when the colouring is unchanged)."""
        cells = find_layer(self.viewer, LAYER_CELLS)
        now = outline_index(cells) if cells is not None else {}
        if before is not None and now == before:
            return
        points = find_layer(self.viewer, LAYER_TRANSCRIPTS)
        if points is None or len(points.data) != len(result):
            return
        colors, _ = cell_colors_and_ids(result[S.SEGGER_CELL_ID], now, codes=codes)
        set_face_colors(points, np.asarray(colors, dtype=np.float32))

    def remove(self) -> None:
        """Outlines off: drop the layer and anything queued."""
        self._pending = None
        layer = find_layer(self.viewer, LAYER_CELLS)
        if layer is not None:
            self.viewer.layers.remove(layer)
