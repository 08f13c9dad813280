#!/usr/bin/env python
"""Simulated tissues with a known truth, built from real Xenium cells (issue 10, "simulated ground truth").

Every simulated tissue is written as a Xenium-layout folder that every method reads exactly as it
reads a real crop, plus a truth table *outside* that folder that no method reads::

    OUT/sim_<name>/transcripts.parquet         x/y/z_location, feature_name, transcript_id, cell_id,
                                               overlaps_nucleus, qv
    OUT/sim_<name>/nucleus_boundaries.parquet  cell_id, vertex_x, vertex_y (13-vertex closed rings)
    OUT/sim_<name>.truth.parquet               transcript_id, true_cell ("UNASSIGNED" = background),
                                               kind (nucleus | cytoplasm | background), cell_type
    OUT/sim_<name>.json                        parameters and summary counts

How a tissue is made (all seeded; seconds per tissue):

1. **Expression from real cells.** The source crop is read with ``segger.io.read_sample`` (qv ≥ 20,
   controls dropped); every vendor cell (``cell_id``) with ≥ 20 transcripts gives a gene-count
   profile. Profiles are log-normalised, reduced to 20 principal components and grouped into
   ``--types`` cell types by seeded k-means. A simulated cell gets a type (with the real
   proportions) and one real cell of that type as template; its transcripts are drawn from the
   template's gene proportions mixed 80/20 with the type mean (so no two simulated cells are
   copies), its size from the template's count scaled by the simulated cell's area.
2. **Cell shapes.** Seeds at the real crop's cell density (vendor cells per µm²), kept ≥ 0.6 cell
   radii apart. Every seed has its own anisotropic metric (random orientation, aspect 1–2.6) and
   size weight, and a smooth random field is added to all distances; each 0.5 µm pixel goes to the
   seed with the smallest perturbed anisotropic distance (a multiplicatively weighted, anisotropic
   Voronoi diagram). Such regions touch, are elongated and are not convex, and their borders are
   not the bisectors of nuclei. Pixels farther than ``r_max`` from their seed are extracellular.
3. **Nuclei.** One ellipse per cell, 15–35 % of the cell's area, aspect 1–1.8, placed **off
   centre** (its centre drawn among the cell's interior pixels, favouring those far from the
   centroid) and shrunk until it lies inside the cell. ``--no-nucleus`` (default 10 %) of the
   cells have no nucleus in the plane (no polygon is written; their transcripts still belong to
   them in the truth).
4. **Transcripts.** Uniform over the cell's pixels, with nuclear pixels ``nuclear_enrichment``×
   denser (real crops have ~40 % nuclear transcripts). Background: ``--background`` (default a
   per-tissue share in 5–25 %) of all transcripts, genes from the crop's overall frequencies,
   70 % in extracellular space and 30 % anywhere (ambient RNA over cells too). z uniform 10–20 µm,
   qv 40.
5. **Vendor-like columns.** ``cell_id`` = the nucleus whose outline is nearest within 5 µm
   (``UNASSIGNED`` otherwise), as the 10x nucleus expansion does; ``overlaps_nucleus`` = inside
   that nucleus. Every method gets the same nuclei and these columns, nothing else.

    python benchmarks/simulate.py --out /tmp/sim [--tissues lung,segtraq,bidcell] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


@dataclass
class TissueSpec:
    name: str
    crop: str  # folder under the data root
    width: float  # µm
    height: float  # µm
    background: float  # share of all transcripts
    no_nucleus: float = 0.10
    types: int = 6
    nuclear_enrichment: float = 2.5
    vendor_expansion: float = 5.0  # µm, like 10x's nucleus expansion
    pixel: float = 0.5


# three tissues, one per shared crop; the 186k crop is simulated on a smaller field (same density)
TISSUES: dict[str, TissueSpec] = {
    "lung": TissueSpec("lung", "xenium_lung_segger", 200.0, 200.0, background=0.10),
    "segtraq": TissueSpec("segtraq", "xenium_breast_segtraq", 190.0, 160.0, background=0.20),
    "bidcell": TissueSpec("bidcell", "xenium_breast_bidcell", 200.0, 180.0, background=0.06),
}


def default_data_root() -> Path:
    cand = (REPO / ".." / "shared" / "data").resolve()
    return cand if cand.is_dir() else Path("/work/shared/data")


# --------------------------------------------------------------------------------------------
# expression: real profiles grouped by type
# --------------------------------------------------------------------------------------------


def real_profiles(crop: Path):
    """Counts matrix (cells × genes) of the crop's vendor cells, the gene names, density facts."""
    from segger import schema as S
    from segger.io import read_sample
    from segger.validation import factorize_cells

    sample = read_sample(crop)
    tx = sample.transcripts
    codes, labels = factorize_cells(tx[S.CELL_ID])
    gcodes, genes = pd.factorize(tx[S.GENE], sort=True)
    ok = codes >= 0
    counts = np.zeros((len(labels), len(genes)), dtype=np.int64)
    np.add.at(counts, (codes[ok], gcodes[ok]), 1)
    area = float((tx[S.X].max() - tx[S.X].min()) * (tx[S.Y].max() - tx[S.Y].min()))
    gene_freq = np.bincount(gcodes, minlength=len(genes)).astype(float)
    return {
        "counts": counts,
        "genes": np.asarray(genes).astype(str),
        "gene_freq": gene_freq / gene_freq.sum(),
        "cells_per_um2": len(labels) / area,
        "nuclear_share": float(tx[S.NUCLEAR].mean()),
    }


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 50) -> np.ndarray:
    """Plain k-means (k-means++ start); returns labels."""
    n = len(x)
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(x[rng.choice(n, p=d / d.sum())])
    c = np.asarray(centers)
    lab = np.zeros(n, dtype=np.int64)
    for _ in range(iters):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        new = d.argmin(1)
        if np.array_equal(new, lab) and _ > 0:
            break
        lab = new
        for j in range(k):
            if np.any(lab == j):
                c[j] = x[lab == j].mean(0)
    return lab


