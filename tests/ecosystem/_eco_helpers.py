"""Helpers of the ecosystem tests: SpatialData stores rebuilt from the real Xenium crops.

The breast crop (``sample_data/xenium_breast``) was converted *from* a SpatialData store (the
SegTraQ fixture, see its ATTRIBUTION.md); :func:`make_xenium_store` rebuilds such a store the way
spatialdata-io lays out Xenium data: points ``transcripts`` (x, y, z in µm, ``feature_name``,
``cell_id``, ``overlaps_nucleus``, ``qv``, ``transcript_id``) and shapes ``nucleus_boundaries`` /
``cell_boundaries`` in µm with a scale of 1/0.2125 to the pixel ``global`` system, the DAPI image
``morphology_focus`` with a translation (x, y) = (7153, 12942) px, a ``table`` annotating
``cell_boundaries``, and a ``nucleus_labels`` labels element rasterised from the nucleus polygons
on the image's pixel grid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

import segger

PKG_DATA = Path(segger.__file__).parent / "sample_data"
BREAST = PKG_DATA / "xenium_breast"
LUNG = PKG_DATA / "xenium_lung"
PIXEL = 0.2125
#: the breast crop's image origin in global pixels (x, y), from the original store's transforms
IMAGE_OFFSET_PX = (7153, 12942)
#: µm position of the corner of image pixel (0, 0)
IMAGE_OFFSET_UM = (IMAGE_OFFSET_PX[0] * PIXEL, IMAGE_OFFSET_PX[1] * PIXEL)


def tree_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove a store is left unchanged)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def vertex_polygons(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, polygons) of a Xenium vertex table (few hundred polygons)."""
    v = pd.read_parquet(path)
    ids, polys = [], []
    for cid, g in v.groupby("cell_id", sort=False):
        ids.append(cid)
        polys.append(shapely.Polygon(g[["vertex_x", "vertex_y"]].to_numpy(float)))
    return np.asarray(ids), np.asarray(polys, dtype=object)


def rasterise(polys: np.ndarray, shape: tuple[int, int], offset_um: tuple[float, float],
              pixel: float = PIXEL) -> np.ndarray:
    """Label image (label k+1 = polygon k) on a pixel grid whose pixel (0, 0) corner is at ``offset_um``."""
    from skimage.draw import polygon as fill

    lab = np.zeros(shape, dtype=np.int32)
    for k, p in enumerate(polys):
        xy = shapely.get_coordinates(p.exterior)
        # pixel (r, c) covers [c, c+1) x [r, r+1); skimage puts pixel centres on integers
        c = (xy[:, 0] - offset_um[0]) / pixel - 0.5
        r = (xy[:, 1] - offset_um[1]) / pixel - 0.5
        rr, cc = fill(r, c, shape=shape)
        lab[rr, cc] = k + 1
    return lab


