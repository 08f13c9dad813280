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


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps)."""
    if not (_finite(lo) and _finite(hi)) or hi <= lo:
        return [lo] if _finite(lo) else []
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


class CurvePlot(QWidget):
    """Training curves with real axes: loss on the left axis (its own range), AUROCs on a fixed
    0.5–1 right axis, epochs along x with ticks. Series named in ``RIGHT`` use the right axis."""

    COLORS = {"loss": QColor(255, 140, 60), "val loss": QColor(255, 200, 120),
              "val AUROC (expression)": QColor(90, 200, 255), "val AUROC (all)": QColor(150, 150, 255)}
    FALLBACK = (QColor(140, 230, 120), QColor(230, 110, 230))
    RIGHT = ("val AUROC (expression)", "val AUROC (all)")
    RIGHT_RANGE = (0.5, 1.0)

    def __init__(self, parent: QWidget | None = None, title: str = "") -> None:
        super().__init__(parent)
        self.title = title
        self.x_label = "epoch"
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(260, 190)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt)
        return QSize(180, 170)

    def clear(self) -> None:
        self.series = {}
        self.update()

    def add_point(self, name: str, x: float, y: float) -> None:
        if not (_finite(x) and _finite(y)):
            return
        pts = self.series.setdefault(name, [])
        if pts and pts[-1][0] == float(x):  # the same epoch again (e.g. a final re-report): replace
            pts[-1] = (float(x), float(y))
        else:
            pts.append((float(x), float(y)))
        self.update()

    def left_range(self) -> tuple[float, float] | None:
        ys = [y for n, pts in self.series.items() if n not in self.RIGHT for _, y in pts]
        if not ys:
            return None
        lo, hi = min(ys), max(ys)
        lo = min(lo, 0.0) if lo >= 0 and lo < 0.25 * hi else lo
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi

    def x_range(self) -> tuple[float, float] | None:
        xs = [x for pts in self.series.values() for x, _ in pts]
        if not xs:
            return None
        x0, x1 = min(xs), max(xs)
        return (x0, x1 if x1 > x0 else x0 + 1)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = p.fontMetrics()
        th = fm.height()
        w, h = self.width(), self.height()
        left, right, top, bottom = fm.horizontalAdvance("0.000") + 8, fm.horizontalAdvance("0.00") + 8, th + 4, 2 * th + 4
        plot = QRectF(left, top, max(w - left - right, 1), max(h - top - bottom, 1))
        p.setPen(_TEXT)
        p.drawText(QPointF(2, th - 2), self.title)
        xr, lr = self.x_range(), self.left_range()
        p.setPen(QPen(_AXIS, 1))
        p.drawRect(plot)
        if xr is None:
            p.setPen(_TEXT)
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            p.end()
            return
        x0, x1 = xr

        def X(x):
            return plot.left() + (x - x0) / (x1 - x0) * plot.width()

        # x ticks (epochs)
        for t in nice_ticks(x0, x1, 4):
            px = X(t)
            p.setPen(QPen(_AXIS, 1))
            p.drawLine(QPointF(px, plot.bottom()), QPointF(px, plot.bottom() + 3))
            p.setPen(_TEXT)
            lab = f"{t:g}"
            p.drawText(QPointF(px - fm.horizontalAdvance(lab) / 2, plot.bottom() + th), lab)
        p.drawText(QPointF(plot.center().x() - fm.horizontalAdvance(self.x_label) / 2, h - 3), self.x_label)
        # y ticks: left = loss, right = AUROC
        axes = {"left": lr, "right": self.RIGHT_RANGE}
        for side, rng in axes.items():
            if rng is None:
                continue
            lo, hi = rng
            for t in nice_ticks(lo, hi, 3):
                py = plot.bottom() - (t - lo) / (hi - lo) * plot.height()
                lab = f"{t:.3g}"
                p.setPen(QPen(_AXIS, 1))
                if side == "left":
                    p.drawLine(QPointF(plot.left() - 3, py), QPointF(plot.left(), py))
                    p.setPen(_TEXT)
                    p.drawText(QPointF(plot.left() - 5 - fm.horizontalAdvance(lab), py + th / 3), lab)
                else:
                    p.drawLine(QPointF(plot.right(), py), QPointF(plot.right() + 3, py))
                    p.setPen(_TEXT)
                    p.drawText(QPointF(plot.right() + 5, py + th / 3), lab)
        # series
        legend_y = plot.top() + th
        for i, (name, pts) in enumerate(self.series.items()):
            color = self.COLORS.get(name, self.FALLBACK[i % len(self.FALLBACK)])
            rng = self.RIGHT_RANGE if name in self.RIGHT else lr
            lo, hi = rng

            def Y(y, lo=lo, hi=hi):
                return plot.bottom() - (min(max(y, lo), hi) - lo) / (hi - lo) * plot.height()

            poly = QPolygonF([QPointF(X(x), Y(y)) for x, y in pts])
            p.setPen(QPen(color, 1.8))
            if len(pts) == 1:
                p.drawEllipse(poly[0], 2.5, 2.5)
            else:
                p.drawPolyline(poly)
            label = f"{name} {pts[-1][1]:.3g}" + (" (right axis)" if name in self.RIGHT else "")
            p.drawText(QPointF(plot.left() + 4, legend_y), label)
            legend_y += th
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