def cell_types(counts: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    lib = counts.sum(1, keepdims=True)
    x = np.log1p(counts / np.maximum(lib, 1) * 1e3)
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    pcs = u[:, :20] * s[:20]
    return kmeans(pcs, k, rng)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------


def smooth_field(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    f = gaussian_filter(rng.standard_normal(shape), scale_px, mode="wrap")
    return f / (f.std() + 1e-12)


def place_seeds(spec: TissueSpec, density: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial import cKDTree

    n = max(4, int(round(density * spec.width * spec.height)))
    r_cell = np.sqrt(1.0 / (density * np.pi))
    min_d = 0.6 * r_cell
    pts = np.empty((0, 2))
    tries = 0
    while len(pts) < n and tries < 50:
        cand = rng.random((4 * n, 2)) * [spec.width, spec.height]
        keep = []
        for p in cand:  # sequential dart throwing over seeds (≤ a few thousand), not transcripts
            if len(pts) + len(keep) >= n:
                break
            allp = np.vstack([pts, np.asarray(keep).reshape(-1, 2)])
            if len(allp) == 0 or cKDTree(allp).query(p)[0] >= min_d:
                keep.append(p)
        pts = np.vstack([pts, np.asarray(keep).reshape(-1, 2)])
        tries += 1
    return pts


def grow_cells(spec: TissueSpec, seeds: np.ndarray, density: float, rng: np.random.Generator):
    """Label raster (-1 = extracellular) from a perturbed, weighted, anisotropic Voronoi diagram."""
    from scipy.spatial import cKDTree

    nx, ny = int(np.ceil(spec.width / spec.pixel)), int(np.ceil(spec.height / spec.pixel))
    gx, gy = np.meshgrid((np.arange(nx) + 0.5) * spec.pixel, (np.arange(ny) + 0.5) * spec.pixel)
    P = np.c_[gx.ravel(), gy.ravel()]
    n = len(seeds)
    theta = rng.uniform(0, np.pi, n)
    aspect = rng.uniform(1.0, 2.6, n)
    weight = rng.uniform(0.75, 1.3, n)
    r_cell = np.sqrt(1.0 / (density * np.pi))
    k = min(12, n)
    _, nb = cKDTree(seeds).query(P, k=k)
    nb = nb.reshape(len(P), k)
    d = P[:, None, :] - seeds[nb]  # pixels × k × 2
    c, s = np.cos(theta[nb]), np.sin(theta[nb])
    u = d[..., 0] * c + d[..., 1] * s
    v = -d[..., 0] * s + d[..., 1] * c
    a = np.sqrt(aspect[nb])
    dist = np.sqrt((u / a) ** 2 + (v * a) ** 2) / weight[nb]
    field = smooth_field((ny, nx), scale_px=3.0 / spec.pixel, rng=rng).ravel()
    dist = dist * (1.0 + 0.18 * field[:, None]) + 0.9 * smooth_field((ny, nx), 1.5 / spec.pixel, rng).ravel()[:, None]
    best = dist.argmin(1)
    lab = nb[np.arange(len(P)), best]
    dmin = dist[np.arange(len(P)), best]
    lab = np.where(dmin <= 1.45 * r_cell, lab, -1)
    return lab.reshape(ny, nx), gx, gy


def make_nuclei(spec: TissueSpec, lab: np.ndarray, rng: np.random.Generator):
    """Per cell an ellipse (cx, cy, a, b, angle) inside the cell, off centre; NaN where none."""
    from scipy.ndimage import distance_transform_edt

    ny, nx = lab.shape
    # distance (px) to the nearest pixel of another label
    edge = np.zeros_like(lab, dtype=bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[1:, :] != lab[:-1, :]
    inner = distance_transform_edt(~edge) * spec.pixel
    flat = lab.ravel()
    order = np.argsort(flat, kind="stable")
    n_cells = int(flat.max()) + 1
    starts = np.searchsorted(flat[order], np.arange(n_cells + 1))
    yy, xx = np.divmod(order, nx)
    X = (xx + 0.5) * spec.pixel
    Y = (yy + 0.5) * spec.pixel
    D = inner.ravel()[order]
    out = np.full((n_cells, 5), np.nan)
    has = rng.random(n_cells) >= spec.no_nucleus
    for c in range(n_cells):  # one small loop over cells
        lo, hi = starts[c], starts[c + 1]
        if hi - lo < 20 or not has[c]:
            continue
        x, y, dd = X[lo:hi], Y[lo:hi], D[lo:hi]
        area = (hi - lo) * spec.pixel ** 2
        frac = rng.uniform(0.15, 0.35)
        asp = rng.uniform(1.0, 1.8)
        r = np.sqrt(frac * area / np.pi)
        ra, rb = r * np.sqrt(asp), r / np.sqrt(asp)
        cand = np.flatnonzero(dd >= 0.8 * rb + spec.pixel)
        if cand.size == 0:
            cand = np.array([int(np.argmax(dd))])
        off = np.hypot(x[cand] - x.mean(), y[cand] - y.mean())
        w = off + 1e-3
        i = cand[rng.choice(cand.size, p=w / w.sum())]
        cx, cy = x[i], y[i]
        ang = rng.uniform(0, np.pi)
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        for _ in range(12):  # shrink until the whole ellipse lies in the cell
            ex = cx + ra * np.cos(t) * np.cos(ang) - rb * np.sin(t) * np.sin(ang)
            ey = cy + ra * np.cos(t) * np.sin(ang) + rb * np.sin(t) * np.cos(ang)
            ix = np.clip((ex / spec.pixel).astype(int), 0, nx - 1)
            iy = np.clip((ey / spec.pixel).astype(int), 0, ny - 1)
            if np.all(lab[iy, ix] == c) and rb >= 0.8:
                break
            ra, rb = ra * 0.85, rb * 0.85
        else:
            continue
        if rb < 0.8:
            continue
        out[c] = (cx, cy, ra, rb, ang)
    return out, (order, starts, X, Y)


def in_ellipse(x, y, e):
    cx, cy, a, b, ang = e.T if e.ndim == 2 else e
    dx, dy = x - cx, y - cy
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def ellipse_vertices(e: np.ndarray, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    cx, cy, a, b, ang = e
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = cx + a * np.cos(t) * np.cos(ang) - b * np.sin(t) * np.sin(ang)
    y = cy + a * np.cos(t) * np.sin(ang) + b * np.sin(t) * np.cos(ang)
    return np.r_[x, x[0]], np.r_[y, y[0]]


# --------------------------------------------------------------------------------------------
# one tissue
# --------------------------------------------------------------------------------------------


def simulate(spec: TissueSpec, data_root: Path, out: Path, seed: int = 0, background: float | None = None) -> dict:
    import shapely

    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, sum(map(ord, spec.name))])
    if background is not None:
        spec = TissueSpec(**{**asdict(spec), "background": background})
    prof = real_profiles(data_root / spec.crop)
    counts, genes = prof["counts"], prof["genes"]
    big = counts.sum(1) >= 20
    counts = counts[big]
    types = cell_types(counts, spec.types, rng)
    type_mean = np.stack([(counts[types == j] / counts[types == j].sum(1, keepdims=True)).mean(0)
                          if np.any(types == j) else np.full(counts.shape[1], 1 / counts.shape[1])
                          for j in range(spec.types)])

    density = prof["cells_per_um2"]
    seeds = place_seeds(spec, density, rng)
    lab, gx, gy = grow_cells(spec, seeds, density, rng)
    n_cells = len(seeds)
    nuclei, (order, starts, PX, PY) = make_nuclei(spec, lab, rng)
    px_count = np.bincount(lab[lab >= 0].ravel(), minlength=n_cells)
    area = px_count * spec.pixel ** 2

    # template real cell per simulated cell; size scaled by area
    tmpl = rng.integers(0, len(counts), n_cells)
    ctype = types[tmpl]
    lib = counts[tmpl].sum(1).astype(float)
    n_tx = np.where(px_count > 0, rng.poisson(lib * area / max(area[area > 0].mean(), 1e-9)), 0)
    probs = 0.8 * counts[tmpl] / lib[:, None] + 0.2 * type_mean[ctype]

    # transcripts per cell: nuclear or not, then a pixel of that part
    cell_of = np.repeat(np.arange(n_cells), n_tx)
    # genes: inverse-CDF sampling per transcript from its cell's probabilities (vectorised)
    cdf = np.cumsum(probs, axis=1)
    cdf /= cdf[:, -1:]
    u = rng.random(cell_of.size)
    gene_of = np.minimum((cdf[cell_of] < u[:, None]).sum(1), len(genes) - 1)

    flat = lab.ravel()
    sorted_lab = flat[order]
    first = np.searchsorted(sorted_lab, np.arange(n_cells))
    # pixel in cell: uniform, then nuclear enrichment by rejection-free reweighting
    has_nuc = np.isfinite(nuclei[:, 0])
    pick = first[cell_of] + (rng.random(cell_of.size) * px_count[cell_of]).astype(np.int64)
    x = PX[pick] + (rng.random(cell_of.size) - 0.5) * spec.pixel
    y = PY[pick] + (rng.random(cell_of.size) - 0.5) * spec.pixel
    in_nuc = np.zeros(cell_of.size, dtype=bool)
    hn = has_nuc[cell_of]
    in_nuc[hn] = in_ellipse(x[hn], y[hn], nuclei[cell_of[hn]])
    # enrichment: redraw a share of the non-nuclear transcripts of nucleated cells inside the nucleus
    nuc_area = np.where(has_nuc, np.pi * nuclei[:, 2] * nuclei[:, 3], 0.0)
    frac_n = np.clip(nuc_area / np.maximum(area, 1e-9), 0, 1)
    target = np.clip(frac_n * spec.nuclear_enrichment / (frac_n * spec.nuclear_enrichment + (1 - frac_n)), 0, 1)
    extra = np.clip((target - frac_n) / np.maximum(1 - frac_n, 1e-9), 0, 1)
    redraw = hn & ~in_nuc & (rng.random(cell_of.size) < extra[cell_of])
    if redraw.any():
        e = nuclei[cell_of[redraw]]
        rr = np.sqrt(rng.random(redraw.sum()))
        tt = rng.uniform(0, 2 * np.pi, redraw.sum())
        uu, vv = rr * np.cos(tt) * e[:, 2], rr * np.sin(tt) * e[:, 3]
        x[redraw] = e[:, 0] + uu * np.cos(e[:, 4]) - vv * np.sin(e[:, 4])
        y[redraw] = e[:, 1] + uu * np.sin(e[:, 4]) + vv * np.cos(e[:, 4])
        in_nuc[redraw] = True

    # background
    n_cell_tx = cell_of.size
    n_bg = int(round(spec.background / (1 - spec.background) * n_cell_tx))
    n_out = int(round(0.7 * n_bg))
    ext = np.flatnonzero(flat < 0)
    if ext.size == 0:
        n_out = 0
    ny, nx = lab.shape
    pe = ext[rng.integers(0, max(ext.size, 1), n_out)] if n_out else np.zeros(0, dtype=np.int64)
    bx = np.r_[(pe % nx + rng.random(n_out)) * spec.pixel, rng.random(n_bg - n_out) * spec.width]
    by = np.r_[(pe // nx + rng.random(n_out)) * spec.pixel, rng.random(n_bg - n_out) * spec.height]
    bg_gene = rng.choice(len(genes), size=n_bg, p=prof["gene_freq"])

    X = np.r_[x, bx]
    Y = np.r_[y, by]
    G = np.r_[gene_of, bg_gene]
    true_cell = np.r_[cell_of, np.full(n_bg, -1)]
    kind = np.r_[np.where(in_nuc, "nucleus", "cytoplasm"), np.full(n_bg, "background")]
    ctype_tx = np.r_[ctype[cell_of], np.full(n_bg, -1)]
    perm = rng.permutation(X.size)  # no method may learn anything from the row order
    X, Y, G, true_cell, kind, ctype_tx = X[perm], Y[perm], G[perm], true_cell[perm], kind[perm], ctype_tx[perm]
    ox, oy = 1000.0, 2000.0  # slide-like offsets
    X, Y = X + ox, Y + oy
    tid = np.arange(1, X.size + 1, dtype=np.int64) * 7 + 280000000

    # nuclei polygons (vendor ids) and the vendor-like expansion (nearest outline ≤ 5 µm)
    nuc_cells = np.flatnonzero(has_nuc)
    nuc_id = np.array([f"sim{spec.name[:3]}-{i:05d}" for i in range(len(nuc_cells))], dtype=object)
    vx, vy, vid = [], [], []
    polys = []
    for k_, c in enumerate(nuc_cells):
        ex, ey = ellipse_vertices(nuclei[c])
        vx.append(ex + ox)
        vy.append(ey + oy)
        vid.append(np.full(ex.size, nuc_id[k_], dtype=object))
        polys.append(shapely.Polygon(np.c_[ex + ox, ey + oy]))
    tree = shapely.STRtree(polys)
    pts = shapely.points(X, Y)
    (pi, gi), dist = tree.query_nearest(pts, return_distance=True, max_distance=spec.vendor_expansion, all_matches=False)
    vendor = np.full(X.size, "UNASSIGNED", dtype=object)
    vendor[pi] = nuc_id[gi]
    overlaps = np.zeros(X.size, dtype=np.uint8)
    overlaps[pi[dist == 0]] = 1

    folder = out / f"sim_{spec.name}"
    folder.mkdir(parents=True, exist_ok=True)
    tx = pd.DataFrame({
        "transcript_id": tid,
        "cell_id": vendor,
        "overlaps_nucleus": overlaps,
        "feature_name": genes[G].astype(object),
        "x_location": X.astype(np.float32),
        "y_location": Y.astype(np.float32),
        "z_location": rng.uniform(10, 20, X.size).astype(np.float32),
        "qv": np.full(X.size, 40.0, dtype=np.float32),
    })
    tx.to_parquet(folder / "transcripts.parquet", index=False)
    pd.DataFrame({"cell_id": np.concatenate(vid), "vertex_x": np.concatenate(vx).astype(np.float32),
                  "vertex_y": np.concatenate(vy).astype(np.float32)}).to_parquet(
        folder / "nucleus_boundaries.parquet", index=False)
    true_names = np.array([f"true-{i:05d}" for i in range(n_cells)], dtype=object)
    truth = pd.DataFrame({
        "transcript_id": tid,
        "true_cell": np.where(true_cell >= 0, true_names[np.maximum(true_cell, 0)], "UNASSIGNED"),
        "true_nucleus": np.where(true_cell >= 0, _nucleus_of(true_cell, has_nuc, nuc_cells, nuc_id), "UNASSIGNED"),
        "kind": kind,
        "cell_type": ctype_tx,
    })
    truth_path = out / f"sim_{spec.name}.truth.parquet"
    truth.to_parquet(truth_path, index=False)
    summary = {
        "spec": asdict(spec), "seed": seed, "folder": str(folder), "truth": str(truth_path),
        "n_transcripts": int(X.size), "n_cells": int(n_cells), "n_nuclei": int(len(nuc_cells)),
        "n_cells_without_nucleus": int(n_cells - len(nuc_cells)), "background_share": float(n_bg / X.size),
        "nuclear_share": float(overlaps.mean()), "real_nuclear_share": prof["nuclear_share"],
        "vendor_assigned": float(np.mean(vendor != "UNASSIGNED")),
        "cells_per_1000um2": 1000 * n_cells / (spec.width * spec.height),
        "real_cells_per_1000um2": 1000 * density,
        "extracellular_area_share": float(np.mean(flat < 0)),
        "median_transcripts_per_cell": float(np.median(n_tx[n_tx > 0])),
        "real_median_transcripts_per_cell": float(np.median(prof["counts"].sum(1))),
        "n_types": spec.types, "seconds": time.perf_counter() - t0,
    }
    (out / f"sim_{spec.name}.json").write_text(json.dumps(summary, indent=1))
    return summary


def _nucleus_of(true_cell, has_nuc, nuc_cells, nuc_id):
    lut = np.full(len(has_nuc), "UNASSIGNED", dtype=object)
    lut[nuc_cells] = nuc_id
    return lut[np.maximum(true_cell, 0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--tissues", default=",".join(TISSUES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--background", type=float, default=None, help="override the background share (0.05-0.25)")
    a = p.parse_args(argv)
    root = Path(a.data_root) if a.data_root else default_data_root()
    out = Path(a.out)
    for name in [t.strip() for t in a.tissues.split(",") if t.strip()]:
        s = simulate(TISSUES[name], root, out, a.seed, a.background)
        print(json.dumps({k: v for k, v in s.items() if k != "spec"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