def make_xenium_store(folder: Path, out: Path, *, labels: bool = True, points_in_pixels: bool = False) -> Path:
    """Write a spatialdata-io-like Xenium store of a crop folder; return its path.

    ``points_in_pixels=True`` stores the transcripts in global pixels with an identity transform
    (as some converters do), to test ``um_per_unit``.
    """
    import anndata as ad
    import geopandas as gpd
    import spatialdata as sd
    import tifffile
    from spatialdata.models import Image2DModel, Labels2DModel, PointsModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale, Translation

    to_px = Scale([1 / PIXEL, 1 / PIXEL], axes=("x", "y"))
    raw = pd.read_parquet(folder / "transcripts.parquet")
    df = raw.rename(columns={"x_location": "x", "y_location": "y", "z_location": "z"})
    df = df.drop(columns=[c for c in ("source_row", "__index_level_0__") if c in df.columns])
    df["feature_name"] = df["feature_name"].astype("category")
    if points_in_pixels:
        df["x"] = df["x"] / PIXEL
        df["y"] = df["y"] / PIXEL
        pt = {"global": Identity()}
    else:
        pt = {"global": to_px}
    points = PointsModel.parse(df, coordinates={"x": "x", "y": "y", "z": "z"}, feature_key="feature_name",
                               instance_key="cell_id", transformations=pt)

    shapes, polys_by_kind = {}, {}
    for kind in ("nucleus", "cell"):
        f = folder / f"{kind}_boundaries.parquet"
        if f.exists():
            ids, polys = vertex_polygons(f)
            polys_by_kind[kind] = (ids, polys)
            gdf = gpd.GeoDataFrame(geometry=list(polys), index=pd.Index(ids, name="cell_id"))
            shapes[f"{kind}_boundaries"] = ShapesModel.parse(gdf, transformations={"global": to_px})

    images, label_elements = {}, {}
    tif = folder / "morphology_focus.tif"
    if tif.exists():
        img = tifffile.imread(tif)
        place = Translation(list(IMAGE_OFFSET_PX), axes=("x", "y"))
        images["morphology_focus"] = Image2DModel.parse(img[None], dims=("c", "y", "x"),
                                                        transformations={"global": place})
        if labels and "nucleus" in polys_by_kind:
            lab = rasterise(polys_by_kind["nucleus"][1], img.shape, IMAGE_OFFSET_UM)
            label_elements["nucleus_labels"] = Labels2DModel.parse(lab, dims=("y", "x"),
                                                                  transformations={"global": place})

    tables = {}
    cells = folder / "cells.parquet"
    if cells.exists() and "cell_boundaries" in shapes:
        obs = pd.read_parquet(cells)
        obs = obs[obs["cell_id"].isin(shapes["cell_boundaries"].index)].reset_index(drop=True)
        obs["region"] = pd.Categorical(["cell_boundaries"] * len(obs))
        obs.index = pd.Index(obs["cell_id"].astype(str).to_numpy())
        t = ad.AnnData(obs=obs)
        tables["table"] = TableModel.parse(t, region="cell_boundaries", region_key="region", instance_key="cell_id")

    sdata = sd.SpatialData(images=images, labels=label_elements, points={"transcripts": points},
                           shapes=shapes, tables=tables)
    sdata.write(out)
    return out


def vendor_result(transcripts: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A result table whose segmentation is the vendor's (``segger_cell_id`` = ``"v" + cell_id``)."""
    df = transcripts.copy()
    assigned = df["cell_id"].notna().to_numpy()
    seg = np.full(len(df), "UNASSIGNED", dtype=object)
    seg[assigned] = "v" + df.loc[assigned, "cell_id"].astype(str)
    df["segger_cell_id"] = seg
    rng = np.random.default_rng(seed)
    df["score"] = np.where(assigned, rng.uniform(0.5, 1.0, len(df)), 0.0).astype(np.float32)
    df["assignment"] = pd.Categorical(
        np.where(~assigned, "none", np.where(df["nuclear"], "nucleus", "cytoplasm")),
        categories=["nucleus", "cytoplasm", "fragment", "none"],
    )
    return df


def dapi_labels(image: np.ndarray) -> np.ndarray:
    """A simple nucleus label image from a DAPI image: smooth, Li threshold, distance-transform watershed.

    The same idea as the docs' example; Cellpose / StarDist masks are used the same way.
    """
    from scipy import ndimage as ndi
    from skimage import feature, filters, morphology, segmentation

    smooth = filters.gaussian(image.astype(float), sigma=1, preserve_range=True)
    mask = smooth > filters.threshold_li(smooth)
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, structure=morphology.disk(2)))
    dist = filters.gaussian(ndi.distance_transform_edt(mask), sigma=1)
    peaks = feature.peak_local_max(dist, min_distance=6, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-dist, markers, mask=mask)
    sizes = np.bincount(labels.ravel())
    labels[np.isin(labels, np.flatnonzero(sizes < 100))] = 0  # < 4.5 µm²: debris
    return labels.astype(np.int32)
