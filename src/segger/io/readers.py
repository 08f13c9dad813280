"""Platform readers → :class:`SpatialSample` (tidy transcripts + nuclei + filter report).

Supported inputs (``platform`` argument of :func:`read_sample`, or found by :func:`detect_platform`):

``xenium``
    10x Xenium output folder (or its transcripts file): ``transcripts.parquet`` /
    ``transcripts.csv.gz`` / ``transcripts.csv`` with ``x_location``, ``y_location``,
    ``z_location`` (µm), ``feature_name`` (str, bytes or categorical), ``qv``, ``cell_id``
    (``"UNASSIGNED"`` strings, ``-1`` integers or bytes), ``overlaps_nucleus``; polygons from
    ``nucleus_boundaries.parquet`` / ``cell_boundaries.parquet`` (or ``.csv.gz``) vertex tables.
``merscope``
    Vizgen folder: ``detected_transcripts.csv`` (``global_x``, ``global_y`` µm, ``global_z``,
    ``gene``, ``cell_id`` with ``-1`` unassigned, ``transcript_id``, ...) and
    ``cell_boundaries.parquet`` / ``*cell_boundaries*.parquet`` (``EntityID``, WKB ``Geometry``,
    one row per ``ZIndex``: the middle plane is kept). MERSCOPE reports no qv (``qv`` is NaN and
    the qv filter is skipped) and no nuclear flag (``nuclear`` is False everywhere). Its
    ``transcript_id`` column names the *gene's* transcript (e.g. ``ENST...``), not the molecule,
    so molecules are numbered by row and that column is kept as ``input_transcript_id``. Because
    there is no nuclear flag, nuclei cannot be approximated; with ``nuclei="auto"`` the vendor
    boundaries are used as given (a ``*nucleus_boundaries*.parquet`` if present, else the *cell*
    boundaries, with a warning saying so).
``cosmx``
    NanoString CosMx folder: ``*_tx_file.csv`` (``x_global_px``, ``y_global_px``, ``z``,
    ``target``, ``cell_ID`` with ``0`` unassigned, ``CellComp``, ``fov``). Pixels become µm with
    ``pixel_size`` (default :data:`COSMX_PIXEL_SIZE` = 0.12028 µm/px, the CosMx SMI camera
    value); ``nuclear`` is ``CellComp == "Nuclear"``; cell ids become ``f"{fov}_{cell_ID}"``.
``table``
    any ``.parquet`` / ``.csv`` / ``.csv.gz`` / ``.tsv`` file with x, y, [z], gene and optional
    qv, cell_id, nuclear columns (common aliases accepted, see ``*_ALIASES``); polygons from
    ``read_sample(..., polygons=path)``.

``z`` is kept in the vendor's unit: µm for Xenium and tables, the z-*plane index* for MERSCOPE
(``global_z``) and CosMx (``z``), whose plane spacing the files do not state.

Readers never write to, rename or modify the input files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from segger import schema
from segger.errors import SeggerInputError
from segger.io import _tables as T
from segger.io.filtering import DEFAULT_CONTROL_PATTERNS, FilterReport, filter_transcripts
from segger.io.nuclei import (
    DEFAULT_CROP_MARGIN,
    approximate_nuclei,
    bbox_of,
    empty_nuclei,
    nuclei_from_labels,
    nuclei_from_vertices,
    nuclei_warnings,
    read_polygons,
)

PLATFORMS = ("xenium", "merscope", "cosmx", "table")
NUCLEI_MODES = ("auto", "polygons", "approximate", "labels", "none")
BOUNDARY_KINDS = ("nucleus", "cell")

#: µm per pixel of CosMx SMI global pixel coordinates (NanoString's documented value).
COSMX_PIXEL_SIZE = 0.12028
#: µm per pixel of Xenium morphology images (default for Xenium label images).
XENIUM_PIXEL_SIZE = 0.2125

XENIUM_TX_FILES = ("transcripts.parquet", "transcripts.csv.gz", "transcripts.csv")
MERSCOPE_TX_FILES = ("detected_transcripts.csv", "detected_transcripts.csv.gz", "detected_transcripts.parquet")
COSMX_TX_PATTERNS = ("*_tx_file.csv", "*_tx_file.csv.gz")

# Accepted column names, the canonical / vendor name first.
X_ALIASES = ("x", "x_location", "global_x", "x_um", "x_global_um")
Y_ALIASES = ("y", "y_location", "global_y", "y_um", "y_global_um")
Z_ALIASES = ("z", "z_location", "global_z", "z_um")
GENE_ALIASES = ("gene", "feature_name", "target", "gene_name", "gene_symbol", "feature")
QV_ALIASES = ("qv", "quality")
CELL_ALIASES = ("cell_id", "cell_ID", "cellID", "cell")
NUCLEAR_ALIASES = ("nuclear", "overlaps_nucleus", "in_nucleus", "is_nuclear")
TX_ID_ALIASES = ("transcript_id", "molecule_id", "tx_id")
COMPARTMENT_ALIASES = ("compartment", "CellComp")
FOV_ALIASES = ("fov",)

# Above this extent (µm) coordinates are almost certainly pixels: no slide is 2.5 cm wide.
MAX_PLAUSIBLE_EXTENT_UM = 25_000.0
# Median nearest-neighbour spacing of molecules in real µm data is ~0.2-1.5 µm.
MAX_PLAUSIBLE_NN_UM = 3.0
# Pixels of ~0.2 µm: spacing in (1.6, 3] together with a median nucleus area above 200 (see check_nuclei).
SUSPECT_NN_UM = 1.6
MAX_PLAUSIBLE_NUCLEUS_AREA_UM2 = 200.0


def _first(*names: str) -> tuple[str, ...]:
    """Aliases with the vendor names first and the generic ones after (no repeats)."""
    out: list[str] = []
    for group in names:
        for n in ((group,) if isinstance(group, str) else group):
            if n not in out:
                out.append(n)
    return tuple(out)


# --------------------------------------------------------------------------- result type


@dataclass
class SpatialSample:
    """One input read into the tidy schema (see :mod:`segger.schema`).

    ``nuclei_source`` is ``"polygon"``, ``"labels"``, ``"approximated"`` or ``"none"``;
    ``nuclei_path`` the polygons / label file used, if any. ``warnings`` are human-readable
    notes (suspicious units, dropped polygons, substitutions) for the CLI and GUI to show.
    """

    transcripts: pd.DataFrame
    nuclei: pd.DataFrame
    platform: str
    source: str
    filter_report: FilterReport
    nuclei_source: str = "none"
    warnings: list[str] = field(default_factory=list)
    nuclei_path: str | None = None
    transcripts_path: str | None = None  # the transcripts file read (what provenance hashes)

    def summary(self) -> str:
        lines = [
            f"{self.platform} sample from {self.source}",
            self.filter_report.summary(),
            f"{len(self.nuclei):,} nuclei ({self.nuclei_source})",
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SpatialSample(platform={self.platform!r}, source={self.source!r}, "
            f"transcripts={len(self.transcripts):,}, nuclei={len(self.nuclei):,} "
            f"({self.nuclei_source}), warnings={len(self.warnings)})"
        )


# --------------------------------------------------------------------------- platform detection


def _glob_first(folder: Path, patterns: Sequence[str]) -> Path | None:
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if hits:
            return hits[0]
    return None


def _transcripts_in_folder(folder: Path) -> tuple[str, Path] | None:
    for name in XENIUM_TX_FILES:
        if (folder / name).is_file():
            return "xenium", folder / name
    for name in MERSCOPE_TX_FILES:
        if (folder / name).is_file():
            return "merscope", folder / name
    hit = _glob_first(folder, COSMX_TX_PATTERNS)
    if hit is not None:
        return "cosmx", hit
    return None


def _looked_for() -> str:
    return (
        f"{', '.join(XENIUM_TX_FILES)} (Xenium), {', '.join(MERSCOPE_TX_FILES)} (MERSCOPE), "
        f"{', '.join(COSMX_TX_PATTERNS)} (CosMx)"
    )


def _platform_of_file(path: Path) -> str:
    name = path.name.lower()
    if T.table_suffix(path) is None:
        raise SeggerInputError(
            f"{path}: not a recognised transcripts file; pass a Xenium/MERSCOPE/CosMx output folder "
            f"or a table ending in {', '.join(T.TABLE_SUFFIXES)}"
        )
    if "_tx_file.csv" in name:
        return "cosmx"
    if name.startswith("detected_transcripts."):
        return "merscope"
    cols = set(T.read_columns(path))
    if {"x_global_px", "y_global_px"} <= cols:
        return "cosmx"
    if {"global_x", "global_y", "gene"} <= cols:
        return "merscope"
    if {"x_location", "y_location", "feature_name"} <= cols:
        return "xenium"
    return "table"


def detect_platform(path: str | Path) -> str:
    """``"xenium"``, ``"merscope"``, ``"cosmx"`` or ``"table"`` from file names, then columns.

    A folder must hold a vendor transcripts file; a single table file is ``"table"`` unless its
    name or columns are a vendor's. Raises :class:`SeggerInputError` naming the folder and the
    files looked for when nothing matches.
    """
    path = Path(path)
    if not path.exists():
        raise SeggerInputError(f"{path}: no such file or folder; check the path")
    if path.is_dir():
        found = _transcripts_in_folder(path)
        if found is None:
            raise SeggerInputError(
                f"{path}: no transcripts file found in this folder (looked for {_looked_for()}); "
                "pass the vendor output folder or a transcripts table file"
            )
        return found[0]
    return _platform_of_file(path)


def _resolve(path: Path, platform: str) -> tuple[str, Path, Path]:
    """(platform, transcripts file, folder holding the other outputs)."""
    if not path.exists():
        raise SeggerInputError(f"{path}: no such file or folder; check the path")
    if platform == "auto":
        platform = detect_platform(path)
    if path.is_file():
        return platform, path, path.parent
    found = _transcripts_in_folder(path)
    wanted = {
        "xenium": lambda f: next((f / n for n in XENIUM_TX_FILES if (f / n).is_file()), None),
        "merscope": lambda f: next((f / n for n in MERSCOPE_TX_FILES if (f / n).is_file()), None),
        "cosmx": lambda f: _glob_first(f, COSMX_TX_PATTERNS),
        "table": lambda f: None,
    }[platform](path)
    if wanted is None:
        if platform == "table":
            raise SeggerInputError(
                f"{path}: platform 'table' needs a table file, not a folder; pass the file path"
            )
        names = {"xenium": XENIUM_TX_FILES, "merscope": MERSCOPE_TX_FILES, "cosmx": COSMX_TX_PATTERNS}[platform]
        hint = f" (the folder looks like {found[0]}: use platform='auto')" if found else ""
        raise SeggerInputError(
            f"{path}: no {platform} transcripts file in this folder (looked for {', '.join(names)}){hint}"
        )
    return platform, wanted, path


# --------------------------------------------------------------------------- transcripts


def _standardise(
    raw: pd.DataFrame,
    file: Path,
    *,
    x_aliases: Sequence[str],
    y_aliases: Sequence[str],
    z_aliases: Sequence[str],
    gene_aliases: Sequence[str],
    qv_aliases: Sequence[str] = QV_ALIASES,
    cell_aliases: Sequence[str] = CELL_ALIASES,
    nuclear_aliases: Sequence[str] = NUCLEAR_ALIASES,
    tx_id_aliases: Sequence[str] = TX_ID_ALIASES,
    compartment_aliases: Sequence[str] = (),
    scale: float = 1.0,
    unassigned_ints: Sequence[int] = (-1,),
    unassigned_strings: Sequence[str] = T.UNASSIGNED_STRINGS,
    fov_cells: bool = False,
    text_tx_id_is_gene: bool = False,
) -> pd.DataFrame:
    n = len(raw)
    xc = T.require_column(raw, file, "x", x_aliases)
    yc = T.require_column(raw, file, "y", y_aliases)
    gc = T.require_column(raw, file, "gene", gene_aliases)
    zc = T.find_column(raw.columns, z_aliases)
    qc = T.find_column(raw.columns, qv_aliases)
    cc = T.find_column(raw.columns, cell_aliases)
    nc = T.find_column(raw.columns, nuclear_aliases)
    tc = T.find_column(raw.columns, tx_id_aliases)
    kc = T.find_column(raw.columns, compartment_aliases) if compartment_aliases else None
    fc = T.find_column(raw.columns, FOV_ALIASES) if fov_cells else None

    x = T.to_float(raw[xc], file, xc) * scale
    y = T.to_float(raw[yc], file, yc) * scale
    z = T.to_float(raw[zc], file, zc) if zc else None
    qv = T.to_float(raw[qc], file, qc) if qc else None
    gene = T.normalise_text(raw[gc], file, gc, "gene")

    if tc is not None and text_tx_id_is_gene and not pd.api.types.is_numeric_dtype(raw[tc].dtype):
        tc = None  # MERSCOPE: a gene transcript name, kept as an extra column
    tx_id = T.transcript_ids(raw[tc] if tc else None, n, file, tc)

    if cc is not None:
        cell = T.normalise_cell_ids(raw[cc], unassigned_ints, unassigned_strings)
        if fc is not None:
            cell = _fov_cell_ids(raw[fc], cell)
        elif fov_cells and pd.notna(cell).any():
            raise SeggerInputError(_no_fov_message(file, cc))
    else:
        cell = np.full(n, None, dtype=object)

    compartment = None
    if kc is not None:
        compartment = T.normalise_cell_ids(raw[kc], unassigned_ints=(0,), unassigned_strings=("", "0", "nan", "None"))
    if nc is not None:
        nuclear = T.normalise_flag(raw[nc], n)
    elif compartment is not None:
        nuclear = pd.Series(compartment, dtype=object).str.lower().eq("nuclear").to_numpy(dtype=bool)
    else:
        nuclear = np.zeros(n, dtype=bool)

    return T.tidy_transcripts(
        raw,
        [xc, yc, zc, gc, qc, cc, nc, tc, kc],
        transcript_id=tx_id, x=x, y=y, z=z, gene=gene, qv=qv, nuclear=nuclear, cell_id=cell,
        compartment=compartment,
    )


def _no_fov_message(file, column: str) -> str:
    return (f"{file}: CosMx '{column}' numbers cells per FOV, but the file has no 'fov' column, so cells of "
            "different FOVs would be merged into one; export the file with its 'fov' column (AtoMx does), or "
            f"make '{column}' unique across the slide and add a constant 'fov' column")


def _fov_cell_ids(fov: pd.Series, cell: np.ndarray) -> np.ndarray:
    """``f"{fov}_{cell}"`` per row (``None`` stays ``None``), built on the unique pairs only."""
    fov_text = T.normalise_cell_ids(fov, unassigned_ints=(), unassigned_strings=())
    f_codes, f_uniques = pd.factorize(pd.Series(fov_text, dtype=object), use_na_sentinel=False)
    c_codes, c_uniques = pd.factorize(pd.Series(cell, dtype=object), use_na_sentinel=False)
    key = f_codes.astype(np.int64) * (len(c_uniques) + 1) + c_codes
    k_codes, k_uniques = pd.factorize(key)
    f_of = np.asarray(f_uniques, dtype=object)[k_uniques // (len(c_uniques) + 1)]
    c_of = np.asarray(c_uniques, dtype=object)[k_uniques % (len(c_uniques) + 1)]
    texts = np.asarray(
        [None if c is None or pd.isna(c) else f"{f}_{c}" for f, c in zip(f_of, c_of)], dtype=object
    )  # over unique (fov, cell) pairs
    return texts[k_codes]


TABLE_KIND = {"xenium": "Xenium transcripts", "merscope": "MERSCOPE transcripts", "cosmx": "CosMx transcripts",
              "table": "transcripts table"}


def _read_platform_transcripts(platform: str, file: Path, pixel_size: float | None) -> pd.DataFrame:
    if platform not in TABLE_KIND:
        raise SeggerInputError(f"unknown platform {platform!r}; use one of auto, {', '.join(PLATFORMS)}")
    return tidy_platform_table(T.read_table(file, TABLE_KIND[platform]), platform, file, pixel_size)


def platform_spec(platform: str, pixel_size: float | None = None) -> dict:
    """The column rule of ``platform`` (the keyword arguments of the one standardiser): which columns
    hold x, y, z, gene, qv, cell, nuclear flag, molecule id and compartment, the unit scale and the
    vendor's id conventions. Used by the reader, the out-of-core streaming reader and the reading back
    of an output written in the input's own layout."""
    if platform == "xenium":
        return dict(x_aliases=_first("x_location", X_ALIASES), y_aliases=_first("y_location", Y_ALIASES),
                    z_aliases=_first("z_location", Z_ALIASES), gene_aliases=_first("feature_name", GENE_ALIASES),
                    nuclear_aliases=_first("overlaps_nucleus", NUCLEAR_ALIASES))
    if platform == "merscope":
        return dict(x_aliases=_first("global_x", X_ALIASES), y_aliases=_first("global_y", Y_ALIASES),
                    z_aliases=_first("global_z", Z_ALIASES), gene_aliases=GENE_ALIASES,
                    qv_aliases=(), nuclear_aliases=(), text_tx_id_is_gene=True)
    if platform == "cosmx":
        ps = COSMX_PIXEL_SIZE if pixel_size is None else _check_pixel_size(pixel_size)
        return dict(x_aliases=("x_global_px",), y_aliases=("y_global_px",), z_aliases=("z",),
                    gene_aliases=_first("target", GENE_ALIASES), qv_aliases=(), nuclear_aliases=(),
                    cell_aliases=("cell_ID", "cell_id", "cellID"), compartment_aliases=("CellComp", "compartment"),
                    scale=ps, unassigned_ints=(0, -1), unassigned_strings=T.UNASSIGNED_STRINGS + ("0",),
                    fov_cells=True)
    if platform == "table":
        return dict(x_aliases=X_ALIASES, y_aliases=Y_ALIASES, z_aliases=Z_ALIASES, gene_aliases=GENE_ALIASES,
                    compartment_aliases=COMPARTMENT_ALIASES)
    raise SeggerInputError(f"unknown platform {platform!r}; use one of auto, {', '.join(PLATFORMS)}")


