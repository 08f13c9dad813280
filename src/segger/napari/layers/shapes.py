"""Polygons and nuclei tables <-> Shapes / Labels layers (rasterised above ``MAX_SHAPES``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from segger import schema as S
from segger.errors import SeggerInputError

if TYPE_CHECKING:  # pragma: no cover
    import napari.layers
from segger.napari.layers._base import (
    MAX_SHAPES,
    METADATA_KEY,
    RASTER_PIXEL_UM,
    UNITS,
    _layer_name,
    layer_scale_translate,
)


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


def _exterior_rings(geoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(coords (K, 2) float32 y, x; ring of each vertex; geometry index of each ring)`` of each
    polygon's exterior ring (a multipolygon: its largest part, as ``polygons_to_yx``); vectorised."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    kind = shapely.get_type_id(geoms)
    polys = geoms.copy()
    other = np.flatnonzero(kind != 3)
    for i in other:  # multipolygons / collections: the largest polygon part (few)
        polys[i] = _largest_polygon(geoms[i])
    ok = np.array([p is not None for p in polys], dtype=bool) if len(other) else \
        ~shapely.is_missing(polys) & ~shapely.is_empty(polys)
    keep = np.flatnonzero(ok)
    coords, ring = shapely.get_coordinates(shapely.get_exterior_ring(polys[keep]), return_index=True)
    return coords[:, ::-1].astype(np.float32), ring, keep


def _paint_polygons(geoms, pixel_size: float):
    """:func:`rasterize_polygons`' raster (a pixel is painted when its centre is inside, a later
    polygon wins), painted by one vectorised even-odd scanline pass over every edge instead of one
    ``skimage.draw.polygon`` call per polygon (~1 ms each: seconds for the ~5 k cells of a 1 mm²
    region); pixel for pixel the same as skimage's (tests)."""
    yx, ring, keep = _exterior_rings(geoms)
    if len(yx) == 0:
        return np.zeros((1, 1), dtype=np.uint32), (pixel_size, pixel_size), (0.0, 0.0)
    y0, x0 = np.floor(yx.min(axis=0) / pixel_size) * pixel_size - pixel_size
    y1, x1 = yx.max(axis=0) + pixel_size
    shape = (int(np.ceil((y1 - y0) / pixel_size)) + 1, int(np.ceil((x1 - x0) / pixel_size)) + 1)
    r = (yx[:, 0] - y0) / pixel_size - 0.5  # pixel-centre coordinates, as skimage's
    c = (yx[:, 1] - x0) / pixel_size - 0.5
    # each vertex to the next of its ring (the last back to the first): the edges
    n = np.bincount(ring, minlength=int(ring.max()) + 1)
    first = np.cumsum(n) - n
    nxt = np.arange(len(r)) + 1
    ends = first[n > 0] + n[n > 0] - 1
    nxt[ends] = first[n > 0]
    ra, ca, rb, cb = r, c, r[nxt], c[nxt]
    # an edge crosses the pixel-centre rows k with min <= k < max (half-open: a vertex counts once)
    k0 = np.ceil(np.minimum(ra, rb)).astype(np.int64)
    cnt = np.maximum(np.ceil(np.maximum(ra, rb)).astype(np.int64) - k0, 0)
    e = np.repeat(np.arange(len(r)), cnt)
    row = k0[e] + (np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    xc = ca[e] + (row - ra[e]) / (rb[e] - ra[e]) * (cb[e] - ca[e])
    poly = ring[e]
    order = np.lexsort((xc, row, poly))
    poly, row, xc = poly[order], row[order], xc[order]
    # crossings pair up per (polygon, row): pixels with xa <= column < xb are inside
    poly, row, xa, xb = poly[0::2], row[0::2], xc[0::2], xc[1::2]
    c0 = np.maximum(np.ceil(xa).astype(np.int64), 0)
    c1 = np.minimum(np.ceil(xb).astype(np.int64), shape[1])
    ok = (row >= 0) & (row < shape[0]) & (c1 > c0)
    poly, row, c0, c1 = poly[ok], row[ok], c0[ok], c1[ok]
    w = c1 - c0
    span = np.repeat(np.arange(len(w)), w)
    flat = row[span] * shape[1] + c0[span] + (np.arange(int(w.sum())) - np.repeat(np.cumsum(w) - w, w))
    label = (keep[poly[span]] + 1).astype(np.uint32)
    out = np.zeros(shape[0] * shape[1], dtype=np.uint32)
    # labels grow with the polygon index: the largest label at a pixel is the polygon painted last
    o = np.argsort(flat, kind="stable")
    flat, label = flat[o], label[o]
    last = np.r_[flat[1:] != flat[:-1], True]
    out[flat[last]] = label[last]
    return out.reshape(shape), (pixel_size, pixel_size), (float(y0) + pixel_size / 2, float(x0) + pixel_size / 2)


def rasterize_polygons(
    geoms: Sequence[Any], pixel_size: float = RASTER_PIXEL_UM
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """Paint polygons (µm) into a uint32 label image; label i+1 = polygon i, 0 = background (a
    multipolygon: its largest part; holes are not cut out).

    Returns (labels, scale, translate) such that pixel centres map onto µm in napari.
    """
    return _paint_polygons(np.asarray(list(geoms), dtype=object), pixel_size)


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
