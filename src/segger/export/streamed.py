"""The cell outputs of a whole-slide result, computed window by window from its transcripts file.

:func:`segger.workflows.write_cell_outputs` given a path (an out-of-core run's
``segger_transcripts.parquet``) lands here instead of reading the slide's table back whole:

1. **One pass over the row groups** (:func:`segger.export.writers.iter_transcripts_output`, one row
   group in memory at a time) keeps, per transcript, the integer codes the cell outputs and QC need —
   cell, reference cell, gene (int32 each), score (float32), assignment and nuclear flag (int8) —
   18 bytes a transcript; spills ``x, y`` (float64) to a scratch file; and sums each cell's count,
   position and bounding box.
2. **Windows.** Each cell is owned by the square of a grid (about ``rows_per_window`` assigned
   transcripts a square) that holds its centroid. A window reads the transcripts of the row groups that
   meet its owned cells' box grown by ``context`` µm plus the boxes of every cell that meets that grown
   box (those cells are whole in the window), and computes :func:`cell_boundaries` and
   :func:`build_anndata` on them, keeping the owned cells. A cell's outline depends only on the
   transcripts within a few µm of it (its hull grown by ``expand``, clipped to the Voronoi territory of
   its transcripts), so every owned outline is the one a whole-table run draws (tested against it).
3. **QC** (:func:`segger.validation.qc_report`) runs on the compact codes of step 1 as categorical
   columns: the same function, the same numbers.

Memory: the per-transcript codes (18 B a transcript: 0.54 GB at 30 M, filled in place), one row
group, QC's work on those codes (chunked counting in :mod:`segger.validation.metrics`), then the
windows in flight (one per worker thread, each about ``rows_per_window`` transcripts with their
shapely points); freed pages go back to the OS after the scan, QC and each window
(:func:`segger.utils.memory.release_memory`), since the windows' threads would not reuse the main
thread's heap. The slide's table is never read whole. Measured peak of the step alone
(``benchmarks/cell_outputs.py``): 1.75 / 2.43 / 2.99 GB at 1 / 10 / 30 M; what still grows is the
codes and QC's work on them.
The outputs are the files of an in-memory run, byte for byte in their layout.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from segger import schema
from segger.errors import SeggerInputError

#: assigned transcripts owned by one window (the unit of outline / AnnData work)
ROWS_PER_WINDOW = 250_000
#: µm around a window's owned cells whose transcripts (and whole cells) come with it: ≥ 2 × (expand +
#: smooth) of the outlines plus a cell's reach, so an owned outline never sees the window's edge
CONTEXT_UM = 25.0

__all__ = ["ROWS_PER_WINDOW", "CONTEXT_UM", "StreamedTable", "scan_transcripts_output", "streamed_cell_outputs"]


class _Labels:
    """A growing ``value → code`` map over batches; ``cells=True`` uses the cell-id rule of
    :func:`segger.validation.metrics.factorize_cells` (str labels, unassigned → -1)."""

    def __init__(self, cells: bool):
        self.cells = cells
        self.index: dict[str, int] = {}
        self.values: list[str] = []

    def encode(self, values: pd.Series) -> np.ndarray:
        if self.cells:
            from segger.validation.metrics import factorize_cells

            codes, labels = factorize_cells(values)
        else:
            codes, labels = pd.factorize(values.astype(str), use_na_sentinel=True)
            labels = np.asarray(labels, dtype=object)
        lut = np.empty(len(labels) + 1, dtype=np.int32)
        lut[-1] = -1
        for i, lab in enumerate(labels):
            j = self.index.get(lab)
            if j is None:
                j = self.index[lab] = len(self.values)
                self.values.append(str(lab))
            lut[i] = j
        return lut[np.asarray(codes, dtype=np.int64)]

    def sorted(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(codes into the sorted labels, sorted labels)`` — the order ``factorize_cells`` gives;
        ``codes`` is rewritten in place, a chunk at a time."""
        labels = np.asarray(self.values, dtype=str)
        order = np.argsort(labels, kind="stable")
        rank = np.empty(len(labels) + 1, dtype=np.int32)
        rank[order] = np.arange(len(labels), dtype=np.int32)
        rank[-1] = -1
        step = 1 << 20
        for i in range(0, codes.size, step):
            codes[i:i + step] = rank[codes[i:i + step]]
        return codes, labels[order]


