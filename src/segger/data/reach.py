"""How far from its nucleus a transcript may still belong to that nucleus's cell ("reach").

A transcript farther than the reach from every nucleus outline joins no nucleus (it stays
unassigned or joins a nucleus-free fragment). The reach is the ``max_distance`` graph parameter;
when it is not given it is estimated from the sample itself, the same way on every platform:

* the transcript density per µm² is measured as a function of the distance ``d`` to the nearest
  nucleus outline (pixels of 0.5 µm, Euclidean distance transform, tissue = pixels with a
  transcript within 8 µm, in up to 16 windows of 120 µm around random transcripts);
* the reach is the smallest ``d`` (µm, ≥ 1) at which the density, smoothed over 3 µm, falls below
  ``floor`` × the density inside nuclei, clipped to ``[low, high]``.

Cells end where transcripts thin out: on a densely packed Xenium crop the density stays above 10 %
of the nuclear density up to 11–15 µm (the vendor's own expansion is 15 µm there), while a sample
with sparse extracellular background (CosMx fields, or cell polygons used as "nuclei") falls below
it within a few µm.
"""

from __future__ import annotations

import numpy as np
import shapely
from scipy import ndimage
from scipy.spatial import cKDTree

#: defaults of :func:`estimate_reach`
REACH_FLOOR = 0.10
REACH_LOW = 2.0
REACH_HIGH = 15.0


