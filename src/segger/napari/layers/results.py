"""Result tables -> the result Points layer (recoloured in place) and the cell outlines layer."""

from __future__ import annotations

from typing import Any, Mapping

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
def cell_palette(categories: Any, outline_index: Mapping[str, int] | None = None) -> np.ndarray:
    """RGBA (float32, (K, 4)) per cell id: the cell's outline colour (:data:`OUTLINE_PALETTE`
    entry ``outline_index[id]``, so transcripts match their outline), else its stable hashed
    colour; grey for unassigned ids. The one rule for a cell's colour in every layer."""
    cats = pd.Index(categories).astype(str)
    palette = hash_colors(cats, 1.0)
    if outline_index:
        idx = pd.Series(outline_index, dtype="int64")
        pos = idx.reindex(cats).to_numpy(dtype=float)
        has = np.isfinite(pos)
        palette[has, :3] = OUTLINE_PALETTE[pos[has].astype(np.int64) % len(OUTLINE_PALETTE)]
    palette[np.asarray(cats.isin([S.UNASSIGNED, "", "None", "nan"]))] = UNASSIGNED_RGBA
    return palette


def cell_colors_and_ids(ids: Any, outline_index: Mapping[str, int] | None = None, *,
                        codes: Any = None) -> tuple[np.ndarray, pd.Categorical]:
    """One factorisation of the cell ids → (RGBA per row, ids as a Categorical feature).

    Colour per cell from :func:`cell_palette`. Categorical ids keep napari's feature table cheap
    (pandas would otherwise convert a million Python strings to its string dtype). ``codes``
    (:class:`segger.prediction.AssignCodes` of the same assignment) skips the factorisation: a
    re-threshold at a million transcripts costs a palette look-up instead of hashing every id.
    """
    if codes is not None:
        cats = pd.Index(codes.categories).astype(str)
        return cell_palette(cats, outline_index)[codes.cell_codes], codes.cell_id_categorical()
    codes_, uniques = pd.factorize(pd.Series(ids, copy=False), use_na_sentinel=True)
    uniques = pd.Index(uniques).astype(str)
    palette = np.vstack([cell_palette(uniques, outline_index), UNASSIGNED_RGBA[None, :]])
    cats = uniques
    if (codes_ < 0).any():  # missing ids: show them as UNASSIGNED
        if S.UNASSIGNED not in set(cats):
            cats = cats.append(pd.Index([S.UNASSIGNED]))
        un = int(np.flatnonzero(cats == S.UNASSIGNED)[0])
        codes_ = np.where(codes_ < 0, un, codes_)
    return palette[codes_], pd.Categorical.from_codes(codes_, categories=cats)


def result_colors(result: pd.DataFrame | pd.Series) -> np.ndarray:
    """RGBA (float32, (N, 4)): stable colour per assigned cell, grey when unassigned."""
    ids = result[S.SEGGER_CELL_ID] if isinstance(result, pd.DataFrame) else result
    return cell_colors_and_ids(ids)[0]


def assignment_feature(values: Any) -> pd.Categorical:
    return pd.Categorical(np.asarray(values, dtype=object), categories=list(S.ASSIGNMENT_KINDS))


def result_features(result: pd.DataFrame, cell_ids: pd.Categorical | None = None,
                    codes: Any = None) -> pd.DataFrame:
    if cell_ids is None:
        cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID], codes=codes)[1]
    feats = {
        S.GENE: result[S.GENE].astype("category").array,
        S.SEGGER_CELL_ID: cell_ids,
        S.SCORE: result[S.SCORE].to_numpy(dtype=np.float32),
        S.ASSIGNMENT: assignment_feature(result[S.ASSIGNMENT]) if codes is None else codes.kind_categorical(),
    }
    for col in (S.CELL_ID, S.TX_ID, S.QV, S.NUCLEAR, S.Z):
        if col in result.columns:
            feats[col] = result[col].to_numpy()
    return pd.DataFrame(feats, index=pd.RangeIndex(len(result)))


