"""Result tables -> the result Points layer (recoloured in place) and the cell outlines layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

from segger.napari.layers._base import (
    LAYER_CELLS,
    LAYER_TRANSCRIPTS,
    MAX_SHAPES,
    METADATA_KEY,
    POINT_SIZE_UM,
    UNASSIGNED_RGBA,
    UNITS,
    _world_yx,
    colors_by_key,
    hash_colors,
)
from segger.napari.layers.shapes import (
    _largest_polygon,
    fast_triangulation,
    polygons_to_yx,
    rasterize_polygons,
)


# --------------------------------------------------------------------------------------------
# results -> Points (recoloured in place), cells -> Shapes/Labels
# --------------------------------------------------------------------------------------------
def cell_colors_and_ids(ids: Any) -> tuple[np.ndarray, pd.Categorical]:
    """One factorisation of the cell ids → (RGBA per row, ids as a Categorical feature).

    Stable colour per assigned cell, grey when unassigned. Categorical ids keep napari's feature
    table cheap (pandas would otherwise convert a million Python strings to its string dtype).
    """
    codes, uniques = pd.factorize(pd.Series(ids, copy=False), use_na_sentinel=True)
    uniques = pd.Index(uniques).astype(str)
    palette = np.vstack([hash_colors(uniques, 1.0), UNASSIGNED_RGBA[None, :]])
    miss = np.flatnonzero(uniques.isin([S.UNASSIGNED, "", "None", "nan"]))
    palette[miss] = UNASSIGNED_RGBA
    cats = uniques
    if (codes < 0).any():  # missing ids: show them as UNASSIGNED
        if S.UNASSIGNED not in set(cats):
            cats = cats.append(pd.Index([S.UNASSIGNED]))
        un = int(np.flatnonzero(cats == S.UNASSIGNED)[0])
        codes = np.where(codes < 0, un, codes)
    return palette[codes], pd.Categorical.from_codes(codes, categories=cats)


def result_colors(result: pd.DataFrame | pd.Series) -> np.ndarray:
    """RGBA (float32, (N, 4)): stable colour per assigned cell, grey when unassigned."""
    ids = result[S.SEGGER_CELL_ID] if isinstance(result, pd.DataFrame) else result
    return colors_by_key(ids, alpha=1.0, missing=(S.UNASSIGNED, "", None))


def assignment_feature(values: Any) -> pd.Categorical:
    return pd.Categorical(np.asarray(values, dtype=object), categories=list(S.ASSIGNMENT_KINDS))


def result_features(result: pd.DataFrame, cell_ids: pd.Categorical | None = None) -> pd.DataFrame:
    if cell_ids is None:
        cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID])[1]
    feats = {
        S.GENE: result[S.GENE].astype("category").array,
        S.SEGGER_CELL_ID: cell_ids,
        S.SCORE: result[S.SCORE].to_numpy(dtype=np.float32),
        S.ASSIGNMENT: assignment_feature(result[S.ASSIGNMENT]),
    }
    for col in (S.CELL_ID, S.TX_ID, S.QV, S.NUCLEAR, S.Z):
        if col in result.columns:
            feats[col] = result[col].to_numpy()
    return pd.DataFrame(feats, index=pd.RangeIndex(len(result)))


def result_to_points(
    result: pd.DataFrame, *, name: str = LAYER_TRANSCRIPTS, size: float = POINT_SIZE_UM,
    metadata: dict | None = None,
) -> tuple:
    """Result table -> Points coloured by assigned cell (direct RGBA array, unassigned grey)."""
    missing = [c for c in (S.X, S.Y, S.GENE, S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT) if c not in result]
    if missing:
        raise SeggerInputError(f"result table has no column(s) {missing}; run Predict first")
    data = np.column_stack(
        [result[S.Y].to_numpy(dtype=np.float32), result[S.X].to_numpy(dtype=np.float32)]
    )
    meta = {METADATA_KEY: {"kind": "result", "gene_feature": S.GENE}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    colors, cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID])
    kwargs = dict(
        name=name,
        features=result_features(result, cell_ids),
        face_color=colors,
        border_width=0,
        size=size,
        units=UNITS,
        metadata=meta,
    )
    return (data, kwargs, "points")


def result_from_points(data: np.ndarray, meta: dict) -> pd.DataFrame:
    """Result table back from a result Points layer's (data, meta) as napari hands to writers."""

    class _L:  # minimal layer-like view of writer inputs
        pass

    lay = _L()
    lay.name = meta.get("name", "layer")
    lay.scale = meta.get("scale", (1.0, 1.0))
    lay.translate = meta.get("translate", (0.0, 0.0))
    lay.rotate = meta.get("rotate", np.eye(2))
    lay.shear = meta.get("shear", np.zeros(1))
    feats = meta.get("features")
    if feats is None or S.SEGGER_CELL_ID not in getattr(feats, "columns", []):
        raise SeggerInputError(
            f"layer '{lay.name}' has no '{S.SEGGER_CELL_ID}' feature; save the "
            f"'{LAYER_TRANSCRIPTS}' layer made by Predict"
        )
    yx = _world_yx(lay, np.asarray(data))
    out = pd.DataFrame(
        {
            S.TX_ID: feats[S.TX_ID].to_numpy() if S.TX_ID in feats else np.arange(len(yx)),
            S.X: yx[:, 1],
            S.Y: yx[:, 0],
            S.Z: feats[S.Z].to_numpy(dtype=float) if S.Z in feats else np.zeros(len(yx)),
            S.GENE: feats[S.GENE].astype(str).to_numpy(dtype=object),
            S.QV: feats[S.QV].to_numpy(dtype=float) if S.QV in feats else np.full(len(yx), np.nan),
            S.NUCLEAR: (
                feats[S.NUCLEAR].to_numpy(dtype=bool) if S.NUCLEAR in feats else np.zeros(len(yx), bool)
            ),
            S.CELL_ID: feats[S.CELL_ID].to_numpy() if S.CELL_ID in feats else None,
            S.SEGGER_CELL_ID: feats[S.SEGGER_CELL_ID].astype(str).to_numpy(dtype=object),
            S.SCORE: feats[S.SCORE].to_numpy(dtype=np.float32),
            S.ASSIGNMENT: feats[S.ASSIGNMENT].astype(str).to_numpy(dtype=object),
        }
    )
    return out


