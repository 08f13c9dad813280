"""Segmentation results → inputs of ``xeniumranger import-segmentation`` (10x Xenium Ranger ≥ 2.0).

Xenium Ranger re-runs the Xenium Onboard Analysis outputs (cell-feature matrix, cells, boundaries,
``experiment.xenium`` for Xenium Explorer) with an imported segmentation. A transcript-based
segmentation such as Segger's is imported the way Baysor's is, from two files::

    xeniumranger import-segmentation --id=segger_run --xenium-bundle=/path/to/xenium/outs \\
        --transcript-assignment=segger_transcript_assignment.csv \\
        --viz-polygons=segger_viz_polygons.geojson --units=microns

The files follow the Baysor "legacy" output layout that Xenium Ranger reads:

**transcript assignment CSV** (Baysor ``segmentation.csv``): one row per transcript Segger kept,
columns in this order: ``transcript_id`` (the Xenium molecule id of the bundle's
``transcripts.parquet``, unsigned integer), ``cell`` (the cell name ``"<prefix>-<N>"`` with N a
positive integer, empty for an unassigned transcript), ``gene``, ``x``, ``y``, ``z`` (µm),
``assignment_confidence`` (the Segger link score), ``is_noise`` (``true`` exactly when ``cell``
is empty; last column, as Baysor writes it). Transcripts the qv / control-probe filter removed
are not listed; Xenium Ranger leaves them unassigned.

**viz polygons GeoJSON**: one polygon per cell of the CSV, and no other, in µm (hence
``--units=microns``), closed exterior rings oriented counter-clockwise (RFC 7946), no holes, one
part each. Two layouts:

* ``"legacy"`` (default; Baysor ``GeometryCollectionLegacy``, read by Xenium Ranger 2.x–3.x):
  ``{"type": "GeometryCollection", "geometries": [{"type": "Polygon", "coordinates": [ring],
  "cell": N}, ...]}`` where the integer ``cell`` is the N of the CSV's ``"<prefix>-<N>"``;
* ``"feature-collection"`` (Baysor ≥ 0.7 default, Xenium Ranger ≥ 4.0):
  ``{"type": "FeatureCollection", "features": [{"type": "Feature", "id": "<prefix>-<N>",
  "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"cell_id": "<prefix>-<N>"}}]}``.

Cell numbers N are 1..C in the sorted order of the Segger cell ids; ``segger_cell_id_map.csv``
maps each ``cell`` back to its ``segger_cell_id``. Xenium Ranger must be given the **original,
uncropped** Xenium bundle whose ``transcript_id`` values the result holds.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from segger import schema
from segger.errors import SeggerInputError

__all__ = [
    "ASSIGNMENT_COLUMNS",
    "POLYGON_FORMATS",
    "XeniumRangerExport",
    "import_segmentation_command",
    "xenium_ranger_tables",
    "write_xenium_ranger",
]

ASSIGNMENT_COLUMNS = ["transcript_id", "cell", "gene", "x", "y", "z", "assignment_confidence", "is_noise"]
POLYGON_FORMATS = ("legacy", "feature-collection")
ASSIGNMENT_FILE = "segger_transcript_assignment.csv"
POLYGONS_FILE = "segger_viz_polygons.geojson"
ID_MAP_FILE = "segger_cell_id_map.csv"
COORD_DECIMALS = 4  # 0.1 nm: far below the 0.2 µm pixel, keeps the file small


@dataclass
class XeniumRangerExport:
    """Paths written by :func:`write_xenium_ranger` and the command that imports them."""

    transcript_assignment: Path
    viz_polygons: Path
    id_map: Path
    n_cells: int
    n_transcripts: int
    command: str


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix or not all(c.isalnum() or c == "_" for c in prefix):
        raise SeggerInputError(f"cell_prefix must be letters, digits or '_' (no '-'), got {prefix!r}")
    return prefix


def _transcript_ids(result_df: pd.DataFrame) -> np.ndarray:
    if schema.TX_ID not in result_df.columns:
        raise SeggerInputError(
            "the result has no transcript_id column; Xenium Ranger matches transcripts by the Xenium "
            "molecule id: segment the Xenium output folder itself"
        )
    tid = result_df[schema.TX_ID]
    if not pd.api.types.is_integer_dtype(tid.dtype):
        raise SeggerInputError("transcript_id must be integer Xenium molecule ids for Xenium Ranger")
    ids = tid.to_numpy()
    if len(ids) and ids.min() < 0:
        raise SeggerInputError("transcript_id has negative values; Xenium molecule ids are unsigned")
    if pd.Index(ids).has_duplicates:
        raise SeggerInputError("transcript_id has duplicates; Xenium molecule ids are unique")
    return ids.astype(np.uint64)


def _ring_coords(poly) -> list[list[float]]:
    ring = np.round(shapely.get_coordinates(poly.exterior), COORD_DECIMALS)
    if not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    return ring.tolist()


def xenium_ranger_tables(
    result_df: pd.DataFrame,
    boundaries_df: pd.DataFrame | None = None,
    *,
    cell_prefix: str = "segger",
    min_transcripts: int = 1,
    polygon_format: str = "legacy",
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """``(assignment_table, polygons_geojson, id_map)`` in the layouts of the module docstring.

    Cells with fewer than ``min_transcripts`` transcripts are written as noise. Every listed cell
    gets a polygon: ``boundaries_df`` where it has one, else an outline of its transcripts
    (:func:`segger.export.spatialdata.boundaries_for_all_cells`).
    """
    from segger.export.spatialdata import boundaries_for_all_cells
    from segger.export.writers import _require, _segger_ids

    _require(result_df, schema.SEGGER_CELL_ID, schema.X, schema.Y, schema.GENE)
    prefix = _check_prefix(cell_prefix)
    if polygon_format not in POLYGON_FORMATS:
        raise SeggerInputError(f"polygon_format must be one of {POLYGON_FORMATS}, not {polygon_format!r}")
    tid = _transcript_ids(result_df)
    seg = _segger_ids(result_df, schema.SEGGER_CELL_ID).to_numpy(dtype=object)
    assigned = seg != schema.UNASSIGNED
    codes, cells = pd.factorize(seg[assigned], sort=True)
    counts = np.bincount(codes, minlength=len(cells))
    keep = counts >= max(1, int(min_transcripts))
    number = np.zeros(len(cells), dtype=np.int64)
    number[keep] = np.arange(1, int(keep.sum()) + 1)
    kept_cells = np.asarray(cells, dtype=object)[keep]
    names = np.array([f"{prefix}-{n}" for n in number[keep]], dtype=object)  # one per cell

    name_of_row = np.full(len(result_df), "", dtype=object)
    row_num = np.zeros(len(result_df), dtype=np.int64)
    row_num[assigned] = number[codes]
    has = row_num > 0
    cell_names = np.empty(int(number.max()) + 1 if len(number) else 1, dtype=object)
    cell_names[0] = ""
    cell_names[number[keep]] = names
    name_of_row[has] = cell_names[row_num[has]]

    z = result_df[schema.Z].to_numpy(dtype=float) if schema.Z in result_df.columns else np.zeros(len(result_df))
    score = (pd.to_numeric(result_df[schema.SCORE], errors="coerce").to_numpy(dtype=float)
             if schema.SCORE in result_df.columns else np.where(has, 1.0, 0.0))
    table = pd.DataFrame({
        "transcript_id": tid,
        "cell": name_of_row,
        "gene": result_df[schema.GENE].astype(str).to_numpy(dtype=object),
        "x": result_df[schema.X].to_numpy(dtype=float),
        "y": result_df[schema.Y].to_numpy(dtype=float),
        "z": z,
        "assignment_confidence": np.where(has, np.nan_to_num(score, nan=0.0), 0.0),
        "is_noise": ~has,
    })

    row_keep = np.zeros(len(result_df), dtype=bool)
    row_keep[assigned] = keep[codes]
    bounds = boundaries_for_all_cells(result_df[row_keep], boundaries_df)
    geom_of = dict(zip(bounds["cell_id"].astype(str), bounds[schema.GEOMETRY]))
    polys = np.array([geom_of[str(c)] for c in kept_cells], dtype=object)
    if len(polys):
        polys = shapely.orient_polygons(polys, exterior_cw=False)  # RFC 7946: counter-clockwise
    if polygon_format == "legacy":
        geojson = {
            "type": "GeometryCollection",
            "geometries": [
                {"type": "Polygon", "coordinates": [_ring_coords(p)], "cell": int(n)}
                for p, n in zip(polys, number[keep])
            ],
        }
    else:
        geojson = {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "id": name, "geometry": {"type": "Polygon", "coordinates": [_ring_coords(p)]},
                 "properties": {"cell_id": name}}
                for p, name in zip(polys, names)
            ],
        }
    id_map = pd.DataFrame({"cell": names, schema.SEGGER_CELL_ID: kept_cells.astype(str),
                           "n_transcripts": counts[keep].astype(np.int64)})
    return table, geojson, id_map


def import_segmentation_command(
    xenium_bundle: str | os.PathLike | None,
    transcript_assignment: str | os.PathLike,
    viz_polygons: str | os.PathLike,
    *,
    run_id: str = "segger",
    localcores: int | None = None,
    localmem: int | None = None,
) -> str:
    """The ``xeniumranger import-segmentation`` command line for these files (paths quoted)."""
    bundle = str(xenium_bundle) if xenium_bundle else "/path/to/original/xenium/outs"
    parts = [
        "xeniumranger", "import-segmentation",
        f"--id={run_id}",
        f"--xenium-bundle={bundle}",
        f"--transcript-assignment={Path(transcript_assignment).resolve()}",
        f"--viz-polygons={Path(viz_polygons).resolve()}",
        "--units=microns",
    ]
    if localcores:
        parts.append(f"--localcores={int(localcores)}")
    if localmem:
        parts.append(f"--localmem={int(localmem)}")
    return " ".join(shlex.quote(p) for p in parts)


def write_xenium_ranger(
    result_df: pd.DataFrame,
    output_dir: str | os.PathLike,
    *,
    boundaries: pd.DataFrame | None = None,
    xenium_bundle: str | os.PathLike | None = None,
    run_id: str = "segger",
    cell_prefix: str = "segger",
    min_transcripts: int = 1,
    polygon_format: str = "legacy",
) -> XeniumRangerExport:
    """Write the transcript-assignment CSV, the viz-polygons GeoJSON and the id map into ``output_dir``.

    Files are written atomically (:mod:`segger.utils.atomic`). ``xenium_bundle`` is only used
    for the returned command (``XeniumRangerExport.command``).
    """
    from segger.utils.atomic import atomic_path

    table, geojson, id_map = xenium_ranger_tables(
        result_df, boundaries, cell_prefix=cell_prefix, min_transcripts=min_transcripts,
        polygon_format=polygon_format,
    )
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SeggerInputError(f"output {out} exists and is not a folder; choose a folder for the Xenium Ranger files")
    out.mkdir(parents=True, exist_ok=True)
    csv_path, geo_path, map_path = out / ASSIGNMENT_FILE, out / POLYGONS_FILE, out / ID_MAP_FILE
    with atomic_path(csv_path) as tmp:
        t = table.copy()
        t["is_noise"] = np.where(t["is_noise"].to_numpy(), "true", "false")
        t.to_csv(tmp, index=False, float_format="%.4f")
    with atomic_path(geo_path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(geojson, fh, separators=(",", ":"))
    with atomic_path(map_path) as tmp:
        id_map.to_csv(tmp, index=False)
    cmd = import_segmentation_command(xenium_bundle, csv_path, geo_path, run_id=run_id)
    return XeniumRangerExport(csv_path, geo_path, map_path, int(len(id_map)), int(len(table)), cmd)
