"""Nuclei from image segmentation: DAPI → label image → segger nuclei, on the breast crop."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from _eco_helpers import BREAST, IMAGE_OFFSET_UM, PIXEL
from segger import schema
from segger.cli.main import _read_kwargs, build_parser
from segger.io import read_sample


def _overlap(traced, vendor) -> tuple[float, float]:
    """(share of vendor nucleus centroids inside a traced nucleus, median best IoU per vendor nucleus)."""
    L = traced[schema.GEOMETRY].to_numpy()
    V = vendor[schema.GEOMETRY].to_numpy()
    tree = shapely.STRtree(L)
    covered = np.zeros(len(V), dtype=bool)
    idx_pt, _ = tree.query(shapely.centroid(V), predicate="within")
    covered[idx_pt] = True
    ious = np.zeros(len(V))
    v_idx, l_idx = tree.query(V, predicate="intersects")
    inter = shapely.area(shapely.intersection(V[v_idx], L[l_idx]))
    union = shapely.area(shapely.union(V[v_idx], L[l_idx]))
    np.maximum.at(ious, v_idx, inter / union)
    return float(covered.mean()), float(np.median(ious))


def test_dapi_watershed_nuclei_overlap_vendor(breast_dapi_labels_tif):
    vendor = read_sample(BREAST).nuclei  # 132 Xenium nucleus polygons
    s = read_sample(BREAST, nuclei="labels", nuclei_labels=breast_dapi_labels_tif, pixel_size=PIXEL,
                    labels_offset=IMAGE_OFFSET_UM)
    assert s.nuclei_source == "labels" and s.nuclei_path == str(breast_dapi_labels_tif)
    assert 0.7 * len(vendor) <= len(s.nuclei) <= 1.3 * len(vendor)
    assert s.nuclei.geometry.map(lambda g: g.is_valid).all()
    covered, iou = _overlap(s.nuclei, vendor)
    assert covered > 0.8, covered
    assert iou > 0.5, iou
    # the offset matters: 5 µm off, the nuclei no longer sit on the vendor's
    shifted = read_sample(BREAST, nuclei="labels", nuclei_labels=breast_dapi_labels_tif, pixel_size=PIXEL,
                          labels_offset=(IMAGE_OFFSET_UM[0] + 5.0, IMAGE_OFFSET_UM[1]))
    assert _overlap(shifted.nuclei, vendor)[0] < covered - 0.4
    # nuclear-flagged molecules fall inside the traced nuclei, the others mostly outside
    tx = s.transcripts
    tree = shapely.STRtree(s.nuclei[schema.GEOMETRY].to_numpy())
    inside = np.zeros(len(tx), dtype=bool)
    inside[tree.query(shapely.points(tx["x"].to_numpy(), tx["y"].to_numpy()), predicate="within")[0]] = True
    nuc = tx["nuclear"].to_numpy()
    assert inside[nuc].mean() > 0.6 and inside[~nuc].mean() < 0.1


def test_cli_arguments_reach_the_reader(breast_dapi_labels_tif):
    """`segger segment DIR --nuclei-labels F --pixel-size P --labels-offset X0 Y0` reads the same nuclei."""
    a = build_parser().parse_args([
        "segment", str(BREAST), "-o", "unused", "--nuclei-labels", str(breast_dapi_labels_tif),
        "--pixel-size", str(PIXEL), "--labels-offset", str(IMAGE_OFFSET_UM[0]), str(IMAGE_OFFSET_UM[1]),
    ])
    kw = _read_kwargs(a)
    assert kw["nuclei"] == "labels"
    s = read_sample(a.input, **kw)
    direct = read_sample(BREAST, nuclei="labels", nuclei_labels=breast_dapi_labels_tif, pixel_size=PIXEL,
                         labels_offset=IMAGE_OFFSET_UM)
    assert s.nuclei[schema.BD_ID].tolist() == direct.nuclei[schema.BD_ID].tolist()


def test_labels_on_a_spatialdata_store(breast_store, breast_dapi_labels_tif):
    """An external label image works on a SpatialData input too (µm via pixel size + offset)."""
    pytest.importorskip("spatialdata")
    s = read_sample(breast_store, nuclei_labels=breast_dapi_labels_tif, pixel_size=PIXEL, labels_offset=IMAGE_OFFSET_UM)
    direct = read_sample(BREAST, nuclei="labels", nuclei_labels=breast_dapi_labels_tif, pixel_size=PIXEL,
                         labels_offset=IMAGE_OFFSET_UM)
    assert s.nuclei_source == "labels"
    assert s.nuclei[schema.BD_ID].tolist() == direct.nuclei[schema.BD_ID].tolist()