def density_profile(xy: np.ndarray, geoms: np.ndarray, *, pixel: float = 0.5, window: float = 120.0,
                    n_windows: int = 16, max_d: float = 25.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(edges, rho)``: transcripts per µm² by distance to the nearest nucleus outline.

    ``edges`` are the bin edges in µm (first bin: inside a nucleus, then 1-µm bins up to
    ``max_d``); ``rho[i]`` is the density in bin ``i`` (NaN where the bin holds no tissue).
    """
    xy = np.asarray(xy, dtype=np.float64)
    edges = np.r_[0.0, 1e-9, np.arange(1.0, max_d + 1.0)]
    area = np.zeros(len(edges) - 1)
    count = np.zeros(len(edges) - 1)
    if len(xy) == 0 or len(geoms) == 0:
        return edges, np.full(len(edges) - 1, np.nan)
    bounds = shapely.bounds(geoms)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    ext = hi - lo
    if ext[0] * ext[1] <= (window * window) * n_windows:
        windows = [(lo, hi)]  # small sample: all of it
    else:
        rng = np.random.default_rng(seed)
        centres = xy[rng.choice(len(xy), size=n_windows, replace=False)]
        windows = [(c - window / 2, c + window / 2) for c in centres]
    ktree = cKDTree(xy)
    pad = max_d  # nuclei this far outside a window still shape the distances inside it
    for w_lo, w_hi in windows:
        g_lo, g_hi = w_lo - pad, w_hi + pad
        nx = int(np.ceil((g_hi[0] - g_lo[0]) / pixel))
        ny = int(np.ceil((g_hi[1] - g_lo[1]) / pixel))
        cx = g_lo[0] + (np.arange(nx) + 0.5) * pixel
        cy = g_lo[1] + (np.arange(ny) + 0.5) * pixel
        gx, gy = np.meshgrid(cx, cy)
        inside = _inside_grid(geoms, bounds, cx, cy, pixel)
        if not inside.any():
            continue
        dist = ndimage.distance_transform_edt(~inside) * pixel
        core = ((gx >= w_lo[0]) & (gx < w_hi[0]) & (gy >= w_lo[1]) & (gy < w_hi[1]))
        tissue = _tissue(xy, ktree, gx[core], gy[core], g_lo, nx, ny, pixel, pad, core)
        tissue_d = dist[core][tissue]
        area += np.histogram(tissue_d, edges)[0] * pixel * pixel
        sel = np.all((xy >= w_lo) & (xy < w_hi), axis=1)
        ix = np.clip(((xy[sel, 0] - g_lo[0]) / pixel).astype(np.int64), 0, nx - 1)
        iy = np.clip(((xy[sel, 1] - g_lo[1]) / pixel).astype(np.int64), 0, ny - 1)
        count += np.histogram(dist[iy, ix], edges)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(area > 0, count / np.where(area > 0, area, 1.0), np.nan)
    return edges, rho


#: a pixel is tissue when a transcript lies within this distance (µm) of its centre
TISSUE_RADIUS = 8.0


def _tissue(xy: np.ndarray, ktree: cKDTree, px: np.ndarray, py: np.ndarray, g_lo: np.ndarray, nx: int, ny: int,
            pixel: float, pad: float, core: np.ndarray) -> np.ndarray:
    """Bool per listed pixel centre ``(px, py)`` (the ``core`` pixels of a window grid): a transcript
    within :data:`TISSUE_RADIUS` µm (the k-d tree's nearest transcript closer than the radius).

    Only the pixels the transcripts' pixel grid cannot decide are queried: with ``D`` the distance
    from a pixel centre to the nearest centre of a pixel holding a transcript, every transcript is
    within ``pixel/√2`` of its pixel's centre, so ``D < r - pixel/√2`` is certainly tissue and
    ``D > r + pixel/√2`` certainly not (the same answer as the query, at a fraction of its cost)."""
    r = TISSUE_RADIUS
    half = pixel / np.sqrt(2.0)
    if pad < r + 2 * pixel:  # transcripts outside the grid could be within reach: query every pixel
        near, _ = ktree.query(np.c_[px, py], k=1, distance_upper_bound=r)
        return np.isfinite(near)
    ix = np.floor((xy[:, 0] - g_lo[0]) / pixel)
    iy = np.floor((xy[:, 1] - g_lo[1]) / pixel)
    ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    empty = np.ones((ny, nx), dtype=bool)
    empty[iy[ok].astype(np.int64), ix[ok].astype(np.int64)] = False
    if empty.all():
        d = np.full(int(core.sum()), np.inf)
    else:
        d = ndimage.distance_transform_edt(empty)[core] * pixel
    slack = 1e-6 * max(1.0, r)
    out = d < r - half - slack
    unsure = np.flatnonzero(~out & (d <= r + half + slack))
    if len(unsure):
        near, _ = ktree.query(np.c_[px[unsure], py[unsure]], k=1, distance_upper_bound=r)
        out[unsure] = np.isfinite(near)
    return out


def _inside_grid(geoms: np.ndarray, bounds: np.ndarray, cx: np.ndarray, cy: np.ndarray, pixel: float,
                 max_pairs: int = 1 << 22) -> np.ndarray:
    """``(len(cy), len(cx))`` bool: pixel centre ``(cx[i], cy[j])`` lies within a nucleus.

    The pixels tested against a nucleus are those of its bounding box (one pixel of slack on
    every side), with :func:`shapely.contains_xy` (the same predicate as a point ``within`` the
    polygon, without making a shapely point per pixel: that took ~3 s per 300 k-transcript tile,
    holding the GIL)."""
    nx, ny = len(cx), len(cy)
    inside = np.zeros((ny, nx), dtype=bool)
    if nx == 0 or ny == 0 or len(geoms) == 0:
        return inside
    x0, y0 = cx[0] - pixel / 2, cy[0] - pixel / 2
    with np.errstate(invalid="ignore"):  # empty geometries have NaN bounds: no pixel
        fi0 = np.floor((bounds[:, 0] - x0) / pixel) - 1
        fi1 = np.floor((bounds[:, 2] - x0) / pixel) + 1
        fj0 = np.floor((bounds[:, 1] - y0) / pixel) - 1
        fj1 = np.floor((bounds[:, 3] - y0) / pixel) + 1
        ok = np.isfinite(fi0) & np.isfinite(fi1) & np.isfinite(fj0) & np.isfinite(fj1)
        ok &= (fi1 >= 0) & (fi0 <= nx - 1) & (fj1 >= 0) & (fj0 <= ny - 1)
    sel = np.flatnonzero(ok)
    if len(sel) == 0:
        return inside
    i0 = np.maximum(fi0[sel], 0).astype(np.int64)
    i1 = np.minimum(fi1[sel], nx - 1).astype(np.int64)
    j0 = np.maximum(fj0[sel], 0).astype(np.int64)
    j1 = np.minimum(fj1[sel], ny - 1).astype(np.int64)
    w, h = i1 - i0 + 1, j1 - j0 + 1
    size = w * h
    ends = np.cumsum(size)
    s = 0
    while s < len(sel):  # nuclei in chunks of at most max_pairs (nucleus, pixel) pairs
        e = max(s + 1, int(np.searchsorted(ends, (ends[s - 1] if s else 0) + max_pairs, side="right")))
        sz = size[s:e]
        k = np.arange(int(sz.sum()), dtype=np.int64) - np.repeat(np.cumsum(sz) - sz, sz)
        ww = np.repeat(w[s:e], sz)
        pi = np.repeat(i0[s:e], sz) + k % ww
        pj = np.repeat(j0[s:e], sz) + k // ww
        hit = shapely.contains_xy(geoms[np.repeat(sel[s:e], sz)], cx[pi], cy[pj])
        inside[pj[hit], pi[hit]] = True
        s = e
    return inside


def estimate_reach(xy: np.ndarray, geoms: np.ndarray, *, floor: float = REACH_FLOOR, low: float = REACH_LOW,
                   high: float = REACH_HIGH, seed: int = 0) -> float:
    """The reach (µm) of the module docstring; ``high`` when it cannot be measured."""
    edges, rho = density_profile(xy, geoms, max_d=max(high + 3.0, 5.0), seed=seed)
    rho_in = rho[0]
    if not np.isfinite(rho_in) or rho_in <= 0:
        return float(high)
    ratio = rho[1:] / rho_in  # 1-µm bins starting at 0 µm outside
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    smooth = np.convolve(ratio, np.ones(3) / 3.0, mode="same")
    smooth[0] = ratio[0]
    below = np.flatnonzero(smooth < floor)
    if len(below) == 0:
        return float(high)
    reach = float(edges[1 + below[0]])  # lower edge of the first thin bin
    return float(np.clip(reach, low, high))