#: 8 distinguishable outline colours (Okabe–Ito, black swapped for near-white: the canvas is dark)
OUTLINE_PALETTE = np.array([
    [0.902, 0.624, 0.000], [0.337, 0.706, 0.914], [0.000, 0.620, 0.451], [0.941, 0.894, 0.259],
    [0.000, 0.447, 0.698], [0.835, 0.369, 0.000], [0.800, 0.475, 0.655], [0.941, 0.941, 0.941],
], dtype=np.float32)
#: face alpha of the optional translucent fill
FILL_ALPHA = 0.25


def outline_colors(geoms: Any, n_colors: int = len(OUTLINE_PALETTE)) -> np.ndarray:
    """RGBA edge colour per outline from :data:`OUTLINE_PALETTE`, chosen by
    :func:`segger.export.outlines.neighbour_colors` so that touching outlines never share one."""
    from segger.export.outlines import neighbour_colors

    geoms = np.asarray(list(geoms), dtype=object)
    if len(geoms) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    idx = neighbour_colors(geoms, n_colors=n_colors)
    out = np.ones((len(geoms), 4), dtype=np.float32)
    out[:, :3] = OUTLINE_PALETTE[np.asarray(idx) % len(OUTLINE_PALETTE)]
    return out


def outline_face_colors(edge: np.ndarray, fill: bool) -> np.ndarray:
    """Face colours of outlines: the edge colour at :data:`FILL_ALPHA` when ``fill``, else clear."""
    edge = np.asarray(edge, dtype=np.float32).reshape(-1, 4)
    face = edge.copy()
    face[:, 3] = FILL_ALPHA if fill else 0.0
    if not fill:
        face[:, :3] = 0.0
    return face


def cells_to_layer(
    boundaries: pd.DataFrame,
    *,
    name: str = LAYER_CELLS,
    max_shapes: int = MAX_SHAPES,
    id_column: str = "cell_id",
    metadata: dict | None = None,
    colors: str = "neighbour",
    fill: bool = False,
) -> tuple:
    """Cell outlines (``cell_boundaries(result)``, fragments included) -> Shapes (≤ max_shapes) or a
    Labels raster beyond that. Extra numeric columns become features.

    ``colors="neighbour"`` (default): edges from an 8-colour palette such that touching cells never
    share a colour (:func:`outline_colors`); ``"hash"``: the cell's stable hashed colour (as its
    transcripts). ``fill``: a translucent face in the edge colour."""
    if colors not in ("neighbour", "hash"):
        raise SeggerInputError(f"outline colours {colors!r}: choose 'neighbour' or 'hash'")
    if S.GEOMETRY not in boundaries.columns:
        raise SeggerInputError("cell boundaries have no 'geometry' column")
    if id_column not in boundaries.columns:
        id_column = next(
            (c for c in (S.SEGGER_CELL_ID, "cell_id", S.BD_ID) if c in boundaries.columns), None
        )
    ids = (
        boundaries[id_column].astype(str).to_numpy()
        if id_column
        else np.arange(len(boundaries)).astype(str)
    )
    extra = [
        c for c in boundaries.columns
        if c not in (S.GEOMETRY, id_column) and pd.api.types.is_numeric_dtype(boundaries[c])
    ]
    meta = {METADATA_KEY: {"kind": "cells", "n_cells": int(len(boundaries)), "colors": colors}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    geoms = boundaries[S.GEOMETRY].to_numpy()
    if len(boundaries) > max_shapes:
        labels, scale, translate = rasterize_polygons(geoms)
        feats = pd.DataFrame({"index": np.arange(len(ids) + 1), "cell_id": np.r_[[""], ids]})
        for c in extra:
            feats[c] = np.r_[[np.nan], boundaries[c].to_numpy(dtype=float)]
        kwargs = dict(
            name=name, scale=scale, translate=translate, features=feats, metadata=meta,
            units=UNITS, opacity=0.6,
        )
        return (labels, kwargs, "labels")
    fast_triangulation()
    keep = np.array([_largest_polygon(g) is not None for g in geoms], dtype=bool)
    polys = polygons_to_yx(geoms)
    feats = pd.DataFrame({"cell_id": ids[keep]})
    for c in extra:
        feats[c] = boundaries[c].to_numpy()[keep]
    edge = outline_colors(geoms[keep]) if colors == "neighbour" else hash_colors(ids[keep])
    kwargs = dict(
        name=name,
        shape_type="polygon",
        edge_color=edge,
        face_color=outline_face_colors(edge, fill),
        edge_width=0.5,
        features=feats,
        units=UNITS,
        metadata=meta,
    )
    return (polys, kwargs, "shapes")
