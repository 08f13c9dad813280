"""Corrections as pure operations on result tables (pandas / numpy, no Qt): the one place for

* the edit rules — :func:`merge_cells` (every transcript of the source cells moves into the
  target), :func:`split_cell` (two seeds or a line; the part holding the cell's nucleus keeps the
  id, the other part becomes ``<cell>-split-<k>``), :func:`reassign` / unassign — each an
  :class:`Edit` that :meth:`Edit.record` writes into a :class:`~segger.corrections.CorrectionStore`,
  so a split made in napari is reproducible from Python or the CLI;
* applying corrections to a result — :func:`apply_corrections` (cell id, ``assignment`` and
  ``score`` of the corrected rows, and the ``corrected`` column), used by
  :meth:`CorrectionStore.apply`, the Correct widget and the fine-tune job;
* what "changed" means after a re-prediction — :func:`changed_transcripts` (fragment renumbering
  is not a change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

#: score of a corrected transcript: the user's word is certain (assigned ⇔ score ≥ any cut holds)
CORRECTED_SCORE = 1.0
UNASSIGNED_SCORE = 0.0


# ----------------------------------------------------------------------------------------------
# geometry of a split
# ----------------------------------------------------------------------------------------------
def split_by_seeds(yx: np.ndarray, seed_a: Sequence[float], seed_b: Sequence[float]) -> np.ndarray:
    """True where a (y, x) point is strictly nearer ``seed_b`` than ``seed_a``."""
    yx = np.asarray(yx, dtype=np.float64)
    da = ((yx - np.asarray(seed_a, dtype=np.float64)) ** 2).sum(axis=1)
    db = ((yx - np.asarray(seed_b, dtype=np.float64)) ** 2).sum(axis=1)
    return db < da


def split_by_line(yx: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Side of a polyline (world (y, x) vertices) for each point: True on the left of its
    nearest segment (the segment direction is first → last vertex). Lines are extended
    beyond their ends, so a stroke that stops short of the cell's edge still cuts it."""
    yx = np.asarray(yx, dtype=np.float64)
    line = np.asarray(line, dtype=np.float64)[:, -2:]
    if len(line) < 2 or len(yx) == 0:
        return np.zeros(len(yx), dtype=bool)
    a, b = line[:-1], line[1:]
    ab = b - a
    ab2 = np.maximum((ab**2).sum(axis=1), 1e-12)
    ap = yx[:, None, :] - a[None, :, :]
    t = (ap * ab[None]).sum(axis=2) / ab2[None]
    # first/last segments extend to infinity outward
    t_lo = np.where(np.arange(len(a)) == 0, -np.inf, 0.0)
    t_hi = np.where(np.arange(len(a)) == len(a) - 1, np.inf, 1.0)
    tc = np.clip(t, t_lo[None], t_hi[None])
    closest = a[None] + tc[..., None] * ab[None]
    d2 = ((yx[:, None, :] - closest) ** 2).sum(axis=2)
    seg = d2.argmin(axis=1)
    rows = np.arange(len(yx))
    cross = ab[seg, 0] * ap[rows, seg, 1] - ab[seg, 1] * ap[rows, seg, 0]
    return cross > 0


def split_moving(yx: np.ndarray, *, seeds: Sequence[Sequence[float]] | None = None, line: np.ndarray | None = None,
                 nucleus_yx: Sequence[float] | None = None, cell: str = "the cell") -> np.ndarray:
    """Mask of the members (world (y, x) ``yx``) that leave the cell in a split.

    ``seeds``: two (y, x) points, each member goes to the nearer; else ``line``: a polyline across
    the cell. The side holding the nucleus centre ``nucleus_yx`` keeps the cell (without a nucleus:
    the second seed's side moves, or the smaller side of a line). Raises when a side is empty.
    """
    yx = np.asarray(yx, dtype=np.float64).reshape(-1, 2)
    centre = None if nucleus_yx is None else np.asarray(nucleus_yx, dtype=np.float64).reshape(1, 2)
    if seeds is not None and len(seeds) >= 2:
        a, b = np.asarray(seeds[-2], dtype=np.float64), np.asarray(seeds[-1], dtype=np.float64)
        side = split_by_seeds(yx, a, b)
        keep = bool(split_by_seeds(centre, a, b)[0]) if centre is not None else False
    elif line is not None:
        side = split_by_line(yx, line)
        keep = bool(split_by_line(centre, line)[0]) if centre is not None else bool(side.sum() * 2 > len(side))
    else:
        raise SeggerInputError(f"split needs two seed points in {cell} or a line drawn across it")
    moving = side != keep
    if not moving.any() or moving.all():
        raise SeggerInputError(f"the split leaves one side of cell {cell} empty; move the seeds or the line")
    return moving


def new_split_id(cell: str, existing: Iterable[Any]) -> str:
    """``<cell>-split-<k>`` with the smallest k not in ``existing`` (split ids come only from the log)."""
    taken = {str(c) for c in existing}
    k = 1
    while f"{cell}-split-{k}" in taken:
        k += 1
    return f"{cell}-split-{k}"