@dataclass
class StreamedTable:
    """What one pass over a transcripts file keeps (module docstring, step 1)."""

    path: Path
    n_rows: int
    cell: np.ndarray  # int32 codes into cells (-1: unassigned)
    cells: np.ndarray  # sorted str cell ids
    gene: np.ndarray
    genes: np.ndarray
    xy_file: Path  # (n_rows, 2) float64, file order
    rg_rows: np.ndarray  # (n_row_groups + 1,) row offsets
    rg_box: np.ndarray  # (n_row_groups, 4) minx, miny, maxx, maxy of each row group's rows
    cell_n: np.ndarray  # per cell: transcripts, centroid and box
    cell_xy: np.ndarray
    cell_box: np.ndarray
    ref: np.ndarray | None = None
    refs: np.ndarray | None = None
    score: np.ndarray | None = None
    assignment: np.ndarray | None = None
    assignments: np.ndarray | None = None
    nuclear: np.ndarray | None = None
    ref_column: str | None = None  # the reference column read (codes in ref)
    ref_any: bool = False  # it holds a value somewhere (else QC has no reference)

    def xy(self, lo: int, hi: int) -> np.ndarray:
        """The ``x, y`` of rows ``lo:hi`` (read from the scratch file, not kept in memory)."""
        with open(self.xy_file, "rb") as f:
            return np.fromfile(f, dtype=np.float64, count=2 * (hi - lo), offset=16 * lo).reshape(-1, 2)

    def frame(self, rows: np.ndarray | None = None, xy: np.ndarray | None = None) -> pd.DataFrame:
        """The result-table columns of ``rows`` (global row numbers; None: every row, no copy) as
        categoricals, with ``x, y`` when given."""
        def take(a):
            return a if rows is None else a[rows]

        df = pd.DataFrame({schema.SEGGER_CELL_ID: pd.Categorical.from_codes(take(self.cell), categories=self.cells)})
        if xy is not None:
            df[schema.X] = xy[:, 0]
            df[schema.Y] = xy[:, 1]
        df[schema.GENE] = pd.Categorical.from_codes(take(self.gene), categories=self.genes)
        if self.score is not None:
            df[schema.SCORE] = take(self.score)
        if self.assignment is not None:
            df[schema.ASSIGNMENT] = pd.Categorical.from_codes(take(self.assignment), categories=self.assignments)
        if self.nuclear is not None:
            df[schema.NUCLEAR] = take(self.nuclear).astype(bool)
        if self.ref is not None:
            df[self.ref_column] = pd.Categorical.from_codes(take(self.ref), categories=self.refs)
        return df


