"""Two tiny plot widgets painted with QPainter (no matplotlib): a live curve and a histogram."""

from __future__ import annotations

import math
from typing import Sequence

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

_AXIS = QColor(150, 150, 150)
_TEXT = QColor(200, 200, 200)


def _finite(v: float) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


class CurvePlot(QWidget):
    """Live line plot of a few named series (e.g. training loss per step, AUROC per epoch).

    Each series has its own y-range (drawn normalised), labelled with its last value, so loss and
    AUROC share one small panel. x is the step index given with each point.
    """

    COLORS = (QColor(255, 140, 60), QColor(90, 200, 255), QColor(140, 230, 120), QColor(230, 110, 230))

    def __init__(self, parent: QWidget | None = None, title: str = "") -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(260, 130)

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add_point(self, name: str, x: float, y: float) -> None:
        if not (_finite(x) and _finite(y)):
            return
        self.series.setdefault(name, []).append((float(x), float(y)))
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 6, 6, 16, 8
        plot = QRectF(left, top, max(w - left - right, 1), max(h - top - bottom, 1))
        p.setPen(QPen(_AXIS, 1))
        p.drawRect(plot)
        p.setPen(_TEXT)
        p.drawText(QPointF(left, 12), self.title)
        xs = [x for pts in self.series.values() for x, _ in pts]
        if not xs:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            p.end()
            return
        x0, x1 = min(xs), max(xs)
        x1 = x1 if x1 > x0 else x0 + 1
        legend_x = w - right - 4
        for i, (name, pts) in enumerate(self.series.items()):
            color = self.COLORS[i % len(self.COLORS)]
            ys = [y for _, y in pts]
            y0, y1 = min(ys), max(ys)
            if y1 <= y0:
                y0, y1 = y0 - 0.5, y1 + 0.5
            poly = QPolygonF(
                [
                    QPointF(
                        plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                        plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
                    )
                    for x, y in pts
                ]
            )
            p.setPen(QPen(color, 1.6))
            if len(pts) == 1:
                p.drawEllipse(poly[0], 2.5, 2.5)
            else:
                p.drawPolyline(poly)
            label = f"{name} {ys[-1]:.3g}"
            fm = p.fontMetrics()
            tw = fm.horizontalAdvance(label)
            legend_x -= tw
            p.drawText(QPointF(legend_x, 12), label)
            legend_x -= 10
        p.end()


class HistogramPlot(QWidget):
    """Bar histogram from precomputed ``edges`` / ``counts`` with an optional marker line."""

    def __init__(self, parent: QWidget | None = None, title: str = "") -> None:
        super().__init__(parent)
        self.title = title
        self.edges: list[float] = []
        self.counts: list[int] = []
        self.marker: float | None = None
        self.setMinimumHeight(100)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(260, 120)

    def set_data(self, edges: Sequence[float], counts: Sequence[int]) -> None:
        self.edges = [float(e) for e in edges]
        self.counts = [int(c) for c in counts]
        self.update()

    def set_marker(self, value: float | None) -> None:
        self.marker = value
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        w, h = self.width(), self.height()
        left, right, top, bottom = 6, 6, 16, 16
        plot = QRectF(left, top, max(w - left - right, 1), max(h - top - bottom, 1))
        p.setPen(QPen(_AXIS, 1))
        p.drawRect(plot)
        p.setPen(_TEXT)
        p.drawText(QPointF(left, 12), self.title)
        if not self.counts or len(self.edges) != len(self.counts) + 1:
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            p.end()
            return
        lo, hi = self.edges[0], self.edges[-1]
        span = (hi - lo) or 1.0
        top_count = max(self.counts) or 1
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(90, 170, 255))
        for a, b, c in zip(self.edges[:-1], self.edges[1:], self.counts):
            x = plot.left() + (a - lo) / span * plot.width()
            bw = max((b - a) / span * plot.width() - 1, 1)
            bh = c / top_count * plot.height()
            p.drawRect(QRectF(x, plot.bottom() - bh, bw, bh))
        p.setPen(_TEXT)
        p.drawText(QPointF(plot.left(), h - 3), f"{lo:g}")
        fm = p.fontMetrics()
        p.drawText(QPointF(plot.right() - fm.horizontalAdvance(f"{hi:g}"), h - 3), f"{hi:g}")
        if self.marker is not None and lo <= self.marker <= hi:
            x = plot.left() + (self.marker - lo) / span * plot.width()
            p.setPen(QPen(QColor(255, 90, 90), 2))
            p.drawLine(QPointF(x, plot.top()), QPointF(x, plot.bottom()))
        p.end()