def merge_members(cells: np.ndarray, selected: np.ndarray, target: str) -> tuple[np.ndarray, list[str]]:
    """``(rows, sources)`` of a merge: every row of the cells the ``selected`` rows belong to (not the
    target, not unassigned) moves into ``target``."""
    cells = np.asarray(cells, dtype=object)
    sources = sorted(set(pd.unique(cells[np.asarray(selected, dtype=np.int64)].astype(str))) - {str(target), S.UNASSIGNED})
    if not sources:
        raise SeggerInputError("select a transcript of the cell to merge into the target (not of the target itself)")
    rows = np.flatnonzero(pd.Series(cells, copy=False).astype(str).isin(sources).to_numpy())
    return rows, sources


# ----------------------------------------------------------------------------------------------
# edits on a result table
# ----------------------------------------------------------------------------------------------
@dataclass
class Edit:
    """One user action: which transcripts go from which cell to which."""

    action: str
    transcript_ids: np.ndarray
    previous_cells: np.ndarray
    new_cells: np.ndarray | str
    label: str = ""

    def record(self, store) -> int:
        """Record into a :class:`~segger.corrections.CorrectionStore`; returns the rows recorded."""
        return store.record(self.action, self.transcript_ids, self.previous_cells, self.new_cells)


def _cells_of(result: pd.DataFrame) -> np.ndarray:
    return result[S.SEGGER_CELL_ID].astype(str).to_numpy(dtype=object)


def reassign(result: pd.DataFrame, transcript_ids: Sequence, cell: str) -> Edit:
    """Move ``transcript_ids`` into ``cell`` (``S.UNASSIGNED``: unassign them)."""
    idx = pd.Index(result[S.TX_ID]).get_indexer(np.asarray(transcript_ids))
    if (idx < 0).any():
        raise SeggerInputError(f"{int((idx < 0).sum())} transcript id(s) are not in the result")
    action = "unassign" if str(cell) == S.UNASSIGNED else "assign"
    return Edit(action, result[S.TX_ID].to_numpy()[idx], _cells_of(result)[idx], str(cell),
                f"{'Unassigned' if action == 'unassign' else f'Assigned to {cell}'}")


def merge_cells(result: pd.DataFrame, sources: Iterable[str], target: str) -> Edit:
    """Every transcript of the ``sources`` cells moves into ``target`` (the merge rule)."""
    cells = _cells_of(result)
    selected = np.flatnonzero(pd.Series(cells).isin([str(s) for s in sources]).to_numpy())
    rows, found = merge_members(cells, selected, target)
    return Edit("merge", result[S.TX_ID].to_numpy()[rows], cells[rows], str(target),
                f"Merged {', '.join(found)} into {target}")


def split_cell(result: pd.DataFrame, cell: str, *, seeds=None, line=None, nucleus_yx=None,
               existing: Iterable[Any] = ()) -> Edit:
    """Split ``cell`` by two (y, x) ``seeds`` or a ``line`` (the split rule, :func:`split_moving`);
    the moving part gets :func:`new_split_id` (``existing``: the ids of the correction log)."""
    cells = _cells_of(result)
    members = np.flatnonzero(cells == str(cell))
    if len(members) < 2:
        raise SeggerInputError(f"cell {cell} has fewer than two transcripts; nothing to split")
    yx = result[[S.Y, S.X]].to_numpy(dtype=np.float64)[members]
    moving = members[split_moving(yx, seeds=seeds, line=line, nucleus_yx=nucleus_yx, cell=str(cell))]
    new_id = new_split_id(str(cell), existing)
    return Edit("split", result[S.TX_ID].to_numpy()[moving], cells[moving], new_id,
                f"Split {cell}: new cell {new_id}")


# ----------------------------------------------------------------------------------------------
# applying corrections
# ----------------------------------------------------------------------------------------------
def assignment_kinds(cell_ids: np.ndarray, own_cell: np.ndarray | None, previous: np.ndarray | None = None) -> np.ndarray:
    """Assignment kind of corrected transcripts from their new cell: none / fragment / nucleus /
    cytoplasm (nucleus when the transcript lies in that cell's nucleus)."""
    ids = np.asarray(cell_ids, dtype=object).astype(str)
    kind = np.full(len(ids), "cytoplasm", dtype=object)
    if own_cell is not None:
        kind[ids == np.asarray(own_cell, dtype=object).astype(str)] = "nucleus"
    kind[np.char.startswith(ids.astype(str), "fragment-")] = "fragment"
    kind[ids == S.UNASSIGNED] = "none"
    return kind


def own_cells_of(result: pd.DataFrame) -> np.ndarray | None:
    """The cell whose nucleus each transcript lies in, as far as ``result`` tells (its ``nucleus``
    rows); ``None`` elsewhere. Pass the prediction's own nuclei to :func:`apply_corrections` when known."""
    if S.ASSIGNMENT not in result.columns:
        return None
    own = np.full(len(result), None, dtype=object)
    nuc = (result[S.ASSIGNMENT].astype(str) == "nucleus").to_numpy()
    own[nuc] = result[S.SEGGER_CELL_ID].astype(str).to_numpy(dtype=object)[nuc]
    return own


