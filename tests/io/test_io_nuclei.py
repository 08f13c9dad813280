"""Nuclei from label images, vertex tables (repair, drop) and approximation; cropping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
import tifffile
from skimage.draw import polygon as draw_polygon
from skimage.measure import regionprops

from _io_helpers import assert_nuclei_schema, tree_hash
from segger import schema
from segger.errors import SeggerInputError
from segger.io import (
    approximate_nuclei,
    crop_nuclei,
    empty_nuclei,
    nuclei_from_labels,
    nuclei_from_vertices,
    nuclei_warnings,
    read_sample,
)

PX = 0.2125


@pytest.fixture(scope="module")
def segtraq_labels(tmp_path_factory, segtraq_dir):
    """The segtraq nucleus polygons rasterised at 0.2125 µm/px onto the morphology image grid."""
    x0, y0 = 7153 * PX, 12942 * PX  # from SOURCE.md: col = x / 0.2125 - 7153
    shape = (763, 899)
    v = pd.read_parquet(segtraq_dir / "nucleus_boundaries.parquet")
    img = np.zeros(shape, dtype=np.uint32)
    labels = {}
    for k, (cid, g) in enumerate(v.groupby("cell_id", sort=True), start=1):  # test helper
        cols = (g.vertex_x.to_numpy() - x0) / PX - 0.5
        rows = (g.vertex_y.to_numpy() - y0) / PX - 0.5
        rr, cc = draw_polygon(rows, cols, shape)
        img[rr, cc] = 1000 + 7 * k  # sparse, non-sequential label values
        labels[1000 + 7 * k] = cid
    path = tmp_path_factory.mktemp("labels") / "nuclei_labels.tif"
    tifffile.imwrite(path, img)
    return path, img, (x0, y0), labels


def test_labels_centroids_match(segtraq_labels):
    path, img, (x0, y0), _ = segtraq_labels
    nuc = nuclei_from_labels(path, PX, (x0, y0))
    assert_nuclei_schema(nuc, "labels")
    props = {str(p.label): p for p in regionprops(img.astype(np.int64))}
    assert set(nuc[schema.BD_ID]) == set(props)
    for bd, x, y, geom in nuc[[schema.BD_ID, schema.X, schema.Y, schema.GEOMETRY]].itertuples(index=False):
        r, c = props[bd].centroid
        # pixel centres at +0.5: centroid in µm within a fraction of a pixel
        assert abs(x - (x0 + (c + 0.5) * PX)) < 0.3 * PX
        assert abs(y - (y0 + (r + 0.5) * PX)) < 0.3 * PX
        # area within a pixel-wide rim of the pixel count
        assert abs(geom.area / PX**2 - props[bd].area) < 0.6 * geom.length / PX + 2


def test_labels_through_read_sample(segtraq_dir, segtraq_labels):
    path, img, offset, labels = segtraq_labels
    before = tree_hash(path.parent)
    s = read_sample(segtraq_dir, nuclei="labels", nuclei_labels=path, pixel_size=PX, labels_offset=offset)
    assert s.nuclei_source == "labels" and s.nuclei_path == str(path)
    assert_nuclei_schema(s.nuclei, "labels")
    poly = read_sample(segtraq_dir).nuclei.set_index(schema.BD_ID)
    # every rasterised nucleus away from the image edge lies on its polygon
    x0, y0 = offset
    inner = shapely.box(x0 + PX, y0 + PX, x0 + (img.shape[1] - 1) * PX, y0 + (img.shape[0] - 1) * PX)
    matched = 0
    for bd, x, y in s.nuclei[[schema.BD_ID, schema.X, schema.Y]].itertuples(index=False):
        cid = str(labels[int(bd)])
        if cid in poly.index and inner.contains(poly.loc[cid, schema.GEOMETRY]):
            assert np.hypot(x - poly.loc[cid, schema.X], y - poly.loc[cid, schema.Y]) < 0.5
            matched += 1
    assert matched >= 100
    # "auto" uses a given label image; npy and arrays work too; default Xenium pixel size noted
    np.save(path.parent / "nuclei_labels.npy", img)
    a = read_sample(segtraq_dir, nuclei_labels=path.parent / "nuclei_labels.npy", labels_offset=offset)
    assert a.nuclei_source == "labels" and len(a.nuclei) == len(s.nuclei)
    assert any("0.2125" in w for w in a.warnings)
    b = read_sample(segtraq_dir, nuclei="labels", nuclei_labels=img, pixel_size=PX, labels_offset=offset)
    assert len(b.nuclei) == len(s.nuclei)
    assert tree_hash(path.parent) == before | {"nuclei_labels.npy": tree_hash(path.parent)["nuclei_labels.npy"]}


def test_labels_small_cases():
    img = np.zeros((10, 12), dtype=np.int32)
    img[2, 3] = 5  # a single pixel
    img[5:9, 6:11] = 2  # a rectangle with a hole
    img[6, 8] = 0
    nuc = nuclei_from_labels(img, 0.5, (100.0, 200.0)).set_index(schema.BD_ID)
    assert sorted(nuc.index) == ["2", "5"]
    assert nuc.loc["5", schema.X] == pytest.approx(100 + 3.5 * 0.5)
    assert nuc.loc["5", schema.Y] == pytest.approx(200 + 2.5 * 0.5)
    minx, miny, maxx, maxy = nuc.loc["2", schema.GEOMETRY].bounds
    assert minx >= 100 + 6 * 0.5 - 1e-9 and maxx <= 100 + 11 * 0.5 + 1e-9
    assert miny >= 200 + 5 * 0.5 - 1e-9 and maxy <= 200 + 9 * 0.5 + 1e-9
    assert len(nuclei_from_labels(np.zeros((4, 4), int), 1.0)) == 0
    with pytest.raises(SeggerInputError, match="2-D"):
        nuclei_from_labels(np.zeros((2, 4, 4), int), 1.0)
    with pytest.raises(SeggerInputError, match="pixel_size"):
        nuclei_from_labels(img, 0)
    with pytest.raises(SeggerInputError, match="labels_offset"):
        nuclei_from_labels(img, 1.0, (1.0,))
    with pytest.raises(SeggerInputError, match="non-integer"):
        nuclei_from_labels(img + 0.5, 1.0)


def test_labels_errors(segtraq_dir, tmp_path):
    with pytest.raises(SeggerInputError, match="nuclei_labels"):
        read_sample(segtraq_dir, nuclei="labels")
    missing = tmp_path / "nope.tif"
    with pytest.raises(SeggerInputError, match="nope.tif"):
        read_sample(segtraq_dir, nuclei="labels", nuclei_labels=missing, pixel_size=PX)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00garbage")
    with pytest.raises(SeggerInputError, match="broken.tif"):
        read_sample(segtraq_dir, nuclei="labels", nuclei_labels=broken, pixel_size=PX)


def test_vertices_repair_and_drop():
    rows = []
    # a valid square, a bow-tie (self-intersecting), a 2-distinct-vertex sliver, a polygon named like
    # segger's unassigned marker (kept under a reserved id, with a note: never dropped silently)
    for cid, pts in [
        ("a", [(0, 0), (2, 0), (2, 2), (0, 2), (0, 0)]),
        ("bow", [(10, 10), (14, 14), (14, 10), (10, 14), (10, 10)]),
        ("thin", [(20, 20), (21, 21), (20, 20), (21, 21)]),
        ("UNASSIGNED", [(30, 30), (31, 30), (31, 31)]),
    ]:
        rows += [(cid, x, y) for x, y in pts]
    df = pd.DataFrame(rows, columns=["cell_id", "vertex_x", "vertex_y"])
    nuc = nuclei_from_vertices(df)
    assert_nuclei_schema(nuc, "polygon")
    assert list(nuc[schema.BD_ID]) == ["a", "bow", "UNASSIGNED_nucleus"]
    bow = nuc[schema.GEOMETRY].iloc[1]
    assert bow.is_valid and bow.area == pytest.approx(4.0)  # largest triangle of the bow-tie
    notes = nuclei_warnings(nuc)
    assert any("fewer than 3 distinct vertices" in n and "thin" in n for n in notes)
    assert any("named 'UNASSIGNED'" in n for n in notes)


def test_vertices_label_id_keeps_largest():
    df = pd.DataFrame(
        {
            "cell_id": [1] * 8,
            "label_id": [1] * 4 + [2] * 4,
            "vertex_x": [0, 1, 1, 0, 5, 8, 8, 5],
            "vertex_y": [0, 0, 1, 1, 5, 5, 8, 8],
        }
    )
    nuc = nuclei_from_vertices(df)
    assert list(nuc[schema.BD_ID]) == ["1"] and nuc[schema.GEOMETRY].iloc[0].area == pytest.approx(9)
    assert any("largest polygon per id" in n for n in nuclei_warnings(nuc))


def test_crop_nuclei():
    nuc = nuclei_from_vertices(
        pd.DataFrame(
            {
                "cell_id": ["in"] * 4 + ["edge"] * 4 + ["out"] * 4,
                "vertex_x": [1, 2, 2, 1, 9, 12, 12, 9, 50, 51, 51, 50],
                "vertex_y": [1, 1, 2, 2, 4, 4, 6, 6, 50, 50, 51, 51],
            }
        )
    )
    out = crop_nuclei(nuc, (0, 0, 10, 10), margin=1.0)
    assert list(out[schema.BD_ID]) == ["in", "edge"]
    edge = out[schema.GEOMETRY].iloc[1]
    assert edge.bounds == pytest.approx((9, 4, 11, 6))
    assert out[schema.X].iloc[1] == pytest.approx(10)
    assert len(crop_nuclei(empty_nuclei(), (0, 0, 1, 1))) == 0


def test_approximate_nuclei_rules():
    t = pd.DataFrame(
        {
            "x": [0.0, 1.0, 0.0, 5.0, 6.0, 9.0, 9.5, 20.0],
            "y": [0.0, 0.0, 1.0, 5.0, 6.0, 9.0, 9.5, 20.0],
            "nuclear": [True, True, True, True, True, True, False, True],
            "cell_id": ["a", "a", "a", "b", "b", "c", "c", None],
        }
    )
    nuc = approximate_nuclei(t, min_transcripts=2, buffer=1.0)
    assert_nuclei_schema(nuc, "approximated")
    assert list(nuc[schema.BD_ID]) == ["a", "b"]  # c has 1 nuclear molecule, None is no cell
    a = nuc[schema.GEOMETRY].iloc[0]
    assert a.covers(shapely.Point(0, 0)) and a.covers(shapely.Point(1.7, 0))
    assert not a.covers(shapely.Point(2.5, 0))
    b = nuc[schema.GEOMETRY].iloc[1]  # two points: a buffered segment
    assert b.area > 0 and b.covers(shapely.Point(5.5, 5.5))
    assert len(approximate_nuclei(t, min_transcripts=4)) == 0


def test_hull_prefilter_keeps_the_exact_hull():
    from segger.io.nuclei import _hull_candidates

    rng = np.random.default_rng(1)
    n = 5000
    group = np.sort(rng.integers(0, 60, n))
    x = rng.normal(size=n) * 3 + group * 50
    y = rng.normal(size=n) * 2
    keep = _hull_candidates(x, y, group)
    assert keep.sum() < n / 3
    full = shapely.convex_hull(shapely.multipoints(np.column_stack([x, y]), indices=group))
    part = shapely.convex_hull(shapely.multipoints(np.column_stack([x[keep], y[keep]]), indices=group[keep]))
    assert shapely.equals(full, part).all()


def test_sample_summary_and_repr(lung_dir):
    s = read_sample(lung_dir)
    assert "221 nuclei (polygon)" in s.summary()
    assert repr(s).startswith("SpatialSample(platform='xenium'") and "transcripts=12,919" in repr(s)
