"""Segmentation QC metrics on transcript tables (see :mod:`segger.schema`).

All metrics take a transcripts/result ``DataFrame`` and the name of a cell-id column, so the
same function scores the segger result (``segger_cell_id``) and a vendor reference
(``cell_id``). Cell-id columns may hold strings, integers or ``None``/NaN; a transcript is
*unassigned* when its id is missing or one of :data:`UNASSIGNED_VALUES` (``"UNASSIGNED"``,
``"-1"``, …) after conversion to ``str``. Everything is vectorised (factorised integer codes,
``numpy.bincount`` / ``lexsort`` and sparse matrices); nothing loops over cells in Python.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from segger import schema
from segger.errors import SeggerInputError

__all__ = [
    "UNASSIGNED_VALUES",
    "factorize_cells",
    "unassigned_mask",
    "fraction_assigned",
    "transcripts_per_cell",
    "agreement",
    "agreement_per_cell",
    "find_exclusive_gene_pairs",
    "mecr",
    "mecr_per_pair",
    "mecr_flagged_cells",
    "mecr_equal_coverage",
    "quality_gene_pairs",
    "match_cells",
    "agreement_scores",
    "best_match_agreement",
    "mutual_agreement",
    "adjusted_rand_index",
    "truth_scores",
    "nearest_nucleus",
    "nuclear_gene_frequencies",
    "geometry_moves",
    "MECR_TOP_GENES",
    "MECR_MIN_CELLS_FRAC",
    "MECR_MAX_RATE",
    "MECR_MIN_TRANSCRIPTS",
    "qc_report",
    "format_qc_table",
    "write_qc_json",
]

UNASSIGNED_VALUES = frozenset({schema.UNASSIGNED, "-1", "", "None", "nan", "NaN", "<NA>"})
"""String forms of a cell id that mean "not in any cell"."""


# --------------------------------------------------------------------------------------------
# cell-id handling
# --------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SeggerInputError(
            f"column(s) {missing} missing from the transcripts table (has {list(df.columns)}); "
            "pass the right column name"
        )


def factorize_cells(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of a cell-id column: ``(codes, labels)``.

    ``codes`` is an int64 array (``-1`` = unassigned) and ``labels`` the sorted unique cell ids
    as ``str`` (``labels[codes[i]]`` is the id of row ``i``). Integer-valued float ids
    (``43516.0``, from an int column with NaN) become ``"43516"``. Ids that are equal as
    strings (``1`` and ``"1"``) are one cell. Cost: one :func:`pandas.factorize` plus work on
    the unique ids only (a categorical's codes are used directly: no hashing).
    """
    return _cell_codes(values, np.int64)