def corrected_cells(tx_index: pd.Index, base_cells: np.ndarray, effective: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(cells, corrected)``: ``base_cells`` (aligned with ``tx_index``) with the effective corrections
    (later edits already won in :meth:`CorrectionStore.effective`) applied, and the mask of the rows."""
    cells = np.asarray(base_cells, dtype=object).copy()
    corrected = np.zeros(len(cells), dtype=bool)
    if effective is not None and len(effective):
        idx = tx_index.get_indexer(effective["transcript_id"])
        ok = idx >= 0
        cells[idx[ok]] = effective["new_cell"].to_numpy(dtype=object)[ok]
        corrected[idx[ok]] = True
    return cells, corrected


def apply_corrections(result: pd.DataFrame, corrections, *, own_cell: np.ndarray | None = None) -> pd.DataFrame:
    """``result`` with the corrections applied — the one rule (store, widget, fine-tune, CLI):

    the corrected rows get their new ``segger_cell_id``, an ``assignment`` from it
    (:func:`assignment_kinds`: ``nucleus`` when the row lies in that cell's nucleus, ``own_cell``;
    default :func:`own_cells_of`) and a ``score`` of :data:`CORRECTED_SCORE` (assigned) or
    :data:`UNASSIGNED_SCORE`; a ``corrected`` column marks them. ``corrections``: a
    :class:`~segger.corrections.CorrectionStore` or its effective table.
    """
    eff = corrections.effective() if hasattr(corrections, "effective") else corrections
    out = result.copy()
    cells, corrected = corrected_cells(pd.Index(out[S.TX_ID]), out[S.SEGGER_CELL_ID].to_numpy(dtype=object), eff)
    out["corrected"] = corrected
    if not corrected.any():
        return out
    rows = np.flatnonzero(corrected)
    col = out[S.SEGGER_CELL_ID].astype(object).to_numpy(copy=True)
    col[rows] = cells[rows]
    out[S.SEGGER_CELL_ID] = col
    if S.ASSIGNMENT in out.columns:
        own = own_cells_of(result) if own_cell is None else np.asarray(own_cell, dtype=object)
        kinds = pd.Categorical(out[S.ASSIGNMENT].astype(object), categories=list(S.ASSIGNMENT_KINDS))
        codes = np.asarray(kinds.codes, dtype=np.int64).copy()
        new_kind = assignment_kinds(cells[rows], None if own is None else own[rows])
        codes[rows] = pd.Index(list(S.ASSIGNMENT_KINDS)).get_indexer(new_kind)
        out[S.ASSIGNMENT] = pd.Categorical.from_codes(codes, categories=list(S.ASSIGNMENT_KINDS))
    if S.SCORE in out.columns:
        score = out[S.SCORE].to_numpy(copy=True)
        score[rows] = np.where(cells[rows].astype(str) == S.UNASSIGNED, UNASSIGNED_SCORE, CORRECTED_SCORE)
        out[S.SCORE] = score.astype(out[S.SCORE].dtype, copy=False)
    return out


def changed_transcripts(before: Sequence[Any], after: Sequence[Any], exclude: np.ndarray | None = None) -> np.ndarray:
    """Rows whose cell changed between two assignments, not counting a mere renaming of fragments
    — the one "changed" rule (fine-tune job, Correct widget).

    Fragment ids (``fragment-N``) are numbered over the whole result, so a new fragment near a
    correction renumbers fragments far away; each fragment before is therefore matched to the
    fragment most of its transcripts are in after, and only transcripts that left it count.
    ``exclude`` (bool per row, e.g. the corrected transcripts) is never reported.
    """
    b = pd.Series(np.asarray(before, dtype=object), copy=False).astype(str)
    a = pd.Series(np.asarray(after, dtype=object), copy=False).astype(str)
    changed = (b.to_numpy() != a.to_numpy())
    frag = (b.str.startswith("fragment-") & a.str.startswith("fragment-")).to_numpy() & changed
    if frag.any():
        both = (b.str.startswith("fragment-") & a.str.startswith("fragment-")).to_numpy()
        pairs = pd.DataFrame({"b": b.to_numpy()[both], "a": a.to_numpy()[both]})
        counts = pairs.value_counts(["b", "a"], sort=True).reset_index()
        dominant = counts.drop_duplicates("b").set_index("b")["a"]
        rows = np.flatnonzero(frag)
        mapped = b.iloc[rows].map(dominant).to_numpy()
        changed[rows] = mapped != a.to_numpy()[rows]
    if exclude is not None:
        changed &= ~np.asarray(exclude, dtype=bool)
    return np.flatnonzero(changed)


__all__ = ["Edit", "apply_corrections", "assignment_kinds", "changed_transcripts", "corrected_cells", "merge_cells",
           "merge_members", "new_split_id", "own_cells_of", "reassign", "split_by_line", "split_by_seeds", "split_cell",
           "split_moving", "CORRECTED_SCORE", "UNASSIGNED_SCORE"]
