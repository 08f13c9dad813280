"""Writers for segmentation results: transcripts parquet, cell boundaries, AnnData, run JSON.

Every ``write_*`` function writes atomically (:mod:`segger.utils.atomic`): the target is either
left as it was or replaced by the complete new file. Inputs follow :mod:`segger.schema`
(result table = transcripts + ``segger_cell_id`` / ``score`` / ``assignment``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import shapely

from segger import schema
from segger.errors import SeggerInputError
from segger.utils.atomic import atomic_path, file_sha256, write_json_atomic
from segger.validation.metrics import factorize_cells

__all__ = [
    "BOUNDARY_COLUMNS",
    "SEGGER_COLUMNS",
    "write_transcripts",
    "read_transcripts_output",
    "cell_boundaries",
    "write_boundaries",
    "read_boundaries",
    "build_anndata",
    "write_anndata",
    "package_versions",
    "write_run_json",
]

BOUNDARY_COLUMNS = ["cell_id", "geometry", "area_um2", "n_transcripts", "centroid_x", "centroid_y"]

RUN_JSON_VERSION_PACKAGES = {
    "torch": "torch",
    "torch_geometric": "torch_geometric",
    "pytorch_lightning": "pytorch_lightning",
    "numpy": "numpy",
    "pandas": "pandas",
    "segger": "napari-segger",
}


def _require(df: pd.DataFrame, *cols: str, what: str = "result table") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SeggerInputError(
            f"{what} lacks column(s) {missing} (has {list(df.columns)}); "
            "pass the segger result table (see segger.schema)"
        )


def _segger_ids(df: pd.DataFrame, cell_col: str) -> pd.Series:
    """The cell-id column as ``str`` with every unassigned form mapped to ``UNASSIGNED``."""
    codes, labels = factorize_cells(df[cell_col])
    out = np.full(len(df), schema.UNASSIGNED, dtype=object)
    ok = codes >= 0
    out[ok] = labels[codes[ok]]
    return pd.Series(out, index=df.index, name=cell_col)


# --------------------------------------------------------------------------------------------
# transcripts
# --------------------------------------------------------------------------------------------


#: Segger's columns in a written transcripts table (the result table's additions to the input's own)
SEGGER_COLUMNS = (schema.SEGGER_CELL_ID, schema.SCORE, schema.ASSIGNMENT)
#: parquet key-value metadata saying how to read a transcripts file back (see :func:`read_transcripts_output`)
LAYOUT_KEY = b"segger.layout"


def write_transcripts(result_df: pd.DataFrame, path: str | os.PathLike, *, source=None,
                      compression: str = "zstd") -> Path:
    """Write the result table to parquet atomically (no index).

    With ``source`` (:class:`segger.io.InputRows` for the result's transcripts, from
    :func:`segger.io.input_rows`) the file is the input's own rows — its column names, order and
    values, e.g. Xenium ``x_location``/``feature_name``/``overlaps_nucleus`` — plus Segger's columns
    (:data:`SEGGER_COLUMNS`), so it joins with the user's other tools; an input column named like one of
    Segger's is kept as ``input_<name>``. Without it (layers drawn in napari, SpatialData input) the
    tidy result table is written (all columns, in order). ``segger_cell_id`` is written as ``str``
    (None/NaN/"-1" → ``"UNASSIGNED"``). :func:`read_transcripts_output` reads either back into the
    result table.
    """
    _require(result_df, schema.SEGGER_CELL_ID)
    if source is None:
        df = result_df.copy(deep=False).reset_index(drop=True)
        df[schema.SEGGER_CELL_ID] = _segger_ids(df, schema.SEGGER_CELL_ID)
        layout: dict[str, Any] = {"layout": "tidy"}
    else:
        if len(source.table) != len(result_df):
            raise ValueError(f"source rows ({len(source.table)}) do not match the result ({len(result_df)})")
        df = input_layout(source.table, result_df)
        layout = input_layout_metadata(source.platform, source.file, source.pixel_size)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[LAYOUT_KEY] = json.dumps(layout).encode()
    with atomic_path(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression=compression)
    return Path(path)


def input_layout(raw: pd.DataFrame, result_df: pd.DataFrame) -> pd.DataFrame:
    """The input's own rows ``raw`` (names, order, values) + Segger's columns of the row-aligned
    ``result_df``; an input column named like one of Segger's becomes ``input_<name>``. The one rule
    for in-memory and out-of-core outputs."""
    df = raw.copy(deep=False).reset_index(drop=True)
    renames = {}
    for col in df.columns:
        if col in SEGGER_COLUMNS:
            name = str(col)
            while name in SEGGER_COLUMNS or name in df.columns:
                name = f"input_{name}"
            renames[col] = name
    df = df.rename(columns=renames)
    for col in SEGGER_COLUMNS:
        if col == schema.SEGGER_CELL_ID:
            df[col] = _segger_ids(result_df, col).reset_index(drop=True)
        elif col in result_df.columns:
            df[col] = result_df[col].reset_index(drop=True)
    return df


def input_layout_metadata(platform: str, file, pixel_size: float | None = None) -> dict[str, Any]:
    """What :func:`read_transcripts_output` needs to read an :func:`input_layout` file back."""
    return {"layout": "input", "platform": platform, "input": str(file), "pixel_size": pixel_size}


def read_transcripts_output(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """The result table (:mod:`segger.schema` names) of a transcripts file :func:`write_transcripts`
    wrote, whichever layout: a file in the input's own layout is read back through the reader's column
    rule (:func:`segger.io.tidy_platform_table`); Segger's columns come through unchanged."""

    df = _tidy_output(pd.read_parquet(path), path, _layout_of(path))
    return df[columns] if columns is not None else df


