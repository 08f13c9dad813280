"""A review queue: the cells where the segmentation is least sure, most doubtful first.

:func:`review_queue` ranks cells (nucleus cells and fragments) by an estimate of **how many of
their transcripts may be misassigned**, from signals the prediction already has, so that a person
fixing cells one by one (the napari Correct widget's Next/Previous) starts where a fix removes
the most errors. No truth and no reference are read.

Per transcript in a nucleus cell, a doubt ``u`` in [0, 1] (a rough probability that its cell is wrong):

* **contested** (``u_rival``, the margin between the two best candidates): with ``d_own`` the µm
  to its cell's nucleus outline and ``d_rival`` to the nearest other candidate outline within the
  reach, the relative margin ``m = |d_rival - d_own| / (d_rival + d_own + 1 µm)`` and
  ``u_rival = max(0, 1 - m / rel_band)``. Where the assignment rule let the expression decide (a
  rival within ``ambiguity`` µm) and the decision was within ``logit_band`` of ``move_margin``,
  ``u_rival = 1``;
* **far from its nucleus** (``u_far = 1 - exp(-d_own / far_scale)``): on the simulated tissues the
  share of wrong transcripts grows from ~2 % inside the nucleus to ~50 % at 3 µm and ~85 % past
  8 µm (real cell borders are not the bisectors of nuclei, and background lies around cells);
* **near the cut** (``u_cut``): its link score lies within ``score_band`` of ``score_cut``:
  ``u_cut = 1 - |score - cut| / score_band``. An unassigned transcript whose best candidate scores
  just below the cut counts for that candidate's cell (a transcript the cell may be missing).

``u = 1 - (1 - max(u_rival, u_far))(1 - u_cut)``. A cell's priority is, in "transcripts likely wrong"::

    priority = Σ_t u  +  mecr_weight × n_exclusive_pairs  +  n_fragment × closeness

* ``n_exclusive_pairs``: how many mutually exclusive gene pairs the cell co-expresses
  (:func:`segger.validation.mecr_flagged_cells`; two cell types mixed in one cell);
* fragments (nucleus-free cells): ``closeness = max(0, 1 - gap / near_fragment)`` with ``gap`` the
  µm from the fragment's nearest transcript to the nearest nucleus outline beyond the reach in
  effect (a fragment just past the reach of a nucleus is most likely a piece of that nucleus's
  cell; one far from every nucleus most likely a cell without a nucleus in the plane).

Rows are sorted by priority (highest first), ties by ``cell_id``; only cells with priority > 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segger import schema as S
from segger.validation.metrics import (
    MECR_MIN_TRANSCRIPTS,
    factorize_cells,
    mecr_flagged_cells,
    review_gene_pairs,
)

QUEUE_COLUMNS = ("rank", "cell_id", "priority", "reason", "x", "y", "n_transcripts", "kind", "n_contested",
                 "n_near_cut", "mecr_pairs", "fragment_gap")
"""Columns of :func:`review_queue`."""


def _distances_prediction(pred, cell_bd: np.ndarray, logit_band: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d_own, d_rival, close_call)`` per transcript from a :class:`~segger.prediction.Prediction`:
    µm to its cell's nucleus outline (NaN: not in a nucleus cell), to the nearest other candidate
    outline within the reach (inf: none), and whether the rule's expression decision was within
    ``logit_band`` of ``move_margin``. ``cell_bd``: the nucleus index of each transcript's cell."""
    n = pred.n_tx
    d_own = np.full(n, np.nan)
    d_riv = np.full(n, np.inf)
    close = np.zeros(n, dtype=bool)
    if pred.cand_d_abs is None or not len(pred.cand_tx):
        return d_own, d_riv, close
    t, b, d = pred.cand_tx, pred.cand_bd, pred.cand_d_abs
    ok = d <= pred.max_distance
    own = ok & (b == cell_bd[t]) & (cell_bd[t] >= 0)
    d_own[t[own]] = d[own]
    riv = ok & ~own & (cell_bd[t] >= 0)
    np.minimum.at(d_riv, t[riv], d[riv])
    ch = pred.cand_choice
    amb = pred._rule[1] if pred._rule is not None else pred.config.ambiguity
    if ch is not None and amb > 0 and pred.geometric:
        near = pred.nearest_bd
        is_near = ok & (b == near[t]) & (near[t] >= 0)
        ch_near = np.full(n, np.nan, dtype=np.float64)
        ch_near[t[is_near]] = ch[is_near]
        d1 = np.full(n, np.inf)
        np.minimum.at(d1, t[ok], d[ok])
        comp = ok & ~is_near & (d <= d1[t] + amb) & np.isfinite(ch_near[t])
        best = np.full(n, -np.inf)
        np.maximum.at(best, t[comp], ch[comp].astype(np.float64))
        has = np.isfinite(best) & (cell_bd >= 0)
        close[has] = np.abs(best[has] - ch_near[has] - pred.config.move_margin) < logit_band
    return d_own, d_riv, close


