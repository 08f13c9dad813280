"""Pure conversions between Segger's core tables and napari layer data (no viewer, no Qt).

Coordinates: every layer made here has its data in micrometres (world unit = µm, ``scale`` 1,
``units`` micrometer), in napari's (y, x) order. The functions that turn layers back into core
tables honour the layer's ``scale`` and ``translate`` (e.g. a Labels layer from Cellpose run on a
DAPI image with a 0.2125 µm pixel size), so world coordinates are taken to be micrometres.

Colours are computed here as one float32 RGBA array (never through napari's feature colour
mapping, which is 10–35x slower at a million points), with stable hash colours per gene / per
cell id so that a cell keeps its colour across re-runs and re-thresholds.

Every function returns a napari ``LayerDataTuple`` ``(data, kwargs, layer_type)`` or a core table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.corrections.edits import (  # noqa: F401 - the edit rules live in the core; re-exported
    assignment_kinds,
    changed_transcripts,
    split_by_line,
    split_by_seeds,
)
from segger.errors import SeggerInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari.layers

# Stable result-layer names: re-running updates these layers instead of adding new ones.
LAYER_TRANSCRIPTS = "segger transcripts"
LAYER_CELLS = "segger cells"
LAYER_ATTENTION = "segger attention"
LAYER_TX_EDGES = "segger tx-tx edges"
LAYER_NUCLEI = "segger nuclei"
LAYER_HIGHLIGHT = "segger highlight"  # the ring around a cell picked in QC
RESULT_LAYER_NAMES = (LAYER_TRANSCRIPTS, LAYER_CELLS, LAYER_ATTENTION)

UNITS = ("micrometer", "micrometer")
POINT_SIZE_UM = 1.0
#: above this many cells, outlines are drawn as a Labels raster instead of Shapes polygons
MAX_SHAPES = 3000
#: pixel size (µm) of rasterised cell / nucleus outlines
RASTER_PIXEL_UM = 0.5
UNASSIGNED_RGBA = np.array([0.55, 0.55, 0.55, 0.45], dtype=np.float32)
METADATA_KEY = "segger"


# --------------------------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------------------------
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def hash_colors(keys: Sequence[Any] | np.ndarray | pd.Index, alpha: float = 1.0) -> np.ndarray:
    """Stable, well-spread RGBA colours (float32, shape (K, 4)) for hashable keys.

    The same key always gets the same colour (in any process), so a cell or gene keeps its colour
    across runs. Vectorised (pandas' stable 64-bit hash), fine for 10^5 keys.
    """
    keys = np.asarray(keys, dtype=object).astype(str)
    if keys.size == 0:
        return np.zeros((0, 4), dtype=np.float32)
    h = pd.util.hash_array(keys.astype(object)).astype(np.uint64)
    hue = (h % np.uint64(3607)).astype(np.float64) / 3607.0
    sat = 0.55 + 0.45 * ((h >> np.uint64(16)) % np.uint64(101)).astype(np.float64) / 100.0
    val = 0.70 + 0.30 * ((h >> np.uint64(32)) % np.uint64(101)).astype(np.float64) / 100.0
    rgb = _hsv_to_rgb(hue, sat, val)
    out = np.empty((keys.size, 4), dtype=np.float32)
    out[:, :3] = rgb
    out[:, 3] = alpha
    return out


def colors_by_key(values: Any, alpha: float = 1.0, missing: Sequence[Any] = ()) -> np.ndarray:
    """One RGBA row (float32, (N, 4)) per value, coloured by :func:`hash_colors` of the value.

    Values in ``missing`` (and NaN/None) get :data:`UNASSIGNED_RGBA`. Cost: one ``pd.factorize``
    over the N values plus a hash of the unique values; no Python loop over N.
    """
    codes, uniques = pd.factorize(pd.Series(values, copy=False), use_na_sentinel=True)
    palette = np.vstack([hash_colors(uniques, alpha), UNASSIGNED_RGBA[None, :]])
    if len(missing):
        miss = np.flatnonzero(pd.Index(uniques).isin(list(missing)))
        palette[miss] = UNASSIGNED_RGBA
    # code -1 (NaN / None) -> last row (grey)
    return palette[codes]


# --------------------------------------------------------------------------------------------
# layer <-> world (µm) geometry
# --------------------------------------------------------------------------------------------
def _layer_name(layer: Any) -> str:
    return str(getattr(layer, "name", "?"))


def layer_scale_translate(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(scale, translate) of the last two (y, x) axes of ``layer``; rejects rotation/shear."""
    scale = np.asarray(layer.scale, dtype=float)[-2:]
    translate = np.asarray(layer.translate, dtype=float)[-2:]
    rotate = np.asarray(getattr(layer, "rotate", np.eye(2)), dtype=float)
    shear = np.asarray(getattr(layer, "shear", np.zeros(1)), dtype=float)
    affine = getattr(layer, "affine", None)
    aff = np.asarray(getattr(affine, "affine_matrix", np.eye(3)), dtype=float)
    if (
        not np.allclose(rotate, np.eye(rotate.shape[0]))
        or not np.allclose(shear, 0)
        or not np.allclose(aff, np.eye(aff.shape[0]))
    ):
        raise SeggerInputError(
            f"layer '{_layer_name(layer)}' is rotated, sheared or has an affine transform; "
            "Segger only supports scale and translate: reset the transform (or resample the data) "
            "and try again"
        )
    return scale, translate


def _world_yx(layer: Any, data: np.ndarray) -> np.ndarray:
    scale, translate = layer_scale_translate(layer)
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[1] < 2:
        raise SeggerInputError(f"layer '{_layer_name(layer)}' has no 2-D coordinates")
    return data[:, -2:] * scale + translate


# --------------------------------------------------------------------------------------------
# transcripts -> Points
# --------------------------------------------------------------------------------------------
_TX_FEATURES = (S.GENE, S.QV, S.NUCLEAR, S.CELL_ID, S.COMPARTMENT, S.TX_ID, S.Z)


def transcripts_features(tx: pd.DataFrame, columns: Sequence[str] = _TX_FEATURES) -> pd.DataFrame:
    """Per-point feature table of a transcripts table (gene as a categorical, ids as strings)."""
    feats = {}
    for col in columns:
        if col not in tx.columns:
            continue
        values = tx[col]
        if col == S.GENE:
            values = values.astype("category")
        elif col == S.CELL_ID:
            values = values.astype(object)
        feats[col] = values.to_numpy(copy=False) if col != S.GENE else values.array
    return pd.DataFrame(feats, index=pd.RangeIndex(len(tx)))


def transcripts_to_points(
    tx: pd.DataFrame,
    *,
    name: str = "transcripts",
    size: float = POINT_SIZE_UM,
    metadata: dict | None = None,
    visible: bool = True,
) -> tuple:
    """Transcripts table -> Points LayerDataTuple coloured by gene (direct RGBA array).

    Features: gene, qv, nuclear, cell_id (vendor, when present), compartment, transcript_id, z.
    """
    missing = [c for c in (S.X, S.Y, S.GENE) if c not in tx.columns]
    if missing:
        raise SeggerInputError(
            f"transcripts table has no column(s) {missing}; expected the columns of segger.schema"
        )
    data = np.column_stack(
        [tx[S.Y].to_numpy(dtype=np.float32), tx[S.X].to_numpy(dtype=np.float32)]
    )
    features = transcripts_features(tx)
    colors = colors_by_key(features[S.GENE])
    meta = {METADATA_KEY: {"kind": "transcripts", "gene_feature": S.GENE}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    kwargs = dict(
        name=name,
        features=features,
        face_color=colors,
        border_width=0,
        size=size,
        units=UNITS,
        metadata=meta,
        visible=visible,
        opacity=0.9,
    )
    return (data, kwargs, "points")


def points_to_transcripts(layer: "napari.layers.Points", gene_feature: str | None = None) -> pd.DataFrame:
    """A Points layer (any source) -> transcripts table following :mod:`segger.schema`.

    x/y come from the layer's data in world coordinates (µm; scale and translate honoured);
    ``gene_feature`` names the feature holding the gene. Known schema features (qv, nuclear,
    cell_id, z, transcript_id, compartment) are carried over when present.
    """
    name = _layer_name(layer)
    if type(getattr(layer, "__wrapped__", layer)).__name__ != "Points":
        raise SeggerInputError(
            f"layer '{name}' is a {type(getattr(layer, '__wrapped__', layer)).__name__} layer, "
            "not Points; choose the transcripts Points layer"
        )
    features: pd.DataFrame = layer.features
    if gene_feature is None:
        gene_feature = (layer.metadata.get(METADATA_KEY, {}) or {}).get("gene_feature", S.GENE)
    if gene_feature not in features.columns:
        avail = ", ".join(map(str, features.columns)) or "none"
        raise SeggerInputError(
            f"layer '{name}' has no feature '{gene_feature}' (features: {avail}); "
            "choose the gene feature in the widget"
        )
    data = np.asarray(layer.data)
    if len(data) == 0:
        raise SeggerInputError(f"layer '{name}' has no points; choose the transcripts layer")
    yx = _world_yx(layer, data)
    n = len(yx)
    out = {
        S.TX_ID: (
            features[S.TX_ID].to_numpy()
            if S.TX_ID in features.columns
            else np.arange(n, dtype=np.int64)
        ),
        S.X: yx[:, 1],
        S.Y: yx[:, 0],
        S.Z: (
            features[S.Z].to_numpy(dtype=float)
            if S.Z in features.columns
            else (data[:, -3] if data.shape[1] >= 3 else np.zeros(n))
        ),
        S.GENE: features[gene_feature].astype(str).to_numpy(dtype=object),
        S.QV: (
            features[S.QV].to_numpy(dtype=float) if S.QV in features.columns else np.full(n, np.nan)
        ),
        S.NUCLEAR: (
            features[S.NUCLEAR].fillna(False).to_numpy(dtype=bool)
            if S.NUCLEAR in features.columns
            else np.zeros(n, dtype=bool)
        ),
        S.CELL_ID: (
            features[S.CELL_ID].astype(object).where(features[S.CELL_ID].notna(), None).to_numpy()
            if S.CELL_ID in features.columns
            else np.full(n, None, dtype=object)
        ),
    }
    if S.COMPARTMENT in features.columns:
        out[S.COMPARTMENT] = features[S.COMPARTMENT].to_numpy()
    tx = pd.DataFrame(out)
    tx[S.TX_ID] = tx[S.TX_ID].astype(np.int64)
    return tx


# --------------------------------------------------------------------------------------------
# polygons
# --------------------------------------------------------------------------------------------
def _largest_polygon(geom):
    if geom is None or geom.is_empty:
        return None
    if geom.geom_type == "Polygon":
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon"]
    return max(parts, key=lambda g: g.area) if parts else None


def polygons_to_yx(geoms: Sequence[Any]) -> list[np.ndarray]:
    """shapely polygons -> list of (K, 2) float32 (y, x) vertex arrays (closing vertex dropped).

    Vectorised with shapely 2 (one ``get_coordinates`` call), multipolygons use their largest part.
    """
    import shapely

    polys = np.array([_largest_polygon(g) for g in geoms], dtype=object)
    ok = np.array([p is not None for p in polys], dtype=bool)
    rings = shapely.get_exterior_ring(polys[ok])
    coords, index = shapely.get_coordinates(rings, return_index=True)
    # split per ring, drop the repeated closing vertex
    bounds = np.flatnonzero(np.diff(index)) + 1
    pieces = np.split(coords[:, ::-1].astype(np.float32), bounds)
    return [p[:-1] if len(p) > 3 and np.allclose(p[0], p[-1]) else p for p in pieces]


def fast_triangulation() -> str:
    """Pick napari's fastest triangulation backend (bermuda) when it is installed.

    Without a viewer, napari's backend stays at "Pure python" (~100x slower for polygons). Only
    upgrades that default; a backend chosen by the user in the settings is left alone.
    Returns the backend now in use.
    """
    try:
        from napari.utils.triangulation_backend import (
            TriangulationBackend,
            get_backend,
            set_backend,
        )
    except ImportError:  # older napari: nothing to choose
        return "default"
    try:
        import bermuda  # noqa: F401
    except ImportError:
        return str(get_backend())
    current = get_backend()
    if current == TriangulationBackend.pure_python:
        set_backend(TriangulationBackend.bermuda)
        current = get_backend()
    if current in (TriangulationBackend.bermuda, TriangulationBackend.fastest_available):
        return "bermuda"  # "Fastest available" resolves to bermuda when it is installed
    return str(current)


def rasterize_polygons(
    geoms: Sequence[Any], pixel_size: float = RASTER_PIXEL_UM
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Paint polygons (µm) into a uint32 label image; label i+1 = polygon i, 0 = background.

    Returns (labels, scale, translate) such that pixel centres map onto µm in napari.
    """
    from skimage.draw import polygon as draw_polygon

    rings = polygons_to_yx(geoms)
    valid = [i for i, g in enumerate(geoms) if _largest_polygon(g) is not None]
    if not rings:
        return np.zeros((1, 1), dtype=np.uint32), (pixel_size, pixel_size), (0.0, 0.0)
    allv = np.concatenate(rings)
    y0, x0 = np.floor(allv.min(axis=0) / pixel_size) * pixel_size - pixel_size
    y1, x1 = allv.max(axis=0) + pixel_size
    shape = (int(np.ceil((y1 - y0) / pixel_size)) + 1, int(np.ceil((x1 - x0) / pixel_size)) + 1)
    labels = np.zeros(shape, dtype=np.uint32)
    for label_index, ring in zip(valid, rings):
        rr, cc = draw_polygon(
            (ring[:, 0] - y0) / pixel_size - 0.5, (ring[:, 1] - x0) / pixel_size - 0.5, shape
        )
        labels[rr, cc] = label_index + 1
    # pixel (i, j) covers [y0 + i*ps, y0 + (i+1)*ps): its centre is the napari pixel coordinate
    translate = (float(y0) + pixel_size / 2, float(x0) + pixel_size / 2)
    return labels, (pixel_size, pixel_size), translate


# --------------------------------------------------------------------------------------------
# nuclei -> Shapes / Labels, and back
# --------------------------------------------------------------------------------------------
def nuclei_to_layer(
    nuclei: pd.DataFrame,
    *,
    name: str = "nuclei",
    max_shapes: int = MAX_SHAPES,
    edge_rgba: Sequence[float] = (0.3, 0.75, 1.0, 1.0),
    metadata: dict | None = None,
) -> tuple:
    """Nuclei table -> Shapes polygons (≤ ``max_shapes``) or a Labels raster beyond that."""
    if S.GEOMETRY not in nuclei.columns:
        raise SeggerInputError("nuclei table has no 'geometry' column; expected segger.schema")
    ids = (
        nuclei[S.BD_ID].astype(str).to_numpy()
        if S.BD_ID in nuclei.columns
        else np.arange(len(nuclei)).astype(str)
    )
    src = nuclei[S.BD_SOURCE].to_numpy() if S.BD_SOURCE in nuclei.columns else None
    meta = {METADATA_KEY: {"kind": "nuclei"}}
    if metadata:
        meta[METADATA_KEY].update(metadata)
    geoms = nuclei[S.GEOMETRY].to_numpy()
    if len(nuclei) > max_shapes:
        labels, scale, translate = rasterize_polygons(geoms)
        feats = pd.DataFrame({"index": np.arange(len(ids) + 1), S.BD_ID: np.r_[[""], ids]})
        kwargs = dict(
            name=name, scale=scale, translate=translate, features=feats, metadata=meta,
            units=UNITS, opacity=0.5,
        )
        return (labels, kwargs, "labels")
    fast_triangulation()
    keep = np.array([_largest_polygon(g) is not None for g in geoms], dtype=bool)
    polys = polygons_to_yx(geoms)
    feats = {S.BD_ID: ids[keep]}
    if src is not None:
        feats[S.BD_SOURCE] = src[keep]
    kwargs = dict(
        name=name,
        shape_type="polygon",
        edge_color=np.tile(np.asarray(edge_rgba, dtype=np.float32), (len(polys), 1)),
        face_color=np.zeros((len(polys), 4), dtype=np.float32),
        edge_width=0.4,
        features=pd.DataFrame(feats),
        units=UNITS,
        metadata=meta,
    )
    return (polys, kwargs, "shapes")


def _nuclei_table(geoms: list, ids: Sequence[str], source: str, what: str) -> pd.DataFrame:
    """Polygons (µm) + ids -> the schema's nuclei table, through the core (repair, centroids)."""
    from segger.io.nuclei import nuclei_from_wkb

    out = nuclei_from_wkb(
        np.asarray(geoms, dtype=object), pd.Series(list(ids), dtype=object),
        source=source, source_name=what,
    )
    if len(out) == 0:
        raise SeggerInputError(f"{what}: no valid polygon; draw or load nucleus outlines")
    return out


def shapes_to_nuclei(layer: "napari.layers.Shapes") -> pd.DataFrame:
    """A Shapes layer (polygons, rectangles, ellipses; world µm) -> nuclei table."""
    import shapely

    name = _layer_name(layer)
    if type(getattr(layer, "__wrapped__", layer)).__name__ != "Shapes":
        raise SeggerInputError(f"layer '{name}' is not a Shapes layer; choose a Shapes layer of nuclei")
    scale, translate = layer_scale_translate(layer)
    types = list(layer.shape_type)
    geoms, keep = [], []
    for i, (verts, kind) in enumerate(zip(layer.data, types)):
        if kind in ("line", "path") or len(verts) < 3:
            continue
        yx = np.asarray(verts, dtype=float)[:, -2:] * scale + translate
        if kind == "ellipse":
            # napari ellipse = 4 corners of its bounding box
            cy, cx = yx.mean(axis=0)
            ry = np.ptp(yx[:, 0]) / 2
            rx = np.ptp(yx[:, 1]) / 2
            t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            poly = shapely.Polygon(np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)])
        else:
            poly = shapely.Polygon(yx[:, ::-1])
        if not poly.is_valid:
            poly = shapely.make_valid(poly)
            poly = _largest_polygon(poly)
        if poly is None or poly.is_empty or poly.area <= 0:
            continue
        geoms.append(poly)
        keep.append(i)
    if not geoms:
        raise SeggerInputError(
            f"layer '{name}' has no polygons (only lines/paths or empty); draw or load nucleus outlines"
        )
    feats = layer.features
    if S.BD_ID in feats.columns and len(feats) == len(types):
        ids = feats[S.BD_ID].astype(str).to_numpy()[keep]
    else:
        ids = [f"{name}-{i}" for i in keep]
    return _nuclei_table(geoms, ids, "polygon", f"layer '{name}'")


def labels_to_nuclei(layer: "napari.layers.Labels") -> pd.DataFrame:
    """A Labels layer (e.g. Cellpose/StarDist on DAPI) -> nuclei table via the core.

    The layer's pixel size (scale) and origin (translate) map pixels to µm; a 3-D label volume is
    max-projected along its first axis.
    """
    name = _layer_name(layer)
    if type(getattr(layer, "__wrapped__", layer)).__name__ != "Labels":
        raise SeggerInputError(f"layer '{name}' is not a Labels layer; choose a Labels layer of nuclei")
    scale, translate = layer_scale_translate(layer)
    return label_image_to_nuclei(np.asarray(layer.data), scale, translate, name)


def label_image_to_nuclei(image: np.ndarray, scale: Sequence[float], translate: Sequence[float],
                          name: str = "labels") -> pd.DataFrame:
    """Label pixels + the layer's (y, x) scale and translate -> nuclei table (µm) via the core.

    Safe to call in a worker thread (plain arrays only; copy them from the layer first).
    """
    from segger.io.nuclei import nuclei_from_labels

    image = np.asarray(image)
    if image.ndim > 2:
        image = image.reshape((-1,) + image.shape[-2:]).max(axis=0)
    if not np.any(image):
        raise SeggerInputError(f"layer '{name}' has no labels (all zero); segment nuclei first")
    scale = np.asarray(scale, dtype=float)[-2:]
    if not np.isclose(scale[0], scale[1]):
        raise SeggerInputError(
            f"layer '{name}' has non-square pixels (scale {tuple(scale)}); resample it first"
        )
    return _call_nuclei_from_labels(nuclei_from_labels, image, float(scale[0]), np.asarray(translate, float)[-2:])


def _call_nuclei_from_labels(fn, image, pixel_size, translate_yx):
    """Adapter to the core, whose ``offset`` is the (x, y) µm of pixel (0, 0)'s *corner*.

    In napari, pixel (0, 0)'s *centre* sits at ``translate``, so its corner is half a pixel less.
    """
    offset_xy = (
        float(translate_yx[1]) - pixel_size / 2.0,
        float(translate_yx[0]) - pixel_size / 2.0,
    )
    out = fn(image, pixel_size, offset_xy)
    if len(out) == 0:
        raise SeggerInputError("the label image gave no nucleus outline; segment nuclei first")
    return out


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


def cells_to_layer(
    boundaries: pd.DataFrame,
    *,
    name: str = LAYER_CELLS,
    max_shapes: int = MAX_SHAPES,
    id_column: str = "cell_id",
    metadata: dict | None = None,
) -> tuple:
    """Cell outlines (``cell_boundaries(result)``) -> Shapes (≤ max_shapes, edge coloured like the
    cell's transcripts) or a Labels raster beyond that. Extra numeric columns become features."""
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
    meta = {METADATA_KEY: {"kind": "cells", "n_cells": int(len(boundaries))}}
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
    kwargs = dict(
        name=name,
        shape_type="polygon",
        edge_color=hash_colors(ids[keep]),
        face_color=np.zeros((len(polys), 4), dtype=np.float32),
        edge_width=0.5,
        features=feats,
        units=UNITS,
        metadata=meta,
    )
    return (polys, kwargs, "shapes")


# --------------------------------------------------------------------------------------------
# edges -> Vectors
# --------------------------------------------------------------------------------------------
def edges_to_vectors(
    src_yx: np.ndarray,
    dst_yx: np.ndarray,
    weight: np.ndarray | None = None,
    *,
    name: str = LAYER_ATTENTION,
    colormap: str = "plasma",
    edge_width: float = 0.3,
    features: dict | None = None,
    metadata: dict | None = None,
) -> tuple:
    """Edges (start/end points in µm, (y, x)) -> Vectors (N, 2, 2) coloured by weight.

    Vectors have one width per layer, so weight is the colour (a feature with a colormap).
    """
    src_yx = np.asarray(src_yx, dtype=np.float32).reshape(-1, 2)
    dst_yx = np.asarray(dst_yx, dtype=np.float32).reshape(-1, 2)
    vec = np.empty((len(src_yx), 2, 2), dtype=np.float32)
    vec[:, 0] = src_yx
    vec[:, 1] = dst_yx - src_yx
    w = np.ones(len(vec), np.float32) if weight is None else np.asarray(weight, dtype=np.float32)
    feats = pd.DataFrame({"weight": w})
    for k, v in (features or {}).items():
        feats[k] = np.asarray(v)
    # colour range: min .. 98th percentile, so a few strong edges do not wash out the rest
    hi = float(np.percentile(w, 98)) if len(w) else 1.0
    lo = float(w.min()) if len(w) else 0.0
    if hi <= lo:
        lo, hi = (0.0, max(hi, 1e-6))
    kwargs = dict(
        name=name,
        features=feats,
        edge_color="weight",
        edge_colormap=colormap,
        edge_contrast_limits=(lo, hi),
        edge_width=edge_width,
        vector_style="line",
        length=1.0,
        units=UNITS,
        opacity=0.9,
        metadata={METADATA_KEY: {"kind": "edges", **(metadata or {})}},
    )
    return (vec, kwargs, "vectors")


def _node_yx(table: pd.DataFrame, index: np.ndarray) -> np.ndarray:
    return np.column_stack(
        [table[S.Y].to_numpy(dtype=np.float32)[index], table[S.X].to_numpy(dtype=np.float32)[index]]
    )


def attention_to_vectors(
    edges: pd.DataFrame,
    transcripts: pd.DataFrame,
    nuclei: pd.DataFrame | None,
    edge_type: Sequence[str],
    *,
    name: str = LAYER_ATTENTION,
    metadata: dict | None = None,
) -> tuple:
    """``attention_edges()`` output (node indices) -> Vectors from each transcript to the node it
    attended to (a transcript for tx→tx, a nucleus centroid for tx→bd), coloured by weight."""
    src = edges["src"].to_numpy(dtype=np.int64)
    dst = edges["dst"].to_numpy(dtype=np.int64)
    dst_table = transcripts if tuple(edge_type)[-1] == "tx" else nuclei
    if dst_table is None:
        raise SeggerInputError("attention to nuclei needs the graph's nuclei table")
    meta = {"edge_type": "-".join(edge_type)}
    meta.update(metadata or {})
    return edges_to_vectors(
        _node_yx(transcripts, src), _node_yx(dst_table, dst), edges["weight"].to_numpy(),
        name=name, features={"src": src, "dst": dst}, metadata=meta,
    )


def graph_edges_to_vectors(bundle: Any, *, name: str = LAYER_TX_EDGES, max_edges: int = 2_000_000) -> tuple:
    """The graph's tx–tx neighbour edges as a Vectors layer (one colour; weight = 1)."""
    ei = bundle.data["tx", "neighbors", "tx"].edge_index
    ei = ei.cpu().numpy() if hasattr(ei, "cpu") else np.asarray(ei)
    # draw each undirected pair once (kNN graphs are often stored in both directions)
    pairs = np.unique(np.sort(ei[:, ei[0] != ei[1]], axis=0), axis=1)
    src, dst = pairs[0], pairs[1]
    if len(src) > max_edges:
        src, dst = src[:max_edges], dst[:max_edges]
    layer = edges_to_vectors(
        _node_yx(bundle.transcripts, src), _node_yx(bundle.transcripts, dst), None,
        name=name, edge_width=0.1, metadata={"edge_type": "tx-neighbors-tx"},
    )
    data, kwargs, kind = layer
    kwargs.update(edge_color="#7fd3ff", opacity=0.5)
    kwargs.pop("edge_colormap"), kwargs.pop("edge_contrast_limits")
    return (data, kwargs, kind)


# --------------------------------------------------------------------------------------------
# corrections: hit tests, selections, splits, in-place row updates
# --------------------------------------------------------------------------------------------
LAYER_SELECTION = "segger selection"
LAYER_SELECTED = "segger selected"
LAYER_CORRECTIONS = "segger corrections"
LAYER_CHANGES = "segger changes"
CORRECTED_RGBA = np.array([1.0, 0.85, 0.0, 1.0], dtype=np.float32)  # ring of a corrected transcript
CHANGED_RGBA = np.array([1.0, 0.0, 1.0, 1.0], dtype=np.float32)  # ring of a transcript that moved
SELECTED_RGBA = np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32)