def scan_transcripts_output(path: str | os.PathLike, scratch: str | os.PathLike, *,
                            reference_column: str | None = schema.CELL_ID) -> StreamedTable:
    """Step 1 of the module docstring: one pass over ``path``; ``x, y`` spill into ``scratch``."""
    from segger.export.writers import iter_transcripts_output

    import pyarrow.parquet as pq

    path = Path(path)
    cells, refs, genes, kinds = _Labels(True), _Labels(True), _Labels(False), _Labels(False)
    total = pq.ParquetFile(path).metadata.num_rows
    # the columns are filled in place, a row group at a time (no list of batches to concatenate)
    cols = {"cell": np.empty(total, np.int32), "ref": np.empty(total, np.int32), "gene": np.empty(total, np.int32),
            "score": np.empty(total, np.float32), "assignment": np.empty(total, np.int8),
            "nuclear": np.empty(total, np.int8)}
    rg_rows, rg_box = [0], []
    n = np.zeros(0, np.int64)
    sx, sy = np.zeros(0), np.zeros(0)
    box = np.zeros((0, 4))
    has = {"ref": False, "score": False, "assignment": False, "nuclear": False}
    ref_any = False
    xy_file = Path(tempfile.mkstemp(prefix="segger-xy-", suffix=".f8", dir=scratch)[1])
    with open(xy_file, "wb") as out:
        for rg, df in iter_transcripts_output(path):
            missing = [c for c in (schema.SEGGER_CELL_ID, schema.X, schema.Y, schema.GENE) if c not in df.columns]
            if missing:
                raise SeggerInputError(f"{path}: no column {', '.join(missing)}: not a segger transcripts file")
            if rg == 0:
                has = {"ref": bool(reference_column) and reference_column in df.columns,
                       "score": schema.SCORE in df.columns, "assignment": schema.ASSIGNMENT in df.columns,
                       "nuclear": schema.NUCLEAR in df.columns}
            xy = np.column_stack([df[schema.X].to_numpy(dtype=np.float64), df[schema.Y].to_numpy(dtype=np.float64)])
            xy.tofile(out)
            lo, hi = rg_rows[-1], rg_rows[-1] + len(df)
            c = cells.encode(df[schema.SEGGER_CELL_ID])
            cols["cell"][lo:hi] = c
            cols["gene"][lo:hi] = genes.encode(df[schema.GENE])
            if has["ref"]:
                ref_any = ref_any or bool(df[reference_column].notna().any())
                cols["ref"][lo:hi] = refs.encode(df[reference_column])
            if has["score"]:
                cols["score"][lo:hi] = pd.to_numeric(df[schema.SCORE], errors="coerce").to_numpy(dtype=np.float32)
            if has["assignment"]:
                cols["assignment"][lo:hi] = kinds.encode(df[schema.ASSIGNMENT])
            if has["nuclear"]:
                cols["nuclear"][lo:hi] = df[schema.NUCLEAR].to_numpy(dtype=bool)
            rg_rows.append(hi)
            fin = np.isfinite(xy).all(axis=1)
            rg_box.append([*xy[fin].min(axis=0), *xy[fin].max(axis=0)] if fin.any() else [np.inf, np.inf, -np.inf, -np.inf])
            # per cell sums and boxes (cells first seen in this batch extend the arrays)
            k = len(cells.values)
            if k > len(n):
                grow = k - len(n)
                n, sx, sy = np.pad(n, (0, grow)), np.pad(sx, (0, grow)), np.pad(sy, (0, grow))
                box = np.vstack([box, np.tile([np.inf, np.inf, -np.inf, -np.inf], (grow, 1))])
            ok = (c >= 0) & fin
            cc = c[ok]
            n += np.bincount(cc, minlength=k)
            sx += np.bincount(cc, weights=xy[ok, 0], minlength=k)
            sy += np.bincount(cc, weights=xy[ok, 1], minlength=k)
            np.minimum.at(box[:, 0], cc, xy[ok, 0])
            np.minimum.at(box[:, 1], cc, xy[ok, 1])
            np.maximum.at(box[:, 2], cc, xy[ok, 0])
            np.maximum.at(box[:, 3], cc, xy[ok, 1])
    if len(kinds.values) > 127:
        raise SeggerInputError(f"{path}: column {schema.ASSIGNMENT!r} holds {len(kinds.values)} kinds; a segger "
                               f"result holds {', '.join(schema.ASSIGNMENT_KINDS)}")
    if rg_rows[-1] != total:
        raise SeggerInputError(f"{path}: its row groups hold {rg_rows[-1]} rows, its footer says {total}")
    cell, cell_labels = cells.sorted(cols["cell"])
    perm = np.argsort(np.asarray(cells.values, dtype=str), kind="stable")  # sorted code → first-seen code
    gene, gene_labels = genes.sorted(cols["gene"])
    t = StreamedTable(path, rg_rows[-1], cell, cell_labels, gene, gene_labels, xy_file, np.asarray(rg_rows),
                      np.asarray(rg_box, dtype=float).reshape(-1, 4), n[perm],
                      np.column_stack([sx[perm], sy[perm]]) / np.maximum(n[perm], 1)[:, None], box[perm])
    if has["ref"]:
        t.ref, t.refs = refs.sorted(cols["ref"])
        t.ref_column, t.ref_any = reference_column, ref_any
    if has["score"]:
        t.score = cols["score"]
    if has["assignment"]:
        t.assignment, t.assignments = kinds.sorted(cols["assignment"])
    if has["nuclear"]:
        t.nuclear = cols["nuclear"]
    return t


