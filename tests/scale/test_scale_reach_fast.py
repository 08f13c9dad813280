"""The per-tile reach estimate's fast paths give the answers of the plain ones they replace.

``segger.data.reach.density_profile`` runs once per out-of-core tile (nuclei approximated per
tile): its nucleus mask is ``shapely.contains_xy`` over each nucleus's bounding-box pixels instead
of a shapely point per pixel + ``STRtree.query(predicate="within")``, and its tissue mask queries
the k-d tree only for the pixels the transcripts' pixel grid cannot decide. Both must be exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from scipy.spatial import cKDTree

from segger.data import reach as R


def _reference_inside(geoms, cx, cy):
    gx, gy = np.meshgrid(cx, cy)
    pi, _ = shapely.STRtree(geoms).query(shapely.points(gx.ravel(), gy.ravel()), predicate="within")
    inside = np.zeros(gx.size, dtype=bool)
    inside[pi] = True
    return inside.reshape(gx.shape)


def _nuclei(rng, n=60, extent=100.0):
    c = rng.uniform(-5, extent + 5, (n, 2))
    geoms = shapely.buffer(shapely.points(c), rng.uniform(1.5, 6.0, n), quad_segs=rng.integers(2, 9))
    # a few irregular ones, an empty one and a polygon with a hole
    hull = shapely.convex_hull(shapely.multipoints(rng.uniform(20, 40, (12, 2))))
    ring = shapely.Polygon([(60, 60), (80, 60), (80, 80), (60, 80)], [[(65, 65), (75, 65), (75, 75), (65, 75)]])
    return np.concatenate([geoms, [hull, ring, shapely.Polygon()]])


@pytest.mark.parametrize("pixel", [0.5, 0.37, 1.0])
def test_inside_grid_is_the_within_query(pixel):
    rng = np.random.default_rng(1)
    geoms = _nuclei(rng)
    x0, y0 = -3.1, 7.7
    cx = x0 + (np.arange(int(110 / pixel)) + 0.5) * pixel
    cy = y0 + (np.arange(int(90 / pixel)) + 0.5) * pixel
    want = _reference_inside(geoms, cx, cy)
    assert want.any()
    got = R._inside_grid(geoms, shapely.bounds(geoms), cx, cy, pixel)
    assert np.array_equal(got, want)
    # chunked over nuclei: the same mask
    assert np.array_equal(R._inside_grid(geoms, shapely.bounds(geoms), cx, cy, pixel, max_pairs=997), want)


@pytest.mark.parametrize("pad", [25.0, 5.0])
def test_tissue_mask_is_the_kdtree_query(pad):
    rng = np.random.default_rng(2)
    # clustered transcripts with gaps, so that many pixels sit near the 8 µm edge
    xy = np.concatenate([rng.normal(c, 6.0, (400, 2)) for c in rng.uniform(0, 120, (8, 2))])
    pixel = 0.5
    w_lo, w_hi = np.array([10.0, 20.0]), np.array([100.0, 110.0])
    g_lo = w_lo - pad
    nx = ny = int(np.ceil((w_hi[0] - w_lo[0] + 2 * pad) / pixel))
    cx = g_lo[0] + (np.arange(nx) + 0.5) * pixel
    cy = g_lo[1] + (np.arange(ny) + 0.5) * pixel
    gx, gy = np.meshgrid(cx, cy)
    core = (gx >= w_lo[0]) & (gx < w_hi[0]) & (gy >= w_lo[1]) & (gy < w_hi[1])
    tree = cKDTree(xy)
    near, _ = tree.query(np.c_[gx[core], gy[core]], k=1, distance_upper_bound=R.TISSUE_RADIUS)
    want = np.isfinite(near)
    assert want.any() and not want.all()
    got = R._tissue(xy, tree, gx[core], gy[core], g_lo, nx, ny, pixel, pad, core)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kw", [{"max_d": 18.0}, {"max_d": 18.0, "window": 40.0, "n_windows": 4}, {"max_d": 5.0}])
def test_density_profile_on_the_lung_crop_is_unchanged(pkg_lung_sample, kw):
    """The whole profile on the lung crop's vendor polygons (one window, and random windows) equals
    the first version's, and so does the reach."""
    s = pkg_lung_sample
    xy = s.transcripts[["x", "y"]].to_numpy(np.float64)
    geoms = s.nuclei["geometry"].to_numpy()
    edges, rho = R.density_profile(xy, geoms, **kw)
    ref_edges, ref_rho = _reference_profile(xy, geoms, **kw)
    assert np.isfinite(rho).sum() >= 3
    assert np.array_equal(edges, ref_edges)
    assert np.array_equal(rho, ref_rho, equal_nan=True)


def _reference_profile(xy, geoms, *, pixel=0.5, window=120.0, n_windows=16, max_d=25.0, seed=0):
    """``density_profile`` as first written (one shapely point per pixel, every pixel queried)."""
    from scipy import ndimage

    edges = np.r_[0.0, 1e-9, np.arange(1.0, max_d + 1.0)]
    area = np.zeros(len(edges) - 1)
    count = np.zeros(len(edges) - 1)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    ext = hi - lo
    if ext[0] * ext[1] <= (window * window) * n_windows:
        windows = [(lo, hi)]
    else:
        rng = np.random.default_rng(seed)
        centres = xy[rng.choice(len(xy), size=n_windows, replace=False)]
        windows = [(c - window / 2, c + window / 2) for c in centres]
    ktree = cKDTree(xy)
    for w_lo, w_hi in windows:
        g_lo, g_hi = w_lo - max_d, w_hi + max_d
        nx = int(np.ceil((g_hi[0] - g_lo[0]) / pixel))
        ny = int(np.ceil((g_hi[1] - g_lo[1]) / pixel))
        cx = g_lo[0] + (np.arange(nx) + 0.5) * pixel
        cy = g_lo[1] + (np.arange(ny) + 0.5) * pixel
        gx, gy = np.meshgrid(cx, cy)
        inside = _reference_inside(geoms, cx, cy)
        if not inside.any():
            continue
        dist = ndimage.distance_transform_edt(~inside) * pixel
        core = (gx >= w_lo[0]) & (gx < w_hi[0]) & (gy >= w_lo[1]) & (gy < w_hi[1])
        near, _ = ktree.query(np.c_[gx[core], gy[core]], k=1, distance_upper_bound=8.0)
        area += np.histogram(dist[core][np.isfinite(near)], edges)[0] * pixel * pixel
        sel = np.all((xy >= w_lo) & (xy < w_hi), axis=1)
        ix = np.clip(((xy[sel, 0] - g_lo[0]) / pixel).astype(np.int64), 0, nx - 1)
        iy = np.clip(((xy[sel, 1] - g_lo[1]) / pixel).astype(np.int64), 0, ny - 1)
        count += np.histogram(dist[iy, ix], edges)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(area > 0, count / np.where(area > 0, area, 1.0), np.nan)
    return edges, rho
