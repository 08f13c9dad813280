"""Nuclei (boundary) polygons in µm → the schema's nuclei table.

Every function here returns a DataFrame with the columns of :data:`segger.schema.BD_COLUMNS`
(``bd_id`` str, ``geometry`` valid ``shapely.Polygon``, ``x``/``y`` centroid float64, ``source``):

* :func:`nuclei_from_vertices` — vendor vertex tables (Xenium ``*_boundaries.parquet``, CosMx
  ``*polygons.csv``), built with ``shapely.linearrings`` over all vertices at once;
* :func:`nuclei_from_wkb` — WKB / WKT geometry tables (MERSCOPE ``cell_boundaries.parquet``,
  GeoParquet-like files), one z-plane kept;
* :func:`nuclei_from_labels` — a 2-D integer label image (0 = background);
* :func:`approximate_nuclei` — an *approximation* from the vendor's nuclear transcripts;
* :func:`read_polygons` — any of the table layouts above, from a file.

Invalid polygons are repaired with ``shapely.make_valid`` and only their largest polygon part is
kept; multi-part geometries keep their largest part too. Polygons that cannot be repaired or have
fewer than 3 distinct vertices are dropped, and a note is stored in ``df.attrs["warnings"]``
(:func:`nuclei_warnings`). Passing ``bbox=(xmin, ymin, xmax, ymax)`` crops polygons that overhang
the box grown by ``margin`` µm (see :func:`crop_nuclei`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import shapely

from segger import schema
from segger.errors import SeggerInputError, one_line
from segger.io._tables import (
    find_column,
    normalise_cell_ids,
    read_table,
    require_column,
    to_float,
)

#: µm added around the transcripts' bounding box before polygons are cropped to it.
DEFAULT_CROP_MARGIN = 1.0

POLYGON_ID_ALIASES = ("cell_id", "EntityID", "bd_id", "cell_ID", "cellID", "cell", "id", "label_id", "label")
VERTEX_X_ALIASES = ("vertex_x", "x", "x_location", "x_um")
VERTEX_Y_ALIASES = ("vertex_y", "y", "y_location", "y_um")
GEOMETRY_ALIASES = ("Geometry", "geometry", "geom", "wkb", "wkt", "polygon")
Z_INDEX_ALIASES = ("ZIndex", "z_index", "zindex")

_MULTI_TYPES = (4, 5, 6, 7)  # MultiPoint, MultiLineString, MultiPolygon, GeometryCollection
_POLYGON = 3


# --------------------------------------------------------------------------- table helpers


def empty_nuclei() -> pd.DataFrame:
    """A nuclei table with no rows and the schema's columns and dtypes."""
    return pd.DataFrame(
        {
            schema.BD_ID: pd.Series([], dtype=object),
            schema.GEOMETRY: pd.Series([], dtype=object),
            schema.X: pd.Series([], dtype=np.float64),
            schema.Y: pd.Series([], dtype=np.float64),
            schema.BD_SOURCE: pd.Series([], dtype=object),
        }
    )


def nuclei_warnings(nuclei: pd.DataFrame) -> list[str]:
    """Notes recorded while building ``nuclei`` (dropped / repaired polygons)."""
    return list(nuclei.attrs.get("warnings", []))


