"""Corrections are data: a table of (transcript, previous cell, new cell, action, time).

:class:`CorrectionStore` keeps an append-only log of edits grouped into user actions, with undo
and redo. The *effective* corrections are the latest edit per transcript among the actions that
are not undone (a later correction of the same transcript wins). Every change can be saved
atomically to a sidecar CSV file next to the data, and the same file restores the session.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

COLUMNS = ["transcript_id", "previous_cell", "new_cell", "action", "time", "group"]
ACTIONS = ("assign", "unassign", "merge", "split")
SIDECAR_SUFFIX = ".segger-corrections.csv"


def sidecar_path(data_path: str | os.PathLike) -> Path:
    """Where the corrections of ``data_path`` live: next to it when that folder is writable,
    else in ``~/.cache/napari-segger/corrections/`` under a name derived from the data path."""
    p = Path(data_path).resolve()
    beside = p.parent / f"{p.name}{SIDECAR_SUFFIX}"
    if os.access(p.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(p).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "napari-segger" / "corrections"
    return cache / f"{p.name}-{digest}{SIDECAR_SUFFIX}"


@dataclass
class _Group:
    rows: pd.DataFrame  # the rows of one user action


class CorrectionStore:
    """Undoable log of assignment corrections; optionally saved to ``path`` on every change."""

    def __init__(self, path: str | os.PathLike | None = None, autosave: bool = True):
        self.path = Path(path) if path is not None else None
        self.autosave = autosave and path is not None
        self._groups: list[_Group] = []
        self._undone: list[_Group] = []
        self._next_group = 0

    # -- editing --------------------------------------------------------------------------
    def record(self, action: str, transcript_ids: Sequence, previous_cells: Sequence, new_cells: Sequence | str,
               when: float | None = None) -> int:
        """Record one user action over some transcripts; returns the number of rows recorded."""
        if action not in ACTIONS:
            raise SeggerInputError(f"unknown correction action {action!r}: use one of {', '.join(ACTIONS)}")
        tids = np.asarray(list(transcript_ids))
        if len(tids) == 0:
            return 0
        prev = np.asarray([S.UNASSIGNED if c is None else str(c) for c in previous_cells], dtype=object)
        if isinstance(new_cells, str):
            new = np.full(len(tids), new_cells, dtype=object)
        else:
            new = np.asarray([S.UNASSIGNED if c is None else str(c) for c in new_cells], dtype=object)
        if not (len(prev) == len(new) == len(tids)):
            raise SeggerInputError("correction: transcript_ids, previous_cells and new_cells must have the same length")
        rows = pd.DataFrame({"transcript_id": tids, "previous_cell": prev, "new_cell": new, "action": action,
                             "time": float(when if when is not None else time.time()), "group": self._next_group})
        rows = rows[rows["previous_cell"] != rows["new_cell"]]
        if rows.empty:
            return 0
        self._next_group += 1
        self._groups.append(_Group(rows.reset_index(drop=True)))
        self._undone.clear()
        self._changed()
        return len(rows)

    def assign(self, transcript_ids, previous_cells, cell: str) -> int:
        return self.record("assign", transcript_ids, previous_cells, cell)

    def unassign(self, transcript_ids, previous_cells) -> int:
        return self.record("unassign", transcript_ids, previous_cells, S.UNASSIGNED)

    def merge(self, transcript_ids_of_b, cell_b: str, cell_a: str) -> int:
        """Move every transcript of ``cell_b`` into ``cell_a``."""
        return self.record("merge", transcript_ids_of_b, [cell_b] * len(transcript_ids_of_b), cell_a)

    def split(self, transcript_ids, previous_cells, new_cell: str) -> int:
        """Move part of a cell (chosen by the caller: a line or two seeds) into ``new_cell``."""
        return self.record("split", transcript_ids, previous_cells, new_cell)

    def undo(self) -> bool:
        if not self._groups:
            return False
        self._undone.append(self._groups.pop())
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._undone:
            return False
        self._groups.append(self._undone.pop())
        self._changed()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._groups)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def __len__(self) -> int:
        return len(self.effective())

    # -- reading --------------------------------------------------------------------------
    def log(self) -> pd.DataFrame:
        """Every recorded row of the actions in force, oldest first."""
        if not self._groups:
            return pd.DataFrame({c: pd.Series(dtype=object if c in ("previous_cell", "new_cell", "action") else float)
                                 for c in COLUMNS})
        return pd.concat([g.rows for g in self._groups], ignore_index=True)

    def effective(self) -> pd.DataFrame:
        """The latest correction per transcript (later edits win), with the cell it had first."""
        log = self.log()
        if log.empty:
            return log
        first_prev = log.groupby("transcript_id", sort=False)["previous_cell"].first()
        last = log.drop_duplicates("transcript_id", keep="last").set_index("transcript_id")
        last["previous_cell"] = first_prev.reindex(last.index).to_numpy()
        last = last[last["previous_cell"] != last["new_cell"]]
        return last.reset_index()

    def apply(self, result: pd.DataFrame) -> pd.DataFrame:
        """``result`` with the effective corrections applied (``corrected`` column marks them)."""
        eff = self.effective()
        out = result.copy()
        out["corrected"] = False
        if eff.empty:
            return out
        idx = pd.Index(out[S.TX_ID]).get_indexer(eff["transcript_id"])
        ok = idx >= 0
        rows = idx[ok]
        out.loc[out.index[rows], S.SEGGER_CELL_ID] = eff["new_cell"].to_numpy()[ok]
        out.loc[out.index[rows], "corrected"] = True
        return out

    # -- persistence ----------------------------------------------------------------------
    def _changed(self) -> None:
        if self.autosave:
            self.save(self.path)

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the log (actions in force) atomically as CSV."""
        from segger.export.atomic import atomic_path

        path = Path(path or self.path)
        if path is None:
            raise SeggerInputError("no path to save the corrections to")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            self.log().to_csv(tmp, index=False)
        return path

    def export(self, path: str | os.PathLike) -> Path:
        """Write the effective corrections (one row per transcript) as CSV or parquet."""
        from segger.export.atomic import atomic_path

        path = Path(path)
        eff = self.effective()
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                eff.to_parquet(tmp, index=False)
            else:
                eff.to_csv(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, autosave: bool = True) -> "CorrectionStore":
        """Restore a store from a sidecar/exported file (CSV or parquet); missing file → empty store."""
        path = Path(path)
        store = cls(path, autosave=autosave)
        if not path.exists():
            return store
        try:
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"previous_cell": str, "new_cell": str})
        except Exception as exc:  # noqa: BLE001
            raise SeggerInputError(f"corrections file {path} cannot be read ({type(exc).__name__}); fix or delete it") from None
        missing = [c for c in ("transcript_id", "previous_cell", "new_cell") if c not in df.columns]
        if missing:
            raise SeggerInputError(f"corrections file {path} lacks column(s) {missing}; expected {COLUMNS}")
        for c in ("previous_cell", "new_cell"):
            df[c] = df[c].astype("string").fillna(S.UNASSIGNED).astype(object)
        for c, default in (("action", "assign"), ("time", 0.0), ("group", None)):
            if c not in df.columns:
                df[c] = default if c != "group" else np.arange(len(df))
        df = df.sort_values(["time", "group"], kind="stable")
        for _, rows in df.groupby("group", sort=False):
            store._groups.append(_Group(rows[COLUMNS].reset_index(drop=True)))
        store._next_group = int(df["group"].max()) + 1 if len(df) else 0
        return store


def corrections_from_table(table: pd.DataFrame) -> CorrectionStore:
    """An in-memory store from a table with transcript_id, previous_cell, new_cell (one action per row)."""
    store = CorrectionStore(None, autosave=False)
    for c in ("transcript_id", "previous_cell", "new_cell"):
        if c not in table.columns:
            raise SeggerInputError(f"corrections table lacks column {c!r}")
    store.record("assign", table["transcript_id"].to_numpy(), table["previous_cell"].to_numpy(),
                 table["new_cell"].astype(str).to_numpy())
    return store


__all__ = ["CorrectionStore", "sidecar_path", "corrections_from_table", "COLUMNS", "ACTIONS"]