def _windows(t: StreamedTable, rows_per_window: int) -> list[np.ndarray]:
    """The cells (codes) owned by each window: a grid over the cell centroids, about ``rows_per_window``
    assigned transcripts a square, in row-major order of the squares."""
    live = np.flatnonzero(t.cell_n > 0)
    if live.size == 0:
        return []
    cx, cy = t.cell_xy[live, 0], t.cell_xy[live, 1]
    x0, y0 = float(cx.min()), float(cy.min())
    w, h = float(cx.max()) - x0, float(cy.max()) - y0
    k = max(1, int(np.ceil(t.cell_n[live].sum() / max(int(rows_per_window), 1))))
    side = float(np.sqrt(max(w, 1e-9) * max(h, 1e-9) / k)) if w > 0 and h > 0 else max(w, h, 1e-9) / k
    ix = np.floor((cx - x0) / side).astype(np.int64)
    iy = np.floor((cy - y0) / side).astype(np.int64)
    key = iy * (int(ix.max()) + 1) + ix
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return [live[g] for g in np.split(order, cuts)]


def _window_rows(t: StreamedTable, owned: np.ndarray, context: float) -> tuple[np.ndarray, np.ndarray]:
    """The global rows (and their ``x, y``) a window reads: every transcript in the owned cells' box grown
    by ``context`` and in the boxes of the cells meeting it."""
    b = t.cell_box[owned]
    grown = np.array([b[:, 0].min() - context, b[:, 1].min() - context, b[:, 2].max() + context,
                      b[:, 3].max() + context])
    cb = t.cell_box
    meet = (cb[:, 0] <= grown[2]) & (cb[:, 2] >= grown[0]) & (cb[:, 1] <= grown[3]) & (cb[:, 3] >= grown[1])
    meet &= t.cell_n > 0
    region = np.array([min(grown[0], cb[meet, 0].min()), min(grown[1], cb[meet, 1].min()),
                       max(grown[2], cb[meet, 2].max()), max(grown[3], cb[meet, 3].max())])
    rb = t.rg_box
    groups = np.flatnonzero((rb[:, 0] <= region[2]) & (rb[:, 2] >= region[0]) & (rb[:, 1] <= region[3])
                            & (rb[:, 3] >= region[1]))
    rows, xys = [], []
    for g in groups:
        lo, hi = int(t.rg_rows[g]), int(t.rg_rows[g + 1])
        xy = t.xy(lo, hi)
        # the region holds the box of every cell meeting the grown box: such a cell comes whole
        inside = ((xy[:, 0] >= region[0]) & (xy[:, 0] <= region[2]) & (xy[:, 1] >= region[1]) & (xy[:, 1] <= region[3]))
        idx = np.flatnonzero(inside)
        rows.append(idx + lo)
        xys.append(xy[idx])
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 2))
    return np.concatenate(rows), np.concatenate(xys)