def result_to_points(
    result: pd.DataFrame, *, name: str = LAYER_TRANSCRIPTS, size: float = POINT_SIZE_UM,
    metadata: dict | None = None, outline_index: Mapping[str, int] | None = None, codes: Any = None,
) -> tuple:
    """Result table -> Points coloured by assigned cell (direct RGBA array, unassigned grey;
    ``outline_index``/``codes`` as in :func:`cell_colors_and_ids`)."""
    missing = [c for c in (S.X, S.Y, S.GENE, S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT) if c not in result]
    if missing:
        raise SeggerInputError(f"result table has no column(s) {missing}; run Predict first")
    data = np.column_stack(
        [result[S.Y].to_numpy(dtype=np.float32), result[S.X].to_numpy(dtype=np.float32)]
    )
    meta = {METADATA_KEY: {"kind": "result", "gene_feature": S.GENE}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    colors, cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID], outline_index, codes=codes)
    kwargs = dict(
        name=name,
        features=result_features(result, cell_ids, codes),
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


def outline_colors(geoms: Any, n_colors: int = len(OUTLINE_PALETTE), prefer: Any = None,
                   return_index: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """RGBA edge colour per outline from :data:`OUTLINE_PALETTE`, chosen by
    :func:`segger.export.outlines.neighbour_colors` so that touching outlines never share one.
    ``prefer``: palette index per outline to keep where it does not clash (-1: none), so a cell
    keeps its colour across re-thresholds; ``return_index`` also returns the palette indices."""
    from segger.export.outlines import neighbour_colors

    geoms = np.asarray(list(geoms), dtype=object)
    if len(geoms) == 0:
        empty = np.zeros((0, 4), dtype=np.float32)
        return (empty, np.zeros(0, dtype=np.int64)) if return_index else empty
    idx = np.asarray(neighbour_colors(geoms, n_colors=n_colors, prefer=prefer)) % len(OUTLINE_PALETTE)
    out = np.ones((len(geoms), 4), dtype=np.float32)
    out[:, :3] = OUTLINE_PALETTE[idx]
    return (out, idx) if return_index else out


def outline_index(layer: Any) -> dict[str, int]:
    """``{cell id: palette index}`` of a cells Shapes layer made by :func:`cells_to_layer`
    (empty for other layers, hashed colours or a Labels raster)."""
    feats = getattr(layer, "features", None)
    if feats is None or "color_index" not in feats.columns or "cell_id" not in feats.columns:
        return {}
    return dict(zip(feats["cell_id"].astype(str).tolist(), feats["color_index"].astype(int).tolist()))


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
    prefer: Mapping[str, int] | None = None,
) -> tuple:
    """Cell outlines (``cell_boundaries(result)``, fragments included) -> Shapes (≤ max_shapes) or a
    Labels raster beyond that. Extra numeric columns become features.

    ``colors="neighbour"`` (default): edges from an 8-colour palette such that touching cells never
    share a colour (:func:`outline_colors`); ``"hash"``: the cell's stable hashed colour (as its
    transcripts). ``fill``: a translucent face in the edge colour. ``prefer``: the previous
    palette index per cell id (:func:`outline_index`), kept where it still does not clash. The
    Shapes layer's ``color_index`` feature holds each outline's palette index, which
    :func:`cell_palette` gives the cell's transcripts too."""
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
    meta = {METADATA_KEY: {"kind": "cells", "n_cells": int(len(boundaries)), "colors": colors, "fill": bool(fill)}}
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
    if colors == "neighbour":
        pref = None
        if prefer:
            pref = pd.Series(prefer, dtype="int64").reindex(ids[keep]).fillna(-1).to_numpy(dtype=np.int64)
        edge, idx = outline_colors(geoms[keep], prefer=pref, return_index=True)
        feats["color_index"] = idx
    else:
        edge = hash_colors(ids[keep])
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