def tidy_platform_table(raw: pd.DataFrame, platform: str, file, pixel_size: float | None = None) -> pd.DataFrame:
    """The tidy transcripts table of ``raw``, a table in ``platform``'s own layout (the one column rule,
    :func:`platform_spec`); ``file`` names it in errors."""
    return _standardise(raw, Path(file), **platform_spec(platform, pixel_size))


@dataclass(frozen=True)
class InputRows:
    """The input file's own rows for a set of transcripts: its columns, names, order and values
    (what an output keeps so that it joins with the user's other tools), with what reads it back."""

    table: pd.DataFrame
    platform: str
    file: str
    pixel_size: float | None = None


def input_rows(sample: SpatialSample, transcript_ids, *, pixel_size: float | None = None) -> InputRows | None:
    """The rows of ``sample``'s transcripts file for ``transcript_ids`` (in that order), or ``None`` where
    there is no such file (layers drawn in napari, a SpatialData store) or it no longer holds every id
    (changed since it was read). Ids are matched by the reader's own rule (:func:`tidy_platform_table`)."""
    file = Path(sample.transcripts_path) if sample.transcripts_path else None
    if sample.platform not in TABLE_KIND or file is None or not file.is_file():
        return None
    try:
        raw = T.read_table(file, TABLE_KIND[sample.platform])
        ids = tidy_platform_table(raw, sample.platform, file, pixel_size)[schema.TX_ID].to_numpy()
    except SeggerInputError:
        return None
    pos = pd.Index(ids).get_indexer(np.asarray(transcript_ids, dtype=np.int64))
    if (pos < 0).any():
        return None
    return InputRows(raw.iloc[pos].reset_index(drop=True), sample.platform, str(file), pixel_size)