class PointIndex:
    """Click hit test over a Points layer: a KD-tree on its positions in world (y, x) µm.

    Built once per layer data (about 0.5 s at a million points), then a click costs a few µs
    (napari's ``layer.get_value`` scans every point: ~0.1 s at a million). Also answers
    "which points lie inside these polygons" (lasso / rectangle selections).
    """

    def __init__(self, yx: np.ndarray):
        from scipy.spatial import cKDTree

        self.yx = np.ascontiguousarray(np.asarray(yx, dtype=np.float64)[:, -2:])
        # unbalanced, non-compact: ~3x faster to build; queries stay microseconds
        self.tree = cKDTree(self.yx, balanced_tree=False, compact_nodes=False)

    @classmethod
    def from_layer(cls, layer: Any) -> "PointIndex":
        return cls(_world_yx(layer, np.asarray(layer.data)))

    def __len__(self) -> int:
        return len(self.yx)

    def nearest(self, y: float, x: float, max_dist: float) -> int:
        """Index of the point nearest to world (y, x) within ``max_dist`` µm, or -1."""
        if len(self.yx) == 0:
            return -1
        d, i = self.tree.query([float(y), float(x)], k=1, distance_upper_bound=float(max_dist))
        return int(i) if np.isfinite(d) and i < len(self.yx) else -1

    def inside(self, polygons: Sequence[np.ndarray]) -> np.ndarray:
        """Sorted indices of the points inside any of ``polygons`` ((K, 2) world (y, x) vertices)."""
        return points_in_polygons(self.yx, polygons)