def iter_transcripts_output(path: str | os.PathLike) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(row group, its rows as the result table)`` for each row group of a transcripts file, in file
    order: :func:`read_transcripts_output` one row group at a time (memory bounded by a row group)."""
    import pyarrow.parquet as pq

    layout = _layout_of(path)
    with pq.ParquetFile(path, pre_buffer=False) as pf:
        for rg in range(pf.num_row_groups):
            yield rg, _tidy_output(pf.read_row_group(rg).to_pandas(), path, layout)


def _tidy_output(df: pd.DataFrame, path, layout: dict[str, Any]) -> pd.DataFrame:
    if layout.get("layout") == "input":
        from segger.io import tidy_platform_table

        df = tidy_platform_table(df, layout["platform"], path, layout.get("pixel_size"))
    return df


def _layout_of(path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[LAYOUT_KEY]) if LAYOUT_KEY in meta else {"layout": "tidy"}


# --------------------------------------------------------------------------------------------
# boundaries
# --------------------------------------------------------------------------------------------


BOUNDARY_METHODS = ("smooth", "concave", "convex")


def cell_boundaries(
    result_df: pd.DataFrame,
    method: str = "smooth",
    ratio: float = 0.3,
    min_transcripts: int = 3,
    *,
    cell_col: str = schema.SEGGER_CELL_ID,
    degenerate_buffer: float = 0.5,
    expand: float = 1.0,
) -> pd.DataFrame:
    """One outline per assigned cell (fragments included) from the xy of its transcripts.

    ``method="smooth"`` (default): the concave hull, closed and grown by ``expand`` µm with round
    corners, clipped so that touching cells meet halfway between their transcripts and never overlap
    (:func:`segger.export.outlines.smooth_outlines`); every transcript lies inside its own cell's
    outline. ``"concave"`` is the bare :func:`shapely.concave_hull` with ``ratio`` (0 = most concave,
    1 = convex hull); ``"convex"`` the convex hull (both may overlap a neighbour). Cells with fewer than ``min_transcripts``
    transcripts are not listed. Cells whose hull is degenerate (all points equal or collinear,
    < 3 distinct points) get their hull buffered by ``degenerate_buffer`` µm, so every listed
    cell has a valid ``Polygon`` with area > 0.

    Returns a DataFrame ``cell_id`` (str, sorted), ``geometry`` (shapely Polygon),
    ``area_um2`` (polygon area in µm²), ``n_transcripts`` (all of the cell's transcripts),
    ``centroid_x``, ``centroid_y`` (polygon centroid). Vectorised: one
    :func:`shapely.multipoints` call and one hull call over the whole array of cells.
    """
    if method not in BOUNDARY_METHODS:
        raise SeggerInputError(f"cell_boundaries: method must be one of {', '.join(BOUNDARY_METHODS)}, not {method!r}")
    if not 0.0 <= ratio <= 1.0:
        raise SeggerInputError(f"cell_boundaries: ratio must be in [0, 1], not {ratio}")
    if degenerate_buffer <= 0:
        raise SeggerInputError("cell_boundaries: degenerate_buffer must be > 0")
    _require(result_df, cell_col, schema.X, schema.Y)

    codes, labels = factorize_cells(result_df[cell_col])
    xy = np.column_stack(
        [result_df[schema.X].to_numpy(dtype=float), result_df[schema.Y].to_numpy(dtype=float)]
    )
    ok = (codes >= 0) & np.isfinite(xy).all(axis=1)
    n_tx = np.bincount(codes[ok], minlength=len(labels))
    listed = n_tx >= max(1, int(min_transcripts))
    if not listed.any():  # nothing assigned: an empty table with the right columns
        return pd.DataFrame({"cell_id": pd.Series(dtype=object), "geometry": pd.Series(dtype=object),
                             "area_um2": pd.Series(dtype=float), "n_transcripts": pd.Series(dtype=np.int64),
                             "centroid_x": pd.Series(dtype=float), "centroid_y": pd.Series(dtype=float)})
    ok &= listed[np.where(codes >= 0, codes, 0)]
    if not ok.any():
        return pd.DataFrame(
            {
                "cell_id": pd.Series(dtype=object),
                "geometry": pd.Series(dtype=object),
                "area_um2": pd.Series(dtype=float),
                "n_transcripts": pd.Series(dtype=np.int64),
                "centroid_x": pd.Series(dtype=float),
                "centroid_y": pd.Series(dtype=float),
            }
        )
    cells = np.flatnonzero(listed)
    remap = np.full(len(labels), -1, dtype=np.int64)
    remap[cells] = np.arange(cells.size)
    c = remap[codes[ok]]
    order = np.argsort(c, kind="stable")
    mp = shapely.multipoints(xy[ok][order], indices=c[order])

    if method == "convex":
        hull = shapely.convex_hull(mp)
    else:
        hull = shapely.concave_hull(mp, ratio=ratio, allow_holes=False)
    # anything that is not a valid polygon with area: convex hull, then buffer
    bad = (shapely.get_type_id(hull) != 3) | ~shapely.is_valid(hull) | (shapely.area(hull) <= 0)
    if bad.any():
        hull[bad] = shapely.convex_hull(mp[bad])
        still = (shapely.get_type_id(hull) != 3) | (shapely.area(hull) <= 0)
        if still.any():
            hull[still] = shapely.buffer(hull[still], degenerate_buffer, quad_segs=4)
    if method == "smooth":
        from segger.export.outlines import smooth_outlines

        hull = smooth_outlines(hull, xy[ok], c, expand=expand)
    area = shapely.area(hull)
    cent = shapely.centroid(hull)
    return pd.DataFrame(
        {
            "cell_id": labels[cells].astype(object),
            "geometry": hull,
            "area_um2": area.astype(float),
            "n_transcripts": n_tx[cells].astype(np.int64),
            "centroid_x": shapely.get_x(cent),
            "centroid_y": shapely.get_y(cent),
        }
    )


def _geoparquet_metadata(geoms: np.ndarray, bbox: list[float] | None = None) -> bytes:
    types = sorted({t for t in shapely.get_type_id(geoms).tolist()})
    names = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString", 6: "MultiPolygon"}
    meta = {
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": {
            "geometry": {
                "encoding": "WKB",
                "geometry_types": [names[t] for t in types if t in names],
                "crs": None,  # local micrometre coordinates, not geographic
            }
        },
    }
    if bbox is not None:
        meta["columns"]["geometry"]["bbox"] = bbox
    return json.dumps(meta).encode()


#: the per-outline bounds columns of a WKB outlines file (µm; shapely / geopandas ``bounds`` order): their
#: row-group statistics let a region read skip the row groups that do not meet it (segger.export.region)
OUTLINE_BOUNDS_COLUMNS = ("minx", "miny", "maxx", "maxy")
#: schema-metadata key of a WKB outlines file written in row groups by region (its grid), read by
#: :class:`segger.export.region.OutlineRegions`
OUTLINE_LAYOUT_KEY = b"segger_outlines"
#: a WKB outlines table with more outlines than this is written sorted by a spatial grid, one row group a
#: grid square (sized to hold about this many outlines); a smaller one is one row group, in its own order
OUTLINES_PER_ROW_GROUP = 2048


def _outline_grid(bounds: np.ndarray, per_group: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """``(row order, row-group cut points into it, grid square µm or None)``: the outlines by the square
    of a grid over their bounding-box centres (row by row of squares; the table's order within a square;
    outlines without bounds last), one row group a square; one row group in the table's order when
    there are at most ``per_group`` outlines."""
    n = len(bounds)
    if n <= per_group:
        return np.arange(n), np.array([], dtype=np.int64), None
    cx = (bounds[:, 0] + bounds[:, 2]) / 2.0
    cy = (bounds[:, 1] + bounds[:, 3]) / 2.0
    ok = np.isfinite(cx) & np.isfinite(cy)
    if not ok.any():
        return np.arange(n), np.array([], dtype=np.int64), None
    x0, y0 = float(cx[ok].min()), float(cy[ok].min())
    w, h = float(cx[ok].max()) - x0, float(cy[ok].max()) - y0
    groups = max(1, int(np.ceil(ok.sum() / per_group)))
    grid = float(np.sqrt(w * h / groups)) if w > 0 and h > 0 else max(w, h) / groups
    if not grid > 0:
        return np.arange(n), np.array([], dtype=np.int64), None
    ix = np.floor((np.where(ok, cx, x0) - x0) / grid).astype(np.int64)
    iy = np.floor((np.where(ok, cy, y0) - y0) / grid).astype(np.int64)
    nx = int(ix.max()) + 1
    key = np.where(ok, iy * nx + ix, int((iy.max() + 1) * nx))
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return order, cuts, grid


def write_boundaries(
    boundaries_df: pd.DataFrame, path: str | os.PathLike, layout: str = "wkb", *,
    outlines_per_row_group: int = OUTLINES_PER_ROW_GROUP,
) -> Path:
    """Write a :func:`cell_boundaries` table to parquet atomically.

    ``layout="wkb"``: one row per cell with the columns of the table and ``geometry`` as WKB
    bytes (GeoParquet 1.0 metadata, no CRS; ``geopandas.read_parquet`` reads it), plus each outline's
    bounding box (:data:`OUTLINE_BOUNDS_COLUMNS` ``minx, miny, maxx, maxy`` µm). Up to
    ``outlines_per_row_group`` outlines are one row group in the table's order; more are sorted by the
    square of a spatial grid (sized to hold about that many outlines) their box centre falls in, one row
    group a square, so that the bounds columns' row-group statistics let a region read
    (:class:`segger.export.region.RegionSource`) read only the row groups that meet its box.
    ``layout="vertices"``: the Xenium ``cell_boundaries.parquet`` layout, one row per vertex of
    each exterior ring: ``cell_id, vertex_x, vertex_y`` (rings closed: first vertex repeated).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _require(boundaries_df, "cell_id", schema.GEOMETRY, what="boundaries table")
    geoms = np.asarray(boundaries_df[schema.GEOMETRY].to_numpy(), dtype=object)
    ids = boundaries_df["cell_id"].astype(str).to_numpy(dtype=object)
    cuts = np.array([], dtype=np.int64)
    if layout == "wkb":
        if int(outlines_per_row_group) < 1:
            raise SeggerInputError(f"write_boundaries: outlines_per_row_group must be >= 1, not {outlines_per_row_group}")
        bounds = shapely.bounds(geoms).reshape(-1, 4)
        order, cuts, grid = _outline_grid(bounds, int(outlines_per_row_group))
        table_df = boundaries_df.reset_index(drop=True).copy()
        table_df["cell_id"] = ids
        table_df[schema.GEOMETRY] = shapely.to_wkb(geoms)
        for k, name in enumerate(OUTLINE_BOUNDS_COLUMNS):
            table_df[name] = bounds[:, k]
        table_df = table_df.iloc[order].reset_index(drop=True)
        table = pa.Table.from_pandas(table_df, preserve_index=False)
        fin = np.isfinite(bounds).all(axis=1)
        extent = ([float(bounds[fin, 0].min()), float(bounds[fin, 1].min()), float(bounds[fin, 2].max()),
                   float(bounds[fin, 3].max())] if fin.any() else None)
        meta = dict(table.schema.metadata or {})
        meta[b"geo"] = _geoparquet_metadata(geoms, extent)
        meta[OUTLINE_LAYOUT_KEY] = json.dumps({"bounds_columns": list(OUTLINE_BOUNDS_COLUMNS), "grid_um": grid,
                                               "row_groups": int(len(cuts) + 1)}).encode()
        table = table.replace_schema_metadata(meta)
    elif layout == "vertices":
        rings = shapely.get_exterior_ring(geoms)
        coords, idx = shapely.get_coordinates(rings, return_index=True)
        table = pa.table(
            {"cell_id": pa.array(ids[idx], pa.string()), "vertex_x": coords[:, 0], "vertex_y": coords[:, 1]}
        )
    else:
        raise SeggerInputError(f"write_boundaries: layout must be 'wkb' or 'vertices', not {layout!r}")
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, table.schema, compression="zstd") as writer:
            starts = np.r_[0, cuts].astype(np.int64)
            stops = np.r_[cuts, table.num_rows].astype(np.int64)
            for lo, hi in zip(starts, stops):  # one row group a grid square (the whole table when one)
                writer.write_table(table.slice(int(lo), int(hi - lo)), row_group_size=max(int(hi - lo), 1))
    return Path(path)