def _cell_codes(values: Any, dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    """:func:`factorize_cells`, with ``dtype`` codes when ``values`` is a categorical (int32 inside
    this module: half the memory of a row-long array); other columns get int64 codes."""
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
    if isinstance(s.dtype, pd.CategoricalDtype) and np.asarray(s.cat.categories).dtype.kind != "f":
        return _factorize_categorical(s, dtype)
    codes, uniques = pd.factorize(s, sort=False, use_na_sentinel=True)
    uniq = np.asarray(uniques)
    if uniq.dtype.kind == "f":
        finite = np.isfinite(uniq)
        if finite.all() and np.all(uniq == np.round(uniq)):
            uniq = uniq.astype(np.int64)
    labels = uniq.astype(str) if len(uniq) else np.array([], dtype=str)
    bad = np.isin(labels, list(UNASSIGNED_VALUES))
    keep = np.flatnonzero(~bad)
    out_labels, inv = np.unique(labels[keep], return_inverse=True)
    lut = np.full(len(labels) + 1, -1, dtype=np.int64)  # last slot: pandas' -1 sentinel
    lut[keep] = inv.reshape(-1)
    return lut[np.asarray(codes, dtype=np.int64)], out_labels.astype(str)


#: rows handled at a time by the chunked paths below (bounds their temporaries, not their results)
_CHUNK = 1 << 18


def _remap_categorical(s: pd.Series, keep_label, dtype) -> tuple[np.ndarray, np.ndarray]:
    """A categorical's codes remapped onto the categories that occur in it and pass ``keep_label``
    (a bool mask over the categories), in category order; ``(codes as dtype, -1 elsewhere; kept
    category indices)``. Temporaries are one chunk of rows long."""
    raw = s.cat.codes.to_numpy()  # narrow ints, -1 = missing
    seen = np.zeros(len(s.cat.categories) + 1, dtype=bool)  # last slot: -1
    for i in range(0, raw.size, _CHUNK):
        seen[raw[i:i + _CHUNK]] = True
    keep = np.flatnonzero(seen[:-1] & keep_label)
    lut = np.full(len(seen), -1, dtype=np.int64)
    lut[keep] = np.arange(keep.size)
    out = np.empty(raw.size, dtype=dtype)
    for i in range(0, raw.size, _CHUNK):
        out[i:i + _CHUNK] = lut[raw[i:i + _CHUNK]]
    return out, keep


def _factorize_categorical(s: pd.Series, dtype) -> tuple[np.ndarray, np.ndarray]:
    """:func:`factorize_cells` of a categorical (non-float categories) from its codes: the same
    result, with one array of the rows allocated."""
    labels = np.asarray(s.cat.categories).astype(str)
    codes, keep = _remap_categorical(s, ~np.isin(labels, list(UNASSIGNED_VALUES)), dtype)
    out_labels, inv = np.unique(labels[keep], return_inverse=True)
    if not np.array_equal(inv.reshape(-1), np.arange(keep.size)):  # categories not in str order (or equal as str)
        lut = np.append(inv.reshape(-1), -1).astype(dtype)  # last slot: -1 stays -1
        for i in range(0, codes.size, _CHUNK):
            codes[i:i + _CHUNK] = lut[codes[i:i + _CHUNK]]
    return codes, out_labels.astype(str)


def _gene_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(values, sort=True, use_na_sentinel=True)``; for a categorical its codes
    remapped to the categories present (in category order, as pandas sorts a categorical) as int32."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        return pd.factorize(values, sort=True, use_na_sentinel=True)
    codes, keep = _remap_categorical(values, np.ones(len(values.cat.categories), bool), np.int32)
    return codes, np.asarray(values.cat.categories)[keep]


def _pair_counts(a: np.ndarray, b: np.ndarray, n_b: int,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys ``a * n_b + b`` of two equal-length int arrays (non-negative where
    ``mask``, every row when None) and how often each occurs: ``np.unique(..., return_counts=True)``
    computed a chunk at a time (each chunk's distinct pairs, then those merged), so the temporaries
    scale with the distinct pairs, not the rows."""
    keys, counts = [], []
    for i in range(0, a.size, _CHUNK):
        aa, bb = a[i:i + _CHUNK], b[i:i + _CHUNK]
        if mask is not None:
            m = mask[i:i + _CHUNK]
            aa, bb = aa[m], bb[m]
        k = aa.astype(np.int64) * n_b + bb
        u, c = np.unique(k, return_counts=True)
        keys.append(u)
        counts.append(c)
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(keys) == 1:
        return keys[0], counts[0].astype(np.int64)
    u, inv = np.unique(np.concatenate(keys), return_inverse=True)
    return u, np.bincount(inv.reshape(-1), weights=np.concatenate(counts), minlength=u.size).astype(np.int64)


def unassigned_mask(values: Any) -> np.ndarray:
    """Boolean array: ``True`` where the cell id means unassigned (None, NaN, "UNASSIGNED", "-1")."""
    return factorize_cells(values)[0] < 0


def _bool_column(s: pd.Series) -> np.ndarray:
    """A bool/int/object flag column as a bool array (missing → False)."""
    if s.dtype == bool:
        return s.to_numpy()
    if s.dtype.kind in "iuf":
        return np.nan_to_num(s.to_numpy(dtype=float)) != 0
    return np.asarray(s.astype("boolean").fillna(False), dtype=bool)


def _safe_div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def fraction_assigned(df: pd.DataFrame, cell_col: str = schema.SEGGER_CELL_ID) -> float:
    """Fraction of transcripts (rows) assigned to a cell; NaN for an empty table."""
    _require(df, cell_col)
    if len(df) == 0:
        return float("nan")
    codes, _ = _cell_codes(df[cell_col])
    return float(np.mean(codes >= 0))


def _counts_per_cell(codes: np.ndarray, n_cells: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows per cell code (codes ≥ 0, and ``mask`` when given), a chunk at a time."""
    n = np.zeros(n_cells, dtype=np.int64)
    for i in range(0, codes.size, _CHUNK):
        c = codes[i:i + _CHUNK]
        ok = c >= 0 if mask is None else (c >= 0) & mask[i:i + _CHUNK]
        n += np.bincount(c[ok], minlength=n_cells)
    return n


def transcripts_per_cell(df: pd.DataFrame, cell_col: str = schema.SEGGER_CELL_ID) -> dict[str, float]:
    """Transcripts per assigned cell: ``dict(median, mean, p10, p90, n_cells)`` (NaN if no cell)."""
    _require(df, cell_col)
    codes, labels = _cell_codes(df[cell_col])
    counts = _counts_per_cell(codes, len(labels))
    counts = counts[counts > 0]
    if counts.size == 0:
        nan = float("nan")
        return {"median": nan, "mean": nan, "p10": nan, "p90": nan, "n_cells": 0}
    p10, med, p90 = np.percentile(counts, [10, 50, 90])
    return {
        "median": float(med),
        "mean": float(counts.mean()),
        "p10": float(p10),
        "p90": float(p90),
        "n_cells": int(counts.size),
    }


# --------------------------------------------------------------------------------------------
# agreement with a reference segmentation
# --------------------------------------------------------------------------------------------


def _plurality(group: np.ndarray, value: np.ndarray, n_groups: int,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each group, the most frequent value and its count (ties → smallest value).

    ``group`` and ``value`` are int arrays of equal length, non-negative in the rows counted
    (``mask``; every row when None). Returns arrays of length ``n_groups``: the winning value
    (``-1`` where the group is empty) and its count.
    """
    best = np.full(n_groups, -1, dtype=np.int64)
    best_n = np.zeros(n_groups, dtype=np.int64)
    if group.size == 0 or (mask is not None and not mask.any()):
        return best, best_n
    n_values = int(value.max()) + 1  # over all rows: a bound on the counted ones
    keys, counts = _pair_counts(group, value, n_values, mask)
    g, v = np.divmod(keys, n_values)
    order = np.lexsort((v, -counts, g))  # by group, then count desc, then value asc
    g, v, counts = g[order], v[order], counts[order]
    first = np.r_[True, g[1:] != g[:-1]]
    best[g[first]] = v[first]
    best_n[g[first]] = counts[first]
    return best, best_n


def agreement_per_cell(
    df: pd.DataFrame,
    pred_col: str = schema.SEGGER_CELL_ID,
    ref_col: str = schema.CELL_ID,
    nucleus_bearing: Iterable[Any] | None = None,
    nuclear_col: str = schema.NUCLEAR,
) -> pd.DataFrame:
    """Per nucleus-bearing reference cell: its matched predicted cell and how many agree.

    Returns a DataFrame with one row per reference cell scored by :func:`agreement`
    (sorted by id): ``ref_cell_id``, ``matched_cell_id`` (``"UNASSIGNED"`` when none),
    ``n_transcripts``, ``n_agree``, ``fraction``. See :func:`agreement` for the definition.
    """
    _require(df, pred_col, ref_col)
    rc, rlabels = _cell_codes(df[ref_col])
    pc, plabels = _cell_codes(df[pred_col])
    n_ref = len(rlabels)
    in_ref = rc >= 0

    if nuclear_col in df.columns:
        nuclear = _bool_column(df[nuclear_col])
    else:
        if nucleus_bearing is None:
            raise SeggerInputError(
                f"agreement needs the {nuclear_col!r} column (which transcripts are nuclear) "
                "or an explicit nucleus_bearing set of reference cell ids"
            )
        nuclear = np.zeros(len(df), dtype=bool)

    if n_ref == 0:
        return pd.DataFrame(
            {"ref_cell_id": pd.Series(dtype=object), "matched_cell_id": pd.Series(dtype=object),
             "n_transcripts": pd.Series(dtype=np.int64), "n_agree": pd.Series(dtype=np.int64),
             "fraction": pd.Series(dtype=float)}
        )
    n_nuc = np.bincount(rc[in_ref & nuclear], minlength=n_ref)
    if nucleus_bearing is None:
        bearing = n_nuc > 0
    else:
        wanted = {str(v) for v in nucleus_bearing}
        bearing = np.isin(rlabels, list(wanted))

    # match: plurality predicted cell of the reference cell's nuclear transcripts
    sel = in_ref & nuclear & (pc >= 0)
    sel &= bearing[np.where(in_ref, rc, 0)]
    match, _ = _plurality(rc, pc, n_ref, sel)
    del sel
    # reference cells listed in nucleus_bearing but without nuclear transcripts: all transcripts
    no_nuc = bearing & (n_nuc == 0)
    if no_nuc.any():
        sel_all = in_ref & (pc >= 0)
        sel_all &= no_nuc[np.where(in_ref, rc, 0)]
        match_all, _ = _plurality(rc, pc, n_ref, sel_all)
        match = np.where(no_nuc, match_all, match)

    rows = in_ref & bearing[np.where(in_ref, rc, 0)]
    r = rc[rows]
    agree = (pc[rows] >= 0) & (pc[rows] == match[r])
    n_tx = np.bincount(r, minlength=n_ref)
    n_ok = np.bincount(r, weights=agree, minlength=n_ref).astype(np.int64)
    keep = np.flatnonzero(bearing & (n_tx > 0))
    matched = np.full(keep.size, schema.UNASSIGNED, dtype=object)
    m = match[keep]
    matched[m >= 0] = plabels[m[m >= 0]]
    return pd.DataFrame(
        {
            "ref_cell_id": rlabels[keep].astype(object),
            "matched_cell_id": matched,
            "n_transcripts": n_tx[keep],
            "n_agree": n_ok[keep],
            "fraction": n_ok[keep] / np.maximum(n_tx[keep], 1),
        }
    )


def agreement(
    df: pd.DataFrame,
    pred_col: str = schema.SEGGER_CELL_ID,
    ref_col: str = schema.CELL_ID,
    nucleus_bearing: Iterable[Any] | None = None,
    nuclear_col: str = schema.NUCLEAR,
) -> float:
    """Fraction of the reference's transcripts (in nucleus-bearing cells) that the prediction
    puts in the same cell.

    Definition (ids differ between segmentations, so cells are matched through nuclei):

    1. *Nucleus-bearing reference cells* ``R``: reference cells (``ref_col`` assigned) with at
       least one transcript whose ``nuclear_col`` is true — or, when ``nucleus_bearing`` is
       given, exactly the reference ids in that set (compared as ``str``).
    2. *Match*: each ``r`` in ``R`` is matched to the predicted cell ``m(r)`` that holds the
       plurality of ``r``'s nuclear transcripts (only transcripts the prediction assigns are
       counted; ties go to the smallest predicted id as ``str``). A cell in the
       ``nucleus_bearing`` set without nuclear transcripts is matched by the plurality of all
       its transcripts. If none of those transcripts is assigned by the prediction, ``r`` has no
       match and all its transcripts disagree.
    3. ``agreement = Σ_r #{t ∈ r : pred(t) = m(r)} / Σ_r |r|`` over all transcripts of the
       cells in ``R`` (nuclear and cytoplasmic). Transcripts of reference cells outside ``R``
       and reference-unassigned transcripts are ignored.

    Several reference cells may match the same predicted cell, so merges are not penalised
    here (MECR measures them); splits and missed transcripts are. 1.0 when the prediction
    equals the reference up to relabelling. NaN when ``R`` holds no transcript.
    Vectorised (``np.unique`` / ``lexsort`` / ``bincount``); ``O(n log n)`` in transcripts.
    """
    per = agreement_per_cell(df, pred_col, ref_col, nucleus_bearing, nuclear_col)
    return _safe_div(per["n_agree"].sum(), per["n_transcripts"].sum())


# --------------------------------------------------------------------------------------------
# best-match and mutual-best-match agreement (docs: quality-metrics.md)
# --------------------------------------------------------------------------------------------


def match_cells(
    df: pd.DataFrame, pred_col: str = schema.SEGGER_CELL_ID, ref_col: str = schema.CELL_ID
) -> dict[str, Any]:
    """Largest-overlap matching between two segmentations of the same transcripts.

    Overlaps ``|P ∩ R|`` are counted over the transcripts that **both** columns assign. Returns
    ``pred_codes``, ``pred_labels``, ``ref_codes``, ``ref_labels`` (see :func:`factorize_cells`; the
    codes are int32 for a categorical column),
    ``pred_best`` (per predicted cell, the reference code it shares most transcripts with, -1 when
    it shares none), ``ref_best`` (per reference cell, its largest-overlap predicted code) and
    ``paired`` (per predicted cell, True when it and ``pred_best`` are each other's largest
    overlap). Ties go to the smallest code (ids sorted as ``str``).
    """
    _require(df, pred_col, ref_col)
    pc, plabels = _cell_codes(df[pred_col])
    rc, rlabels = _cell_codes(df[ref_col])
    both = (pc >= 0) & (rc >= 0)
    pred_best, _ = _plurality(pc, rc, len(plabels), both)
    ref_best, _ = _plurality(rc, pc, len(rlabels), both)
    del both
    paired = pred_best >= 0
    paired[paired] = ref_best[pred_best[paired]] == np.flatnonzero(paired)
    return {"pred_codes": pc, "pred_labels": plabels, "ref_codes": rc, "ref_labels": rlabels,
            "pred_best": pred_best, "ref_best": ref_best, "paired": paired}


def _nucleated_ref(rc: np.ndarray, n_ref: int, df: pd.DataFrame, nuclear_col: str,
                   nucleus_bearing: Iterable[Any] | None, rlabels: np.ndarray) -> np.ndarray:
    if nucleus_bearing is not None:
        return np.isin(rlabels, [str(v) for v in nucleus_bearing])
    if nuclear_col not in df.columns:
        raise SeggerInputError(
            f"agreement needs the {nuclear_col!r} column (which transcripts are nuclear) "
            "or an explicit nucleus_bearing set of reference cell ids"
        )
    nuclear = _bool_column(df[nuclear_col])
    in_ref = rc >= 0
    return np.bincount(rc[in_ref & nuclear], minlength=n_ref) > 0


def agreement_scores(
    df: pd.DataFrame,
    pred_col: str = schema.SEGGER_CELL_ID,
    ref_col: str = schema.CELL_ID,
    nucleus_bearing: Iterable[Any] | None = None,
    nuclear_col: str = schema.NUCLEAR,
) -> dict[str, Any]:
    """Best-match and mutual-best-match agreement of ``pred_col`` with ``ref_col``.

    Definitions (``shared/docs/quality-metrics.md``):

    * *best match*: each predicted cell maps to the reference cell it shares most transcripts
      with; a reference transcript agrees when its predicted cell maps to its own reference cell.
      Splitting a reference cell costs nothing here.
    * *mutual best match* (the target): P and R are paired only when R is P's largest overlap
      **and** P is R's largest overlap (:func:`match_cells`); a reference transcript agrees when it
      lies in the predicted cell paired with its reference cell. Splitting R into P1 + P2 leaves
      the smaller piece unpaired; merging R1 + R2 into P leaves one of them unpaired.

    Both are reported over the transcripts of *nucleated* reference cells (≥ 1 transcript with
    ``nuclear_col`` true, or the ids in ``nucleus_bearing``); transcripts the prediction leaves
    unassigned count as disagreeing. Returns ``best_match``, ``mutual``, ``n_transcripts``,
    ``n_ref_cells`` (nucleated), ``n_pairs`` (mutual pairs among them). NaN when no transcript.
    """
    m = match_cells(df, pred_col, ref_col)
    pc, rc = m["pred_codes"], m["ref_codes"]
    n_ref = len(m["ref_labels"])
    nucleated = _nucleated_ref(rc, n_ref, df, nuclear_col, nucleus_bearing, m["ref_labels"])
    n = n_best = n_mutual = 0
    for i in range(0, rc.size if n_ref else 0, _CHUNK):  # a chunk of rows at a time: no row-long temporaries
        r, p = rc[i:i + _CHUNK], pc[i:i + _CHUNK]
        rows = (r >= 0) & nucleated[np.where(r >= 0, r, 0)]
        r, p = r[rows], p[rows]
        has_p = p >= 0
        pp = np.where(has_p, p, 0)
        best_ok = has_p & (m["pred_best"][pp] == r) if len(m["pred_best"]) else np.zeros(r.size, bool)
        mutual_ok = best_ok & m["paired"][pp] if len(m["paired"]) else best_ok
        n += int(rows.sum())
        n_best += int(best_ok.sum())
        n_mutual += int(mutual_ok.sum())
    n_pairs = int(np.sum(nucleated[m["pred_best"][m["paired"]]])) if m["paired"].any() else 0
    return {
        "best_match": _safe_div(n_best, n),
        "mutual": _safe_div(n_mutual, n),
        "n_transcripts": n,
        "n_ref_cells": int(nucleated.sum()),
        "n_pairs": n_pairs,
    }


def best_match_agreement(df: pd.DataFrame, pred_col: str = schema.SEGGER_CELL_ID, ref_col: str = schema.CELL_ID,
                         nucleus_bearing: Iterable[Any] | None = None, nuclear_col: str = schema.NUCLEAR) -> float:
    """Best-match agreement (see :func:`agreement_scores`); rewards splitting, never use it alone."""
    return agreement_scores(df, pred_col, ref_col, nucleus_bearing, nuclear_col)["best_match"]


def mutual_agreement(df: pd.DataFrame, pred_col: str = schema.SEGGER_CELL_ID, ref_col: str = schema.CELL_ID,
                     nucleus_bearing: Iterable[Any] | None = None, nuclear_col: str = schema.NUCLEAR) -> float:
    """Mutual-best-match agreement (the target; see :func:`agreement_scores`)."""
    return agreement_scores(df, pred_col, ref_col, nucleus_bearing, nuclear_col)["mutual"]


# --------------------------------------------------------------------------------------------
# against a known truth (simulated tissues)
# --------------------------------------------------------------------------------------------


def _comb2(n: np.ndarray) -> float:
    n = np.asarray(n, dtype=np.float64)
    return float(np.sum(n * (n - 1.0) / 2.0))


def adjusted_rand_index(a: Any, b: Any) -> float:
    """Adjusted Rand index of two labelings of the same items (any hashable labels).

    1 for identical partitions up to relabelling, ~0 for independent ones; NaN for < 2 items.
    Vectorised: the contingency table comes from one ``np.unique`` over code pairs.
    """
    ca = pd.factorize(pd.Series(np.asarray(a, dtype=object)))[0].astype(np.int64)
    cb = pd.factorize(pd.Series(np.asarray(b, dtype=object)))[0].astype(np.int64)
    n = ca.size
    if n < 2:
        return float("nan")
    _, nij = np.unique(ca * (int(cb.max()) + 1) + cb, return_counts=True)
    sum_ij = _comb2(nij)
    sum_a = _comb2(np.bincount(ca))
    sum_b = _comb2(np.bincount(cb))
    total = n * (n - 1) / 2.0
    expected = sum_a * sum_b / total
    max_index = (sum_a + sum_b) / 2.0
    if max_index == expected:  # both partitions trivial (all one cluster, or all singletons)
        return 1.0 if sum_a == sum_b else 0.0
    return float((sum_ij - expected) / (max_index - expected))


def truth_scores(df: pd.DataFrame, pred_col: str = schema.SEGGER_CELL_ID, truth_col: str = "true_cell") -> dict[str, Any]:
    """Transcript-assignment precision / recall / F1 and ARI against a known truth.

    A transcript is *right* when the prediction assigns it and its predicted cell is mutually
    paired (:func:`match_cells`) with its true cell; truth-unassigned (background) transcripts
    are never right. ``precision = right / predicted-assigned``, ``recall = right /
    truth-assigned``, ``f1`` their harmonic mean. ``ari``: adjusted Rand index of the two
    labelings over the transcripts that both assign. Also ``fraction_assigned`` (prediction),
    ``background_assigned`` (share of background transcripts the prediction puts in a cell)
    and ``n_pairs``.
    """
    m = match_cells(df, pred_col, truth_col)
    pc, tc = m["pred_codes"], m["ref_codes"]
    assigned, in_cell = pc >= 0, tc >= 0
    pp = np.where(assigned, pc, 0)
    if len(m["pred_best"]):
        right = assigned & in_cell & m["paired"][pp] & (m["pred_best"][pp] == tc)
    else:
        right = np.zeros(len(df), dtype=bool)
    n_right = int(right.sum())
    precision = _safe_div(n_right, assigned.sum())
    recall = _safe_div(n_right, in_cell.sum())
    f1 = (2 * precision * recall / (precision + recall)) if (precision + recall) > 0 else 0.0
    both = assigned & in_cell
    bg = ~in_cell
    return {
        "precision": precision,
        "recall": recall,
        "f1": float(f1) if math.isfinite(precision) and math.isfinite(recall) else float("nan"),
        "ari": adjusted_rand_index(pc[both], tc[both]),
        "fraction_assigned": _safe_div(assigned.sum(), len(df)),
        "background_assigned": _safe_div((assigned & bg).sum(), bg.sum()),
        "n_pairs": int(m["paired"].sum()),
        "n_true_cells": int(len(m["ref_labels"])),
    }


# --------------------------------------------------------------------------------------------
# moves away from geometry
# --------------------------------------------------------------------------------------------


def _str_ids(values: Any) -> np.ndarray:
    """Canonical ``str`` cell ids (as :func:`factorize_cells` spells them), ``None`` where unassigned."""
    codes, labels = factorize_cells(values)
    out = np.full(len(codes), None, dtype=object)
    ok = codes >= 0
    out[ok] = labels.astype(object)[codes[ok]]
    return out


def nearest_nucleus(x: Any, y: Any, nuclei: pd.DataFrame, id_col: str = schema.BD_ID,
                    geometry_col: str = schema.GEOMETRY) -> tuple[np.ndarray, np.ndarray]:
    """Per point, the id (str) of the nearest nucleus outline and the distance (µm, 0 inside).

    One ``shapely.STRtree.query_nearest`` over all points (ties: the first nucleus in table order).
    """
    import shapely

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ids = nuclei[id_col].astype(str).to_numpy(dtype=object)
    out_id = np.full(x.size, schema.UNASSIGNED, dtype=object)
    out_d = np.full(x.size, np.inf)
    if x.size == 0 or len(nuclei) == 0:
        return out_id, out_d
    tree = shapely.STRtree(nuclei[geometry_col].to_numpy())
    (pi, gi), d = tree.query_nearest(shapely.points(x, y), return_distance=True, all_matches=False)
    out_id[pi] = ids[gi]
    out_d[pi] = d
    return out_id, out_d


def nuclear_gene_frequencies(
    df: pd.DataFrame, ref_col: str = schema.CELL_ID, nuclear_col: str = schema.NUCLEAR, gene_col: str = schema.GENE
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    """Nuclear profiles of the reference: ``(cell_labels, genes, counts, totals)``.

    ``counts`` is a cells × genes CSR matrix of the reference's nuclear transcripts (``nuclear_col``
    true, assigned in ``ref_col``); ``totals`` its row sums. Genes are all genes of ``df``.
    """
    _require(df, ref_col, gene_col, nuclear_col)
    rc, rlabels = factorize_cells(df[ref_col])
    gc, genes = pd.factorize(df[gene_col], sort=True, use_na_sentinel=True)
    keep = (rc >= 0) & (gc >= 0) & _bool_column(df[nuclear_col])
    m = sp.coo_matrix((np.ones(int(keep.sum()), dtype=np.int64), (rc[keep], gc[keep])),
                      shape=(len(rlabels), len(genes))).tocsr()
    m.sum_duplicates()
    return rlabels, np.asarray(genes).astype(str), m, np.asarray(m.sum(axis=1)).ravel()


def geometry_moves(
    df: pd.DataFrame,
    pred_col: str = schema.SEGGER_CELL_ID,
    nearest_col: str = "nearest_nucleus",
    ref_col: str = schema.CELL_ID,
    nuclear_col: str = schema.NUCLEAR,
    gene_col: str = schema.GENE,
    pseudo_count: float = 1.0,
) -> dict[str, Any]:
    """How often a segmentation departs from the nearest nucleus, and whether expression backs it.

    ``nearest_col`` holds, per transcript, the id of the nearest nucleus by boundary distance
    (:func:`nearest_nucleus`; nucleus ids are reference cell ids, as for Xenium). Scored
    transcripts: those the prediction puts in a *nucleus* cell (a predicted id that is a nucleus
    id; fragments and unassigned are counted apart) and that have a nearest nucleus.

    * ``moved``: share of scored transcripts whose cell is not their nearest nucleus;
    * ``supported``: among the moved, share whose gene has a strictly higher frequency in the
      chosen nucleus's nuclear profile than in the nearest nucleus's, frequency =
      ``(count + pseudo_count) / (total + pseudo_count · n_genes)`` over the reference's nuclear
      transcripts (:func:`nuclear_gene_frequencies`);
    * ``moved_vendor_match``: among the moved, share whose chosen cell is the reference cell;
    * ``n_scored``, ``n_moved``, ``in_non_nucleus_cell`` (share of all transcripts assigned to a
      cell that is not a nucleus, e.g. fragments).
    """
    _require(df, pred_col, nearest_col, ref_col, gene_col, nuclear_col)
    labels, genes, counts, totals = nuclear_gene_frequencies(df, ref_col, nuclear_col, gene_col)
    pos = pd.Index(labels)
    pred = _str_ids(df[pred_col])
    ip = pos.get_indexer(pred)
    inear = pos.get_indexer(_str_ids(df[nearest_col]))
    assigned = pred != None  # noqa: E711 (object array)
    scored = (ip >= 0) & (inear >= 0)
    moved = scored & (ip != inear)
    g = pd.Index(genes).get_indexer(df[gene_col].astype(str))
    mv = np.flatnonzero(moved & (g >= 0))
    n_genes = max(len(genes), 1)
    supported = 0
    if mv.size:
        c_chosen = np.asarray(counts[ip[mv], g[mv]]).ravel().astype(float)
        c_near = np.asarray(counts[inear[mv], g[mv]]).ravel().astype(float)
        f_chosen = (c_chosen + pseudo_count) / (totals[ip[mv]] + pseudo_count * n_genes)
        f_near = (c_near + pseudo_count) / (totals[inear[mv]] + pseudo_count * n_genes)
        supported = int(np.sum(f_chosen > f_near))
    vendor_match = int(np.sum(pred[moved] == _str_ids(df[ref_col])[moved]))
    n_scored, n_moved = int(scored.sum()), int(moved.sum())
    return {
        "moved": _safe_div(n_moved, n_scored),
        "supported": _safe_div(supported, n_moved),
        "moved_vendor_match": _safe_div(vendor_match, n_moved),
        "n_scored": n_scored,
        "n_moved": n_moved,
        "in_non_nucleus_cell": _safe_div(int(np.sum(assigned & (ip < 0))), len(df)),
    }


# --------------------------------------------------------------------------------------------
# MECR: mutually exclusive co-expression rate
# --------------------------------------------------------------------------------------------


def _binary_matrix(
    df: pd.DataFrame, cell_col: str, gene_col: str, mask: np.ndarray | None = None
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary cells × genes CSR matrix (int32 0/1) over assigned rows (and ``mask``)."""
    _require(df, cell_col, gene_col)
    codes, labels = _cell_codes(df[cell_col])
    gcodes, genes = _gene_codes(df[gene_col])
    keep = (codes >= 0) & (gcodes >= 0)
    if mask is not None:
        keep &= mask
    n_genes = len(genes)
    # the distinct (cell, gene) pairs, sorted by cell then gene: the matrix's nonzeros in CSR order
    pairs, _ = _pair_counts(codes, gcodes, max(n_genes, 1), keep)
    del codes, gcodes, keep
    rows, cols = np.divmod(pairs, max(n_genes, 1))
    # drop cells with no kept row so n_cells counts only cells that appear here
    present = np.bincount(rows, minlength=len(labels)) > 0
    remap = np.cumsum(present) - 1
    rows = remap[rows]
    labels = labels[present]
    indptr = np.zeros(len(labels) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(labels)), out=indptr[1:])
    m = sp.csr_matrix((np.ones(rows.size, dtype=np.int32), cols, indptr), shape=(len(labels), n_genes))
    return m, labels, np.asarray(genes).astype(str)


def find_exclusive_gene_pairs(
    df: pd.DataFrame,
    cell_col: str = schema.CELL_ID,
    nuclear_only: bool = True,
    min_cells_frac: float = 0.05,
    max_pairs: int | None = 100,
    max_rate: float = 0.02,
    gene_col: str = schema.GENE,
    nuclear_col: str = schema.NUCLEAR,
    exclude_controls: bool = True,
    top_genes: int | None = None,
) -> pd.DataFrame:
    """Gene pairs that are (almost) never co-expressed in the same nucleus.

    Profiles: transcripts assigned in ``cell_col`` (and with ``nuclear_col`` true when
    ``nuclear_only``), grouped by cell and binarised (gene detected ≥ once). Genes detected in
    fewer than ``min_cells_frac`` of those cells are dropped (as are control probes —
    ``NegControl*``, ``BLANK*``, ``Unassigned*``, ``Deprecated*``, ``antisense*`` — when
    ``exclude_controls``). For every remaining pair the co-expression rate is
    ``#cells(both) / #cells(either)``; pairs with rate ≤ ``max_rate`` are returned, lowest rate
    first (ties: more cells expressing either, then names), at most ``max_pairs`` (all when
    ``None``). ``top_genes``: keep only the that many most frequently detected of the remaining
    genes (most cells first, ties by name) before forming pairs. :func:`quality_gene_pairs` is
    the benchmark's rule (top 60 genes, ≥ 5 % of nuclei, rate ≤ 0.03, all pairs).

    Returns a DataFrame ``gene_a, gene_b, rate, n_both, n_either`` (``gene_a < gene_b``),
    possibly empty. Cost: one sparse ``B.T @ B`` over the kept genes.
    """
    _require(df, cell_col, gene_col)
    mask = None
    if nuclear_only:
        _require(df, nuclear_col)
        mask = _bool_column(df[nuclear_col])
    B, _, genes = _binary_matrix(df, cell_col, gene_col, mask)
    empty = pd.DataFrame(
        {"gene_a": pd.Series(dtype=object), "gene_b": pd.Series(dtype=object),
         "rate": pd.Series(dtype=float), "n_both": pd.Series(dtype=np.int64),
         "n_either": pd.Series(dtype=np.int64)}
    )
    n_cells = B.shape[0]
    if n_cells == 0 or (max_pairs is not None and max_pairs <= 0):
        return empty
    n_per_gene = np.asarray(B.sum(axis=0)).ravel()
    ok = (n_per_gene >= max(1.0, min_cells_frac * n_cells))
    if exclude_controls:
        ok &= ~_is_control(genes)
    idx = np.flatnonzero(ok)
    if top_genes is not None:
        idx = idx[np.lexsort((genes[idx], -n_per_gene[idx]))][: int(top_genes)]
        idx.sort()
    if idx.size < 2:
        return empty
    Bk = B[:, idx].tocsc()
    both = (Bk.T @ Bk).toarray().astype(np.int64)
    n = n_per_gene[idx].astype(np.int64)
    ia, ib = np.triu_indices(idx.size, k=1)
    n_both = both[ia, ib]
    n_either = n[ia] + n[ib] - n_both
    rate = n_both / n_either  # n_either ≥ 1 since each kept gene is in ≥ 1 cell
    sel = np.flatnonzero(rate <= max_rate)
    if sel.size == 0:
        return empty
    ga, gb = genes[idx[ia[sel]]], genes[idx[ib[sel]]]
    order = np.lexsort((gb, ga, -n_either[sel], rate[sel]))
    if max_pairs is not None:
        order = order[:max_pairs]
    sel = sel[order]
    return pd.DataFrame(
        {
            "gene_a": genes[idx[ia[sel]]].astype(object),
            "gene_b": genes[idx[ib[sel]]].astype(object),
            "rate": rate[sel].astype(float),
            "n_both": n_both[sel],
            "n_either": n_either[sel],
        }
    ).reset_index(drop=True)


_CONTROL_PREFIXES = ("negcontrol", "blank", "unassigned", "deprecated", "antisense", "intergenic", "negprb", "falsecode", "systemcontrol")


def _is_control(genes: np.ndarray) -> np.ndarray:
    low = np.char.lower(np.asarray(genes, dtype=str))
    out = np.zeros(low.shape, dtype=bool)
    for p in _CONTROL_PREFIXES:
        out |= np.char.startswith(low, p)
    return out


def _pairs_list(gene_pairs: Any) -> list[tuple[str, str]]:
    if isinstance(gene_pairs, pd.DataFrame):
        _require(gene_pairs, "gene_a", "gene_b")
        return list(zip(gene_pairs["gene_a"].astype(str), gene_pairs["gene_b"].astype(str)))
    return [(str(a), str(b)) for a, b in gene_pairs]


def _cell_size_mask(df: pd.DataFrame, cell_col: str, min_transcripts: int, mask: np.ndarray | None) -> np.ndarray | None:
    """Rows whose cell holds ≥ ``min_transcripts`` rows (counted within ``mask``), and ``mask``."""
    if min_transcripts <= 1:
        return mask
    codes, labels = _cell_codes(df[cell_col])
    n = _counts_per_cell(codes, len(labels), mask)
    big = np.zeros(len(codes), dtype=bool)
    for i in range(0, codes.size if len(labels) else 0, _CHUNK):
        c = codes[i:i + _CHUNK]
        ok = c >= 0 if mask is None else (c >= 0) & mask[i:i + _CHUNK]
        big[i:i + _CHUNK] = ok & (n[np.where(ok, c, 0)] >= min_transcripts)
    return big


def _pair_matrix(
    df: pd.DataFrame, gene_pairs: Any, cell_col: str, gene_col: str, min_transcripts: int = 1,
    mask: np.ndarray | None = None,
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Binary cells × pair-genes matrix and, per pair, the two column indices (-1 = gene absent)."""
    pairs = _pairs_list(gene_pairs)
    B, cells, genes = _binary_matrix(df, cell_col, gene_col, _cell_size_mask(df, cell_col, min_transcripts, mask))
    pos = {g: i for i, g in enumerate(genes)}
    a = np.array([pos.get(p[0], -1) for p in pairs], dtype=np.int64)
    b = np.array([pos.get(p[1], -1) for p in pairs], dtype=np.int64)
    # append one all-zero column for absent genes
    Bz = sp.hstack([B, sp.csr_matrix((B.shape[0], 1), dtype=B.dtype)]).tocsc()
    zero = B.shape[1]
    return Bz, cells, np.where(a >= 0, a, zero), np.where(b >= 0, b, zero)


def mecr_per_pair(
    df: pd.DataFrame, gene_pairs: Any, cell_col: str = schema.SEGGER_CELL_ID, gene_col: str = schema.GENE,
    min_transcripts: int = 1, mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per pair: ``gene_a, gene_b, n_both, n_either, rate`` over the cells of ``cell_col``.

    All assigned transcripts of each cell count (unassigned ones are ignored); only cells with
    ≥ ``min_transcripts`` of them, and only the rows where ``mask`` (bool array) is true, when
    given (cell sizes are counted within ``mask``); ``rate`` is NaN for a pair that no cell
    expresses.
    """
    pairs = _pairs_list(gene_pairs)
    if not pairs:
        return pd.DataFrame(columns=["gene_a", "gene_b", "n_both", "n_either", "rate"])
    Bz, _, a, b = _pair_matrix(df, pairs, cell_col, gene_col, min_transcripts, mask)
    used, inv = np.unique(np.r_[a, b], return_inverse=True)
    Bu = Bz[:, used]
    C = (Bu.T @ Bu).toarray().astype(np.int64)
    ia, ib = inv[: len(pairs)], inv[len(pairs):]
    n_both = C[ia, ib]
    n_either = C[ia, ia] + C[ib, ib] - n_both
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n_either > 0, n_both / np.maximum(n_either, 1), np.nan)
    return pd.DataFrame(
        {
            "gene_a": [p[0] for p in pairs],
            "gene_b": [p[1] for p in pairs],
            "n_both": n_both,
            "n_either": n_either,
            "rate": rate,
        }
    )


def mecr(
    df: pd.DataFrame, gene_pairs: Any, cell_col: str = schema.SEGGER_CELL_ID, gene_col: str = schema.GENE,
    min_transcripts: int = 1, mask: np.ndarray | None = None,
) -> float:
    """Mutually exclusive co-expression rate of a segmentation.

    ``mean over pairs (a, b) of #cells expressing both a and b / #cells expressing a or b``,
    over the cells of ``cell_col`` (all their assigned transcripts; unassigned ignored; pairs
    that no cell expresses are skipped). ``gene_pairs``: a DataFrame from
    :func:`find_exclusive_gene_pairs` or any sequence of ``(gene_a, gene_b)``. Lower is better:
    a segmentation that merges cells, or spills transcripts into neighbours, co-expresses
    exclusive markers. NaN when there is no usable pair. ``min_transcripts``: only cells with at
    least that many assigned transcripts count (the benchmark uses
    :data:`MECR_MIN_TRANSCRIPTS` = 5); ``mask``: score only these rows (see
    :func:`mecr_equal_coverage`).
    """
    per = mecr_per_pair(df, gene_pairs, cell_col, gene_col, min_transcripts, mask)
    rates = per["rate"].to_numpy(dtype=float)
    rates = rates[np.isfinite(rates)]
    return float(rates.mean()) if rates.size else float("nan")


MECR_TOP_GENES = 60
"""Gene pairs are formed among this many most frequently detected nuclear genes."""
MECR_MIN_CELLS_FRAC = 0.05
"""A gene must be detected in at least this share of the reference's nuclei."""
MECR_MAX_RATE = 0.03
"""A pair is exclusive when its co-detection rate over nuclei is at most this."""
MECR_MIN_TRANSCRIPTS = 5
"""Cells with fewer transcripts do not count in MECR."""


def quality_gene_pairs(df: pd.DataFrame, ref_col: str = schema.CELL_ID, nuclear_col: str = schema.NUCLEAR,
                       gene_col: str = schema.GENE) -> pd.DataFrame:
    """The benchmark's exclusive gene pairs (``shared/docs/quality-metrics.md``).

    Among the :data:`MECR_TOP_GENES` most frequently detected genes of the reference's
    nucleus-only profiles (genes present in ≥ :data:`MECR_MIN_CELLS_FRAC` of nuclei; controls
    excluded), every pair whose co-detection rate ``|A∧B| / |A∨B|`` over nuclei is ≤
    :data:`MECR_MAX_RATE`. All transcripts of the reference are used when there is no
    ``nuclear_col``.
    """
    return find_exclusive_gene_pairs(
        df, cell_col=ref_col, nuclear_only=nuclear_col in df.columns, min_cells_frac=MECR_MIN_CELLS_FRAC,
        max_pairs=None, max_rate=MECR_MAX_RATE, gene_col=gene_col, nuclear_col=nuclear_col,
        top_genes=MECR_TOP_GENES,
    )


def review_gene_pairs(df: pd.DataFrame, reference_column: str | None = schema.CELL_ID,
                      cell_col: str = schema.SEGGER_CELL_ID) -> pd.DataFrame:
    """The exclusive gene pairs a viewer shows per cell — the same as :func:`qc_report`'s with its
    defaults: :func:`quality_gene_pairs` of the reference's nuclei when ``reference_column`` holds
    cells, else of the segmentation's own (``cell_col``)."""
    ref = reference_column if reference_column and reference_column in df.columns else None
    if ref is not None and unassigned_mask(df[ref]).all():
        ref = None
    return quality_gene_pairs(df, ref_col=ref or cell_col)


def mecr_equal_coverage(
    df: pd.DataFrame, gene_pairs: Any, col_a: str, col_b: str, gene_col: str = schema.GENE,
    min_transcripts: int = MECR_MIN_TRANSCRIPTS,
) -> dict[str, Any]:
    """MECR of two segmentations on the transcripts that **both** assign, with the same pairs.

    Removes the gain from dropping transcripts or splitting them off: a transcript that only one
    of ``col_a`` / ``col_b`` assigns is ignored by both. Cell sizes (``min_transcripts``) are
    counted on the shared transcripts. Returns ``a``, ``b`` (the two MECRs), ``relative``
    (``(a - b) / b``; negative: ``col_a`` is purer), ``n_shared`` and ``shared_fraction``.
    """
    _require(df, col_a, col_b, gene_col)
    shared = ~unassigned_mask(df[col_a]) & ~unassigned_mask(df[col_b])
    a = mecr(df, gene_pairs, col_a, gene_col, min_transcripts, shared)
    b = mecr(df, gene_pairs, col_b, gene_col, min_transcripts, shared)
    rel = (a - b) / b if (math.isfinite(a) and math.isfinite(b) and b > 0) else float("nan")
    return {"a": a, "b": b, "relative": rel, "n_shared": int(shared.sum()),
            "shared_fraction": _safe_div(shared.sum(), len(df))}


def mecr_flagged_cells(
    df: pd.DataFrame,
    gene_pairs: Any,
    cell_col: str = schema.SEGGER_CELL_ID,
    gene_col: str = schema.GENE,
    top: int | None = 50,
    min_transcripts: int = 1,
) -> pd.DataFrame:
    """Cells that co-express at least one exclusive pair: ``cell_id, n_pairs`` (most first).

    ``n_pairs`` = how many of ``gene_pairs`` the cell co-expresses; ties sorted by id; at most
    ``top`` rows (all when ``None``); only cells with ≥ ``min_transcripts`` transcripts.
    """
    pairs = _pairs_list(gene_pairs)
    if not pairs:
        return pd.DataFrame({"cell_id": pd.Series(dtype=object), "n_pairs": pd.Series(dtype=np.int64)})
    Bz, cells, a, b = _pair_matrix(df, pairs, cell_col, gene_col, min_transcripts)
    co = Bz[:, a].multiply(Bz[:, b])  # cells × pairs, 1 where both
    n = np.asarray(co.sum(axis=1)).ravel().astype(np.int64)
    hit = np.flatnonzero(n > 0)
    order = hit[np.lexsort((cells[hit], -n[hit]))]
    if top is not None:
        order = order[:top]
    return pd.DataFrame({"cell_id": cells[order].astype(object), "n_pairs": n[order]})


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _as_categorical(values: pd.Series) -> pd.Series:
    """Cell ids as a categorical of their str labels (unassigned → NaN): factorised once. A column that
    is already such a categorical (str categories, sorted and unique, none meaning unassigned; unused
    ones allowed) is used as it is."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = np.asarray(values.cat.categories)
        if (cats.dtype.kind in "OU" and all(isinstance(c, str) for c in cats) and cats.size
                and bool(np.all(cats[1:].astype(str) > cats[:-1].astype(str)))
                and not np.isin(cats.astype(str), list(UNASSIGNED_VALUES)).any()):
            return values
    codes, labels = _cell_codes(values)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=values.index, name=values.name)


def _compact_frame(df: pd.DataFrame, cell_col: str, reference_column: str | None) -> pd.DataFrame:
    """The columns a report needs, with id and gene columns categorical (fast repeated factorise);
    columns that are already so are not copied."""
    cols = {cell_col: _as_categorical(df[cell_col])}
    if reference_column is not None and reference_column in df.columns and reference_column != cell_col:
        cols[reference_column] = _as_categorical(df[reference_column])
    if schema.GENE in df.columns:
        g = df[schema.GENE]
        cols[schema.GENE] = g if isinstance(g.dtype, pd.CategoricalDtype) else g.astype("category")
    for col in (schema.NUCLEAR, schema.SCORE, schema.ASSIGNMENT):
        if col in df.columns:
            cols[col] = df[col]
    return pd.DataFrame(cols, index=df.index, copy=False)


def _score_summary(df: pd.DataFrame, assigned: np.ndarray, bins: int) -> dict[str, Any] | None:
    if schema.SCORE not in df.columns:
        return None
    s = pd.to_numeric(df[schema.SCORE], errors="coerce").to_numpy(dtype=float)
    fin = np.isfinite(s)
    if not fin.any():
        return {"median": None, "median_assigned": None, "mean": None, "bins": [], "counts": []}
    sf = s if fin.all() else s[fin]  # one copy at most
    lo, hi = min(0.0, float(sf.min())), max(1.0, float(sf.max()))
    counts, edges = np.histogram(sf, bins=bins, range=(lo, hi))
    median, mean = float(np.median(sf)), float(sf.mean())
    del sf
    sa = s[fin & assigned]
    return {
        "median": median,
        "median_assigned": float(np.median(sa)) if sa.size else float("nan"),
        "mean": mean,
        "bins": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
    }


def qc_report(
    df: pd.DataFrame,
    reference_column: str | None = schema.CELL_ID,
    cell_col: str = schema.SEGGER_CELL_ID,
    *,
    n_pairs: int | None = None,
    max_pair_rate: float = MECR_MAX_RATE,
    min_cells_frac: float = MECR_MIN_CELLS_FRAC,
    top_flagged: int = 50,
    score_bins: int = 20,
    top_genes: int | None = MECR_TOP_GENES,
    min_cell_transcripts: int = MECR_MIN_TRANSCRIPTS,
) -> dict[str, Any]:
    """QC summary of a segmentation result, compared with a reference when there is one.

    Keys (segger = ``cell_col``): ``n_transcripts``, ``fraction_assigned``,
    ``transcripts_per_cell`` (median, mean, p10, p90, n_cells), ``assignment_counts``
    ({kind: n}, None without an ``assignment`` column), ``score`` (median, median_assigned,
    mean, histogram ``bins`` edges / ``counts``; None without ``score``), ``mecr``,
    ``n_mecr_flagged_cells``, ``mecr_flagged_cells`` (ids of the ``top_flagged`` segger cells
    co-expressing the most exclusive pairs), ``mecr_flagged_counts`` (their pair counts),
    ``mecr_gene_pairs`` ([[a, b], …]), ``agreement`` (mutual best match, the target),
    ``agreement_best_match``, ``agreement_nucleus`` (the older nuclear-plurality match of
    :func:`agreement`) and ``reference``
    (``{"column", "fraction_assigned", "transcripts_per_cell", "mecr"}``).

    The defaults are the benchmark's definitions (``shared/docs/quality-metrics.md``): gene pairs
    among the 60 most detected nuclear genes (≥ 5 % of nuclei, rate ≤ 0.03, all pairs), MECR over
    cells with ≥ 5 transcripts — the same code as ``benchmarks/quality.py``.

    When ``reference_column`` is None, missing from ``df`` or holds no assigned transcript,
    ``reference`` / ``agreement`` / the MECR entries are None: exclusive gene pairs are found
    on the nucleus-only profiles of the reference (all its transcripts if there is no
    ``nuclear`` column) and the same pairs score both segmentations.
    """
    _require(df, cell_col)
    df = _compact_frame(df, cell_col, reference_column)
    assigned = _cell_codes(df[cell_col])[0] >= 0
    report: dict[str, Any] = {
        "n_transcripts": int(len(df)),
        "cell_column": cell_col,
        "fraction_assigned": fraction_assigned(df, cell_col),
        "transcripts_per_cell": transcripts_per_cell(df, cell_col),
        "assignment_counts": None,
        "score": _score_summary(df, assigned, score_bins),
        "agreement": None,
        "agreement_best_match": None,
        "agreement_nucleus": None,
        "mecr": None,
        "mecr_gene_pairs": None,
        "n_mecr_flagged_cells": None,
        "mecr_flagged_cells": None,
        "mecr_flagged_counts": None,
        "reference": None,
    }
    if schema.ASSIGNMENT in df.columns:
        kinds = df[schema.ASSIGNMENT]
        if isinstance(kinds.dtype, pd.CategoricalDtype) and not kinds.isna().any():
            vc = kinds.value_counts()  # from the codes; the same counts as below for the kinds present
            vc = vc[vc > 0]
            vc.index = vc.index.astype(str)
        else:
            vc = kinds.astype(str).value_counts()
        counts = {k: int(vc.get(k, 0)) for k in schema.ASSIGNMENT_KINDS}
        for k, v in vc.items():  # keep unexpected kinds visible
            if k not in counts:
                counts[str(k)] = int(v)
        report["assignment_counts"] = counts

    if reference_column is None or reference_column not in df.columns:
        return report
    if not (_cell_codes(df[reference_column])[0] >= 0).any():
        return report

    has_nuclear = schema.NUCLEAR in df.columns
    ref = {
        "column": reference_column,
        "fraction_assigned": fraction_assigned(df, reference_column),
        "transcripts_per_cell": transcripts_per_cell(df, reference_column),
        "mecr": None,
    }
    report["reference"] = ref
    if has_nuclear:
        sc = agreement_scores(df, cell_col, reference_column)
        report["agreement"] = sc["mutual"]
        report["agreement_best_match"] = sc["best_match"]
        report["agreement_nucleus"] = agreement(df, cell_col, reference_column)
    pairs = find_exclusive_gene_pairs(
        df,
        cell_col=reference_column,
        nuclear_only=has_nuclear,
        min_cells_frac=min_cells_frac,
        max_pairs=n_pairs,
        max_rate=max_pair_rate,
        top_genes=top_genes,
    )
    report["mecr_gene_pairs"] = [[a, b] for a, b in zip(pairs["gene_a"], pairs["gene_b"])]
    if len(pairs):
        report["mecr"] = mecr(df, pairs, cell_col, min_transcripts=min_cell_transcripts)
        ref["mecr"] = mecr(df, pairs, reference_column, min_transcripts=min_cell_transcripts)
        flagged = mecr_flagged_cells(df, pairs, cell_col, top=None, min_transcripts=min_cell_transcripts)
        report["n_mecr_flagged_cells"] = int(len(flagged))
        top = flagged.head(top_flagged)
        report["mecr_flagged_cells"] = [str(c) for c in top["cell_id"]]
        report["mecr_flagged_counts"] = [int(n) for n in top["n_pairs"]]
    return report


def _fmt(v: Any, kind: str = "float") -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return "-"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return f"{100 * float(v):.1f}%"
    if kind == "rate":
        return f"{float(v):.4f}"
    return f"{float(v):.1f}"


def qc_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(metric, segger, reference)`` display rows of a :func:`qc_report` (CLI table and GUI)."""
    ref = report.get("reference") or {}
    tpc = report.get("transcripts_per_cell") or {}
    rtpc = ref.get("transcripts_per_cell") or {}
    n_pairs = len(report.get("mecr_gene_pairs") or [])
    rows: list[tuple[str, str, str]] = [
        ("transcripts", _fmt(report.get("n_transcripts"), "int"), _fmt(report.get("n_transcripts"), "int") if ref else "-"),
        ("fraction assigned", _fmt(report.get("fraction_assigned"), "pct"), _fmt(ref.get("fraction_assigned"), "pct")),
        ("cells", _fmt(tpc.get("n_cells"), "int"), _fmt(rtpc.get("n_cells"), "int")),
        ("transcripts/cell median", _fmt(tpc.get("median")), _fmt(rtpc.get("median"))),
        ("transcripts/cell mean", _fmt(tpc.get("mean")), _fmt(rtpc.get("mean"))),
        ("transcripts/cell p10-p90", _range(tpc), _range(rtpc)),
        (f"MECR ({n_pairs} pairs, lower=better)", _fmt(report.get("mecr"), "rate"), _fmt(ref.get("mecr"), "rate")),
    ]
    if report.get("n_mecr_flagged_cells") is not None:
        rows.append(("cells co-expressing exclusive pairs", _fmt(report["n_mecr_flagged_cells"], "int"), "-"))
    if report.get("agreement") is not None:
        rows.append(("agreement with reference (mutual best match)", _fmt(report["agreement"], "pct"), "-"))
    if report.get("agreement_best_match") is not None:
        rows.append(("agreement with reference (best match)", _fmt(report["agreement_best_match"], "pct"), "-"))
    counts = report.get("assignment_counts")
    if counts:
        total = sum(counts.values()) or 1
        for k, v in counts.items():
            rows.append((f"assignment: {k}", f"{v:,} ({100 * v / total:.1f}%)", "-"))
    score = report.get("score")
    if score:
        rows.append(("score median (assigned)", _fmt(score.get("median_assigned"), "rate"), "-"))
    return rows


def format_qc_table(report: dict[str, Any]) -> str:
    """Plain-text table ``metric | segger | reference`` of a :func:`qc_report` (for the CLI)."""
    ref = report.get("reference") or {}
    rows = qc_rows(report)
    ref_name = f"reference ({ref['column']})" if ref.get("column") else "reference"
    header = ("metric", "segger", ref_name)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    sep = "-+-".join("-" * w for w in widths)

    def line(r: Sequence[str]) -> str:
        return " | ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2])]).rstrip()

    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def _range(tpc: dict[str, Any]) -> str:
    if not tpc or tpc.get("p10") is None or not math.isfinite(float(tpc["p10"])):
        return "-"
    return f"{tpc['p10']:.0f}-{tpc['p90']:.0f}"


def write_qc_json(report: dict[str, Any], path: Any) -> Any:
    """Write a :func:`qc_report` as JSON atomically (NaN → null); return the path."""
    from segger.utils.atomic import write_json_atomic

    return write_json_atomic(path, report)
