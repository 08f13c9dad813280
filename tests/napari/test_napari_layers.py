"""segger.napari.layers: pure conversions between core tables and napari layer data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from segger import schema as S
from segger.errors import SeggerInputError
from segger.napari import layers as L


def _tx(n=200, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            S.TX_ID: np.arange(n, dtype=np.int64) + 1000,
            S.X: rng.uniform(0, 50, n),
            S.Y: rng.uniform(100, 150, n),
            S.Z: rng.uniform(0, 5, n),
            S.GENE: rng.choice(["A", "B", "C", "D"], n).astype(object),
            S.QV: rng.uniform(20, 40, n),
            S.NUCLEAR: rng.random(n) < 0.3,
            S.CELL_ID: np.where(rng.random(n) < 0.5, "c1", None).astype(object),
        }
    )


def _result(tx, cut=None):
    r = tx.copy()
    ids = np.array(["cell-1", "cell-2", S.UNASSIGNED], dtype=object)[np.arange(len(tx)) % 3]
    r[S.SEGGER_CELL_ID] = ids
    r[S.SCORE] = np.linspace(0, 1, len(tx)).astype(np.float32)
    r[S.ASSIGNMENT] = np.where(ids == S.UNASSIGNED, "none", "nucleus").astype(object)
    return r


# ------------------------------------------------------------------------------------ colours
def test_hash_colors_are_stable_distinct_and_rgba():
    a = L.hash_colors(["cell-1", "cell-2", "cell-3"])
    b = L.hash_colors(np.array(["cell-3", "cell-1"], dtype=object))
    assert a.dtype == np.float32 and a.shape == (3, 4)
    np.testing.assert_array_equal(a[0], b[1])  # same key, same colour, any order
    np.testing.assert_array_equal(a[2], b[0])
    assert len({tuple(r) for r in a}) == 3
    assert (a >= 0).all() and (a <= 1).all()
    assert (a[:, 3] == 1).all()


def test_colors_by_key_one_row_per_value_with_grey_missing():
    vals = pd.Series(["x", S.UNASSIGNED, None, "x", "y"], dtype=object)
    c = L.colors_by_key(vals, missing=(S.UNASSIGNED,))
    assert c.shape == (5, 4) and c.dtype == np.float32
    np.testing.assert_array_equal(c[0], c[3])
    np.testing.assert_array_equal(c[1], L.UNASSIGNED_RGBA)
    np.testing.assert_array_equal(c[2], L.UNASSIGNED_RGBA)
    assert not np.array_equal(c[0], c[4])


def test_colors_at_a_million_points_are_vectorised():
    import time

    ids = np.array([f"cell-{i}" for i in range(20_000)], dtype=object)[
        np.random.default_rng(0).integers(0, 20_000, 1_000_000)
    ]
    t = time.perf_counter()
    c = L.colors_by_key(ids, missing=(S.UNASSIGNED,))
    dt = time.perf_counter() - t
    assert c.shape == (1_000_000, 4) and c.dtype == np.float32
    assert dt < 5.0  # generous on shared CI cores; typically ~0.2 s


# ------------------------------------------------------------------------------------ points
def test_transcripts_to_points_tuple():
    tx = _tx()
    data, kw, kind = L.transcripts_to_points(tx, name="t")
    assert kind == "points" and data.shape == (len(tx), 2) and data.dtype == np.float32
    np.testing.assert_allclose(data[:, 0], tx[S.Y], rtol=1e-6)  # (y, x) order
    np.testing.assert_allclose(data[:, 1], tx[S.X], rtol=1e-6)
    feats = kw["features"]
    for col in (S.GENE, S.QV, S.NUCLEAR, S.CELL_ID):
        assert col in feats.columns
    assert isinstance(feats[S.GENE].dtype, pd.CategoricalDtype)
    fc = kw["face_color"]
    assert fc.shape == (len(tx), 4) and fc.dtype == np.float32
    # colour by gene: same gene, same colour
    g = tx[S.GENE].to_numpy()
    i, j = np.flatnonzero(g == "A")[:2]
    np.testing.assert_array_equal(fc[i], fc[j])
    assert kw["size"] == pytest.approx(L.POINT_SIZE_UM)
    assert kw["metadata"]["segger"]["gene_feature"] == S.GENE


def test_points_layer_round_trip_honours_scale_and_translate():
    from napari.layers import Points

    tx = _tx()
    data, kw, _ = L.transcripts_to_points(tx)
    layer = Points(data, **kw)
    back = L.points_to_transcripts(layer)
    np.testing.assert_allclose(back[S.X], tx[S.X], atol=1e-4)
    np.testing.assert_allclose(back[S.Y], tx[S.Y], atol=1e-4)
    assert list(back[S.GENE]) == list(tx[S.GENE])
    np.testing.assert_array_equal(back[S.TX_ID], tx[S.TX_ID])
    assert list(back.columns[: len(S.TX_COLUMNS)]) == S.TX_COLUMNS
    # a layer in pixels with a 0.5 µm pixel size, shifted by (10, 20) µm
    px = Points(data / 0.5, features=kw["features"], scale=(0.5, 0.5), translate=(10.0, 20.0))
    moved = L.points_to_transcripts(px, S.GENE)
    np.testing.assert_allclose(moved[S.X], tx[S.X] + 20.0, atol=1e-3)
    np.testing.assert_allclose(moved[S.Y], tx[S.Y] + 10.0, atol=1e-3)


def test_points_without_gene_feature_names_layer_and_fix():
    from napari.layers import Points

    layer = Points(np.zeros((3, 2)), features={"foo": [1, 2, 3]}, name="my points")
    with pytest.raises(SeggerInputError, match=r"layer 'my points' has no feature 'gene'.*choose the gene feature"):
        L.points_to_transcripts(layer, "gene")


def test_wrong_layer_type_is_a_clear_error():
    from napari.layers import Shapes

    shapes = Shapes([np.array([[0, 0], [0, 5], [5, 5]])], shape_type="polygon", name="outlines")
    with pytest.raises(SeggerInputError, match="'outlines' is a Shapes layer, not Points"):
        L.points_to_transcripts(shapes, "gene")


def test_rotated_layer_is_refused():
    from napari.layers import Points

    layer = Points(np.zeros((3, 2)), features={"gene": ["a", "b", "c"]}, rotate=30, name="rot")
    with pytest.raises(SeggerInputError, match="rotated"):
        L.points_to_transcripts(layer)


def test_result_to_points_colours_cells_and_greys_unassigned():
    tx = _tx(90)
    res = _result(tx)
    data, kw, kind = L.result_to_points(res)
    assert kind == "points" and kw["name"] == L.LAYER_TRANSCRIPTS
    fc = kw["face_color"]
    ids = res[S.SEGGER_CELL_ID].to_numpy()
    un = ids == S.UNASSIGNED
    np.testing.assert_array_equal(fc[un], np.tile(L.UNASSIGNED_RGBA, (un.sum(), 1)))
    one = ids == "cell-1"
    assert (fc[one] == fc[one][0]).all()
    np.testing.assert_array_equal(fc[one][0], L.hash_colors(["cell-1"])[0])
    feats = kw["features"]
    for col in (S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT, S.GENE):
        assert col in feats.columns
    assert feats[S.SCORE].dtype == np.float32


def test_result_round_trip_through_writer_inputs(tmp_path):
    from napari.layers import Points

    from segger.napari._writer import write_anndata, write_assignments

    res = _result(_tx(60))
    d, kw, _ = L.result_to_points(res)
    layer = Points(d, **kw)
    data, meta, _ = layer.as_layer_data_tuple()
    back = L.result_from_points(data, meta)
    assert list(back[S.SEGGER_CELL_ID]) == list(res[S.SEGGER_CELL_ID])
    np.testing.assert_allclose(back[S.X], res[S.X], atol=1e-4)
    out = write_assignments(str(tmp_path / "a"), data, meta)
    assert out[0].endswith(".parquet")
    df = pd.read_parquet(out[0])
    assert set(df[S.SEGGER_CELL_ID]) == {"cell-1", "cell-2", S.UNASSIGNED}
    out = write_anndata(str(tmp_path / "cells.h5ad"), data, meta)
    import anndata

    ad = anndata.read_h5ad(out[0])
    assert set(ad.obs_names) == {"cell-1", "cell-2"}


def test_writer_refuses_a_layer_without_results():
    from napari.layers import Points

    from segger.napari._writer import write_assignments

    tx = _tx(10)
    d, kw, _ = L.transcripts_to_points(tx, name="raw")
    layer = Points(d, **kw)
    data, meta, _ = layer.as_layer_data_tuple()
    with pytest.raises(SeggerInputError, match="'raw' has no 'segger_cell_id'"):
        write_assignments("x.parquet", data, meta)


# ------------------------------------------------------------------------------------ polygons
def _square(x0, y0, s=4.0):
    return shapely.Polygon([(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s)])


def _nuclei(n=3):
    geoms = [_square(10 * i, 5.0) for i in range(n)]
    c = shapely.centroid(np.array(geoms, dtype=object))
    return pd.DataFrame({S.BD_ID: [f"n{i}" for i in range(n)], S.GEOMETRY: geoms,
                         S.X: shapely.get_x(c), S.Y: shapely.get_y(c), S.BD_SOURCE: "polygon"})


def test_polygons_to_yx_drops_closing_vertex_and_swaps_axes():
    rings = L.polygons_to_yx([_square(1, 2)])
    assert len(rings) == 1 and rings[0].shape == (4, 2)
    assert rings[0][:, 0].min() == pytest.approx(2) and rings[0][:, 1].min() == pytest.approx(1)


def test_nuclei_to_shapes_and_back():
    from napari.layers import Shapes

    nuc = _nuclei()
    data, kw, kind = L.nuclei_to_layer(nuc, name="nuc")
    assert kind == "shapes" and len(data) == 3 and kw["shape_type"] == "polygon"
    assert list(kw["features"][S.BD_ID]) == ["n0", "n1", "n2"]
    layer = Shapes(data, **kw)
    back = L.shapes_to_nuclei(layer)
    assert list(back[S.BD_ID]) == ["n0", "n1", "n2"]
    np.testing.assert_allclose(back[S.X], nuc[S.X])
    np.testing.assert_allclose(back[S.Y], nuc[S.Y])
    assert list(back.columns) == S.BD_COLUMNS


def test_shapes_with_scale_and_ellipse():
    from napari.layers import Shapes

    rect = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], dtype=float)  # (y, x) px
    ell = np.array([[20, 20], [20, 30], [30, 30], [30, 20]], dtype=float)
    layer = Shapes([rect, ell], shape_type=["rectangle", "ellipse"], scale=(0.5, 0.5), translate=(100, 200))
    nuc = L.shapes_to_nuclei(layer)
    assert len(nuc) == 2
    np.testing.assert_allclose(nuc[S.X].iloc[0], 200 + 2.5)
    np.testing.assert_allclose(nuc[S.Y].iloc[0], 100 + 2.5)
    assert shapely.area(nuc[S.GEOMETRY].iloc[0]) == pytest.approx(25.0)
    assert shapely.area(nuc[S.GEOMETRY].iloc[1]) == pytest.approx(np.pi * 2.5**2, rel=0.02)


def test_labels_layer_to_nuclei_honours_scale_and_translate():
    from napari.layers import Labels

    img = np.zeros((40, 60), dtype=np.int32)
    img[10:20, 30:40] = 7  # a 10x10 px square
    layer = Labels(img, scale=(0.25, 0.25), translate=(100.0, 50.0), name="cellpose masks")
    nuc = L.labels_to_nuclei(layer)
    assert list(nuc[S.BD_ID]) == ["7"]
    # pixel centres of rows 10..19 span 100 + [2.5, 4.75] µm: centroid 103.625 (x: 50 + 8.625)
    assert nuc[S.Y].iloc[0] == pytest.approx(100 + 0.25 * 14.5, abs=0.05)
    assert nuc[S.X].iloc[0] == pytest.approx(50 + 0.25 * 34.5, abs=0.05)
    assert shapely.area(nuc[S.GEOMETRY].iloc[0]) == pytest.approx(100 * 0.0625, rel=0.15)


def test_empty_labels_is_a_clear_error():
    from napari.layers import Labels

    with pytest.raises(SeggerInputError, match="'empty' has no labels"):
        L.labels_to_nuclei(Labels(np.zeros((5, 5), dtype=np.int32), name="empty"))


def test_many_cells_become_labels_raster():
    geoms = [_square(5 * (i % 20), 5 * (i // 20), 3.0) for i in range(60)]
    bd = pd.DataFrame({"cell_id": [f"c{i}" for i in range(60)], S.GEOMETRY: geoms,
                       "area_um2": shapely.area(np.array(geoms, dtype=object))})
    data, kw, kind = L.cells_to_layer(bd, max_shapes=10)
    assert kind == "labels" and data.dtype == np.uint32
    assert set(np.unique(data)) == set(range(61))
    assert kw["name"] == L.LAYER_CELLS and kw["features"]["cell_id"].iloc[1] == "c0"
    # label 1 (c0: x,y in [0, 3]) sits at the right place in world µm
    rows, cols = np.nonzero(data == 1)
    y = rows * kw["scale"][0] + kw["translate"][0]
    x = cols * kw["scale"][1] + kw["translate"][1]
    assert 0 <= y.min() and y.max() <= 3 and 0 <= x.min() and x.max() <= 3
    data, kw, kind = L.cells_to_layer(bd, max_shapes=100)
    assert kind == "shapes" and len(data) == 60
    # issue 12 #4: edges from the 8-colour neighbour palette by default (touching cells never share
    # one); colors="hash" keeps the cell's hashed colour (as its transcripts)
    from segger.napari.layers.results import OUTLINE_PALETTE

    assert {tuple(c) for c in np.asarray(kw["edge_color"])[:, :3]} <= {tuple(c) for c in OUTLINE_PALETTE}
    kw = L.cells_to_layer(bd, max_shapes=100, colors="hash")[1]
    np.testing.assert_array_equal(kw["edge_color"][0], L.hash_colors(["c0"])[0])


def test_fast_triangulation_prefers_bermuda_when_installed():
    backend = L.fast_triangulation()
    try:
        import bermuda  # noqa: F401
    except ImportError:
        assert backend  # some backend, no failure
    else:
        assert backend == "bermuda"


# ------------------------------------------------------------------------------------ edges
def test_attention_to_vectors_geometry_and_weights():
    tx = _tx(10)
    nuc = _nuclei(2)
    edges = pd.DataFrame({"src": [0, 1, 2], "dst": [0, 1, 1], "weight": [0.2, 0.9, 0.5]})
    data, kw, kind = L.attention_to_vectors(edges, tx, nuc, ("tx", "belongs", "bd"))
    assert kind == "vectors" and data.shape == (3, 2, 2)
    np.testing.assert_allclose(data[0, 0], [tx[S.Y][0], tx[S.X][0]], rtol=1e-5)
    np.testing.assert_allclose(data[0, 0] + data[0, 1], [nuc[S.Y][0], nuc[S.X][0]], rtol=1e-5)
    np.testing.assert_allclose(kw["features"]["weight"], [0.2, 0.9, 0.5], rtol=1e-6)
    assert kw["edge_color"] == "weight" and kw["vector_style"] == "line"
    lo, hi = kw["edge_contrast_limits"]
    assert lo == pytest.approx(0.2) and 0.5 < hi <= 0.9
    tt = L.attention_to_vectors(edges, tx, None, ("tx", "neighbors", "tx"))
    np.testing.assert_allclose(tt[0][1, 0] + tt[0][1, 1], [tx[S.Y][1], tx[S.X][1]], rtol=1e-5)


def test_vectors_layer_builds_with_weight_colours():
    from napari.layers import Vectors

    tx = _tx(20)
    edges = pd.DataFrame({"src": np.arange(10), "dst": np.arange(10) + 1, "weight": np.linspace(0, 1, 10)})
    data, kw, _ = L.attention_to_vectors(edges, tx, None, ("tx", "neighbors", "tx"))
    layer = Vectors(data, **kw)
    ec = np.asarray(layer.edge_color)
    assert ec.shape == (10, 4)
    assert not np.allclose(ec[0], ec[-1])  # colour follows weight
