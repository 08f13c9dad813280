"""The correction session model of *Correct & fine-tune*: no Qt, no napari.

:class:`CorrectionSession` holds what correction mode knows — the corrections log (a
:class:`segger.corrections.CorrectionStore`), the model's assignment it corrects, the assignment
with the corrections applied, the selection (clicked rows in click order), the target cell and
whether the next click picks it — and turns a user's intent into edits of the log by the core's
rules (:mod:`segger.corrections.edits`: merge, split, apply, changed). It also says what the widget
shows (the selection line, the status after an edit). The widget (:mod:`._w_correct`) draws what
:meth:`CorrectionSession.update` returns; the mouse and keys live in :mod:`._correct_interaction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from segger import schema as S
from segger.corrections.edits import (
    apply_corrections,
    assignment_kinds,
    corrected_cells,
    merge_members,
    new_split_id,
    split_moving,
)
from segger.errors import SeggerInputError

__all__ = ["CorrectionSession", "Update", "KINDS"]

KINDS = pd.Index(list(S.ASSIGNMENT_KINDS))
#: the layer names the session's messages mention (kept in line with :mod:`segger.napari.layers`)
_TRANSCRIPTS, _SELECTION = "segger transcripts", "segger selection"


@dataclass
class Update:
    """What changed after an edit (or a new base assignment), for the widget to draw.

    ``rows``: the rows whose cell / corrected flag differ from what was shown (None: all rows,
    a full redraw); ``cells`` / ``kinds`` / ``flags``: their new cell ids, assignment kinds and
    corrected flags; ``result``: the corrected result to publish (None: unchanged).
    """

    effective: pd.DataFrame
    corrected: np.ndarray
    rows: np.ndarray | None
    cells: np.ndarray
    kinds: np.ndarray
    flags: np.ndarray
    result: pd.DataFrame | None


class CorrectionSession:
    """Store, selection, target, pending pick, undo/redo and the corrected assignment."""

    def __init__(self, store: Any = None, get_store: Callable[[], Any] | None = None) -> None:
        self._store = store
        self._get_store = get_store  # e.g. the viewer's shared state's store (several widgets, one log)
        self.clicked: list[int] = []  # clicked rows, in click order (the seeds of a split)
        self.target: str | None = None
        self.picking = False  # the next click picks the target cell
        self.base_result: pd.DataFrame | None = None  # the model's assignment (no corrections)
        self.base_cells: np.ndarray | None = None
        self.base_kinds: np.ndarray | None = None
        self.cells: np.ndarray | None = None  # what is shown (corrections applied)
        self.corrected: np.ndarray | None = None
        self.own: np.ndarray | None = None  # each transcript's own nucleus (None: unknown)
        self.tx_ids: np.ndarray | None = None
        self.tx_index: pd.Index | None = None
        self.published: pd.DataFrame | None = None  # the corrected result last handed out

    @property
    def store(self):
        return self._get_store() if self._get_store is not None else self._store

    @store.setter
    def store(self, value) -> None:
        self._store = value
        self._get_store = None

    # ----------------------------------------------------------------------------- the base
    @property
    def has_result(self) -> bool:
        return self.base_result is not None and self.cells is not None

    def clear_base(self) -> None:
        self.base_result = None
        self.base_cells = self.cells = self.corrected = None

    def set_base(self, result: pd.DataFrame, prediction: Any = None, corrected: np.ndarray | None = None) -> None:
        """A new model assignment (Predict, re-threshold, fine-tune). ``corrected``: the rows the
        layer already shows as corrected (None: none)."""
        self.base_result = result
        self.base_cells = result[S.SEGGER_CELL_ID].to_numpy(dtype=object)
        self.base_kinds = np.asarray(
            pd.Categorical(result[S.ASSIGNMENT], categories=list(S.ASSIGNMENT_KINDS)).codes, dtype=np.int8)
        ids = result[S.TX_ID].to_numpy()
        if self.tx_ids is None or len(self.tx_ids) != len(ids) or not np.array_equal(self.tx_ids, ids):
            self.tx_ids = ids
            self.tx_index = pd.Index(ids)
        self.own = None
        if prediction is not None and getattr(prediction, "n_tx", -1) == len(result):
            bd = prediction.bundle.nuclei[S.BD_ID].astype(str).to_numpy(dtype=object)
            own = np.full(len(result), None, dtype=object)
            ok = prediction.own_bd >= 0
            own[ok] = bd[prediction.own_bd[ok]]
            self.own = own
        self.cells = self.base_cells.copy()
        self.corrected = (np.zeros(len(result), dtype=bool) if corrected is None
                          else np.asarray(corrected, dtype=bool).copy())

    def corrected_cells(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(cell per transcript with corrections applied, corrected mask, effective corrections):
        :func:`segger.corrections.edits.corrected_cells`, the rule of ``apply_corrections``."""
        eff = self.store.effective() if self.store is not None else pd.DataFrame()
        cells, corrected = corrected_cells(self.tx_index, self.base_cells, eff)
        return cells, corrected, eff

    def publish(self, eff: pd.DataFrame, corrected: np.ndarray) -> pd.DataFrame:
        """The corrected result, made by the one rule :func:`segger.corrections.edits.apply_corrections`."""
        base = self.base_result
        result = base if not corrected.any() else apply_corrections(base, eff, own_cell=self.own)
        self.published = result
        return result

    def update(self, full: bool = False, shown: Any = None) -> Update | None:
        """Bring the corrected assignment in line with the log; say what to redraw.

        Only rows corrected before or after an edit can differ from the model's assignment, so an
        edit costs O(corrections) plus a few O(N) array copies. ``shown``: the result the other
        widgets see now (published again when it is not the session's).
        """
        if self.base_result is None:
            return None
        cells, corrected, eff = self.corrected_cells()
        kind_codes = self.base_kinds.copy()
        crow = np.flatnonzero(corrected)
        if len(crow):
            own = None if self.own is None else self.own[crow]
            kind_codes[crow] = KINDS.get_indexer(assignment_kinds(cells[crow], own))
        if full:
            rows, result = None, self.publish(eff, corrected)
            pick = slice(None)
        else:
            rows = np.flatnonzero(self.corrected | corrected)
            rows = rows[(cells[rows] != self.cells[rows]) | (corrected[rows] != self.corrected[rows])]
            result = self.publish(eff, corrected) if (len(rows) or shown is not self.published) else None
            pick = rows
        out = Update(eff, corrected, rows, cells[pick], KINDS.to_numpy()[kind_codes[pick]], corrected[pick], result)
        self.cells, self.corrected = cells, corrected
        return out

    # ----------------------------------------------------------------------------- selection
    def click_row(self, row: int, add: bool = False) -> None:
        """A transcript clicked: select it (``add``: toggle it into the selection)."""
        row = int(row)
        if add:
            if row in self.clicked:
                self.clicked.remove(row)
            else:
                self.clicked.append(row)
        else:
            self.clicked = [row]

    def select_rows(self, rows, add: bool = False) -> None:
        rows = [int(r) for r in np.atleast_1d(rows)]
        self.clicked = (self.clicked + [r for r in rows if r not in self.clicked]) if add else rows

    def clear_selection(self) -> None:
        self.clicked = []
        self.target = None
        self.picking = False

    def selection_rows(self, area_rows: np.ndarray | None = None) -> np.ndarray:
        """The clicked rows and ``area_rows`` (inside the drawn areas), sorted, unique."""
        rows = np.asarray(self.clicked, dtype=np.int64)
        if area_rows is not None and len(area_rows):
            rows = np.union1d(rows, np.asarray(area_rows, dtype=np.int64))
        return np.unique(rows)

    def start_pick_target(self) -> None:
        self.picking = True

    def set_target(self, cell: str | None) -> None:
        self.target = None if cell is None else str(cell)
        self.picking = False

    def target_at(self, row: int, nucleus: Callable[[], str | None] = lambda: None) -> str:
        """The target picked by a click: the cell of the transcript hit (``row``; -1: none), else
        the nucleus under the click (``nucleus()``)."""
        self.require_result()
        cell = None
        if row >= 0 and str(self.cells[row]) != S.UNASSIGNED:
            cell = str(self.cells[row])
        if cell is None:
            cell = nucleus()
        if cell is None:
            raise SeggerInputError("no cell there: click a transcript of the target cell or its nucleus")
        self.set_target(cell)
        return cell

    # ----------------------------------------------------------------------------- what is shown
    def selection_text(self, rows: np.ndarray) -> str:
        """The widget's selection line for the selected ``rows``."""
        if not self.has_result:
            return "Selection: none. Target: none. (Run Predict first.)"
        cells = pd.unique(self.cells[rows].astype(str)) if len(rows) else []
        cell_txt = ", ".join(map(str, cells[:4])) + ("…" if len(cells) > 4 else "")
        sel = f"{len(rows):,} transcript(s)" + (f" in {cell_txt}" if len(rows) else "") if len(rows) else "none"
        tgt = self.target or ("click a transcript or a nucleus…" if self.picking else "none")
        n = len(self.store) if self.store is not None else 0
        return f"Selection: {sel}. Target: {tgt}. Corrections: {n:,}."

    def where_saved(self) -> str:
        return f"saved to {self.store.path}" if self.store.path else "in memory"

    @property
    def can_edit(self) -> bool:
        return self.base_result is not None and self.store is not None

    @property
    def can_undo(self) -> bool:
        return self.can_edit and self.store.can_undo

    @property
    def can_redo(self) -> bool:
        return self.can_edit and self.store.can_redo

    # ----------------------------------------------------------------------------- edits
    def require_result(self) -> None:
        if not self.has_result:
            raise SeggerInputError(f"no assignment to correct yet; run Predict first ('{_TRANSCRIPTS}')")
        if self.store is None:
            raise SeggerInputError("no corrections log for this data; build the graph in 'Data & graph' first")

    @staticmethod
    def need_selection(rows: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            raise SeggerInputError(
                "nothing selected: click a transcript (Shift+click adds) or draw a rectangle/lasso in "
                f"'{_SELECTION}'"
            )
        return rows

    def need_target(self) -> str:
        if not self.target:
            raise SeggerInputError("no target cell: press T (Pick target) and click one of its transcripts or its nucleus")
        return self.target

    def record(self, action: str, rows, new_cells) -> int:
        """Log an edit of ``rows`` (to ``new_cells``); the clicked selection is consumed."""
        self.require_result()
        rows = np.asarray(rows, dtype=np.int64)
        n = self.store.record(action, self.tx_ids[rows], self.cells[rows], new_cells)
        self.clicked = []
        return n

    def assign(self, rows: np.ndarray) -> tuple[int, str]:
        """Assign: the selected rows go to the target cell. ``(n, verb)``."""
        self.require_result()
        rows, target = self.need_selection(rows), self.need_target()
        return self.record("assign", rows, target), f"Assigned to {target}"

    def unassign(self, rows: np.ndarray) -> tuple[int, str]:
        self.require_result()
        return self.record("unassign", self.need_selection(rows), S.UNASSIGNED), "Unassigned"

    def merge(self, rows: np.ndarray) -> tuple[int, str]:
        """Merge: every transcript of the selection's cell(s) moves into the target (the core's rule)."""
        self.require_result()
        rows, target = self.need_selection(rows), self.need_target()
        members, sources = merge_members(self.cells, rows, target)
        return self.record("merge", members, target), f"Merged {', '.join(sources)} into {target}"

    def split_cell(self, selected: np.ndarray) -> str:
        """The cell a split acts on: the target, else the one cell of the clicked / selected rows."""
        if self.target is not None:
            return self.target
        clicked = list(self.clicked)
        pool = np.asarray(clicked, dtype=np.int64) if clicked else np.asarray(selected, dtype=np.int64)
        found = [str(c) for c in pd.unique(self.cells[pool]) if c != S.UNASSIGNED] if len(pool) else []
        if len(found) != 1:
            raise SeggerInputError("split needs one cell: pick it as the target (T) or select transcripts of one cell")
        return found[0]

    def split(self, selected: np.ndarray, yx_of: Callable[[np.ndarray], np.ndarray], lines: list,
              nucleus_yx: Callable[[str], np.ndarray | None] = lambda cell: None) -> tuple[int, str]:
        """Split a cell by two clicked seed transcripts or by the last line drawn (``lines``, world
        (y, x) µm): the core's rule, the side with the nucleus keeps the id. ``yx_of(rows)``: world
        positions of rows."""
        self.require_result()
        cells = self.cells
        cell = self.split_cell(selected)
        members = np.flatnonzero(cells == cell)
        if len(members) < 2:
            raise SeggerInputError(f"cell {cell} has fewer than two transcripts; nothing to split")
        seeds = [r for r in self.clicked if cells[r] == cell]
        if len(seeds) < 2 and not lines:
            raise SeggerInputError(
                f"split needs two seed transcripts of cell {cell} (click, Shift+click) or a line (L) drawn "
                f"across it in '{_SELECTION}'"
            )
        moving = members[split_moving(
            yx_of(members), seeds=list(yx_of(np.asarray(seeds[-2:]))) if len(seeds) >= 2 else None,
            line=lines[-1] if lines else None, nucleus_yx=nucleus_yx(cell), cell=str(cell))]
        new_id = new_split_id(cell, self.store.log()["new_cell"])
        return self.record("split", moving, new_id), f"Split {cell}: new cell {new_id}"

    def undo_redo(self, which: str) -> bool:
        """``which`` = ``undo`` / ``redo`` on the log; False when there is nothing to do."""
        self.require_result()
        return bool(getattr(self.store, which)())

    # ----------------------------------------------------------------------------- fine-tuning
    def corrected_markers(self, eff: pd.DataFrame, corrected: np.ndarray) -> tuple[np.ndarray, dict]:
        """Rows and features of the ``segger corrections`` markers."""
        rows = np.flatnonzero(corrected)
        feats: dict = {}
        if len(eff) and len(rows):
            tids = self.tx_ids[rows]
            e = eff.set_index("transcript_id").reindex(tids)
            feats = {S.TX_ID: tids, "previous_cell": e["previous_cell"].astype(str).to_numpy(),
                     "new_cell": e["new_cell"].astype(str).to_numpy(), "action": e["action"].astype(str).to_numpy()}
        return rows, feats