def _flatten_parts(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All single-part geometries of ``geoms`` (nested collections too) and the input index of each."""
    parts = np.asarray(geoms, dtype=object)
    index = np.arange(len(parts))
    while True:
        multi = np.isin(shapely.get_type_id(parts), _MULTI_TYPES)
        if not multi.any():
            return parts, index
        sub, sub_index = shapely.get_parts(parts[multi], return_index=True)
        parts = np.concatenate([parts[~multi], sub])
        index = np.concatenate([index[~multi], index[multi][sub_index]])


def largest_polygon(geoms) -> np.ndarray:
    """Per geometry, its largest non-empty Polygon part (object array; ``None`` where there is none)."""
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(geoms), None, dtype=object)
    if len(geoms) == 0:
        return out
    parts, index = _flatten_parts(geoms)
    is_poly = shapely.get_type_id(parts) == _POLYGON
    parts, index = parts[is_poly], index[is_poly]
    area = shapely.area(parts)
    ok = area > 0
    parts, index, area = parts[ok], index[ok], area[ok]
    if len(parts) == 0:
        return out
    order = np.lexsort((-area, index))
    index_o = index[order]
    first = np.r_[True, index_o[1:] != index_o[:-1]]
    out[index_o[first]] = parts[order][first]
    return out


def clean_polygons(geoms) -> np.ndarray:
    """Valid single Polygons: valid polygons pass through; others are ``make_valid``-ed and reduced
    to their largest polygon part; ``None`` where nothing with an area remains."""
    geoms = np.asarray(geoms, dtype=object)
    out = geoms.copy()
    if len(geoms) == 0:
        return out
    types = shapely.get_type_id(geoms)
    simple = (types == _POLYGON) & shapely.is_valid(geoms)
    simple[simple] = shapely.area(geoms[simple]) > 0
    rest = ~simple
    if rest.any():
        fixed = geoms[rest].copy()
        present = shapely.get_type_id(fixed) >= 0
        fixed[present] = shapely.make_valid(fixed[present])
        out[rest] = largest_polygon(fixed)
    return out


def bbox_of(transcripts: pd.DataFrame) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of the finite transcript coordinates."""
    x = transcripts[schema.X].to_numpy(np.float64)
    y = transcripts[schema.Y].to_numpy(np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        raise SeggerInputError("no transcript has finite x/y coordinates; cannot place the nuclei")
    return float(x[ok].min()), float(y[ok].min()), float(x[ok].max()), float(y[ok].max())


def _with_centroids(ids, geoms, source: str) -> pd.DataFrame:
    geoms = np.asarray(geoms, dtype=object)
    cent = shapely.centroid(geoms) if len(geoms) else np.zeros(0, dtype=object)
    df = pd.DataFrame(
        {
            schema.BD_ID: np.asarray(ids, dtype=object),
            schema.GEOMETRY: geoms,
            schema.X: shapely.get_x(cent).astype(np.float64) if len(geoms) else np.zeros(0),
            schema.Y: shapely.get_y(cent).astype(np.float64) if len(geoms) else np.zeros(0),
            schema.BD_SOURCE: np.full(len(geoms), source, dtype=object),
        }
    )
    return df if len(df) else empty_nuclei()


def crop_nuclei(
    nuclei: pd.DataFrame, bbox: Sequence[float], margin: float = DEFAULT_CROP_MARGIN
) -> pd.DataFrame:
    """Clip polygons that overhang ``bbox`` (grown by ``margin`` µm); drop those left empty.

    Clipped polygons keep their largest part and get a new centroid. Returns a new frame.
    """
    if len(nuclei) == 0:
        return nuclei.copy()
    xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    box = shapely.box(xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    geoms = nuclei[schema.GEOMETRY].to_numpy(dtype=object)
    inside = shapely.covered_by(geoms, box)
    if inside.all():
        return nuclei.reset_index(drop=True).copy()
    out = nuclei.copy()
    clipped = clean_polygons(largest_polygon(shapely.intersection(geoms[~inside], box)))
    new = geoms.copy()
    new[~inside] = clipped
    keep = np.array([g is not None for g in new], dtype=bool)  # over polygons, not transcripts
    out[schema.GEOMETRY] = new
    out = out.loc[keep].reset_index(drop=True)
    if len(out) == 0:
        out = empty_nuclei()
        out.attrs.update(nuclei.attrs)
        return out
    cent = shapely.centroid(out[schema.GEOMETRY].to_numpy(dtype=object))
    out[schema.X] = shapely.get_x(cent).astype(np.float64)
    out[schema.Y] = shapely.get_y(cent).astype(np.float64)
    out.attrs.update(nuclei.attrs)
    return out


def _finish(
    ids: np.ndarray,
    geoms: np.ndarray,
    source: str,
    notes: list[str],
    what: str,
    bbox: Sequence[float] | None,
    margin: float,
) -> pd.DataFrame:
    """Repair, drop the unusable, keep the largest polygon per id, crop, add centroids."""
    ids = np.asarray(ids, dtype=object)
    geoms = np.asarray(geoms, dtype=object)
    present = np.array([g is not None for g in geoms], dtype=bool)  # one check per polygon
    invalid = present.copy()
    invalid[present] = ~shapely.is_valid(geoms[present])  # self-intersections, bow-ties, ...
    geoms = clean_polygons(geoms)
    bad = np.array([g is None for g in geoms], dtype=bool)  # one check per polygon
    repaired = invalid & ~bad
    if repaired.any():
        notes.append(
            f"{what}: {int(repaired.sum())} self-intersecting (invalid) polygon(s) were repaired with "
            f"shapely.make_valid, keeping the largest part (e.g. id {ids[repaired][0]}); check their outlines"
        )
    if bad.any():
        notes.append(
            f"{what}: {int(bad.sum())} polygon(s) with no area could not be repaired and were "
            f"dropped (e.g. id {ids[bad][0]})"
        )
        ids, geoms = ids[~bad], geoms[~bad]
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        area = shapely.area(geoms)
        order = np.lexsort((-area, pd.factorize(ids)[0]))
        first = ~pd.Series(ids[order]).duplicated().to_numpy()
        keep = np.sort(order[first])
        n_dropped = len(ids) - len(keep)
        notes.append(
            f"{what}: {n_dropped} extra polygon(s) of ids that have several (e.g. id "
            f"{ids[dup][0]}); the largest polygon per id was kept"
        )
        ids, geoms = ids[keep], geoms[keep]
    out = _with_centroids(ids, geoms, source)
    if bbox is not None:
        out = crop_nuclei(out, bbox, margin)
    out.attrs["warnings"] = list(notes)
    return out


# --------------------------------------------------------------------------- vertex tables


#: the id a nucleus named like segger's "unassigned" marker gets (vendor ids never collide with it)
RESERVED_ID_SUFFIX = "_nucleus"


def _reserved_ids(raw: pd.Series, ids: np.ndarray, notes: list[str], source_name: str) -> np.ndarray:
    """Polygons whose id is literally ``UNASSIGNED`` (segger's marker) are renamed, with a note, instead
    of being dropped as unassigned."""
    from segger.schema import UNASSIGNED

    if raw.dtype.kind not in ("O", "U", "S") and not isinstance(raw.dtype, (pd.StringDtype, pd.CategoricalDtype)):
        return ids
    text = raw.astype("string").str.strip()
    hit = (text == UNASSIGNED).fillna(False).to_numpy(dtype=bool)
    if not hit.any():
        return ids
    new_id = UNASSIGNED + RESERVED_ID_SUFFIX
    ids = np.asarray(ids, dtype=object).copy()
    ids[hit] = new_id
    notes.append(f"{source_name}: a polygon is named '{UNASSIGNED}', segger's marker for unassigned transcripts; "
                 f"it is kept as nucleus '{new_id}' — rename it in the file to choose its id")
    return ids


def nuclei_from_vertices(
    df: pd.DataFrame,
    *,
    id_column: str | None = None,
    x_column: str | None = None,
    y_column: str | None = None,
    scale: float = 1.0,
    offset: Sequence[float] = (0.0, 0.0),
    unassigned_ints: Sequence[int] = (-1,),
    bbox: Sequence[float] | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
    source_name: str = "vertex table",
) -> pd.DataFrame:
    """Polygons from a vertex table: one row per vertex, rows of a polygon in ring order.

    Columns (found by alias unless given): id (``cell_id``/``EntityID``/...), ``vertex_x``,
    ``vertex_y`` (or ``x``/``y``). Coordinates are ``value * scale + offset`` µm. A closing vertex
    may or may not repeat the first. When the table also has ``label_id`` (Xenium ≥ 2.0), each
    (id, label) pair is a ring and the largest ring per id is kept. Rings with < 3 distinct vertices
    are dropped (noted in ``attrs["warnings"]``). Rows with an unassigned id are ignored.
    """
    notes: list[str] = []
    id_col = id_column or require_column(df, source_name, "polygon id", POLYGON_ID_ALIASES)
    x_col = x_column or require_column(df, source_name, "vertex x", VERTEX_X_ALIASES)
    y_col = y_column or require_column(df, source_name, "vertex y", VERTEX_Y_ALIASES)
    for col in (id_col, x_col, y_col):
        if col not in df.columns:
            raise SeggerInputError(
                f"{source_name}: missing column '{col}'; columns found: {', '.join(map(str, df.columns))}"
            )
    ids = _reserved_ids(df[id_col], normalise_cell_ids(df[id_col], unassigned_ints=unassigned_ints), notes,
                        source_name)
    vx = to_float(df[x_col], source_name, x_col) * float(scale) + float(offset[0])
    vy = to_float(df[y_col], source_name, y_col) * float(scale) + float(offset[1])
    valid = np.array(pd.notna(ids), dtype=bool) & np.isfinite(vx) & np.isfinite(vy)
    if not valid.any():
        out = empty_nuclei()
        out.attrs["warnings"] = [f"{source_name}: no polygon vertex with an id and finite coordinates"]
        return out

    id_codes, id_uniques = pd.factorize(ids[valid], sort=False)
    label_col = find_column(df.columns, ("label_id",))
    if label_col is not None and label_col != id_col:
        lab_codes, lab_uniques = pd.factorize(df[label_col].to_numpy()[valid], sort=False)
        key = id_codes.astype(np.int64) * (len(lab_uniques) + 1) + lab_codes
        codes, _ = pd.factorize(key, sort=False)
    else:
        codes = id_codes
    order = np.argsort(codes, kind="stable")
    codes_s = codes[order]
    xs, ys = vx[valid][order], vy[valid][order]
    n_groups = int(codes_s[-1]) + 1
    starts = np.r_[0, np.flatnonzero(np.diff(codes_s)) + 1]
    group_ids = np.asarray(id_uniques, dtype=object)[id_codes[order][starts]]

    distinct = pd.DataFrame({"c": codes_s, "x": xs, "y": ys}).drop_duplicates()
    n_distinct = np.bincount(distinct["c"].to_numpy(), minlength=n_groups)
    ok_group = n_distinct >= 3
    if not ok_group.all():
        bad_ids = group_ids[~ok_group]
        notes.append(
            f"{source_name}: {len(bad_ids)} polygon(s) with fewer than 3 distinct vertices dropped "
            f"(e.g. id {bad_ids[0]})"
        )
    row_ok = ok_group[codes_s]
    if not row_ok.any():
        out = empty_nuclei()
        out.attrs["warnings"] = notes
        return out
    new_code = np.cumsum(ok_group) - 1
    rings = shapely.linearrings(np.column_stack([xs[row_ok], ys[row_ok]]), indices=new_code[codes_s[row_ok]])
    polys = shapely.polygons(rings)
    return _finish(group_ids[ok_group], polys, "polygon", notes, source_name, bbox, margin)


# --------------------------------------------------------------------------- WKB / WKT tables


def _to_geometries(values, source_name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if len(arr) == 0:
        return arr
    sample = next((v for v in arr if v is not None and not (isinstance(v, float) and np.isnan(v))), None)
    try:
        if isinstance(sample, (bytes, bytearray)):
            return shapely.from_wkb(arr, on_invalid="ignore")
        if isinstance(sample, str):
            if all(c in "0123456789abcdefABCDEF" for c in sample[:16]):  # hex WKB
                return shapely.from_wkb(arr, on_invalid="ignore")
            return shapely.from_wkt(arr, on_invalid="ignore")
        if sample is None or isinstance(sample, shapely.Geometry):
            return arr
    except (shapely.errors.GEOSException, TypeError, ValueError) as exc:
        raise SeggerInputError(
            f"{source_name}: cannot decode the polygon geometry column ({one_line(exc)[:150]}); "
            "expected WKB or WKT polygons"
        ) from exc
    raise SeggerInputError(
        f"{source_name}: the geometry column holds {type(sample).__name__} values; expected WKB "
        "bytes or WKT text polygons"
    )


def middle_plane_rows(ids: np.ndarray, z_index: np.ndarray) -> np.ndarray:
    """Row indices keeping, per id, the row whose z-plane is closest to the middle plane of all.

    The middle plane is ``planes[len(planes) // 2]`` of the sorted distinct planes (ties → lower z).
    """
    z = np.asarray(z_index, dtype=np.float64)
    planes = np.unique(z[np.isfinite(z)])
    if len(planes) <= 1:
        return np.arange(len(z))
    mid = planes[len(planes) // 2]
    dist = np.where(np.isfinite(z), np.abs(z - mid), np.inf)
    id_codes = pd.factorize(pd.Series(ids, dtype=object), use_na_sentinel=False)[0]
    order = np.lexsort((z, dist, id_codes))
    first = np.r_[True, id_codes[order][1:] != id_codes[order][:-1]]
    return np.sort(order[first])


def nuclei_from_wkb(
    geometry,
    ids,
    *,
    z_index=None,
    unassigned_ints: Sequence[int] = (-1,),
    source: str = "polygon",
    bbox: Sequence[float] | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
    source_name: str = "geometry table",
) -> pd.DataFrame:
    """Polygons from WKB (or WKT / shapely) geometries with one id each (µm).

    MultiPolygons keep their largest part. When ``z_index`` is given (MERSCOPE writes one row per
    id and z-plane, column ``ZIndex``), only the middle plane is kept per id.
    """
    notes: list[str] = []
    raw_ids = pd.Series(ids, copy=False)
    ids = _reserved_ids(raw_ids, normalise_cell_ids(raw_ids, unassigned_ints=unassigned_ints), notes, source_name)
    geoms = _to_geometries(geometry, source_name)
    keep = np.array(pd.notna(ids), dtype=bool)
    present = np.array([g is not None for g in np.asarray(geometry, dtype=object)], dtype=bool)
    unparsed = keep & present & np.array([g is None for g in np.asarray(geoms, dtype=object)], dtype=bool)
    if unparsed.any():
        n = int(unparsed.sum())
        notes.append(f"{source_name}: {n} of {int(keep.sum())} geometries are not valid WKB/WKT and were dropped "
                     f"(e.g. id {ids[unparsed][0]}); the geometry column is damaged or not WKB — export the "
                     "polygons again")
        keep &= ~unparsed
    if z_index is not None:
        z = to_float(pd.Series(z_index, copy=False), source_name, "ZIndex")
        rows = np.flatnonzero(keep)
        sel = rows[middle_plane_rows(ids[rows], z[rows])]
        keep = np.zeros(len(ids), dtype=bool)
        keep[sel] = True
    return _finish(ids[keep], np.asarray(geoms, dtype=object)[keep], source, notes, source_name, bbox, margin)


def read_polygons(
    path: str | Path,
    *,
    scale: float = 1.0,
    offset: Sequence[float] = (0.0, 0.0),
    bbox: Sequence[float] | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
) -> pd.DataFrame:
    """Read a polygons file (parquet / CSV) into the nuclei table.

    Two layouts are recognised from the columns: a geometry column (``Geometry``/``geometry``/
    ``wkb``/``wkt``: WKB bytes, hex WKB or WKT) with an id column (``EntityID``/``cell_id``/...,
    optional ``ZIndex``), or a vertex table (id, ``vertex_x``, ``vertex_y`` or ``x``, ``y``).
    ``scale``/``offset`` convert vertex coordinates to µm (vertex tables only).
    """
    df = read_table(path, what="polygons")
    name = str(path)
    geom_col = find_column(df.columns, GEOMETRY_ALIASES)
    if geom_col is not None:
        id_col = require_column(df, name, "polygon id", POLYGON_ID_ALIASES)
        z_col = find_column(df.columns, Z_INDEX_ALIASES)
        return nuclei_from_wkb(
            df[geom_col].to_numpy(dtype=object),
            df[id_col],
            z_index=None if z_col is None else df[z_col],
            bbox=bbox,
            margin=margin,
            source_name=name,
        )
    if find_column(df.columns, VERTEX_X_ALIASES) is None:
        raise SeggerInputError(
            f"{name}: not a polygons table: need a geometry column ({', '.join(GEOMETRY_ALIASES)}) "
            f"or vertex columns (vertex_x, vertex_y); columns found: {', '.join(map(str, df.columns))}"
        )
    return nuclei_from_vertices(df, scale=scale, offset=offset, bbox=bbox, margin=margin, source_name=name)


# --------------------------------------------------------------------------- label images


def load_label_image(labels) -> np.ndarray:
    """A 2-D integer label image from an array or a ``.tif``/``.tiff``/``.npy`` file."""
    name = "label image"
    if isinstance(labels, (str, Path)):
        path = Path(labels)
        name = str(path)
        if not path.exists():
            raise SeggerInputError(f"{path}: label image not found; check the path")
        suffix = path.suffix.lower()
        try:
            if suffix in (".tif", ".tiff"):
                import tifffile

                img = tifffile.imread(path)
            elif suffix == ".npy":
                img = np.load(path, allow_pickle=False)
            else:
                raise SeggerInputError(f"{path}: unsupported label image type; use .tif, .tiff or .npy")
        except SeggerInputError:
            raise
        except Exception as exc:  # tifffile / numpy raise many types for damaged files
            raise SeggerInputError(
                f"{path}: cannot read the label image ({one_line(exc)[:150]}); it may be truncated"
            ) from exc
    else:
        img = np.asarray(labels)
    img = np.squeeze(img)
    if img.ndim != 2:
        raise SeggerInputError(
            f"{name}: a 2-D label image is needed, got shape {tuple(img.shape)}; pass one z-plane/channel"
        )
    if img.dtype.kind == "f":
        if not np.all(np.isfinite(img)) or not np.all(np.mod(img, 1) == 0):
            raise SeggerInputError(
                f"{name}: label image has non-integer values (dtype {img.dtype}); pass an integer label "
                "mask (0 = background), not an intensity image"
            )
        img = img.astype(np.int64)
    elif img.dtype.kind == "b":
        img = img.astype(np.int64)
    elif img.dtype.kind not in "iu":
        raise SeggerInputError(f"{name}: label image dtype {img.dtype} is not an integer label mask")
    return img


def _ring_area(rc: np.ndarray) -> float:
    r, c = rc[:, 0], rc[:, 1]
    return 0.5 * abs(float(np.dot(c, np.roll(r, -1)) - np.dot(r, np.roll(c, -1))))


def nuclei_from_labels(
    image,
    pixel_size: float,
    offset: Sequence[float] = (0.0, 0.0),
    *,
    bbox: Sequence[float] | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
) -> pd.DataFrame:
    """One polygon per label of a 2-D label image (0 and negative values are background).

    ``pixel_size`` is µm per pixel and ``offset = (x0, y0)`` the µm position of the *corner* of
    pixel (0, 0); pixel ``(row, col)`` has its centre at ``(x0 + (col + 0.5) * pixel_size,
    y0 + (row + 0.5) * pixel_size)``. Outlines come from ``skimage.measure.find_contours`` at level
    0.5 on each label's bounding-box crop (one loop iteration per label); the outer ring of the
    largest component is kept. ``bd_id`` is the label value as text.
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    img = load_label_image(image)
    ps = float(pixel_size) if pixel_size is not None else float("nan")
    if not np.isfinite(ps) or ps <= 0:
        raise SeggerInputError(
            f"label image: pixel_size must be a positive number of µm per pixel (got {pixel_size!r})"
        )
    try:
        x0, y0 = (float(v) for v in offset)
    except (TypeError, ValueError):
        raise SeggerInputError(
            f"label image: offset must be (x0, y0) in µm, got {offset!r}; pass labels_offset=(x0, y0)"
        ) from None
    values = np.unique(img)
    values = values[values > 0]
    if len(values) == 0:
        out = empty_nuclei()
        out.attrs["warnings"] = ["label image: no labels (all pixels are background)"]
        return out
    remapped = bool(values[-1] > 4 * len(values) + 1024)
    if remapped:  # sparse / huge label values: number them 1..n first
        lab = np.zeros(img.shape, dtype=np.int64)
        fg = img > 0
        lab[fg] = np.searchsorted(values, img[fg]) + 1
    else:
        lab = np.where(img > 0, img, 0).astype(np.int64)
    objects = ndimage.find_objects(lab)
    coords: list[np.ndarray] = []
    ring_index: list[np.ndarray] = []
    ids: list[str] = []
    k_out = 0
    for k, sl in enumerate(objects, start=1):  # one iteration per label
        if sl is None:
            continue
        crop = np.pad(lab[sl] == k, 1).astype(np.uint8)
        contours = find_contours(crop, 0.5)
        if not contours:
            continue
        best = max(contours, key=_ring_area)
        if len(np.unique(best, axis=0)) < 3:
            continue
        rows = best[:, 0] - 1 + sl[0].start
        cols = best[:, 1] - 1 + sl[1].start
        coords.append(np.column_stack([x0 + (cols + 0.5) * ps, y0 + (rows + 0.5) * ps]))
        ring_index.append(np.full(len(best), k_out, dtype=np.int64))
        ids.append(str(int(values[k - 1])) if remapped else str(k))
        k_out += 1
    if not coords:
        return empty_nuclei()
    rings = shapely.linearrings(np.concatenate(coords), indices=np.concatenate(ring_index))
    polys = shapely.polygons(rings)
    return _finish(np.asarray(ids, dtype=object), polys, "labels", [], "label image", bbox, margin)


# --------------------------------------------------------------------------- approximation


def _hull_candidates(x: np.ndarray, y: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Mask of the points that can be convex-hull vertices of their group (Akl-Toussaint).

    Points strictly inside the quadrilateral of each group's lowest, rightmost, highest and
    leftmost points are never hull vertices; dropping them (vectorised) leaves the hull unchanged.
    """
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    df = pd.DataFrame({"g": group, "x": x, "y": y})
    grouped = df.groupby("g", sort=True)
    ext = [grouped["y"].idxmin(), grouped["x"].idxmax(), grouped["y"].idxmax(), grouped["x"].idxmin()]
    qx = np.column_stack([x[e.to_numpy()] for e in ext])  # (groups, 4), counter-clockwise
    qy = np.column_stack([y[e.to_numpy()] for e in ext])
    row = np.searchsorted(ext[0].index.to_numpy(), group)
    inside = np.ones(len(x), dtype=bool)
    for k in range(4):  # strictly left of every (counter-clockwise) edge
        ax, ay = qx[row, k], qy[row, k]
        bx, by = qx[row, (k + 1) % 4], qy[row, (k + 1) % 4]
        inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0
    return ~inside


def approximate_nuclei(
    transcripts: pd.DataFrame,
    min_transcripts: int = 3,
    buffer: float = 1.0,
    *,
    bbox: Sequence[float] | None = None,
    margin: float = DEFAULT_CROP_MARGIN,
) -> pd.DataFrame:
    """**Approximate** nuclei from the vendor's nuclear transcripts (no image or polygons needed).

    For every vendor cell (``cell_id``) with at least ``min_transcripts`` transcripts flagged
    ``nuclear``, the nucleus is the convex hull of those transcripts (x, y) grown by ``buffer`` µm.
    Cells with fewer nuclear transcripts get no nucleus. This is only an approximation: the hull
    under-covers the real nucleus where it has few molecules and ignores concavities; use real
    polygons or a label image when available. ``bd_id`` is the vendor cell id; ``source`` is
    ``"approximated"``. Inputs without a nuclear flag (MERSCOPE) give an empty table.
    """
    for col in (schema.X, schema.Y, schema.NUCLEAR, schema.CELL_ID):
        if col not in transcripts.columns:
            raise SeggerInputError(
                f"approximate_nuclei: the transcripts table has no '{col}' column; read it with read_sample"
            )
    nuclear = transcripts[schema.NUCLEAR].to_numpy(dtype=bool)
    cell = transcripts[schema.CELL_ID].to_numpy(dtype=object)
    x = transcripts[schema.X].to_numpy(np.float64)
    y = transcripts[schema.Y].to_numpy(np.float64)
    mask = nuclear & np.array(pd.notna(cell), dtype=bool) & np.isfinite(x) & np.isfinite(y)
    notes: list[str] = []
    if not mask.any():
        out = empty_nuclei()
        out.attrs["warnings"] = ["no transcript is flagged nuclear within a cell; no nuclei could be approximated"]
        return out
    codes, uniques = pd.factorize(cell[mask], sort=False)
    counts = np.bincount(codes)
    ok = counts >= max(int(min_transcripts), 1)
    row_ok = ok[codes]
    if not row_ok.any():
        out = empty_nuclei()
        out.attrs["warnings"] = [
            f"no cell has ≥ {min_transcripts} nuclear transcripts; no nuclei could be approximated"
        ]
        return out
    new_code = (np.cumsum(ok) - 1)[codes[row_ok]]
    px, py = x[mask][row_ok], y[mask][row_ok]
    keep = _hull_candidates(px, py, new_code)
    px, py, new_code = px[keep], py[keep], new_code[keep]
    order = np.argsort(new_code, kind="stable")
    pts = np.column_stack([px, py])[order]
    multipoints = shapely.multipoints(pts, indices=new_code[order])
    hulls = shapely.convex_hull(multipoints)
    polys = shapely.buffer(hulls, float(buffer), quad_segs=4)
    return _finish(np.asarray(uniques, dtype=object)[ok], polys, "approximated", notes,
                   "approximated nuclei", bbox, margin)
