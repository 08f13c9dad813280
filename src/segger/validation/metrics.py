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
    the unique ids only.
    """
    s = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values, dtype=object))
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
    codes, _ = factorize_cells(df[cell_col])
    return float(np.mean(codes >= 0))


def _counts_per_cell(codes: np.ndarray, n_cells: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=n_cells)


def transcripts_per_cell(df: pd.DataFrame, cell_col: str = schema.SEGGER_CELL_ID) -> dict[str, float]:
    """Transcripts per assigned cell: ``dict(median, mean, p10, p90, n_cells)`` (NaN if no cell)."""
    _require(df, cell_col)
    codes, labels = factorize_cells(df[cell_col])
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


def _plurality(group: np.ndarray, value: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """For each group, the most frequent value and its count (ties → smallest value).

    ``group`` and ``value`` are non-negative int arrays of equal length. Returns arrays of
    length ``n_groups``: the winning value (``-1`` where the group is empty) and its count.
    """
    best = np.full(n_groups, -1, dtype=np.int64)
    best_n = np.zeros(n_groups, dtype=np.int64)
    if group.size == 0:
        return best, best_n
    n_values = int(value.max()) + 1
    keys, counts = np.unique(group.astype(np.int64) * n_values + value, return_counts=True)
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
    rc, rlabels = factorize_cells(df[ref_col])
    pc, plabels = factorize_cells(df[pred_col])
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
    match, _ = _plurality(rc[sel], pc[sel], n_ref)
    # reference cells listed in nucleus_bearing but without nuclear transcripts: all transcripts
    no_nuc = bearing & (n_nuc == 0)
    if no_nuc.any():
        sel_all = in_ref & (pc >= 0)
        sel_all &= no_nuc[np.where(in_ref, rc, 0)]
        match_all, _ = _plurality(rc[sel_all], pc[sel_all], n_ref)
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
# MECR: mutually exclusive co-expression rate
# --------------------------------------------------------------------------------------------


def _binary_matrix(
    df: pd.DataFrame, cell_col: str, gene_col: str, mask: np.ndarray | None = None
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Binary cells × genes CSR matrix (int32 0/1) over assigned rows (and ``mask``)."""
    _require(df, cell_col, gene_col)
    codes, labels = factorize_cells(df[cell_col])
    gcodes, genes = pd.factorize(df[gene_col], sort=True, use_na_sentinel=True)
    keep = (codes >= 0) & (gcodes >= 0)
    if mask is not None:
        keep &= mask
    rows, cols = codes[keep], gcodes[keep]
    # drop cells with no kept row so n_cells counts only cells that appear here
    present = np.bincount(rows, minlength=len(labels)) > 0
    remap = np.cumsum(present) - 1
    rows = remap[rows]
    labels = labels[present]
    m = sp.coo_matrix(
        (np.ones(rows.size, dtype=np.int32), (rows, cols)), shape=(len(labels), len(genes))
    ).tocsr()
    m.sum_duplicates()
    m.data[:] = 1
    return m, labels, np.asarray(genes).astype(str)


