"""SpatialData in and out, with the real ``spatialdata`` package on the real Xenium crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from _eco_helpers import BREAST, LUNG, PIXEL, make_xenium_store, tree_hash, vendor_result
from segger import schema
from segger.errors import SeggerInputError
from segger.io import is_spatialdata_store, read_sample

pytest.importorskip("spatialdata")


def _by_id(nuclei: pd.DataFrame) -> pd.Series:
    return pd.Series(nuclei[schema.GEOMETRY].to_numpy(), index=nuclei[schema.BD_ID].astype(str))


# --------------------------------------------------------------------------- reading


def test_store_detection(breast_store, tmp_path):
    assert is_spatialdata_store(breast_store)
    assert not is_spatialdata_store(BREAST)  # a vendor folder
    assert not is_spatialdata_store(tmp_path / "missing.zarr")
    assert not is_spatialdata_store(BREAST / "transcripts.parquet")


@pytest.mark.parametrize("crop", ["breast", "lung"])
def test_read_store_equals_vendor_folder(crop, breast_store, lung_store):
    store, folder = (breast_store, BREAST) if crop == "breast" else (lung_store, LUNG)
    before = tree_hash(store)
    s = read_sample(store)  # dispatches on the folder layout
    v = read_sample(folder)
    assert s.platform == "spatialdata" and s.nuclei_source == "polygon"
    assert s.nuclei_path.endswith("shapes/nucleus_boundaries")
    assert s.filter_report.summary() == v.filter_report.summary()
    for col in ("transcript_id", "gene", "nuclear", "cell_id"):
        assert s.transcripts[col].tolist() == v.transcripts[col].tolist(), col
    for col in ("x", "y", "z", "qv"):
        np.testing.assert_allclose(s.transcripts[col], v.transcripts[col], rtol=0, atol=1e-4)
    a, b = _by_id(s.nuclei), _by_id(v.nuclei)
    assert sorted(a.index) == sorted(b.index) and len(a) > 100
    d = shapely.hausdorff_distance(a.to_numpy(), b[a.index].to_numpy())
    assert float(np.max(d)) < 1e-6  # the scale to pixels and back cancels exactly
    assert tree_hash(store) == before  # only read


def test_read_labels_element_through_its_transformation(breast_store):
    """nucleus_labels is in image pixels with a translation; it must land on the µm polygons."""
    s = read_sample(breast_store, nuclei="labels")
    assert s.nuclei_source == "labels" and s.nuclei_path.endswith("labels/nucleus_labels")
    poly = read_sample(breast_store).nuclei
    lab = s.nuclei
    assert len(lab) == pytest.approx(len(poly), abs=3)
    tree = shapely.STRtree(lab[schema.GEOMETRY].to_numpy())
    ious = []
    for g in poly[schema.GEOMETRY]:  # per vendor nucleus: best-overlapping traced nucleus
        hits = tree.query(g, predicate="intersects")
        if len(hits):
            cand = lab[schema.GEOMETRY].to_numpy()[hits]
            ious.append(np.max(shapely.area(shapely.intersection(cand, g)) / shapely.area(shapely.union(cand, g))))
        else:
            ious.append(0.0)
    ious = np.asarray(ious)
    assert np.median(ious) > 0.85, np.median(ious)
    assert (ious > 0.5).mean() > 0.95


def test_points_in_pixels_need_um_per_unit(tmp_path):
    store = make_xenium_store(BREAST, tmp_path / "px.zarr", labels=False, points_in_pixels=True)
    v = read_sample(BREAST)
    s = read_sample(store, platform="spatialdata", um_per_unit=PIXEL)
    np.testing.assert_allclose(s.transcripts["x"], v.transcripts["x"], atol=1e-3)
    a, b = _by_id(s.nuclei), _by_id(v.nuclei)
    assert float(np.max(shapely.hausdorff_distance(a.to_numpy(), b[a.index].to_numpy()))) < 1e-3  # float32 px
    # without it the coordinates stay pixels (and the nuclei still line up with them)
    px = read_sample(store, platform="spatialdata")
    np.testing.assert_allclose(px.transcripts["x"], v.transcripts["x"] / PIXEL, rtol=1e-6)
    c = _by_id(px.nuclei)[a.index].to_numpy()
    ratio = shapely.area(c) * PIXEL**2 / shapely.area(a.to_numpy())  # edge nuclei are cropped differently
    assert np.median(ratio) == pytest.approx(1.0, abs=1e-3)


def test_in_memory_sdata_and_element_choice(breast_store):
    import spatialdata as sd

    sdata = sd.read_zarr(breast_store)
    s = read_sample(sdata, nuclei_element="cell_boundaries")
    assert s.nuclei_source == "polygon" and len(s.nuclei) > 140  # 158 cell polygons, cropped
    s2 = read_sample(sdata, boundaries="cell")
    assert s2.nuclei_path.endswith("shapes/cell_boundaries")
    with pytest.raises(SeggerInputError, match="no points element 'nope'"):
        read_sample(sdata, points="nope")
    with pytest.raises(SeggerInputError, match="no element 'nope'"):
        read_sample(sdata, nuclei_element="nope")
    with pytest.raises(SeggerInputError, match="not shared|share no"):
        read_sample(sdata, coordinate_system="microns")


def test_store_without_nuclei_is_approximated(tmp_path):
    import spatialdata as sd

    src = sd.read_zarr(make_xenium_store(LUNG, tmp_path / "l.zarr"))
    bare = sd.SpatialData(points={"transcripts": src.points["transcripts"]})
    s = read_sample(bare)
    assert s.nuclei_source == "approximated" and len(s.nuclei) > 150
    assert any("approximated" in w for w in s.warnings)
    with pytest.raises(SeggerInputError, match="no nucleus shapes element"):
        read_sample(bare, nuclei="polygons")


def test_not_a_store(tmp_path):
    from segger.io.spatialdata import read_spatialdata

    with pytest.raises(SeggerInputError, match="not a SpatialData zarr store"):
        read_spatialdata(tmp_path)
    with pytest.raises(SeggerInputError, match="no such SpatialData store"):
        read_spatialdata(tmp_path / "missing.zarr")


# --------------------------------------------------------------------------- writing


def test_write_copy_roundtrip(breast_store, tmp_path):
    import spatialdata as sd
    from spatialdata.transformations import get_transformation

    from segger.export.spatialdata import write_spatialdata

    before = tree_hash(breast_store)
    sample = read_sample(breast_store)
    result = vendor_result(sample.transcripts)
    out = write_spatialdata(result, tmp_path / "out.zarr", input=breast_store)
    assert tree_hash(breast_store) == before  # input untouched

    o = sd.read_zarr(out)
    src = sd.read_zarr(breast_store)
    for group in ("images", "labels", "points", "shapes", "tables"):
        assert set(getattr(src, group)) <= set(getattr(o, group)), group
    assert "segger_boundaries" in o.shapes and "segger_table" in o.tables

    # per-transcript columns, matched on transcript_id; filtered rows marked
    pts = o.points["transcripts"].compute()
    raw = src.points["transcripts"].compute()
    assert len(pts) == len(raw)
    assert pts["transcript_id"].tolist() == raw["transcript_id"].tolist()  # order kept
    by_id = pts.set_index(pts["transcript_id"].astype(np.int64))
    r = result.set_index("transcript_id")
    assert by_id.loc[r.index, "segger_cell_id"].tolist() == r["segger_cell_id"].tolist()
    np.testing.assert_allclose(by_id.loc[r.index, "score"].to_numpy(), r["score"].to_numpy())
    dropped = ~by_id.index.isin(r.index)
    assert dropped.sum() == sample.filter_report.rows_removed > 0
    assert set(by_id.loc[dropped, "segger_cell_id"]) == {"UNASSIGNED"}
    assert set(by_id.loc[dropped, "assignment"].astype(str)) == {"filtered"}
    assert get_transformation(o.points["transcripts"], get_all=True).keys() == {"global"}

    # shapes: one valid polygon per assigned cell, same transformation as the points
    shapes = o.shapes["segger_boundaries"]
    cells = set(result.loc[result.segger_cell_id != "UNASSIGNED", "segger_cell_id"])
    assert set(shapes["cell_id"]) == cells and list(shapes.index) == list(range(len(shapes)))
    assert shapes.geometry.is_valid.all() and (shapes.geometry.area > 0).all()
    np.testing.assert_allclose(shapes.geometry.area.to_numpy(), shapes["area_um2"].to_numpy())
    pm = get_transformation(o.points["transcripts"], "global").to_affine_matrix(("x", "y"), ("x", "y"))
    sm = get_transformation(shapes, "global").to_affine_matrix(("x", "y"), ("x", "y"))
    np.testing.assert_allclose(pm, sm)

    # table annotating the shapes: region / instance keys, counts in X
    t = o.tables["segger_table"]
    attrs = t.uns["spatialdata_attrs"]
    assert attrs == {"region": "segger_boundaries", "region_key": "region", "instance_key": "instance_id"}
    assert set(t.obs["cell_id"]) == cells
    # each row's instance id is the row of its own outline
    assert (shapes["cell_id"].to_numpy()[t.obs["instance_id"].to_numpy()] == t.obs["cell_id"].to_numpy()).all()
    np.testing.assert_array_equal(np.asarray(t.X.sum(axis=1)).ravel(), t.obs["n_transcripts"].to_numpy())
    assert t.obsm["spatial"].shape == (t.n_obs, 2)
    assert (t.obs["ref_overlap"] == 1.0).all()  # the vendor segmentation agrees with itself
    joined_el, joined_t = sd.join_spatialelement_table(
        sdata=o, spatial_element_names="segger_boundaries", table_name="segger_table", how="inner"
    )
    assert len(joined_t) == t.n_obs and len(joined_el["segger_boundaries"]) == t.n_obs

    # read back: same transcripts, with the segger columns
    back = read_sample(out)
    assert back.transcripts["transcript_id"].tolist() == sample.transcripts["transcript_id"].tolist()
    assert back.transcripts["segger_cell_id"].tolist() == result["segger_cell_id"].tolist()
    assert back.transcripts["cell_id"].tolist() == sample.transcripts["cell_id"].tolist()


def test_write_refuses_input_and_existing(breast_store, tmp_path):
    from segger.export.spatialdata import write_spatialdata

    result = vendor_result(read_sample(breast_store).transcripts)
    with pytest.raises(SeggerInputError, match="is the input store"):
        write_spatialdata(result, breast_store, input=breast_store, overwrite=True)
    out = write_spatialdata(result, tmp_path / "o.zarr")
    with pytest.raises(SeggerInputError, match="already exists"):
        write_spatialdata(result, out)
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(SeggerInputError, match="not a zarr store"):
        write_spatialdata(result, tmp_path / "file.zarr", overwrite=True)
    write_spatialdata(result, out, overwrite=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_write_new_store_without_input(tmp_path):
    import spatialdata as sd

    from segger.export.spatialdata import write_spatialdata

    sample = read_sample(LUNG)
    result = vendor_result(sample.transcripts)
    out = write_spatialdata(result, tmp_path / "new.zarr")
    o = sd.read_zarr(out)
    assert set(o.points) == {"transcripts"} and set(o.shapes) == {"segger_boundaries"}
    assert set(o.tables) == {"segger_table"}
    back = read_sample(out, nuclei="none")
    assert back.transcripts["segger_cell_id"].tolist() == result["segger_cell_id"].tolist()
    assert back.transcripts["cell_id"].tolist() == sample.transcripts["cell_id"].tolist()
    np.testing.assert_allclose(back.transcripts["x"], sample.transcripts["x"])
