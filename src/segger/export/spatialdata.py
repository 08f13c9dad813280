"""Segmentation results → a SpatialData zarr store (optional extra ``spatialdata``).

:func:`write_spatialdata` writes a **new** store: either a copy of the input store (every
image, labels, points, shapes and table element kept, the transcripts points element extended)
or, without an input store, a store built from the result table alone. The input store is never
modified: the output must be another path, and it is written to a temporary folder beside it and
renamed into place only when complete.

What is added:

* on the transcripts points element, per transcript: ``segger_cell_id`` (str, ``UNASSIGNED``
  when none), ``score`` (float32, 0 when none) and ``assignment`` (categorical:
  nucleus / cytoplasm / fragment / none, and ``filtered`` for transcripts removed by the qv or
  control-probe filter before segmentation). Rows are matched on ``transcript_id`` when the
  element has that column, else on row order;
* a shapes element ``segger_boundaries``: one polygon per Segger cell (index = an integer
  instance id ``0..n-1``, named ``instance_id``; columns ``cell_id`` (the Segger cell id, str),
  ``area_um2``, ``n_transcripts``, ``centroid_x``, ``centroid_y``), every assigned cell
  included (cells too small for a hull get a buffered outline), with the transformations of the
  points element so it overlays the transcripts and images in every coordinate system;
* a table ``segger_table``: cells × genes AnnData from :func:`segger.export.build_anndata`
  annotating ``segger_boundaries`` (``region_key="region"``, ``instance_key="instance_id"``; the
  Segger cell id is ``obs["cell_id"]`` and the obs names), counts in ``X``, ``obsm["spatial"]`` in
  µm. Integer instance ids are what every SpatialData reader handles (napari-spatialdata 0.7
  cannot load shapes indexed by strings).

Coordinates: the result table is in µm; polygons are written in the points element's intrinsic
frame, i.e. divided by ``um_per_unit`` (1.0 for spatialdata-io Xenium / MERSCOPE stores).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from segger import schema
from segger.errors import SeggerInputError

__all__ = [
    "SEGGER_SHAPES_KEY",
    "SEGGER_TABLE_KEY",
    "boundaries_for_all_cells",
    "result_columns_for_points",
    "write_spatialdata",
]

SEGGER_SHAPES_KEY = "segger_boundaries"
#: the integer instance id linking ``segger_table`` rows to ``segger_boundaries`` outlines
INSTANCE_KEY = "instance_id"
SEGGER_TABLE_KEY = "segger_table"
FILTERED = "filtered"


def boundaries_for_all_cells(result_df: pd.DataFrame, boundaries_df: pd.DataFrame | None = None,
                             *, method: str = "smooth") -> pd.DataFrame:
    """A :func:`~segger.export.cell_boundaries` table with one valid polygon for *every* assigned cell.

    ``boundaries_df`` (e.g. ``segger_boundaries.parquet``, which skips cells with < 3
    transcripts) is kept as given; cells it lacks get an outline from
    ``cell_boundaries(..., min_transcripts=1)`` (buffered when degenerate). Cells the result no
    longer holds are dropped. Sorted by ``cell_id``.
    """
    from segger.export.writers import _segger_ids, cell_boundaries

    ids = _segger_ids(result_df, schema.SEGGER_CELL_ID)
    cells = pd.unique(ids[ids != schema.UNASSIGNED])
    if boundaries_df is None or len(boundaries_df) == 0:
        out = cell_boundaries(result_df, method=method, min_transcripts=1)
    else:
        b = boundaries_df.copy()
        b["cell_id"] = b["cell_id"].astype(str)
        b = b[b["cell_id"].isin(set(cells))]
        missing = np.setdiff1d(np.asarray(cells, dtype=object).astype(str), b["cell_id"].to_numpy(dtype=str))
        if len(missing):
            sub = result_df[ids.isin(set(missing)).to_numpy()]
            extra = cell_boundaries(sub, method=method, min_transcripts=1)
            b = pd.concat([b, extra], ignore_index=True)
        out = b
    if "area_um2" not in out.columns:
        out["area_um2"] = shapely.area(out[schema.GEOMETRY].to_numpy(dtype=object))
    return out.sort_values("cell_id", kind="stable").reset_index(drop=True)


def result_columns_for_points(result_df: pd.DataFrame, n_rows: int,
                              transcript_ids: np.ndarray | None) -> pd.DataFrame:
    """``segger_cell_id``, ``score``, ``assignment`` aligned to ``n_rows`` rows of a points element.

    Rows are matched on ``transcript_ids`` (the element's ids, in its row order) or, when None,
    on the result's ``transcript_id`` read as a row number (what :func:`read_spatialdata` gives
    an element without ids). Rows the result lacks (filtered out before segmentation) get
    ``UNASSIGNED``, score 0 and assignment ``filtered``.
    """
    from segger.export.writers import _segger_ids

    if schema.TX_ID not in result_df.columns:
        raise SeggerInputError(
            "result table has no transcript_id column, so it cannot be matched to the points element"
        )
    rid = result_df[schema.TX_ID].to_numpy()
    if transcript_ids is None:
        pos = rid.astype(np.int64)
        if len(pos) and (pos.min() < 0 or pos.max() >= n_rows):
            raise SeggerInputError(
                f"result transcript_id values are not row numbers of the points element ({n_rows:,} rows); "
                "the result was not made from this store"
            )
        found = np.ones(len(pos), dtype=bool)
    else:
        index = pd.Index(np.asarray(transcript_ids))
        pos = index.get_indexer(pd.Index(rid.astype(index.dtype, copy=False)))
        found = pos >= 0
        if not found.any():
            raise SeggerInputError(
                "no transcript_id of the result occurs in the points element: the result was not made "
                "from this store"
            )
    seg = np.full(n_rows, schema.UNASSIGNED, dtype=object)
    seg[pos[found]] = _segger_ids(result_df, schema.SEGGER_CELL_ID).to_numpy(dtype=object)[found]
    score = np.zeros(n_rows, dtype=np.float32)
    if schema.SCORE in result_df.columns:
        score[pos[found]] = pd.to_numeric(result_df[schema.SCORE], errors="coerce").to_numpy(
            dtype=np.float32)[found]
    cats = list(schema.ASSIGNMENT_KINDS) + [FILTERED]
    kind = np.full(n_rows, FILTERED, dtype=object)
    if schema.ASSIGNMENT in result_df.columns:
        kind[pos[found]] = result_df[schema.ASSIGNMENT].astype(str).to_numpy(dtype=object)[found]
    else:
        kind[pos[found]] = np.where(seg[pos[found]] == schema.UNASSIGNED, "none", "cytoplasm")
    return pd.DataFrame({
        schema.SEGGER_CELL_ID: seg,
        schema.SCORE: score,
        schema.ASSIGNMENT: pd.Categorical(kind, categories=cats),
    })


def _shapes_element(bounds: pd.DataFrame, transformations: dict, um_per_unit: float):
    import geopandas as gpd
    from spatialdata.models import ShapesModel

    geoms = np.asarray(bounds[schema.GEOMETRY].to_numpy(), dtype=object)
    if um_per_unit != 1.0:
        geoms = shapely.transform(geoms, lambda xy: xy / um_per_unit)
    cols = {"cell_id": bounds["cell_id"].astype(str).to_numpy(dtype=object)}
    cols.update({c: bounds[c].to_numpy() for c in ("area_um2", "n_transcripts", "centroid_x", "centroid_y")
                 if c in bounds.columns})
    gdf = gpd.GeoDataFrame(cols, geometry=list(geoms),
                           index=pd.RangeIndex(len(bounds), name=INSTANCE_KEY))
    return ShapesModel.parse(gdf, transformations=transformations)


def _table(result_df: pd.DataFrame, bounds: pd.DataFrame, reference_column: str | None):
    from spatialdata.models import TableModel

    from segger.export.writers import build_anndata

    ref = reference_column if reference_column and reference_column in result_df.columns else None
    adata = build_anndata(result_df, bounds, reference_column=ref)
    adata.obs.index.name = None
    adata.obs["cell_id"] = adata.obs_names.to_numpy(dtype=object)
    # the instance id of each row's outline in ``segger_boundaries`` (its row in ``bounds``)
    inst = pd.Index(bounds["cell_id"].astype(str).to_numpy(dtype=object)).get_indexer(adata.obs_names)
    if (inst < 0).any():
        raise ValueError(f"{int((inst < 0).sum())} table rows have no outline in {SEGGER_SHAPES_KEY}")
    adata.obs[INSTANCE_KEY] = inst.astype(np.int64)
    adata.obs["region"] = pd.Categorical([SEGGER_SHAPES_KEY] * adata.n_obs, categories=[SEGGER_SHAPES_KEY])
    adata.var.index.name = None
    return TableModel.parse(adata, region=SEGGER_SHAPES_KEY, region_key="region", instance_key=INSTANCE_KEY)


def _points_element(df: pd.DataFrame, *, transformations: dict, feature_key: str | None,
                    instance_key: str | None):
    from spatialdata.models import PointsModel

    coords = {"x": "x", "y": "y"}
    if "z" in df.columns:
        coords["z"] = "z"
    kw: dict[str, Any] = {"coordinates": coords, "transformations": transformations}
    if feature_key and feature_key in df.columns:
        if not isinstance(df[feature_key].dtype, pd.CategoricalDtype):
            df[feature_key] = df[feature_key].astype("category")
        kw["feature_key"] = feature_key
    if instance_key and instance_key in df.columns:
        kw["instance_key"] = instance_key
    return PointsModel.parse(df, **kw)


def _new_points_from_result(result_df: pd.DataFrame, transformations: dict) -> pd.DataFrame:
    from segger.export.writers import _segger_ids

    df = result_df.reset_index(drop=True).copy()
    df[schema.SEGGER_CELL_ID] = _segger_ids(df, schema.SEGGER_CELL_ID).to_numpy(dtype=object)
    if schema.CELL_ID in df.columns:
        df[schema.CELL_ID] = df[schema.CELL_ID].astype(object).where(df[schema.CELL_ID].notna(), schema.UNASSIGNED)
        df[schema.CELL_ID] = df[schema.CELL_ID].astype(str)
    for c in df.columns:  # object columns of mixed types do not go to parquet
        if df[c].dtype == object and c != schema.GEOMETRY:
            df[c] = df[c].astype(str)
    return df


def write_spatialdata(
    result_df: pd.DataFrame,
    output: str | os.PathLike,
    *,
    input: Any = None,
    points: str | None = None,
    boundaries: pd.DataFrame | None = None,
    um_per_unit: float = 1.0,
    reference_column: str | None = schema.CELL_ID,
    boundaries_method: str = "smooth",
    overwrite: bool = False,
) -> Path:
    """Write a Segger result into a new SpatialData zarr store at ``output``; return its path.

    Parameters
    ----------
    result_df : pandas.DataFrame
        The result table (transcripts + ``segger_cell_id`` / ``score`` / ``assignment``).
    output : str or Path
        Path of the store to write (``.zarr``); must not be the input store.
    input : str, Path or SpatialData, optional
        The store the result was made from: all its elements are copied and its transcripts
        points element gets the result columns. ``None``: a new store with a ``transcripts``
        points element built from the result table (µm, identity transformation to ``"global"``).
    points : str, optional
        Name of the input's transcripts points element (default as in
        :func:`~segger.io.spatialdata.read_spatialdata`).
    boundaries : pandas.DataFrame, optional
        Cell outlines (``segger_boundaries.parquet`` as read by
        :func:`~segger.export.read_boundaries`); cells it lacks are outlined here.
    um_per_unit : float
        µm per intrinsic unit of the points element (as given when reading).
    reference_column : str, optional
        Vendor cell id column for the table's ``ref_cell_id`` / ``ref_overlap``.
    boundaries_method : str
        ``"smooth"`` (default), ``"concave"`` or ``"convex"`` outlines for the cells ``boundaries`` lacks
        (:func:`segger.export.cell_boundaries`).
    overwrite : bool
        Replace an existing ``output`` (never the input store).

    Returns
    -------
    Path
        ``output``.
    """
    from segger.io.spatialdata import (
        choose_points_element,
        open_spatialdata,
        points_table,
        require_spatialdata,
    )

    sd = require_spatialdata()
    from spatialdata.transformations import Identity, get_transformation

    if schema.SEGGER_CELL_ID not in result_df.columns:
        raise SeggerInputError("result table lacks 'segger_cell_id': pass the segger result table")
    um = float(um_per_unit)
    if not np.isfinite(um) or um <= 0:
        raise SeggerInputError(f"um_per_unit must be a positive number, got {um_per_unit!r}")
    out = Path(output)
    src_sdata = None
    if input is not None:
        src_sdata, _ = open_spatialdata(input)
        src_path = getattr(src_sdata, "path", None) or (input if isinstance(input, (str, os.PathLike)) else None)
        if src_path is not None and out.resolve() == Path(src_path).resolve():
            raise SeggerInputError(
                f"output {out} is the input store: segger never modifies a store in place; choose another --output"
            )
    if out.exists():
        if not overwrite:
            raise SeggerInputError(f"output {out} already exists; choose a new path or pass overwrite=True (--overwrite)")
        if not (out.is_dir() and ((out / "zarr.json").exists() or (out / ".zgroup").exists())):
            raise SeggerInputError(f"output {out} exists and is not a zarr store; refusing to replace it")

    bounds = boundaries_for_all_cells(result_df, boundaries, method=boundaries_method)

    if src_sdata is not None:
        pname = choose_points_element(src_sdata, points)
        pel = src_sdata.points[pname]
        transformations = get_transformation(pel, get_all=True)
        attrs = dict((getattr(pel, "attrs", {}) or {}).get("spatialdata_attrs", {}) or {})
        df = points_table(src_sdata, pname)
        tid_col = schema.TX_ID if schema.TX_ID in df.columns else None
        cols = result_columns_for_points(result_df, len(df), df[tid_col].to_numpy() if tid_col else None)
        for c in cols.columns:
            df[c] = cols[c].to_numpy()
        new_points = _points_element(df, transformations=transformations,
                                     feature_key=attrs.get("feature_key"), instance_key=attrs.get("instance_key"))
        elements = {g: dict(getattr(src_sdata, g).items()) for g in ("images", "labels", "points", "shapes", "tables")}
        elements["points"][pname] = new_points
    else:
        pname = "transcripts"
        transformations = {"global": Identity()}
        df = _new_points_from_result(result_df, transformations)
        new_points = _points_element(df, transformations=transformations, feature_key=schema.GENE,
                                     instance_key=schema.CELL_ID)
        elements = {"images": {}, "labels": {}, "points": {pname: new_points}, "shapes": {}, "tables": {}}

    elements["shapes"][SEGGER_SHAPES_KEY] = _shapes_element(bounds, transformations, um)
    elements["tables"][SEGGER_TABLE_KEY] = _table(result_df, bounds, reference_column)
    attrs = dict(getattr(src_sdata, "attrs", None) or {}) if src_sdata is not None else None
    sdata = sd.SpatialData(**elements, attrs=attrs)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.segger-tmp-{uuid.uuid4().hex[:8]}"
    old = out.parent / f".{out.name}.segger-old-{uuid.uuid4().hex[:8]}"
    try:
        sdata.write(tmp, update_sdata_path=False)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out
