"""Quality filtering of a tidy transcripts table, with a report of what was removed and why.

Filters run in this order, each on the rows the previous one kept (so every removed row is counted
exactly once, under the first filter that removed it):

1. rows with NaN / infinite ``x`` or ``y`` (or ``z``);
2. control probes / codewords: genes starting with one of the vendor prefixes in
   :data:`DEFAULT_CONTROL_PATTERNS` (case-sensitive, as the vendors write them);
3. ``qv < min_qv`` (rows whose qv is NaN, e.g. MERSCOPE and CosMx which report none, are kept).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from segger import schema
from segger.errors import SeggerInputError

#: Gene-name prefixes of vendor control probes / codewords (Xenium, MERSCOPE, CosMx).
DEFAULT_CONTROL_PATTERNS: tuple[str, ...] = (
    "NegControl",  # Xenium NegControlProbe_*, NegControlCodeword_*
    "BLANK",  # Xenium BLANK_*
    "antisense",  # Xenium antisense_* negative-control probes
    "Unassigned",  # Xenium UnassignedCodeword_*
    "DeprecatedCodeword",  # Xenium
    "NegPrb",  # CosMx negative probes
    "SystemControl",  # CosMx system controls
    "Blank-",  # MERSCOPE blank barcodes
    "Negative",  # CosMx / generic negative controls
)


@dataclass
class FilterReport:
    """What :func:`filter_transcripts` removed. Counts are disjoint (see module docstring)."""

    rows_in: int = 0
    rows_kept: int = 0
    removed_nonfinite: int = 0
    removed_controls: int = 0
    removed_controls_by_pattern: dict[str, int] = field(default_factory=dict)
    removed_qv: int = 0
    min_qv: float | None = 20.0
    qv_available: bool = True
    control_patterns: list[str] = field(default_factory=list)

    @property
    def rows_removed(self) -> int:
        return self.rows_in - self.rows_kept

    def summary(self) -> str:
        """One short human-readable line, e.g. for the CLI and the GUI status bar."""
        parts = []
        if self.min_qv is not None and self.min_qv > 0:
            if self.qv_available:
                parts.append(f"{self.removed_qv:,} with qv < {self.min_qv:g}")
            else:
                parts.append("no qv filter (the input has no qv)")
        if self.control_patterns:
            top = sorted(self.removed_controls_by_pattern.items(), key=lambda kv: -kv[1])
            detail = ", ".join(f"{k}* {v:,}" for k, v in top[:3])
            parts.append(f"{self.removed_controls:,} control probes" + (f" ({detail})" if detail else ""))
        if self.removed_nonfinite:
            parts.append(f"{self.removed_nonfinite:,} with NaN/inf coordinates")
        removed = "; removed " + ", ".join(parts) if parts else ""
        return f"{self.rows_in:,} transcripts read, {self.rows_kept:,} kept{removed}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rows_removed"] = self.rows_removed
        return d


def _clean_patterns(patterns: Sequence[str] | None) -> list[str]:
    if not patterns:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    return [str(p).rstrip("*") for p in patterns if str(p).rstrip("*")]


def _pattern_index(genes, patterns: list[str]) -> np.ndarray:
    """Per row: index of the first prefix in ``patterns`` its gene starts with, else -1.

    The prefixes are tested on the unique gene names only, then broadcast by the factor codes.
    """
    codes, uniques = pd.factorize(pd.Series(genes, copy=False), use_na_sentinel=True)
    n_u = len(uniques)
    which = np.full(n_u + 1, -1, dtype=np.int64)  # last slot: missing names (code -1)
    if patterns and n_u:
        names = pd.Series(np.asarray(uniques, dtype=object)).astype(str)
        for k in range(len(patterns) - 1, -1, -1):  # reverse, so the first pattern wins
            which[:n_u][names.str.startswith(patterns[k]).to_numpy()] = k
    return which[codes]


def _counts(index: np.ndarray, patterns: list[str]) -> dict[str, int]:
    hit = index[index >= 0]
    counts = np.bincount(hit, minlength=len(patterns)) if len(patterns) else np.zeros(0, int)
    return {p: int(c) for p, c in zip(patterns, counts) if c}


def control_mask(genes, patterns: Sequence[str] = DEFAULT_CONTROL_PATTERNS) -> tuple[np.ndarray, dict[str, int]]:
    """Boolean mask of control-probe rows and the number of rows per matching prefix."""
    patterns = _clean_patterns(patterns)
    index = _pattern_index(genes, patterns)
    return index >= 0, _counts(index, patterns)


def filter_transcripts(
    df: pd.DataFrame,
    min_qv: float | None = 20.0,
    control_patterns: Sequence[str] | None = DEFAULT_CONTROL_PATTERNS,
    *,
    source: str | None = None,
) -> tuple[pd.DataFrame, FilterReport]:
    """Drop non-finite coordinates, control probes and low-qv rows; return ``(kept, report)``.

    ``min_qv=None`` or ``0`` disables the qv filter; ``control_patterns=()`` keeps controls.
    ``source`` (the input file) is only used in messages. The input frame is not modified; the
    returned frame has a fresh RangeIndex. Raises :class:`SeggerInputError` when no row survives,
    naming the filter that removed the last rows and how to relax it.
    """
    where = f"{source}: " if source else ""
    patterns = _clean_patterns(control_patterns)
    n = len(df)
    report = FilterReport(rows_in=n, min_qv=None if min_qv is None else float(min_qv),
                          control_patterns=list(patterns))
    keep = np.ones(n, dtype=bool)

    coords = [c for c in (schema.X, schema.Y, schema.Z) if c in df.columns]
    finite = np.ones(n, dtype=bool)
    for c in coords:
        finite &= np.isfinite(df[c].to_numpy(dtype=np.float64, na_value=np.nan))
    report.removed_nonfinite = int((~finite).sum())
    keep &= finite
    if n and not keep.any():
        raise SeggerInputError(
            f"{where}all {n:,} transcripts have NaN or infinite coordinates "
            f"(columns {', '.join(coords)}); check the x/y columns and the units"
        )

    if patterns:
        index = _pattern_index(df[schema.GENE], patterns)
        index[~keep] = -1
        ctrl = index >= 0
        by_pattern = _counts(index, patterns)
        report.removed_controls = int(ctrl.sum())
        report.removed_controls_by_pattern = by_pattern
        keep &= ~ctrl
        if n and not keep.any():
            raise SeggerInputError(
                f"{where}all {int(ctrl.sum()):,} remaining transcripts are control probes (prefixes "
                f"{', '.join(p + '*' for p in by_pattern)}); keep them with filter_controls=False "
                "(CLI --keep-controls) or check the gene column"
            )

    qv = df[schema.QV].to_numpy(dtype=np.float64, na_value=np.nan) if schema.QV in df.columns else np.full(n, np.nan)
    report.qv_available = bool(np.isfinite(qv).any())
    if min_qv is not None and min_qv > 0:
        low = (qv < float(min_qv)) & keep  # NaN qv compares False: kept
        report.removed_qv = int(low.sum())
        n_before = int(keep.sum())
        best = float(np.nanmax(qv[keep])) if np.isfinite(qv[keep]).any() else float("nan")
        keep &= ~low
        if n and not keep.any():
            raise SeggerInputError(
                f"{where}all {n_before:,} remaining transcripts have qv < {min_qv:g} (highest qv {best:.1f}); "
                "lower min_qv (CLI --min-qv, 0 disables the filter)"
            )

    out = df[keep] if not keep.all() else df.copy()
    out.index = pd.RangeIndex(len(out))
    out.attrs = {}
    report.rows_kept = len(out)
    return out, report