def find_exclusive_gene_pairs(
    df: pd.DataFrame,
    cell_col: str = schema.CELL_ID,
    nuclear_only: bool = True,
    min_cells_frac: float = 0.05,
    max_pairs: int = 100,
    max_rate: float = 0.02,
    gene_col: str = schema.GENE,
    nuclear_col: str = schema.NUCLEAR,
    exclude_controls: bool = True,
) -> pd.DataFrame:
    """Gene pairs that are (almost) never co-expressed in the same nucleus.

    Profiles: transcripts assigned in ``cell_col`` (and with ``nuclear_col`` true when
    ``nuclear_only``), grouped by cell and binarised (gene detected ≥ once). Genes detected in
    fewer than ``min_cells_frac`` of those cells are dropped (as are control probes —
    ``NegControl*``, ``BLANK*``, ``Unassigned*``, ``Deprecated*``, ``antisense*`` — when
    ``exclude_controls``). For every remaining pair the co-expression rate is
    ``#cells(both) / #cells(either)``; pairs with rate ≤ ``max_rate`` are returned, lowest rate
    first (ties: more cells expressing either, then names), at most ``max_pairs``.

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
    if n_cells == 0 or max_pairs <= 0:
        return empty
    n_per_gene = np.asarray(B.sum(axis=0)).ravel()
    ok = (n_per_gene >= max(1.0, min_cells_frac * n_cells))
    if exclude_controls:
        ok &= ~_is_control(genes)
    idx = np.flatnonzero(ok)
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
    order = np.lexsort((gb, ga, -n_either[sel], rate[sel]))[:max_pairs]
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


def _pair_matrix(
    df: pd.DataFrame, gene_pairs: Any, cell_col: str, gene_col: str
) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray, np.ndarray]:
    """Binary cells × pair-genes matrix and, per pair, the two column indices (-1 = gene absent)."""
    pairs = _pairs_list(gene_pairs)
    B, cells, genes = _binary_matrix(df, cell_col, gene_col)
    pos = {g: i for i, g in enumerate(genes)}
    a = np.array([pos.get(p[0], -1) for p in pairs], dtype=np.int64)
    b = np.array([pos.get(p[1], -1) for p in pairs], dtype=np.int64)
    # append one all-zero column for absent genes
    Bz = sp.hstack([B, sp.csr_matrix((B.shape[0], 1), dtype=B.dtype)]).tocsc()
    zero = B.shape[1]
    return Bz, cells, np.where(a >= 0, a, zero), np.where(b >= 0, b, zero)


def mecr_per_pair(
    df: pd.DataFrame, gene_pairs: Any, cell_col: str = schema.SEGGER_CELL_ID, gene_col: str = schema.GENE
) -> pd.DataFrame:
    """Per pair: ``gene_a, gene_b, n_both, n_either, rate`` over the cells of ``cell_col``.

    All assigned transcripts of each cell count (unassigned ones are ignored); ``rate`` is NaN
    for a pair that no cell expresses.
    """
    pairs = _pairs_list(gene_pairs)
    if not pairs:
        return pd.DataFrame(columns=["gene_a", "gene_b", "n_both", "n_either", "rate"])
    Bz, _, a, b = _pair_matrix(df, pairs, cell_col, gene_col)
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
    df: pd.DataFrame, gene_pairs: Any, cell_col: str = schema.SEGGER_CELL_ID, gene_col: str = schema.GENE
) -> float:
    """Mutually exclusive co-expression rate of a segmentation.

    ``mean over pairs (a, b) of #cells expressing both a and b / #cells expressing a or b``,
    over the cells of ``cell_col`` (all their assigned transcripts; unassigned ignored; pairs
    that no cell expresses are skipped). ``gene_pairs``: a DataFrame from
    :func:`find_exclusive_gene_pairs` or any sequence of ``(gene_a, gene_b)``. Lower is better:
    a segmentation that merges cells, or spills transcripts into neighbours, co-expresses
    exclusive markers. NaN when there is no usable pair.
    """
    per = mecr_per_pair(df, gene_pairs, cell_col, gene_col)
    rates = per["rate"].to_numpy(dtype=float)
    rates = rates[np.isfinite(rates)]
    return float(rates.mean()) if rates.size else float("nan")


def mecr_flagged_cells(
    df: pd.DataFrame,
    gene_pairs: Any,
    cell_col: str = schema.SEGGER_CELL_ID,
    gene_col: str = schema.GENE,
    top: int | None = 50,
) -> pd.DataFrame:
    """Cells that co-express at least one exclusive pair: ``cell_id, n_pairs`` (most first).

    ``n_pairs`` = how many of ``gene_pairs`` the cell co-expresses; ties sorted by id; at most
    ``top`` rows (all when ``None``).
    """
    pairs = _pairs_list(gene_pairs)
    if not pairs:
        return pd.DataFrame({"cell_id": pd.Series(dtype=object), "n_pairs": pd.Series(dtype=np.int64)})
    Bz, cells, a, b = _pair_matrix(df, pairs, cell_col, gene_col)
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
    """Cell ids as a categorical of their str labels (unassigned → NaN): factorised once."""
    codes, labels = factorize_cells(values)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=values.index, name=values.name)


def _compact_frame(df: pd.DataFrame, cell_col: str, reference_column: str | None) -> pd.DataFrame:
    """The columns a report needs, with id and gene columns categorical (fast repeated factorise)."""
    out = pd.DataFrame(index=df.index)
    out[cell_col] = _as_categorical(df[cell_col])
    if reference_column is not None and reference_column in df.columns and reference_column != cell_col:
        out[reference_column] = _as_categorical(df[reference_column])
    if schema.GENE in df.columns:
        out[schema.GENE] = df[schema.GENE].astype("category")
    for col in (schema.NUCLEAR, schema.SCORE, schema.ASSIGNMENT):
        if col in df.columns:
            out[col] = df[col]
    return out


def _score_summary(df: pd.DataFrame, assigned: np.ndarray, bins: int) -> dict[str, Any] | None:
    if schema.SCORE not in df.columns:
        return None
    s = pd.to_numeric(df[schema.SCORE], errors="coerce").to_numpy(dtype=float)
    fin = np.isfinite(s)
    if not fin.any():
        return {"median": None, "median_assigned": None, "mean": None, "bins": [], "counts": []}
    lo, hi = min(0.0, float(s[fin].min())), max(1.0, float(s[fin].max()))
    counts, edges = np.histogram(s[fin], bins=bins, range=(lo, hi))
    sa = s[fin & assigned]
    return {
        "median": float(np.median(s[fin])),
        "median_assigned": float(np.median(sa)) if sa.size else float("nan"),
        "mean": float(s[fin].mean()),
        "bins": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
    }


def qc_report(
    df: pd.DataFrame,
    reference_column: str | None = schema.CELL_ID,
    cell_col: str = schema.SEGGER_CELL_ID,
    *,
    n_pairs: int = 100,
    max_pair_rate: float = 0.02,
    min_cells_frac: float = 0.05,
    top_flagged: int = 50,
    score_bins: int = 20,
) -> dict[str, Any]:
    """QC summary of a segmentation result, compared with a reference when there is one.

    Keys (segger = ``cell_col``): ``n_transcripts``, ``fraction_assigned``,
    ``transcripts_per_cell`` (median, mean, p10, p90, n_cells), ``assignment_counts``
    ({kind: n}, None without an ``assignment`` column), ``score`` (median, median_assigned,
    mean, histogram ``bins`` edges / ``counts``; None without ``score``), ``mecr``,
    ``n_mecr_flagged_cells``, ``mecr_flagged_cells`` (ids of the ``top_flagged`` segger cells
    co-expressing the most exclusive pairs), ``mecr_flagged_counts`` (their pair counts),
    ``mecr_gene_pairs`` ([[a, b], …]), ``agreement`` and ``reference``
    (``{"column", "fraction_assigned", "transcripts_per_cell", "mecr"}``).

    When ``reference_column`` is None, missing from ``df`` or holds no assigned transcript,
    ``reference`` / ``agreement`` / the MECR entries are None: exclusive gene pairs are found
    on the nucleus-only profiles of the reference (all its transcripts if there is no
    ``nuclear`` column) and the same pairs score both segmentations.
    """
    _require(df, cell_col)
    df = _compact_frame(df, cell_col, reference_column)
    codes, _ = factorize_cells(df[cell_col])
    assigned = codes >= 0
    report: dict[str, Any] = {
        "n_transcripts": int(len(df)),
        "cell_column": cell_col,
        "fraction_assigned": fraction_assigned(df, cell_col),
        "transcripts_per_cell": transcripts_per_cell(df, cell_col),
        "assignment_counts": None,
        "score": _score_summary(df, assigned, score_bins),
        "agreement": None,
        "mecr": None,
        "mecr_gene_pairs": None,
        "n_mecr_flagged_cells": None,
        "mecr_flagged_cells": None,
        "mecr_flagged_counts": None,
        "reference": None,
    }
    if schema.ASSIGNMENT in df.columns:
        vc = df[schema.ASSIGNMENT].astype(str).value_counts()
        counts = {k: int(vc.get(k, 0)) for k in schema.ASSIGNMENT_KINDS}
        for k, v in vc.items():  # keep unexpected kinds visible
            if k not in counts:
                counts[str(k)] = int(v)
        report["assignment_counts"] = counts

    if reference_column is None or reference_column not in df.columns:
        return report
    if not (factorize_cells(df[reference_column])[0] >= 0).any():
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
        report["agreement"] = agreement(df, cell_col, reference_column)
    pairs = find_exclusive_gene_pairs(
        df,
        cell_col=reference_column,
        nuclear_only=has_nuclear,
        min_cells_frac=min_cells_frac,
        max_pairs=n_pairs,
        max_rate=max_pair_rate,
    )
    report["mecr_gene_pairs"] = [[a, b] for a, b in zip(pairs["gene_a"], pairs["gene_b"])]
    if len(pairs):
        report["mecr"] = mecr(df, pairs, cell_col)
        ref["mecr"] = mecr(df, pairs, reference_column)
        flagged = mecr_flagged_cells(df, pairs, cell_col, top=None)
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
        rows.append(("agreement with reference", _fmt(report["agreement"], "pct"), "-"))
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
    from segger.export.atomic import write_json_atomic

    return write_json_atomic(path, report)