def read_boundaries(path: str | os.PathLike) -> pd.DataFrame:
    """Read a file written by :func:`write_boundaries` (either layout) back to shapely polygons.

    Returns at least ``cell_id`` (str) and ``geometry`` (Polygon); the WKB layout keeps its
    other columns. Vertex tables are grouped by ``cell_id`` in order of first appearance.
    """
    df = pd.read_parquet(path)
    if schema.GEOMETRY in df.columns:
        df[schema.GEOMETRY] = shapely.from_wkb(df[schema.GEOMETRY].to_numpy())
        df["cell_id"] = df["cell_id"].astype(str)
        return df
    _require(df, "cell_id", "vertex_x", "vertex_y", what=f"boundaries file {path}")
    codes, uniq = pd.factorize(df["cell_id"].astype(str), sort=False)
    order = np.argsort(codes, kind="stable")
    coords = df[["vertex_x", "vertex_y"]].to_numpy(dtype=float)[order]
    polys = shapely.polygons(shapely.linearrings(coords, indices=codes[order]))
    return pd.DataFrame({"cell_id": np.asarray(uniq, dtype=object), schema.GEOMETRY: polys})


# --------------------------------------------------------------------------------------------
# AnnData
# --------------------------------------------------------------------------------------------


def build_anndata(
    result_df: pd.DataFrame,
    boundaries_df: pd.DataFrame | None = None,
    reference_column: str | None = schema.CELL_ID,
    *,
    cell_col: str = schema.SEGGER_CELL_ID,
    dtype: Any = np.float32,
    genes: Any = None,
):
    """Cells × genes AnnData of the assigned cells.

    - ``X``: sparse CSR transcript counts (``dtype``, float32 by default) of the cells with
      ≥ 1 assigned transcript; ``obs_names`` = segger cell ids (str, sorted), ``var_names`` =
      every gene of the table (str, sorted, including genes no cell holds).
    - ``obs``: ``centroid_x``, ``centroid_y`` (mean transcript position, µm),
      ``n_transcripts``, ``mean_score`` (NaN without a ``score`` column), ``area_um2``
      (``boundaries_df`` area matched on ``cell_id`` when given, else
      ``cell_boundaries(result_df, min_transcripts=1)``; NaN for a cell the given boundaries
      lack), ``kind`` (categorical: ``nucleus`` when any of its transcripts has assignment
      nucleus/cytoplasm, else ``fragment``; all ``nucleus`` without an ``assignment``
      column), and when ``reference_column`` is in the table: ``ref_cell_id`` (str: the
      reference cell holding most of the cell's transcripts, ``"UNASSIGNED"`` when none) and
      ``ref_overlap`` (that count / ``n_transcripts``).
    - ``obsm["spatial"]``: ``(n_cells, 2)`` float64 centroids; ``var["n_cells"]``.

    ``genes`` (sorted str): the ``var_names`` to use instead of the table's genes (a part of a larger
    table: :mod:`segger.export.streamed`); every gene of the table must be among them.
    """
    import anndata as ad
    import scipy.sparse as sp

    _require(result_df, cell_col, schema.GENE, schema.X, schema.Y)
    codes, cells = factorize_cells(result_df[cell_col])
    if genes is None:
        gcodes, genes = pd.factorize(result_df[schema.GENE].astype(str), sort=True)
    else:
        gcodes = pd.Index(genes).get_indexer(result_df[schema.GENE].astype(str))
        if (gcodes < 0).any():
            raise ValueError("build_anndata: the table holds genes that are not in genes=")
    genes = np.asarray(genes, dtype=object)
    ok = codes >= 0
    n_cells, n_genes = len(cells), len(genes)
    c = codes[ok]
    X = sp.coo_matrix(
        (np.ones(c.size, dtype=dtype), (c, gcodes[ok])), shape=(n_cells, n_genes)
    ).tocsr()
    X.sum_duplicates()
    X.sort_indices()

    n_tx = np.bincount(c, minlength=n_cells)
    denom = np.maximum(n_tx, 1)
    cx = np.bincount(c, weights=result_df[schema.X].to_numpy(dtype=float)[ok], minlength=n_cells) / denom
    cy = np.bincount(c, weights=result_df[schema.Y].to_numpy(dtype=float)[ok], minlength=n_cells) / denom
    obs = pd.DataFrame(index=pd.Index(cells.astype(object), name="cell_id", dtype=object))
    obs["centroid_x"] = cx
    obs["centroid_y"] = cy
    obs["n_transcripts"] = n_tx.astype(np.int64)
    if schema.SCORE in result_df.columns:
        s = pd.to_numeric(result_df[schema.SCORE], errors="coerce").to_numpy(dtype=float)[ok]
        fin = np.isfinite(s)
        ssum = np.bincount(c[fin], weights=s[fin], minlength=n_cells)
        scnt = np.bincount(c[fin], minlength=n_cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            obs["mean_score"] = np.where(scnt > 0, ssum / np.maximum(scnt, 1), np.nan)
    else:
        obs["mean_score"] = np.nan

    if boundaries_df is None:
        boundaries_df = cell_boundaries(result_df, min_transcripts=1, cell_col=cell_col)
    _require(boundaries_df, "cell_id", what="boundaries table")
    if "area_um2" in boundaries_df.columns:
        area = pd.Series(boundaries_df["area_um2"].to_numpy(dtype=float), index=boundaries_df["cell_id"].astype(str))
    else:
        _require(boundaries_df, schema.GEOMETRY, what="boundaries table")
        area = pd.Series(
            shapely.area(np.asarray(boundaries_df[schema.GEOMETRY].to_numpy(), dtype=object)),
            index=boundaries_df["cell_id"].astype(str),
        )
    area = area[~area.index.duplicated(keep="first")]
    obs["area_um2"] = area.reindex(obs.index).to_numpy(dtype=float)

    if schema.ASSIGNMENT in result_df.columns:
        a = result_df[schema.ASSIGNMENT].astype(str).to_numpy()[ok]
        has_nuc = np.bincount(c, weights=np.isin(a, ["nucleus", "cytoplasm"]), minlength=n_cells) > 0
    else:
        has_nuc = np.ones(n_cells, dtype=bool)
    obs["kind"] = pd.Categorical(
        np.where(has_nuc, "nucleus", "fragment"), categories=["nucleus", "fragment"]
    )

    if reference_column is not None and reference_column in result_df.columns and reference_column != cell_col:
        rc, rlabels = factorize_cells(result_df[reference_column])
        r = rc[ok]
        has = r >= 0
        ref_id = np.full(n_cells, schema.UNASSIGNED, dtype=object)
        ref_n = np.zeros(n_cells, dtype=np.int64)
        if has.any():
            from segger.validation.metrics import _plurality

            best, best_n = _plurality(c[has], r[has], n_cells)
            hit = best >= 0
            ref_id[hit] = rlabels[best[hit]]
            ref_n = best_n
        obs["ref_cell_id"] = ref_id
        obs["ref_overlap"] = ref_n / denom

    var = pd.DataFrame(index=pd.Index(genes.astype(str).astype(object), name="gene", dtype=object))
    var["n_cells"] = np.diff(X.tocsc().indptr).astype(np.int64)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.obsm["spatial"] = np.column_stack([cx, cy]).astype(np.float64)
    return adata


def write_anndata(adata, path: str | os.PathLike, *, compression: str | None = None) -> Path:
    """Write ``adata`` as ``.h5ad`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression=compression)
    return Path(path)


# --------------------------------------------------------------------------------------------
# run JSON
# --------------------------------------------------------------------------------------------


def package_versions(extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """Versions of python, torch, torch_geometric, pytorch_lightning, numpy, pandas, segger.

    Read from package metadata (nothing is imported); ``None`` for a package not installed.
    """
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in RUN_JSON_VERSION_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    if out.get("segger") is None:
        try:
            import segger

            out["segger"] = getattr(segger, "__version__", None)
        except Exception:  # pragma: no cover
            pass
    if extra:
        out.update({str(k): (None if v is None else str(v)) for k, v in extra.items()})
    return out


def _input_record(p: str | os.PathLike) -> dict[str, Any]:
    """Provenance of one input: a file read is hashed (streamed, timed); a folder (e.g. a SpatialData
    store) is listed with sizes only — segger reads a few of its files, hashing tens of GB is not due."""
    import time

    path = Path(p)
    rec: dict[str, Any] = {"path": str(path.resolve())}
    if path.is_file():
        rec["size_bytes"] = path.stat().st_size
        t = time.perf_counter()
        rec["sha256"] = file_sha256(path)
        rec["hash_seconds"] = round(time.perf_counter() - t, 3)
    elif path.is_dir():
        files = sorted(q for q in path.rglob("*") if q.is_file())
        rec["files"] = [{"path": str(q.relative_to(path)), "size_bytes": q.stat().st_size} for q in files]
        rec["sha256"] = None  # a folder: listed, not hashed
    else:
        rec["exists"] = False
        rec["sha256"] = None
    return rec


def write_run_json(
    path: str | os.PathLike,
    *,
    parameters: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike],
    timings: Mapping[str, float],
    versions: Mapping[str, str | None] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the provenance record of a run as JSON atomically; return ``path``.

    Keys: ``created_utc`` (ISO-8601, UTC), ``command`` (``sys.argv``), ``parameters`` (as
    given; dataclasses/paths/numpy converted), ``inputs`` (per input: absolute ``path``,
    ``size_bytes``, streaming ``sha256``; a directory lists its ``files`` with a checksum each; a
    missing path is recorded with ``exists: false``), ``timings`` (seconds, under the caller's
    keys, e.g. read / graph / train / predict / export; ``total_s`` is their sum),
    ``versions`` (:func:`package_versions`, updated by ``versions``), ``platform``, ``extra``.
    """
    t = {str(k): float(v) for k, v in timings.items()}
    record = {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "parameters": dict(parameters),
        "inputs": [_input_record(p) for p in inputs],
        "timings": t,
        "total_s": float(sum(t.values())),
        "versions": package_versions(versions),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "extra": dict(extra) if extra else {},
    }
    return write_json_atomic(path, record)


def load_output(folder, command: str = "export"):
    """``(result_df, boundaries_df | None, run_record | None)`` of a complete segger output folder
    (the layout of :mod:`segger.utils.outdir`; :func:`~segger.utils.outdir.require_complete` first,
    so never a half-written folder). ``command`` names the reader in the error message."""
    from segger.utils.outdir import BOUNDARIES_FILE, LEGACY_BOUNDARIES_FILE, RUN_MARKER, TRANSCRIPTS_FILE, \
        require_complete

    out = require_complete(folder, command)
    result = read_transcripts_output(out / TRANSCRIPTS_FILE)
    bounds = None
    for name in (BOUNDARIES_FILE, LEGACY_BOUNDARIES_FILE):
        if (out / name).is_file():
            bounds = read_boundaries(out / name)
            break
    run = None
    try:
        run = json.loads((out / RUN_MARKER).read_text())
    except (OSError, ValueError):
        run = None
    return result, bounds, run