def points_in_polygons(yx: np.ndarray, polygons: Sequence[np.ndarray]) -> np.ndarray:
    """Sorted indices of the (y, x) points inside any polygon (vectorised, bounding-box prefilter)."""
    import shapely

    yx = np.asarray(yx, dtype=np.float64)
    hits = []
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)[:, -2:]
        if len(poly) < 3:
            continue
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        box = np.flatnonzero((yx[:, 0] >= lo[0]) & (yx[:, 0] <= hi[0]) & (yx[:, 1] >= lo[1]) & (yx[:, 1] <= hi[1]))
        if box.size == 0:
            continue
        geom = shapely.Polygon(poly[:, ::-1])
        if not geom.is_valid:
            geom = shapely.make_valid(geom)
        inside = shapely.contains_xy(geom, yx[box, 1], yx[box, 0]) | shapely.intersects_xy(
            geom.boundary, yx[box, 1], yx[box, 0]
        )
        hits.append(box[inside])
    if not hits:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(hits)).astype(np.int64)


def shapes_to_world_polygons(layer: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A Shapes layer -> (areas, lines) in world (y, x) µm.

    Areas are rectangles, polygons (lasso included) and ellipses (as 32-gons); lines are
    lines and paths (used to split a cell).
    """
    if layer is None or len(layer.data) == 0:
        return [], []
    scale, translate = layer_scale_translate(layer)
    areas, lines = [], []
    for verts, kind in zip(layer.data, layer.shape_type):
        yx = np.asarray(verts, dtype=np.float64)[:, -2:] * scale + translate
        if kind in ("line", "path"):
            if len(yx) >= 2:
                lines.append(yx)
        elif kind == "ellipse":
            c = yx.mean(axis=0)
            r = np.ptp(yx, axis=0) / 2
            t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
            areas.append(np.column_stack([c[0] + r[0] * np.sin(t), c[1] + r[1] * np.cos(t)]))
        elif len(yx) >= 3:
            areas.append(yx)
    return areas, lines


def update_result_rows(
    features: pd.DataFrame,
    face_color: np.ndarray,
    rows: np.ndarray,
    cell_ids: Sequence[Any],
    kinds: Sequence[Any] | None = None,
    corrected: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """New (features, face colours) of a result Points layer with ``rows`` given new cells.

    Only those rows change (colour per cell from :func:`hash_colors`, grey when unassigned); the
    cell id stays a Categorical (new cells are added as categories). ``corrected`` (bool per
    row of ``rows``) fills a ``corrected`` feature. Cost: O(N) copies of two columns and the
    colour array, no per-row Python work — ~0.1 s per edit at a million points.
    """
    rows = np.asarray(rows, dtype=np.int64)
    feats = features.copy(deep=False)
    colors = np.array(face_color, dtype=np.float32, copy=True)
    n = len(feats)
    if len(rows) == 0:
        return feats, colors
    ids = pd.Index(np.asarray(cell_ids, dtype=object).astype(str))
    cur = feats[S.SEGGER_CELL_ID]
    cat = pd.Categorical(cur) if not isinstance(cur.dtype, pd.CategoricalDtype) else cur.array
    cats = pd.Index(cat.categories).astype(str)
    new = ids.unique().difference(cats)
    if len(new):
        cats = cats.append(new)
    codes = np.asarray(cat.codes, dtype=np.int64).copy()  # old categories keep their positions
    codes[rows] = cats.get_indexer(ids)
    feats[S.SEGGER_CELL_ID] = pd.Categorical.from_codes(codes, categories=cats)
    pal_keys, inv = np.unique(ids.to_numpy(dtype=object).astype(str), return_inverse=True)
    pal = hash_colors(pal_keys, 1.0)
    pal[np.isin(pal_keys, [S.UNASSIGNED, "", "None", "nan"])] = UNASSIGNED_RGBA
    colors[rows] = pal[inv]
    if kinds is not None and S.ASSIGNMENT in feats.columns:
        k = pd.Categorical(feats[S.ASSIGNMENT], categories=list(S.ASSIGNMENT_KINDS))
        kc = np.asarray(k.codes, dtype=np.int64).copy()
        kc[rows] = pd.Index(list(S.ASSIGNMENT_KINDS)).get_indexer(np.asarray(kinds, dtype=object))
        feats[S.ASSIGNMENT] = pd.Categorical.from_codes(kc, categories=list(S.ASSIGNMENT_KINDS))
    if corrected is not None:
        col = (feats["corrected"].to_numpy(dtype=bool).copy() if "corrected" in feats.columns
               else np.zeros(n, dtype=bool))
        col[rows] = np.asarray(corrected, dtype=bool)
        feats["corrected"] = col
    return feats, colors


def marker_points(
    yx: np.ndarray,
    *,
    name: str,
    rgba: Sequence[float],
    features: dict | pd.DataFrame | None = None,
    size: float = 2.5 * POINT_SIZE_UM,
    metadata: dict | None = None,
) -> tuple:
    """A ring marker Points layer (transparent face, coloured border) at world (y, x) µm."""
    yx = np.asarray(yx, dtype=np.float32).reshape(-1, 2)
    feats = pd.DataFrame(features if features is not None else {}, index=pd.RangeIndex(len(yx)))
    kwargs = dict(
        name=name,
        features=feats,
        face_color=np.zeros((len(yx), 4), dtype=np.float32),
        border_color=np.tile(np.asarray(rgba, dtype=np.float32), (len(yx), 1)),
        border_width=0.25,
        border_width_is_relative=True,
        size=size,
        units=UNITS,
        metadata={METADATA_KEY: {"kind": "markers", **(metadata or {})}},
    )
    return (yx, kwargs, "points")


def result_layer_update(features: pd.DataFrame, result: pd.DataFrame,
                        corrected: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """New (features, face colours) of a result Points layer for a whole new result table:
    cell id, score, assignment (and ``corrected``) replaced; positions, genes and other
    features kept. One factorisation of the cell ids (same colours as :func:`result_to_points`)."""
    colors, cell_ids = cell_colors_and_ids(result[S.SEGGER_CELL_ID])
    feats = features.copy(deep=False)
    feats[S.SEGGER_CELL_ID] = cell_ids
    feats[S.SCORE] = result[S.SCORE].to_numpy(dtype=np.float32)
    feats[S.ASSIGNMENT] = assignment_feature(result[S.ASSIGNMENT])
    if corrected is not None:
        feats["corrected"] = np.asarray(corrected, dtype=bool)
    return feats, colors
