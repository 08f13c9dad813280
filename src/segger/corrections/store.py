"""Corrections are data: a table of (transcript, previous cell, new cell, action, time).

:class:`CorrectionStore` keeps an append-only log of edits grouped into user actions, with undo
and redo. The *effective* corrections are the latest edit per transcript among the actions that
are not undone (a later correction of the same transcript wins). Every change can be saved
atomically to a sidecar CSV file next to the data, and the same file restores the session.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
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
    from segger.utils.outdir import user_cache_dir

    return user_cache_dir("corrections") / f"{p.name}-{digest}{SIDECAR_SUFFIX}"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: how long a save waits for another store's save of the same file (seconds)
SAVE_WAIT_S = 10.0


def _escape_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (``=HYPERLINK(...)``, ``+cmd``, ``@SUM``) get a
    leading apostrophe (OWASP CSV injection); :func:`_unescape_formulas` removes it on load."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object or isinstance(out[c].dtype, pd.StringDtype):
            v = out[c].astype(object)
            text = v.map(lambda x: isinstance(x, str) and x.startswith(FORMULA_START))
            if text.any():
                out[c] = v.where(~text, "'" + v.astype(str))
    return out


def _unescape_formulas(s: pd.Series) -> pd.Series:
    v = s.astype(object)
    hit = v.map(lambda x: isinstance(x, str) and len(x) > 1 and x[0] == "'" and x[1] in FORMULA_START)
    return v.where(~hit, v.str[1:]) if hit.any() else v


def _empty_log() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("previous_cell", "new_cell", "action", "group") else float)
                         for c in COLUMNS})


class CorrectionStore:
    """Undoable log of assignment corrections; optionally saved to ``path`` on every change.

    The log is one table (rows of the actions in force, oldest first) with the start row of each
    action, so loading a 100k-row file and undoing are vectorised. Each action has a unique group id.
    Saving takes a file lock (``.{name}.lock`` beside the file) and merges: actions another store
    saved to the same file meanwhile are kept (and adopted), actions of this store replace their
    previous version, and actions removed from the file by another store (undone there) are dropped.
    """

    def __init__(self, path: str | os.PathLike | None = None, autosave: bool = True):
        self.path = Path(path) if path is not None else None
        self.autosave = autosave and path is not None
        self._log = _empty_log()
        self._starts: list[int] = []  # start row of each action in force
        self._undone: list[pd.DataFrame] = []
        self._token = secrets.token_hex(4)
        self._next_group = 0
        self._mine: set[str] = set()  # group ids created by this store
        self._seen: set[str] = set()  # group ids this store has had in force

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
        gid = f"{self._token}-{self._next_group}"
        rows = pd.DataFrame({"transcript_id": tids, "previous_cell": prev, "new_cell": new, "action": action,
                             "time": float(when if when is not None else time.time()), "group": gid})
        rows = rows[rows["previous_cell"] != rows["new_cell"]]
        if rows.empty:
            return 0
        self._next_group += 1
        self._mine.add(gid)
        self._push(rows.reset_index(drop=True))
        self._undone.clear()
        self._changed()
        return len(rows)

    def _push(self, rows: pd.DataFrame) -> None:
        self._starts.append(len(self._log))
        self._log = rows.copy() if self._log.empty else pd.concat([self._log, rows], ignore_index=True)
        self._seen.update(rows["group"].astype(str).unique())

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
        if not self._starts:
            return False
        start = self._starts.pop()
        self._undone.append(self._log.iloc[start:].reset_index(drop=True))
        self._log = self._log.iloc[:start].reset_index(drop=True)
        self._changed()
        return True

    def redo(self) -> bool:
        if not self._undone:
            return False
        self._push(self._undone.pop())
        self._changed()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._starts)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def __len__(self) -> int:
        return len(self.effective())

    # -- reading --------------------------------------------------------------------------
    def log(self) -> pd.DataFrame:
        """Every recorded row of the actions in force, oldest first."""
        return self._log.copy() if len(self._log) else _empty_log()

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

    def apply(self, result: pd.DataFrame, own_cell: np.ndarray | None = None) -> pd.DataFrame:
        """``result`` with the effective corrections applied (cell id, assignment, score; a
        ``corrected`` column marks them): :func:`segger.corrections.edits.apply_corrections`."""
        from segger.corrections.edits import apply_corrections

        return apply_corrections(result, self.effective(), own_cell=own_cell)

    # -- persistence ----------------------------------------------------------------------
    def _changed(self) -> None:
        if self.autosave:
            self.save(self.path)

    def _set_log(self, log: pd.DataFrame) -> None:
        log = log.reset_index(drop=True)
        g = log["group"].astype(str).to_numpy()
        self._log = log
        self._starts = [0] + list(np.flatnonzero(g[1:] != g[:-1]) + 1) if len(g) else []
        self._seen.update(np.unique(g).tolist())

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Merge with the file's current content under its lock, then write the log atomically as CSV."""
        from segger.utils.atomic import atomic_path
        from segger.utils.outdir import OutputLock

        path = Path(path) if path is not None else self.path
        if path is None:
            raise SeggerInputError("no path to save the corrections to")
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(path.parent, "corrections", name=f".{path.name}.lock")
        lock.acquire(wait=SAVE_WAIT_S)
        try:
            if path.exists() and path.suffix != ".parquet":
                self._merge(_read_log(path))
            with atomic_path(path) as tmp:
                _escape_formulas(self.log()).to_csv(tmp, index=False)
        finally:
            lock.release()
        return path

    def _merge(self, disk: pd.DataFrame) -> None:
        """Adopt actions another store saved; drop foreign actions that left the file (undone there)."""
        if disk.empty:
            on_disk: set[str] = set()
        else:
            on_disk = set(disk["group"].astype(str).unique())
        mine = self._log["group"].astype(str)
        keep = mine.isin(self._mine) | mine.isin(on_disk)  # own actions; foreign ones still in the file
        new = disk[~disk["group"].astype(str).isin(self._seen)] if len(disk) else disk
        if keep.all() and new.empty:
            return
        merged = pd.concat([self._log[keep.to_numpy()], new[COLUMNS]], ignore_index=True) if len(new) else \
            self._log[keep.to_numpy()]
        order = np.lexsort((np.arange(len(merged)), merged["time"].to_numpy(dtype=float)))
        self._set_log(merged.iloc[order])

    def export(self, path: str | os.PathLike) -> Path:
        """Write the effective corrections (one row per transcript) as CSV (formula-safe) or parquet."""
        from segger.utils.atomic import atomic_path

        path = Path(path)
        eff = self.effective()
        with atomic_path(path) as tmp:
            if path.suffix == ".parquet":
                eff.to_parquet(tmp, index=False)
            else:
                _escape_formulas(eff).to_csv(tmp, index=False)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, autosave: bool = True) -> "CorrectionStore":
        """Restore a store from a sidecar/exported file (CSV or parquet); missing file → empty store."""
        path = Path(path)
        store = cls(path, autosave=autosave)
        if not path.exists():
            return store
        df = _read_log(path)
        if len(df):
            store._set_log(df)
            store._next_group = 0
        return store


