"""MERSCOPE, CosMx and generic-table inputs, converted from the real Xenium crops."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from _io_helpers import COSMX_PX, assert_nuclei_schema, assert_tx_schema, tree_hash

from segger import schema
from segger.errors import SeggerInputError
from segger.io import (
    COSMX_PIXEL_SIZE,
    detect_platform,
    nuclei_from_wkb,
    read_polygons,
    read_sample,
    read_transcripts,
)


# --------------------------------------------------------------------------- MERSCOPE


def test_merscope_reads(merscope_dir, lung_raw, lung_vertices):
    before = tree_hash(merscope_dir)
    assert detect_platform(merscope_dir) == "merscope"
    assert detect_platform(merscope_dir / "detected_transcripts.csv") == "merscope"
    s = read_sample(merscope_dir)
    assert s.platform == "merscope"
    assert_tx_schema(s.transcripts)
    t = s.transcripts
    r = s.filter_report
    # no qv: nothing qv-filtered, qv NaN; no nuclear flag
    assert not r.qv_available and r.removed_qv == 0
    assert t[schema.QV].isna().all()
    assert not t[schema.NUCLEAR].any()
    assert any("qv filter" in w for w in s.warnings)
    # controls were renamed Blank-*
    assert r.removed_controls == 33 and r.removed_controls_by_pattern == {"Blank-": 33}
    assert len(t) == 15_000 - 33
    # row numbers as molecule ids; the ENST column is kept as an extra column
    assert t[schema.TX_ID].min() >= 0 and t[schema.TX_ID].max() < 15_000
    assert t["input_transcript_id"].str.startswith("ENST").all()
    assert "Unnamed: 0" in t.columns and "barcode_id" in t.columns
    # big integer ids survive as exact decimal text, -1 -> None
    assigned = t[schema.CELL_ID].dropna()
    assert assigned.str.fullmatch(r"1000000000000000\d{3}").all()
    ctrl = lung_raw["feature_name"].astype(str).str.startswith(("BLANK", "NegControl"))
    assert t[schema.CELL_ID].isna().sum() == int(((lung_raw["cell_id"] == "UNASSIGNED") & ~ctrl).sum())
    # WKB MultiPolygons, middle z-plane (ZIndex 3, shifted +3 µm in x) kept, cell boundaries as nuclei
    assert s.nuclei_source == "polygon" and s.nuclei_path.endswith("cell_boundaries.parquet")
    assert any("cell (not nucleus) boundaries" in w for w in s.warnings)
    assert_nuclei_schema(s.nuclei, "polygon")
    assert len(s.nuclei) == 221
    cells = pd.Series(lung_raw["cell_id"].unique())
    cells = cells[cells != "UNASSIGNED"].reset_index(drop=True)
    box = shapely.box(t.x.min() - 1, t.y.min() - 1, t.x.max() + 1, t.y.max() + 1)
    got = s.nuclei.set_index(schema.BD_ID)[schema.GEOMETRY]
    checked = 0
    for cid, g in lung_vertices.groupby("cell_id", sort=False):
        expected = shapely.Polygon(g[["vertex_x", "vertex_y"]].to_numpy(float) + [3.0, 0.0])
        if box.covers(expected):
            big = str(1_000_000_000_000_000_000 + int(np.flatnonzero(cells == cid)[0]))
            assert got[big].equals_exact(expected, 1e-4)
            checked += 1
    assert checked > 150
    assert tree_hash(merscope_dir) == before


def test_merscope_nuclei_cannot_be_approximated(merscope_dir):
    s = read_sample(merscope_dir, nuclei="approximate")
    assert len(s.nuclei) == 0 and s.nuclei_source == "approximated"
    assert any("nuclear" in w for w in s.warnings)


def test_wkb_middle_plane_and_multipolygon():
    a = shapely.box(0, 0, 2, 2)
    small = shapely.box(10, 10, 10.5, 10.5)
    geoms = [
        shapely.to_wkb(shapely.MultiPolygon([shapely.transform(a, lambda c, z=z: c + [z, 0]), small]))
        for z in range(5)
    ]
    nuc = nuclei_from_wkb(geoms, [7] * 5, z_index=[0, 1, 2, 3, 4])
    assert list(nuc[schema.BD_ID]) == ["7"]
    assert nuc[schema.GEOMETRY].iloc[0].equals(shapely.box(2, 0, 4, 2))  # plane 2, largest part
    # WKT and unassigned ids
    nuc = nuclei_from_wkb(["POLYGON ((0 0, 1 0, 1 1, 0 0))", "POLYGON ((0 0, 2 0, 2 2, 0 0))"], [-1, 5])
    assert list(nuc[schema.BD_ID]) == ["5"]


# --------------------------------------------------------------------------- CosMx


def test_cosmx_pixels_to_um_and_fov_ids(cosmx_dir, segtraq_raw):
    before = tree_hash(cosmx_dir)
    assert detect_platform(cosmx_dir) == "cosmx"
    raw = read_transcripts(cosmx_dir)
    assert COSMX_PIXEL_SIZE == COSMX_PX
    np.testing.assert_allclose(raw[schema.X], segtraq_raw["x_location"].astype(float), rtol=0, atol=1e-6)
    np.testing.assert_allclose(raw[schema.Y], segtraq_raw["y_location"].astype(float), rtol=0, atol=1e-6)
    # 0 -> None; ids unique across FOVs as "<fov>_<cell_ID>"
    assert raw[schema.CELL_ID].isna().sum() == int((segtraq_raw["cell_id"] == -1).sum())
    ids = raw[schema.CELL_ID].dropna()
    assert ids.str.fullmatch(r"[12]_\d+").all()
    local = ids.str.split("_").str[1]
    assert local[ids.str.startswith("1_")].isin(local[ids.str.startswith("2_")]).any()  # same cell_ID in both
    # one CosMx id per real cell (a cell cut by the FOV line becomes two: that is what CosMx does)
    pairs = pd.DataFrame({"cosmx": raw[schema.CELL_ID], "truth": segtraq_raw["cell_id"]}).dropna()
    assert pairs.groupby("cosmx")["truth"].nunique().max() == 1
    # nuclear from CellComp, kept as compartment
    assert (raw[schema.NUCLEAR] == (segtraq_raw["overlaps_nucleus"] == 1)).all()
    assert raw.columns[len(schema.TX_COLUMNS)] == schema.COMPARTMENT
    assert set(raw[schema.COMPARTMENT].dropna()) == {"Nuclear", "Cytoplasm"}
    assert "fov" in raw.columns and "x_local_px" in raw.columns
    # z kept as the vendor's plane index; qv absent
    assert raw[schema.QV].isna().all()
    s = read_sample(cosmx_dir)
    assert s.nuclei_source == "approximated" and len(s.nuclei) > 100
    assert s.filter_report.removed_controls_by_pattern.get("NegPrb", 0) > 0
    assert not any("pixels?" in w for w in s.warnings)
    assert tree_hash(cosmx_dir) == before


def test_cosmx_pixel_size_override(cosmx_dir, segtraq_raw):
    raw = read_transcripts(cosmx_dir, pixel_size=2 * COSMX_PX)
    np.testing.assert_allclose(raw[schema.X], 2 * segtraq_raw["x_location"].astype(float), atol=1e-6)
    with pytest.raises(SeggerInputError, match="pixel_size"):
        read_transcripts(cosmx_dir, pixel_size=-1)


def test_cosmx_polygons_csv(tmp_path, cosmx_dir, segtraq_dir):
    """CosMx *polygons.csv (fov, cellID, x/y_global_px) read with pixel size and fov ids."""
    folder = tmp_path / "cosmx"
    folder.mkdir()
    (folder / "Run1_tx_file.csv").write_bytes((cosmx_dir / "Run1_tx_file.csv").read_bytes())
    tx = pd.read_csv(folder / "Run1_tx_file.csv")
    v = pd.read_parquet(segtraq_dir / "cell_boundaries.parquet")
    raw = pd.read_parquet(segtraq_dir / "transcripts.parquet")
    key = pd.DataFrame({"truth": raw["cell_id"], "fov": tx["fov"], "cellID": tx["cell_ID"]})
    key = key[key.truth != -1].drop_duplicates("truth")
    v = v.merge(key, left_on="cell_id", right_on="truth")
    pd.DataFrame(
        {"fov": v.fov, "cellID": v.cellID, "x_global_px": v.vertex_x / COSMX_PX, "y_global_px": v.vertex_y / COSMX_PX}
    ).to_csv(folder / "Run1-polygons.csv", index=False)
    s = read_sample(folder, nuclei="polygons")
    assert s.nuclei_source == "polygon" and s.nuclei_path.endswith("Run1-polygons.csv")
    assert any("cell outlines" in w for w in s.warnings)
    assert_nuclei_schema(s.nuclei, "polygon")
    assert set(s.nuclei[schema.BD_ID]) <= set(s.transcripts[schema.CELL_ID].dropna())
    assert len(s.nuclei) == key["truth"].isin(v["cell_id"]).sum()


# --------------------------------------------------------------------------- generic table


@pytest.mark.parametrize("gene_alias", ["gene", "feature_name", "target", "gene_name"])
def test_table_aliases(tmp_path, lung_raw, gene_alias):
    df = pd.DataFrame(
        {
            "x": lung_raw["x_location"],
            "y": lung_raw["y_location"],
            gene_alias: lung_raw["feature_name"],
            "qv": lung_raw["qv"],
            "cell_id": lung_raw["cell_id"],
            "nuclear": lung_raw["overlaps_nucleus"].astype(bool),
            "extra": np.arange(len(lung_raw)),
        }
    )
    path = tmp_path / "tx.csv"
    df.to_csv(path, index=False)
    assert detect_platform(path) == "table"
    s = read_sample(path)
    assert s.platform == "table"
    assert_tx_schema(s.transcripts)
    assert len(s.transcripts) == 12_919
    assert (s.transcripts[schema.Z] == 0).all()
    assert s.transcripts[schema.TX_ID].is_monotonic_increasing  # row numbers of the kept rows
    assert list(s.transcripts.columns[len(schema.TX_COLUMNS):]) == ["extra"]
    assert (s.transcripts[schema.TX_ID] == s.transcripts["extra"]).all()
    assert s.nuclei_source == "approximated"


def test_table_formats_and_polygons(tmp_path, lung_raw, lung_dir):
    df = lung_raw[["x_location", "y_location", "z_location", "feature_name", "qv", "cell_id"]]
    for name, writer in [
        ("tx.parquet", lambda p: df.to_parquet(p)),
        ("tx.csv.gz", lambda p: df.to_csv(p, index=False)),
        ("tx.tsv", lambda p: df.to_csv(p, index=False, sep="\t")),
    ]:
        path = tmp_path / name
        writer(path)
        s = read_sample(path, platform="table", polygons=lung_dir / "nucleus_boundaries.parquet")
        assert len(s.transcripts) == 12_919, name
        assert s.nuclei_source == "polygon" and len(s.nuclei) == 221
        assert not s.transcripts[schema.NUCLEAR].any()  # no nuclear column


def test_read_polygons_layouts(tmp_path, lung_dir, lung_vertices):
    vert = read_polygons(lung_dir / "nucleus_boundaries.parquet")
    assert_nuclei_schema(vert, "polygon")
    assert len(vert) == 221
    # the same polygons as a WKB geometry table
    wkb = pd.DataFrame({"cell_id": vert[schema.BD_ID], "geometry": shapely.to_wkb(vert[schema.GEOMETRY].to_numpy())})
    wkb.to_parquet(tmp_path / "wkb.parquet")
    again = read_polygons(tmp_path / "wkb.parquet")
    assert list(again[schema.BD_ID]) == list(vert[schema.BD_ID])
    assert shapely.equals(again[schema.GEOMETRY].to_numpy(), vert[schema.GEOMETRY].to_numpy()).all()
    # rings given without the closing vertex rebuild the same polygons
    open_rings = lung_vertices.groupby("cell_id", sort=False).head(12)
    open_rings.to_parquet(tmp_path / "open.parquet")
    opened = read_polygons(tmp_path / "open.parquet")
    assert shapely.equals(opened[schema.GEOMETRY].to_numpy(), vert[schema.GEOMETRY].to_numpy()).all()
    with pytest.raises(SeggerInputError, match="not a polygons table"):
        pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "bad.csv", index=False)
        read_polygons(tmp_path / "bad.csv")