def streamed_cell_outputs(path: str | os.PathLike, *, reference_column: str | None = schema.CELL_ID,
                          boundaries_method: str = "smooth", rows_per_window: int = ROWS_PER_WINDOW,
                          context: float = CONTEXT_UM, scratch: str | os.PathLike | None = None,
                          workers: int | None = None):
    """``(boundaries, adata, qc)`` of the transcripts file ``path``, window by window (module docstring):
    what :func:`cell_boundaries`, :func:`build_anndata` and :func:`segger.validation.qc_report` give on
    the whole table, without holding it. ``scratch``: a folder for the ``x, y`` spill (default: next
    to ``path``); the spill is removed at the end. ``workers``: windows computed side by side (threads;
    default one per CPU this process may use)."""
    import anndata as ad
    import scipy.sparse as sp

    from concurrent.futures import ThreadPoolExecutor

    from segger.export.writers import build_anndata, cell_boundaries
    from segger.utils.cpus import cpus_available
    from segger.utils.gc import gc_paused
    from segger.utils.memory import release_memory
    from segger.validation import qc_report

    path = Path(path)
    scratch = Path(scratch) if scratch is not None else path.parent
    t = scan_transcripts_output(path, scratch, reference_column=reference_column)
    release_memory()  # the pass's batches and concatenations: only the codes are kept
    ref = reference_column if t.ref_any else None  # segger.workflows' rule: a reference with a value
    def window(owned: np.ndarray):
        rows, xy = _window_rows(t, owned, context)
        df = t.frame(rows, xy)
        b = cell_boundaries(df, method=boundaries_method)
        b = b[b["cell_id"].isin(set(t.cells[owned].tolist()))]
        mine = np.isin(t.cell[rows], owned)
        a = build_anndata(df[mine].reset_index(drop=True), b, reference_column=ref or schema.CELL_ID, genes=t.genes)
        return b, a.obs, a.X, a.obsm["spatial"]

    try:
        # QC first, on the compact codes, and its work handed back to the OS before the windows start
        # (the windows run on other threads, whose heaps would not reuse what QC freed)
        qc = qc_report(t.frame(), reference_column=ref)
        release_memory()
        bounds, obs, X, spatial = [], [], [], []
        n_threads = max(1, int(workers if workers is not None else cpus_available()))
        # the windows are independent and GEOS releases the GIL: ``workers`` windows side by side
        with gc_paused(), ThreadPoolExecutor(n_threads) as pool:
            for b, o, x, sxy in pool.map(window, _windows(t, rows_per_window)):
                bounds.append(b)
                obs.append(o)
                X.append(x)
                spatial.append(sxy)
                release_memory()  # a window's points and frames are gone: its pages back before the next
        if bounds:
            bounds_df = pd.concat(bounds, ignore_index=True)
            bounds_df = bounds_df.iloc[np.argsort(bounds_df["cell_id"].to_numpy(dtype=str), kind="stable")]
            bounds_df = bounds_df.reset_index(drop=True)
            obs_df = pd.concat(obs)
            order = np.argsort(obs_df.index.to_numpy(dtype=str), kind="stable")
            obs_df = obs_df.iloc[order]
            X_all = sp.vstack(X, format="csr")[order]
            X_all.sort_indices()
            xy_all = np.vstack(spatial)[order]
        else:  # nothing assigned: the whole-table functions give the empty outputs
            empty = t.frame(np.zeros(0, np.int64), np.zeros((0, 2)))
            bounds_df = cell_boundaries(empty, method=boundaries_method)
            a = build_anndata(empty, bounds_df, reference_column=ref or schema.CELL_ID, genes=t.genes)
            obs_df, X_all, xy_all = a.obs, a.X, a.obsm["spatial"]
        var = pd.DataFrame(index=pd.Index(t.genes.astype(object), name="gene", dtype=object))
        var["n_cells"] = np.diff(X_all.tocsc().indptr).astype(np.int64)
        adata = ad.AnnData(X=X_all, obs=obs_df, var=var)
        adata.obsm["spatial"] = xy_all
    finally:
        t.xy_file.unlink(missing_ok=True)
    return bounds_df, adata, qc