def _distances_geometry(x: np.ndarray, y: np.ndarray, cell: np.ndarray, nuclei: pd.DataFrame,
                        k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``(d_own, d_rival)`` from nucleus outlines alone (a result table without its Prediction)."""
    import shapely
    from scipy.spatial import cKDTree

    d_own = np.full(len(x), np.nan)
    d_riv = np.full(len(x), np.inf)
    if not len(nuclei) or S.GEOMETRY not in nuclei:
        return d_own, d_riv
    ids = nuclei[S.BD_ID].astype(str).to_numpy(dtype=object)
    own = pd.Index(ids).get_indexer(pd.Index(cell.astype(str)))
    sel = np.flatnonzero(own >= 0)
    if not len(sel):
        return d_own, d_riv
    geoms = nuclei[S.GEOMETRY].to_numpy()
    pts = shapely.points(x[sel], y[sel])
    d_own[sel] = shapely.distance(pts, geoms[own[sel]])
    if len(nuclei) < 2:
        return d_own, d_riv
    cen = shapely.centroid(geoms)
    k = min(k, len(nuclei))
    _, nb = cKDTree(np.c_[shapely.get_x(cen), shapely.get_y(cen)]).query(np.c_[x[sel], y[sel]], k=k)
    nb = nb.reshape(len(sel), k)
    dr = np.full(len(sel), np.inf)
    for j in range(k):
        dj = shapely.distance(pts, geoms[nb[:, j]])
        dr = np.where(nb[:, j] != own[sel], np.minimum(dr, dj), dr)
    d_riv[sel] = dr
    return d_own, d_riv


def _fmt_count(n: int, what: str) -> str:
    return f"{n} transcript{'s' if n != 1 else ''} {what}"


def review_queue(
    prediction_or_result: Any,
    result: pd.DataFrame | None = None,
    *,
    nuclei: pd.DataFrame | None = None,
    mecr_flags: pd.DataFrame | bool | None = None,
    gene_pairs: Any = None,
    rel_band: float = 0.5,
    far_scale: float = 4.0,
    score_band: float = 0.1,
    logit_band: float = 1.0,
    mecr_weight: float = 1.0,
    near_fragment: float = 5.0,
    score_cut: float | None = None,
    top: int | None = None,
) -> pd.DataFrame:
    """The cells to review, most doubtful first (see the module docstring for the priority).

    ``prediction_or_result``: a :class:`segger.prediction.Prediction` (all signals; its
    :meth:`~segger.prediction.Prediction.assign` is used unless ``result`` is given, e.g. the
    corrected table the viewer shows) or a result table (``segger_cell_id``, ``score``, ``x``,
    ``y``; rivals then need ``nuclei`` with ``bd_id`` and ``geometry``). ``mecr_flags``: a table
    ``cell_id, n_pairs`` (:func:`segger.validation.mecr_flagged_cells`), ``False`` to skip the
    signal, ``None`` to compute it with ``gene_pairs`` (default: the pairs QC uses,
    :func:`segger.validation.metrics.review_gene_pairs` — the reference's nuclei when the table has
    a ``cell_id`` reference, else the result's own).

    Returns one row per cell with priority > 0, columns :data:`QUEUE_COLUMNS`: ``rank`` (0 =
    first), ``cell_id``, ``priority`` (≈ transcripts likely wrong), ``reason`` (human-readable),
    ``x``, ``y`` (µm; where to centre the view: the doubtful transcripts' centroid, the cell's
    when none), ``n_transcripts``, ``kind`` (``nucleus`` | ``fragment``), ``n_contested``
    (transcripts with ``u_rival ≥ 0.5``), ``n_near_cut`` (``u_cut ≥ 0.5``), ``mecr_pairs``,
    ``fragment_gap`` (µm beyond the reach to the nearest nucleus outline; NaN for nucleus cells).
    Deterministic: the same inputs give the same rows in the same order.
    """
    pred = None
    if isinstance(prediction_or_result, pd.DataFrame):
        df = prediction_or_result
    else:
        pred = prediction_or_result
        df = pred.assign() if result is None else result
        if nuclei is None:
            nuclei = pred.bundle.nuclei
    for col in (S.SEGGER_CELL_ID, S.X, S.Y):
        if col not in df:
            raise ValueError(f"review_queue: the result table has no {col!r} column")
    n = len(df)
    codes, labels = factorize_cells(df[S.SEGGER_CELL_ID])
    labels = np.asarray(labels).astype(str).astype(object)
    n_cells = len(labels)
    x = df[S.X].to_numpy(float)
    y = df[S.Y].to_numpy(float)
    score = df[S.SCORE].to_numpy(float) if S.SCORE in df else np.full(n, np.nan)
    cut = (pred.config.score_cut if pred is not None else 0.5) if score_cut is None else float(score_cut)

    # the nucleus index of each transcript's cell, -1 for unassigned / fragments
    bd_ids = (nuclei[S.BD_ID].astype(str).to_numpy(dtype=object) if nuclei is not None and len(nuclei)
              else np.array([], dtype=object))
    bd_pos = pd.Index(bd_ids)
    label_bd = bd_pos.get_indexer(labels) if len(bd_ids) else np.full(n_cells, -1)
    cell_bd = np.where(codes >= 0, label_bd[np.maximum(codes, 0)] if n_cells else -1, -1)
    is_frag_label = label_bd < 0

    # u_rival (relative margin to the nearest rival outline) and u_far (far from its own nucleus)
    if pred is not None and len(df) == pred.n_tx:
        d_own, d_riv, close = _distances_prediction(pred, cell_bd, logit_band)
    elif nuclei is not None and len(nuclei):
        d_own, d_riv = _distances_geometry(x, y, np.where(codes >= 0, labels[np.maximum(codes, 0)], ""), nuclei)
        close = np.zeros(n, dtype=bool)
    else:
        d_own, d_riv, close = np.full(n, np.nan), np.full(n, np.inf), np.zeros(n, dtype=bool)
    in_nuc = np.isfinite(d_own)
    rel = np.ones(n)
    riv = in_nuc & np.isfinite(d_riv)
    rel[riv] = np.abs(d_riv[riv] - d_own[riv]) / (d_riv[riv] + d_own[riv] + 1.0)
    u_rival = np.where(riv, np.clip(1.0 - rel / max(rel_band, 1e-9), 0.0, 1.0), 0.0)
    u_rival[close] = 1.0
    u_far = np.where(in_nuc, 1.0 - np.exp(-np.nan_to_num(d_own) / far_scale), 0.0) if far_scale > 0 else np.zeros(n)

    # u_cut: assigned to a nucleus cell near the cut, or unassigned just below it
    attr = codes.copy()  # the cell each transcript's doubt counts for
    u_cut = np.zeros(n)
    fin = np.isfinite(score)
    if score_band > 0:
        near = fin & (np.abs(score - cut) < score_band)
        u_cut[near] = 1.0 - np.abs(score[near] - cut) / score_band
        u_cut[~(cell_bd >= 0)] = 0.0  # fragments' scores are not link scores
        if pred is not None and len(df) == pred.n_tx:
            miss = (codes < 0) & (pred.best_bd >= 0) & (pred.best_score < cut) & (pred.best_score > cut - score_band)
            if miss.any() and len(bd_ids):
                lab_of_bd = pd.Index(labels).get_indexer(bd_ids[pred.best_bd[miss]])
                keep = lab_of_bd >= 0
                idx = np.flatnonzero(miss)[keep]
                attr[idx] = lab_of_bd[keep]
                u_cut[idx] = 1.0 - (cut - pred.best_score[idx]) / score_band
    u = 1.0 - (1.0 - np.maximum(u_rival, u_far)) * (1.0 - u_cut)
    ok = attr >= 0
    doubt = np.bincount(attr[ok], weights=u[ok], minlength=n_cells)
    n_far = np.bincount(attr[ok], weights=(u_far[ok] >= 0.5) & (u_rival[ok] < 0.5), minlength=n_cells).astype(np.int64)
    n_contested = np.bincount(attr[ok], weights=(u_rival[ok] >= 0.5), minlength=n_cells).astype(np.int64)
    n_near_cut = np.bincount(attr[ok], weights=(u_cut[ok] >= 0.5), minlength=n_cells).astype(np.int64)
    wx = np.bincount(attr[ok], weights=u[ok] * x[ok], minlength=n_cells)
    wy = np.bincount(attr[ok], weights=u[ok] * y[ok], minlength=n_cells)

    a = codes >= 0
    n_tx = np.bincount(codes[a], minlength=n_cells)
    cx = np.bincount(codes[a], weights=x[a], minlength=n_cells) / np.maximum(n_tx, 1)
    cy = np.bincount(codes[a], weights=y[a], minlength=n_cells) / np.maximum(n_tx, 1)

    # MECR flags
    mecr_pairs = np.zeros(n_cells, dtype=np.int64)
    if mecr_flags is not False and n_cells and S.GENE in df:
        flags = mecr_flags
        if flags is None or flags is True:
            pairs = gene_pairs
            if pairs is None and S.NUCLEAR in df:
                pairs = review_gene_pairs(df)  # QC's pairs: the same count per cell in both views
            flags = (mecr_flagged_cells(df, pairs, cell_col=S.SEGGER_CELL_ID, top=None,
                                        min_transcripts=MECR_MIN_TRANSCRIPTS)
                     if pairs is not None and len(pairs) else None)
        if flags is not None and len(flags):
            at = pd.Index(labels).get_indexer(flags["cell_id"].astype(str))
            m = at >= 0
            mecr_pairs[at[m]] = flags["n_pairs"].to_numpy(np.int64)[m]

    # fragments: gap to the nearest nucleus outline beyond the reach
    frag_gap = np.full(n_cells, np.nan)
    closeness = np.zeros(n_cells)
    frag_cells = np.flatnonzero(is_frag_label & (n_tx > 0))
    if len(frag_cells) and nuclei is not None and len(nuclei) and S.GEOMETRY in nuclei:
        from segger.validation.metrics import nearest_nucleus

        fm = a & is_frag_label[np.maximum(codes, 0)]
        _, d = nearest_nucleus(x[fm], y[fm], nuclei)
        reach = pred.max_distance if pred is not None and np.isfinite(pred.max_distance) else 0.0
        dmin = np.full(n_cells, np.inf)
        np.minimum.at(dmin, codes[fm], d)
        frag_gap[frag_cells] = np.maximum(dmin[frag_cells] - reach, 0.0)
        closeness[frag_cells] = np.clip(1.0 - frag_gap[frag_cells] / max(near_fragment, 1e-9), 0.0, 1.0)

    priority = doubt + mecr_weight * mecr_pairs + n_tx * closeness
    keep = np.flatnonzero(priority > 0)
    order = keep[np.lexsort((labels[keep].astype(str), -priority[keep]))]
    if top is not None:
        order = order[:top]
    reasons = []
    for c in order:
        parts = []
        if closeness[c] > 0:
            parts.append(f"fragment of {n_tx[c]} transcripts {frag_gap[c]:.1f} µm beyond the reach of a nucleus")
        if n_contested[c]:
            parts.append(_fmt_count(int(n_contested[c]), "about as near a rival nucleus as their own"))
        if n_far[c]:
            parts.append(_fmt_count(int(n_far[c]), f"over {far_scale * np.log(2):.1f} µm from their nucleus"))
        if n_near_cut[c]:
            parts.append(_fmt_count(int(n_near_cut[c]), f"with a score within {score_band / 2:g} of the cut"))
        if mecr_pairs[c]:
            parts.append(f"co-expresses {mecr_pairs[c]} exclusive gene pair{'s' if mecr_pairs[c] != 1 else ''}")
        reasons.append("; ".join(parts) if parts else "a few doubtful transcripts")
    w = doubt[order]
    has_w = w > 0
    qx = np.where(has_w, wx[order] / np.where(has_w, w, 1.0), cx[order])
    qy = np.where(has_w, wy[order] / np.where(has_w, w, 1.0), cy[order])
    qx = np.where(np.isfinite(qx), qx, cx[order])
    qy = np.where(np.isfinite(qy), qy, cy[order])
    return pd.DataFrame({
        "rank": np.arange(len(order), dtype=np.int64),
        "cell_id": labels[order].astype(object),
        "priority": priority[order].astype(float),
        "reason": pd.array(reasons, dtype=object),
        "x": qx.astype(float),
        "y": qy.astype(float),
        "n_transcripts": n_tx[order].astype(np.int64),
        "kind": np.where(is_frag_label[order], "fragment", "nucleus").astype(object),
        "n_contested": n_contested[order],
        "n_near_cut": n_near_cut[order],
        "mecr_pairs": mecr_pairs[order],
        "fragment_gap": frag_gap[order],
    }, columns=list(QUEUE_COLUMNS))
