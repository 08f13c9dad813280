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
    tree = shapely.STRtree(geoms)
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
        pts = shapely.points(gx.ravel(), gy.ravel())
        pi, _ = tree.query(pts, predicate="within")
        inside = np.zeros(nx * ny, dtype=bool)
        inside[pi] = True
        inside = inside.reshape(ny, nx)
        if not inside.any():
            continue
        dist = ndimage.distance_transform_edt(~inside) * pixel
        core = ((gx >= w_lo[0]) & (gx < w_hi[0]) & (gy >= w_lo[1]) & (gy < w_hi[1]))
        near, _ = ktree.query(np.c_[gx[core], gy[core]], k=1, distance_upper_bound=8.0)
        tissue_d = dist[core][np.isfinite(near)]
        area += np.histogram(tissue_d, edges)[0] * pixel * pixel
        sel = np.all((xy >= w_lo) & (xy < w_hi), axis=1)
        ix = np.clip(((xy[sel, 0] - g_lo[0]) / pixel).astype(np.int64), 0, nx - 1)
        iy = np.clip(((xy[sel, 1] - g_lo[1]) / pixel).astype(np.int64), 0, ny - 1)
        count += np.histogram(dist[iy, ix], edges)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(area > 0, count / np.where(area > 0, area, 1.0), np.nan)
    return edges, rho


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