def _read_log(path: Path) -> pd.DataFrame:
    """A corrections file as a log table (vectorised: a 100k-row file loads in well under a second)."""
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype={"previous_cell": str, "new_cell": str, "group": str, "action": str},
                             keep_default_na=False, na_values=[""])
    except Exception as exc:  # noqa: BLE001
        raise SeggerInputError(f"corrections file {path} cannot be read ({type(exc).__name__}); fix or delete it") from None
    missing = [c for c in ("transcript_id", "previous_cell", "new_cell") if c not in df.columns]
    if missing:
        raise SeggerInputError(f"corrections file {path} lacks column(s) {missing}; expected {COLUMNS}")
    for c in ("previous_cell", "new_cell"):
        df[c] = _unescape_formulas(df[c].astype("string").fillna(S.UNASSIGNED).astype(object))
    if df["transcript_id"].dtype == object:
        df["transcript_id"] = _unescape_formulas(df["transcript_id"])
    if "action" not in df.columns:
        df["action"] = "assign"
    df["action"] = df["action"].astype("string").fillna("assign").astype(object)
    bad = ~df["action"].isin(ACTIONS)
    if bad.any():
        raise SeggerInputError(f"corrections file {path}: column 'action' has {df['action'][bad].iloc[0]!r} (row "
                               f"{int(np.flatnonzero(bad.to_numpy())[0]) + 2}); use one of {', '.join(ACTIONS)}")
    if "time" not in df.columns:
        df["time"] = 0.0
    t = pd.to_numeric(df["time"], errors="coerce")
    if t.isna().any() or not np.isfinite(t.to_numpy(dtype=float)).all():
        raise SeggerInputError(f"corrections file {path}: column 'time' must hold finite numbers (seconds since "
                               "1970); fix or drop that column")
    df["time"] = t.astype(float)
    if "group" not in df.columns:  # one imported action (undo removes the import)
        df["group"] = "imported"
    df["group"] = df["group"].astype("string").fillna("imported").astype(str).astype(object)
    df = df.iloc[np.lexsort((np.arange(len(df)), df["time"].to_numpy()))]
    return df[COLUMNS].reset_index(drop=True)


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
