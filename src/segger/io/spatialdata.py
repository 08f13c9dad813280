"""SpatialData stores → :class:`~segger.io.readers.SpatialSample` (optional extra ``spatialdata``).

``read_spatialdata(store)`` reads a SpatialData zarr store (a folder such as ``sample.zarr``
written by ``spatialdata`` / ``spatialdata-io``) or an in-memory ``spatialdata.SpatialData``
object, e.g. one opened by napari-spatialdata:

* the **points** element holding the transcripts (default: ``"transcripts"``, else the only
  points element): columns ``x``, ``y`` [``z``], the gene column named by the element's
  ``feature_key`` (``feature_name`` for Xenium) and, when present, the cell column named by its
  ``instance_key`` (``cell_id``), ``overlaps_nucleus`` / ``CellComp``, ``qv``, ``transcript_id``;
  they are normalised exactly like the vendor tables of :mod:`segger.io.readers`;
* the **nuclei**: a shapes element of polygons (default ``"nucleus_boundaries"``; circles are
  turned into polygons), or a labels element (default ``"nucleus_labels"``), or an external label
  image (``nuclei_labels=``, e.g. a Cellpose / StarDist mask), or approximated from the nuclear
  transcripts as :func:`~segger.io.read_sample` does.

Coordinate frames
-----------------
Segger works in µm. The µm frame is the *intrinsic* frame of the points element times
``um_per_unit`` (1.0 by default: spatialdata-io stores Xenium and MERSCOPE transcripts in µm and
gives them a scale, 1/0.2125 for Xenium, to the image-pixel ``"global"`` system). A shapes or
labels element is mapped into that frame through the transformations that both elements have to
one coordinate system (``coordinate_system=``, default ``"global"`` when both have it)::

    element → µm  =  um_per_unit · inverse(points → cs) · (element → cs)

so a label image in pixels with an identity or translation to ``"global"`` lands on the µm
transcripts. Label pixel ``(row, col)`` covers ``[col, col + 1) × [row, row + 1)`` in its own
intrinsic frame (the SpatialData convention: the first pixel's centre is at (0.5, 0.5)).

The store is only read; results are written to a copy or a new store by
:func:`segger.export.spatialdata.write_spatialdata`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import shapely

from segger import schema
from segger.errors import SeggerInputError, one_line

__all__ = [
    "SPATIALDATA_GROUPS",
    "is_spatialdata_store",
    "require_spatialdata",
    "open_spatialdata",
    "choose_points_element",
    "choose_nuclei_element",
    "element_to_um",
    "points_table",
    "read_spatialdata",
]

#: Sub-groups a SpatialData zarr store may hold.
SPATIALDATA_GROUPS = ("points", "shapes", "labels", "images", "tables", "table")

INSTALL_HINT = 'install the optional extra: pip install "napari-segger[spatialdata]"'

# columns a previous segger run wrote on the points; they are kept as given on reading
SEGGER_POINT_COLUMNS = (schema.SEGGER_CELL_ID, schema.SCORE, schema.ASSIGNMENT)


# --------------------------------------------------------------------------- detection / opening


def is_spatialdata_store(path: Any) -> bool:
    """True when ``path`` is a folder that looks like a SpatialData zarr store.

    A zarr group (``zarr.json`` or ``.zgroup``) with at least one of the SpatialData element
    groups (``points``, ``shapes``, ``labels``, ``images``, ``tables``). Cheap: only file names
    are looked at and ``spatialdata`` is not imported.
    """
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    if not p.is_dir():
        return False
    if not ((p / "zarr.json").is_file() or (p / ".zgroup").is_file()):
        return False
    return any((p / g).is_dir() for g in SPATIALDATA_GROUPS)


def require_spatialdata():
    """Import and return the ``spatialdata`` module, or raise a one-line install hint."""
    try:
        import spatialdata
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SeggerInputError(f"SpatialData input/output needs the 'spatialdata' package; {INSTALL_HINT}") from exc
    return spatialdata


def _is_sdata(obj: Any) -> bool:
    return type(obj).__name__ == "SpatialData" and hasattr(obj, "points") and hasattr(obj, "shapes")


def open_spatialdata(store: Any):
    """``(sdata, source)`` for a store path or an in-memory ``SpatialData`` (never modified)."""
    if _is_sdata(store):
        path = getattr(store, "path", None)
        return store, str(path) if path else "<in-memory SpatialData>"
    if not isinstance(store, (str, os.PathLike)):
        raise SeggerInputError(
            f"expected a SpatialData zarr store path or a SpatialData object, got {type(store).__name__}"
        )
    p = Path(store)
    if not p.exists():
        raise SeggerInputError(f"{p}: no such SpatialData store; check the path")
    if not is_spatialdata_store(p):
        raise SeggerInputError(
            f"{p}: not a SpatialData zarr store (no zarr group with points/shapes/labels/images/tables); "
            "write one with spatialdata or spatialdata-io, or pass a vendor output folder"
        )
    sd = require_spatialdata()
    try:
        sdata = sd.read_zarr(p)
    except Exception as exc:  # spatialdata / zarr raise many types for damaged stores
        raise SeggerInputError(
            f"{p}: cannot read this SpatialData store ({one_line(exc)[:200]}); it may be incomplete "
            "or written by an incompatible spatialdata version"
        ) from exc
    return sdata, str(p)


# --------------------------------------------------------------------------- element choice


def _names(sdata, group: str) -> list[str]:
    return list(getattr(sdata, group).keys())


def choose_points_element(sdata, name: str | None = None) -> str:
    """The transcripts points element: ``name``, else ``"transcripts"``, else the only one."""
    names = _names(sdata, "points")
    if name is not None:
        if name not in names:
            raise SeggerInputError(
                f"SpatialData store has no points element {name!r} (points elements: {names or 'none'})"
            )
        return name
    if "transcripts" in names:
        return "transcripts"
    tx_like = [n for n in names if "transcript" in n.lower()]
    if len(tx_like) == 1:
        return tx_like[0]
    if len(names) == 1:
        return names[0]
    if not names:
        raise SeggerInputError("SpatialData store has no points element: segger needs the transcripts as points")
    raise SeggerInputError(
        f"SpatialData store has several points elements {names}; name the transcripts one "
        "(read_spatialdata(..., points='NAME'))"
    )


def choose_nuclei_element(sdata, kind: str = "nucleus", group: str | None = None) -> tuple[str, str] | None:
    """``(group, name)`` of the nuclei element to use, or None when the store has none.

    ``kind="nucleus"``: shapes ``nucleus_boundaries``, then labels ``nucleus_labels``, then the
    only shapes / labels element whose name mentions ``nucle``. ``kind="cell"``: the same with
    ``cell_boundaries`` / ``cell_labels`` / ``cell``. ``group="shapes"`` or ``"labels"`` looks
    in that group only.
    """
    shapes = _names(sdata, "shapes") if group in (None, "shapes") else []
    labels = _names(sdata, "labels") if group in (None, "labels") else []
    if f"{kind}_boundaries" in shapes:
        return "shapes", f"{kind}_boundaries"
    if f"{kind}_labels" in labels:
        return "labels", f"{kind}_labels"
    key = "nucle" if kind == "nucleus" else "cell"
    for group, names in (("shapes", shapes), ("labels", labels)):
        hits = [n for n in names if key in n.lower() and not n.startswith("segger")]
        if kind == "cell":
            hits = [n for n in hits if "nucle" not in n.lower()]
        if len(hits) == 1:
            return group, hits[0]
    return None


def _find_element(sdata, name: str) -> tuple[str, Any]:
    for group in ("shapes", "labels", "points", "images"):
        elements = getattr(sdata, group)
        if name in elements:
            return group, elements[name]
    raise SeggerInputError(
        f"SpatialData store has no element {name!r} (shapes: {_names(sdata, 'shapes')}, "
        f"labels: {_names(sdata, 'labels')})"
    )


# --------------------------------------------------------------------------- transformations


def _affine_xy(element, cs: str) -> np.ndarray:
    from spatialdata.transformations import get_transformation

    t = get_transformation(element, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=float)


def _coordinate_systems(element) -> list[str]:
    from spatialdata.transformations import get_transformation

    return list(get_transformation(element, get_all=True).keys())


def _shared_cs(points_el, other_el, requested: str | None, other_name: str) -> str:
    a, b = _coordinate_systems(points_el), _coordinate_systems(other_el)
    shared = [c for c in a if c in b]
    if requested is not None:
        if requested not in shared:
            raise SeggerInputError(
                f"coordinate system {requested!r} is not shared by the points element ({a}) and "
                f"{other_name!r} ({b}); pick one of {shared or 'none'}"
            )
        return requested
    if not shared:
        raise SeggerInputError(
            f"the points element ({a}) and {other_name!r} ({b}) share no coordinate system, so the "
            "nuclei cannot be placed on the transcripts; add a transformation to a common system"
        )
    return "global" if "global" in shared else shared[0]


def element_to_um(sdata, element_name: str, points_name: str, *, coordinate_system: str | None = None,
                  um_per_unit: float = 1.0) -> np.ndarray:
    """3×3 affine (x, y, 1) taking ``element_name``'s intrinsic coordinates to segger's µm frame.

    ``um_per_unit · inverse(points → cs) · (element → cs)``; see the module docstring.
    """
    _, el = _find_element(sdata, element_name)
    pts = sdata.points[points_name]
    cs = _shared_cs(pts, el, coordinate_system, element_name)
    ap = _affine_xy(pts, cs)
    ae = _affine_xy(el, cs)
    try:
        inv = np.linalg.inv(ap)
    except np.linalg.LinAlgError as exc:
        raise SeggerInputError(
            f"the points element's transformation to {cs!r} is not invertible; fix the store's transformations"
        ) from exc
    scale = np.diag([float(um_per_unit), float(um_per_unit), 1.0])
    return scale @ inv @ ae


def _transform_geoms(geoms: np.ndarray, m: np.ndarray) -> np.ndarray:
    if np.allclose(m, np.eye(3)):
        return geoms
    a = m[:2, :2]
    b = m[:2, 2]
    return shapely.transform(geoms, lambda xy: xy @ a.T + b)


# --------------------------------------------------------------------------- points


def points_table(sdata, name: str) -> pd.DataFrame:
    """The points element as a pandas DataFrame with a RangeIndex (row order of the element)."""
    el = sdata.points[name]
    df = el.compute() if hasattr(el, "compute") else el
    df = pd.DataFrame(df).reset_index(drop=True)
    if len(df) == 0:
        raise SeggerInputError(f"SpatialData points element {name!r} has no rows")
    return df


def _points_attrs(sdata, name: str) -> dict:
    attrs = getattr(sdata.points[name], "attrs", {}) or {}
    return dict(attrs.get("spatialdata_attrs", {}) or {})


def _check_um_per_unit(v) -> float:
    from segger.io.readers import positive_number

    return positive_number(v, "um_per_unit (µm per points unit)")


# --------------------------------------------------------------------------- nuclei


def _nuclei_from_shapes(sdata, name: str, m: np.ndarray, bbox, margin: float) -> pd.DataFrame:
    from segger.io.nuclei import nuclei_from_wkb

    gdf = sdata.shapes[name]
    geoms = np.asarray(gdf.geometry.to_numpy(), dtype=object)
    types = shapely.get_type_id(geoms)
    if (types == 0).any():  # circles: Points with a radius column
        if "radius" not in gdf.columns:
            raise SeggerInputError(f"shapes element {name!r} holds points without a 'radius' column")
        r = gdf["radius"].to_numpy(dtype=float)
        pts = types == 0
        geoms = geoms.copy()
        geoms[pts] = shapely.buffer(geoms[pts], r[pts], quad_segs=8)
    geoms = _transform_geoms(geoms, m)
    id_col = next((c for c in ("cell_id", "EntityID", "label") if c in gdf.columns), None)
    ids = gdf[id_col] if id_col else pd.Series(gdf.index.to_numpy(), copy=False)
    return nuclei_from_wkb(geoms, ids, bbox=bbox, margin=margin, source_name=f"shapes/{name}")


def _label_array(el):
    """The full-resolution 2-D DataArray of a labels element (single or multiscale)."""
    if hasattr(el, "children") and not hasattr(el, "dims"):  # DataTree (multiscale)
        level = el["scale0"] if "scale0" in el.children else el[sorted(el.children)[0]]
        ds = level.ds if hasattr(level, "ds") else level
        var = list(ds.data_vars)[0]
        return ds[var]
    return el


def _nuclei_from_labels_element(sdata, name: str, m: np.ndarray, bbox, margin: float) -> pd.DataFrame:
    from segger.io.nuclei import crop_nuclei, nuclei_from_labels

    arr = _label_array(sdata.labels[name])
    dims = tuple(arr.dims)
    if dims != ("y", "x"):
        raise SeggerInputError(f"labels element {name!r} has dims {dims}; a 2-D (y, x) label image is needed")
    h, w = arr.shape
    # the transcripts' box (grown by the margin) in label pixels, so a slide-sized image is only
    # read where the transcripts are
    xmin, ymin, xmax, ymax = bbox
    corners = np.array([[xmin - margin, ymin - margin, 1], [xmax + margin, ymin - margin, 1],
                        [xmin - margin, ymax + margin, 1], [xmax + margin, ymax + margin, 1]], dtype=float)
    px = corners @ np.linalg.inv(m).T
    c0 = int(np.clip(np.floor(px[:, 0].min()) - 1, 0, w))
    c1 = int(np.clip(np.ceil(px[:, 0].max()) + 1, 0, w))
    r0 = int(np.clip(np.floor(px[:, 1].min()) - 1, 0, h))
    r1 = int(np.clip(np.ceil(px[:, 1].max()) + 1, 0, h))
    if c1 <= c0 or r1 <= r0:
        raise SeggerInputError(
            f"labels element {name!r} does not overlap the transcripts after its transformation; "
            "check the store's coordinate systems (or pass um_per_unit)"
        )
    crop = np.asarray(arr[r0:r1, c0:c1].values)
    nuc = nuclei_from_labels(crop, 1.0, (float(c0), float(r0)))
    if len(nuc) == 0:
        return nuc
    notes = list(nuc.attrs.get("warnings", []))
    geoms = _transform_geoms(nuc[schema.GEOMETRY].to_numpy(dtype=object), m)
    cent = shapely.centroid(geoms)
    nuc = nuc.copy()
    nuc[schema.GEOMETRY] = geoms
    nuc[schema.X] = shapely.get_x(cent).astype(np.float64)
    nuc[schema.Y] = shapely.get_y(cent).astype(np.float64)
    nuc.attrs["warnings"] = notes
    return crop_nuclei(nuc, bbox, margin)


# --------------------------------------------------------------------------- read


def read_spatialdata(
    store: Any,
    *,
    points: str | None = None,
    nuclei: str = "auto",
    nuclei_element: str | None = None,
    coordinate_system: str | None = None,
    um_per_unit: float = 1.0,
    min_qv: float | None = 20.0,
    filter_controls: bool = True,
    nuclei_labels=None,
    pixel_size: float | None = None,
    labels_offset: Sequence[float] = (0.0, 0.0),
    boundaries: str = "nucleus",
    polygons: str | os.PathLike | None = None,
    min_nuclear_transcripts: int = 3,
    crop_margin: float | None = None,
):
    """Read a SpatialData store (path or object) into a :class:`~segger.io.readers.SpatialSample`.

    Parameters
    ----------
    store : str, Path or SpatialData
        Path of a SpatialData zarr store, or a ``spatialdata.SpatialData`` object.
    points : str, optional
        Name of the transcripts points element (default ``"transcripts"`` or the only one).
    nuclei : str
        ``"auto"``, ``"polygons"`` (a shapes element), ``"labels"`` (a labels element, or the
        ``nuclei_labels`` image), ``"approximate"`` or ``"none"``, as in
        :func:`~segger.io.read_sample`. ``"auto"`` takes ``nuclei_labels`` when given, else
        ``nuclei_element`` / the store's nucleus shapes or labels, else approximates.
    nuclei_element : str, optional
        Name of the shapes or labels element holding the nuclei (default
        ``"nucleus_boundaries"``, then ``"nucleus_labels"``; ``"cell_…"`` with
        ``boundaries="cell"``).
    coordinate_system : str, optional
        Coordinate system shared by the points and nuclei elements, used to place the nuclei on
        the transcripts (default ``"global"`` when shared).
    um_per_unit : float
        µm per intrinsic unit of the points element (1.0 for spatialdata-io Xenium and MERSCOPE
        stores; the pixel size for stores whose transcripts are in pixels).
    min_qv, filter_controls, nuclei_labels, pixel_size, labels_offset, polygons, min_nuclear_transcripts, crop_margin
        As in :func:`~segger.io.read_sample`; an external ``nuclei_labels`` image is placed in
        µm with ``pixel_size`` and ``labels_offset``.

    Returns
    -------
    SpatialSample
        ``platform="spatialdata"``; ``nuclei_path`` names the element used
        (``"STORE::shapes/nucleus_boundaries"``).

    Notes
    -----
    The transcripts keep the points element's row order, so ``transcript_id`` is the element's
    ``transcript_id`` column or, without one, the row number; results can then be written back
    onto the same element (:func:`segger.export.spatialdata.write_spatialdata`).
    """
    from segger.io.filtering import DEFAULT_CONTROL_PATTERNS, filter_transcripts
    from segger.io.nuclei import (
        DEFAULT_CROP_MARGIN,
        approximate_nuclei,
        bbox_of,
        empty_nuclei,
        nuclei_from_labels,
        read_polygons,
    )
    from segger.io.readers import (
        CELL_ALIASES,
        COMPARTMENT_ALIASES,
        GENE_ALIASES,
        NUCLEAR_ALIASES,
        NUCLEI_MODES,
        QV_ALIASES,
        TX_ID_ALIASES,
        _check_choice,
        check_min_qv,
        make_sample,
        _first,
        _standardise,
        check_units,
    )

    margin = DEFAULT_CROP_MARGIN if crop_margin is None else float(crop_margin)
    mode = _check_choice("nuclei", nuclei, NUCLEI_MODES)
    kind = _check_choice("boundaries", boundaries, ("nucleus", "cell"))
    um = _check_um_per_unit(um_per_unit)
    min_qv = check_min_qv(min_qv)

    require_spatialdata()
    sdata, source = open_spatialdata(store)
    pname = choose_points_element(sdata, points)
    where = f"{source}::points/{pname}"
    raw = points_table(sdata, pname)
    attrs = _points_attrs(sdata, pname)
    feature_key = attrs.get("feature_key")
    instance_key = attrs.get("instance_key")
    if instance_key in SEGGER_POINT_COLUMNS:  # a segger store's own column is not the vendor cell id
        instance_key = None
    for col in ("x", "y"):
        if col not in raw.columns:
            raise SeggerInputError(f"{where}: points element lacks the '{col}' column")
    z_aliases = ("z",) if "z" in raw.columns else ()
    tx = _standardise(
        raw, where,
        x_aliases=("x",), y_aliases=("y",), z_aliases=z_aliases,
        gene_aliases=_first(*((feature_key,) if feature_key else ()), GENE_ALIASES),
        qv_aliases=QV_ALIASES,
        cell_aliases=_first(*((instance_key,) if instance_key else ()), CELL_ALIASES),
        nuclear_aliases=NUCLEAR_ALIASES,
        tx_id_aliases=TX_ID_ALIASES,
        compartment_aliases=COMPARTMENT_ALIASES,
        scale=um,
    )
    del raw
    notes: list[str] = []
    patterns = DEFAULT_CONTROL_PATTERNS if filter_controls else ()
    transcripts, report = filter_transcripts(tx, min_qv, patterns, source=where)
    del tx
    if report.removed_nonfinite:
        notes.append(f"{where}: {report.removed_nonfinite:,} transcripts with NaN/inf coordinates were dropped")
    if min_qv and not report.qv_available:
        notes.append(f"{where}: no qv values in this input; the qv filter (min_qv={min_qv:g}) was skipped")
    notes += check_units(transcripts, "table")
    bbox = bbox_of(transcripts)

    nuclei_path: str | None = None
    if mode == "auto":
        if nuclei_labels is not None:
            mode = "labels"
        else:
            mode = "store?"

    use_file_labels = mode == "labels" and nuclei_labels is not None
    use_file_polygons = mode in ("polygons", "store?") and polygons is not None
    element = None
    if mode in ("polygons", "labels", "store?") and not (use_file_labels or use_file_polygons):
        if nuclei_element is not None:
            group, _ = _find_element(sdata, nuclei_element)
            element = (group, nuclei_element)
        else:
            element = choose_nuclei_element(sdata, kind, {"polygons": "shapes", "labels": "labels"}.get(mode))

    if mode == "none":
        nuc, source_kind = empty_nuclei(), "none"
    elif use_file_labels:
        if pixel_size is None:
            raise SeggerInputError(
                "nuclei_labels needs pixel_size (µm per pixel of the label image); CLI --pixel-size"
            )
        nuc = nuclei_from_labels(nuclei_labels, float(pixel_size), labels_offset, bbox=bbox, margin=margin)
        source_kind = "labels"
        if isinstance(nuclei_labels, (str, os.PathLike)):
            nuclei_path = str(nuclei_labels)
    elif use_file_polygons:
        nuc = read_polygons(polygons, bbox=bbox, margin=margin)
        source_kind, nuclei_path = "polygon", str(polygons)
    elif element is not None:
        group, ename = element
        if mode == "polygons" and group != "shapes":
            raise SeggerInputError(f"nuclei='polygons' needs a shapes element, but {ename!r} is a {group} element")
        if mode == "labels" and group != "labels":
            raise SeggerInputError(f"nuclei='labels' needs a labels element, but {ename!r} is a {group} element")
        m = element_to_um(sdata, ename, pname, coordinate_system=coordinate_system, um_per_unit=um)
        if group == "shapes":
            nuc = _nuclei_from_shapes(sdata, ename, m, bbox, margin)
            source_kind = "polygon"
        elif group == "labels":
            nuc = _nuclei_from_labels_element(sdata, ename, m, bbox, margin)
            source_kind = "labels"
        else:
            raise SeggerInputError(f"element {ename!r} is a {group} element; nuclei need a shapes or labels element")
        nuclei_path = f"{source}::{group}/{ename}"
    elif mode in ("polygons", "labels"):
        raise SeggerInputError(
            f"{source}: no {kind} {'shapes' if mode == 'polygons' else 'labels'} element found "
            f"(shapes: {_names(sdata, 'shapes')}, labels: {_names(sdata, 'labels')}); name one with "
            "nuclei_element=, or use nuclei='approximate'"
        )
    else:  # approximate, or auto without any nuclei element
        nuc = approximate_nuclei(transcripts, min_nuclear_transcripts, bbox=bbox, margin=margin)
        source_kind = "approximated"
        if mode == "store?":
            notes.append(
                f"{source}: no {kind} shapes or labels element; {len(nuc):,} nuclei approximated from the "
                "nuclear transcripts of each cell"
            )

    return make_sample(transcripts, nuc, platform="spatialdata", source=source, filter_report=report,
                       nuclei_source=source_kind, notes=notes, nuclei_path=nuclei_path,
                       nuclei_wanted=source_kind != "none")