def positive_number(value, what: str) -> float:
    """``value`` as a finite float > 0, else a SeggerInputError "``what`` must be a positive number ..."."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = float("nan")
    if not np.isfinite(f) or f <= 0:
        raise SeggerInputError(f"{what} must be a positive number, got {value!r}")
    return f


def _check_pixel_size(pixel_size) -> float:
    return positive_number(pixel_size, "pixel_size (µm per pixel)")


def read_transcripts(path: str | Path, platform: str = "auto", *, pixel_size: float | None = None) -> pd.DataFrame:
    """The unfiltered tidy transcripts table of ``path`` (a vendor folder or a table file)."""
    platform = _check_choice("platform", platform, ("auto",) + PLATFORMS)
    platform, file, _ = _resolve(Path(path), platform)
    return _read_platform_transcripts(platform, file, pixel_size)


# --------------------------------------------------------------------------- units sanity check


def check_units(transcripts: pd.DataFrame, platform: str = "table") -> list[str]:
    """Warnings when coordinates look like pixels (or mm) rather than µm; never raises.

    Flags an x/y extent above 25,000 (no slide is 2.5 cm wide), below 5 with many molecules
    (mm?), or a median nearest-neighbour spacing above 3 (real data: ~0.2-1.5 µm).
    """
    out: list[str] = []
    x = transcripts[schema.X].to_numpy(np.float64)
    y = transcripts[schema.Y].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 2:
        return out
    hint = (
        "CosMx pixels are converted with pixel_size (µm/px)" if platform == "cosmx"
        else "convert them to µm (multiply by the µm-per-pixel size) before reading"
    )
    extent = float(max(np.ptp(x), np.ptp(y)))
    if extent > MAX_PLAUSIBLE_EXTENT_UM:
        out.append(
            f"coordinates span {extent:,.0f} units, more than any slide in µm: are they pixels? {hint}"
        )
    elif extent < 5 and n >= 1000:
        out.append(f"{n:,} molecules within {extent:.3g} units: are the coordinates in mm? they must be µm")
    if n >= 100:
        med = _median_spacing(x, y)
        if med > MAX_PLAUSIBLE_NN_UM:
            out.append(
                f"median spacing between neighbouring molecules is {med:.2f} units (µm data: ~0.2-1.5): "
                f"are the coordinates pixels? {hint}"
            )
    return out


def _median_spacing(x: np.ndarray, y: np.ndarray) -> float:
    """Median nearest-neighbour distance of the (finite) points, on a fixed sample of ≤ 50,000."""
    from scipy.spatial import cKDTree

    n = len(x)
    m = min(n, 50_000)
    idx = np.random.default_rng(0).choice(n, m, replace=False) if m < n else np.arange(n)
    pts = np.column_stack([x[idx], y[idx]])
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1])) * np.sqrt(m / n)  # thinning by m/n stretches spacing by √(n/m)


def check_nuclei(nuclei: pd.DataFrame, transcripts: pd.DataFrame, nuclei_path: str | None = None,
                 source: str = "polygon") -> list[str]:
    """Warnings about valid-but-odd nuclei; never raises.

    * pixel-sized nuclei: a median nucleus area above 200 units² (real nuclei: ~10-150 µm²)
      *and* molecules 1.6-3 units apart (µm data: ~0.2-1.5; above 3 :func:`check_units` already
      warns) mean the coordinates are most likely pixels of ~0.2 µm (e.g. the Xenium morphology
      image), which neither check catches alone on a small crop;
    * polygon ids that (mostly) match no transcript ``cell_id``: transcripts are then linked to
      nuclei by position (point in polygon) rather than by the vendor's nuclear flag;
    * a single nucleus.
    """
    out: list[str] = []
    n = len(nuclei)
    where = f"{nuclei_path}: " if nuclei_path else ""
    if n == 0:
        return out
    if n == 1:
        out.append(
            f"{where}only 1 nucleus in this input: every transcript can join only that cell (or a "
            "fragment); check the polygons file or the crop"
        )
    import shapely

    area = float(np.median(shapely.area(nuclei[schema.GEOMETRY].to_numpy(dtype=object))))
    x = transcripts[schema.X].to_numpy(np.float64)
    y = transcripts[schema.Y].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if area > MAX_PLAUSIBLE_NUCLEUS_AREA_UM2 and ok.sum() >= 100:
        med = _median_spacing(x[ok], y[ok])
        if SUSPECT_NN_UM < med <= MAX_PLAUSIBLE_NN_UM:
            out.append(
                f"{where}nuclei have a median area of {area:,.0f} units² (real nuclei: ~10-150 µm²) and "
                f"molecules are {med:.2f} units apart (µm data: ~0.2-1.5): are the coordinates pixels? "
                "convert them to µm (multiply by the µm-per-pixel size, 0.2125 for Xenium images) before reading"
            )
    if source == "polygon" and schema.CELL_ID in transcripts.columns:
        cells = pd.unique(transcripts[schema.CELL_ID].dropna())
        if len(cells):
            ids = nuclei[schema.BD_ID].astype(str)
            found = float(ids.isin(pd.Index(cells).astype(str)).mean())
            if found < 0.5:
                out.append(
                    f"{where}{1 - found:.0%} of the {n:,} polygon ids match no transcript cell_id (e.g. "
                    f"{ids.iloc[0]!r}); transcripts are linked to nuclei by position (point in polygon) "
                    "instead of the vendor's nuclear flag: check that the polygons belong to this run"
                )
    return out


# --------------------------------------------------------------------------- nuclei


def _boundary_file(folder: Path, platform: str, kind: str) -> Path | None:
    if platform == "xenium":
        for suffix in (".parquet", ".csv.gz", ".csv"):
            p = folder / f"{kind}_boundaries{suffix}"
            if p.is_file():
                return p
        return None
    if platform == "merscope":
        exact = folder / f"{kind}_boundaries.parquet"
        if exact.is_file():
            return exact
        return _glob_first(folder, (f"*{kind}_boundaries*.parquet",))
    if platform == "cosmx" and kind == "cell":
        return _glob_first(folder, ("*polygons.csv", "*polygons.csv.gz"))
    return None


def _boundary_names(platform: str, kind: str) -> str:
    return {
        "xenium": f"{kind}_boundaries.parquet / .csv.gz / .csv",
        "merscope": f"{kind}_boundaries.parquet or *{kind}_boundaries*.parquet",
        "cosmx": "*polygons.csv (cell outlines)",
    }.get(platform, "none: pass polygons=<file>")


def _read_boundaries(platform: str, file: Path, pixel_size: float | None, bbox, margin) -> pd.DataFrame:
    if platform == "cosmx" and T.find_column(T.read_columns(file), ("x_global_px",)):
        df = T.read_table(file, "CosMx polygons")
        id_col = T.require_column(df, file, "cell id", ("cellID", "cell_ID", "cell_id"))
        ids = T.normalise_cell_ids(df[id_col], unassigned_ints=(0, -1),
                                   unassigned_strings=T.UNASSIGNED_STRINGS + ("0",))
        fov_col = T.find_column(df.columns, FOV_ALIASES)
        if fov_col is not None:
            ids = _fov_cell_ids(df[fov_col], ids)
        elif pd.notna(ids).any():
            raise SeggerInputError(_no_fov_message(file, id_col))
        vertices = pd.DataFrame({"cell_id": ids, "vertex_x": df["x_global_px"], "vertex_y": df[
            T.require_column(df, file, "y", ("y_global_px",))]})
        ps = COSMX_PIXEL_SIZE if pixel_size is None else _check_pixel_size(pixel_size)
        return nuclei_from_vertices(vertices, scale=ps, bbox=bbox, margin=margin, source_name=str(file))
    return read_polygons(file, bbox=bbox, margin=margin)


def _check_choice(name: str, value, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise SeggerInputError(f"{name}={value!r} is not valid; use one of {', '.join(choices)}")
    return value.lower()


def _labels_pixel_size(platform: str, pixel_size, notes: list[str]) -> float:
    if pixel_size is not None:
        return _check_pixel_size(pixel_size)
    if platform == "xenium":
        notes.append(f"label image: pixel_size not given, assumed the Xenium morphology image's "
                     f"{XENIUM_PIXEL_SIZE} µm/px")
        return XENIUM_PIXEL_SIZE
    if platform == "cosmx":
        return COSMX_PIXEL_SIZE
    raise SeggerInputError(
        "nuclei='labels' needs pixel_size (µm per pixel of the label image) for this input; "
        "pass pixel_size= (CLI --pixel-size)"
    )


# --------------------------------------------------------------------------- read_sample


def read_sample(
    path: str | Path,
    platform: str = "auto",
    *,
    min_qv: float | None = 20.0,
    filter_controls: bool = True,
    nuclei: str = "auto",
    nuclei_labels=None,
    pixel_size: float | None = None,
    labels_offset: Sequence[float] = (0.0, 0.0),
    boundaries: str = "nucleus",
    polygons: str | Path | None = None,
    min_nuclear_transcripts: int = 3,
    crop_margin: float = DEFAULT_CROP_MARGIN,
) -> SpatialSample:
    """Read a Xenium / MERSCOPE / CosMx folder or a transcripts table into a :class:`SpatialSample`.

    Parameters
    ----------
    path : vendor output folder or transcripts file.
    platform : ``"auto"`` (see :func:`detect_platform`), ``"xenium"``, ``"merscope"``, ``"cosmx"``
        or ``"table"``.
    min_qv : drop transcripts with ``qv < min_qv`` (``None``/``0``: keep all; inputs without qv
        are never qv-filtered).
    filter_controls : drop control probes (:data:`~segger.io.filtering.DEFAULT_CONTROL_PATTERNS`).
    nuclei : ``"auto"`` (a label image if ``nuclei_labels`` is given, else vendor / ``polygons``
        polygons when present, else approximated), ``"polygons"``, ``"approximate"``
        (:func:`~segger.io.nuclei.approximate_nuclei`), ``"labels"`` or ``"none"``.
    nuclei_labels : 2-D label image (``.tif``/``.tiff``/``.npy`` path or array) for ``"labels"``.
    pixel_size : µm per pixel of the label image, and of CosMx transcript / polygon pixels
        (default 0.12028 for CosMx, 0.2125 for Xenium label images).
    labels_offset : ``(x0, y0)`` µm position of the corner of label pixel (0, 0).
    boundaries : ``"nucleus"`` or ``"cell"``: which vendor polygons to use.
    polygons : a polygons file (vertex table or WKB/WKT geometry table) overriding the vendor's.
    min_nuclear_transcripts : minimum nuclear transcripts per cell for approximated nuclei.
    crop_margin : µm kept around the transcripts' bounding box when cropping polygons.

    The transcripts are filtered (:func:`~segger.io.filtering.filter_transcripts`) and the nuclei
    cropped to the kept transcripts' bounding box. Inputs are only read.
    """
    path = Path(path)
    platform = _check_choice("platform", platform, ("auto",) + PLATFORMS)
    mode = _check_choice("nuclei", nuclei, NUCLEI_MODES)
    kind = _check_choice("boundaries", boundaries, BOUNDARY_KINDS)
    min_qv = check_min_qv(min_qv)
    notes: list[str] = []

    platform, tx_file, folder = _resolve(path, platform)
    raw = _read_platform_transcripts(platform, tx_file, pixel_size)
    patterns = DEFAULT_CONTROL_PATTERNS if filter_controls else ()
    transcripts, report = filter_transcripts(raw, min_qv, patterns, source=str(tx_file))
    del raw
    if report.removed_nonfinite:
        notes.append(f"{tx_file}: {report.removed_nonfinite:,} transcripts with NaN/inf coordinates were dropped")
    if min_qv and not report.qv_available:
        notes.append(f"{tx_file}: no qv values in this input; the qv filter (min_qv={min_qv:g}) was skipped")
    notes += check_units(transcripts, platform)

    bbox = bbox_of(transcripts)
    nuclei_path: str | None = None
    nuclei_wanted_note = True  # make_sample's "no nuclei were found" (unless a clearer line says why)
    if mode == "auto":
        mode = "labels" if nuclei_labels is not None else "polygons?"

    if mode == "none":
        nuc, source = empty_nuclei(), "none"
    elif mode == "labels":
        if nuclei_labels is None:
            raise SeggerInputError(
                "nuclei='labels' needs nuclei_labels= (a 2-D label image .tif/.npy or array; CLI --nuclei-labels)"
            )
        ps = _labels_pixel_size(platform, pixel_size, notes)
        nuc = nuclei_from_labels(nuclei_labels, ps, labels_offset, bbox=bbox, margin=crop_margin)
        source = "labels"
        if isinstance(nuclei_labels, (str, Path)):
            nuclei_path = str(nuclei_labels)
    elif mode in ("polygons", "polygons?"):
        file = Path(polygons) if polygons is not None else _boundary_file(folder, platform, kind)
        if file is None and platform == "merscope" and kind == "nucleus":
            file = _boundary_file(folder, platform, "cell")
            if file is not None:
                notes.append(
                    f"{file}: MERSCOPE gives cell (not nucleus) boundaries and no nuclear flag; "
                    "the cell boundaries are used as the nuclei"
                )
        if file is None and platform == "cosmx" and kind == "nucleus" and mode == "polygons":
            file = _boundary_file(folder, platform, "cell")
            if file is not None:
                notes.append(f"{file}: CosMx polygons are cell outlines; they are used as the nuclei")
        if file is not None:
            nuc = _read_boundaries(platform, file, pixel_size, bbox, crop_margin)
            source, nuclei_path = "polygon", str(file)
        elif mode == "polygons":
            raise SeggerInputError(
                f"{folder}: no {kind} polygons found for {platform} (looked for "
                f"{_boundary_names(platform, kind)}); pass polygons=<file>, use nuclei='approximate', "
                + ("or boundaries='cell'" if kind == "nucleus" else "or boundaries='nucleus'")
            )
        else:
            nuc = approximate_nuclei(transcripts, min_nuclear_transcripts, bbox=bbox, margin=crop_margin)
            source = "approximated"
            if len(nuc) == 0:  # one line that says why and what to do, instead of three partial ones
                nuc.attrs = {}
                nuclei_wanted_note = False
                notes.append(
                    f"{folder}: no {kind} polygons ({_boundary_names(platform, kind)}) and no transcript flagged "
                    "nuclear within a cell, so there are no nuclei: give a nucleus label image (CLI --nuclei-labels; "
                    "nuclei_labels= in Python) or polygons=<file> in Python, or segment without nuclei (nuclei='none')"
                )
            else:
                notes.append(
                    f"{folder}: no {kind} polygons ({_boundary_names(platform, kind)}); "
                    f"{len(nuc):,} nuclei approximated from the nuclear transcripts of each cell"
                )
    else:  # approximate
        nuc = approximate_nuclei(transcripts, min_nuclear_transcripts, bbox=bbox, margin=crop_margin)
        source = "approximated"

    return make_sample(transcripts, nuc, platform=platform, source=str(path), filter_report=report,
                       nuclei_source=source, notes=notes, nuclei_path=nuclei_path,
                       nuclei_wanted=mode != "none" and nuclei_wanted_note,
                       transcripts_path=str(tx_file))


def check_min_qv(min_qv):
    """``min_qv`` as a float ≥ 0 (or None: no quality filter); a one-line error otherwise."""
    if min_qv is None:
        return None
    try:
        value = float(min_qv)
    except (TypeError, ValueError):
        raise SeggerInputError(f"min_qv must be a number (or None), got {min_qv!r}") from None
    if not np.isfinite(value) or value < 0:
        raise SeggerInputError(f"min_qv must be a number ≥ 0, got {min_qv!r}")
    return value


def make_sample(transcripts: pd.DataFrame, nuc: pd.DataFrame, *, platform: str, source: str, filter_report,
                nuclei_source: str, notes: list[str], nuclei_path, nuclei_wanted: bool,
                transcripts_path: str | None = None) -> SpatialSample:
    """The :class:`SpatialSample` every reader returns, with the shared nuclei checks and warnings."""
    notes = list(notes) + nuclei_warnings(nuc)
    if nuclei_wanted and len(nuc) == 0:
        notes.append("no nuclei were found; give polygons, a label image or nuclear-flagged transcripts")
    notes += check_nuclei(nuc, transcripts, nuclei_path, nuclei_source)
    nuc = nuc.reset_index(drop=True)
    nuc.attrs = {}
    transcripts.attrs = {}
    return SpatialSample(transcripts=transcripts, nuclei=nuc, platform=platform, source=source,
                         filter_report=filter_report, nuclei_source=nuclei_source, warnings=notes,
                         nuclei_path=nuclei_path, transcripts_path=transcripts_path)
