from __future__ import annotations

import json
from datetime import datetime

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import shapely

from segger.errors import SeggerInputError
from segger.export import (
    BOUNDARY_COLUMNS,
    build_anndata,
    cell_boundaries,
    file_sha256,
    read_boundaries,
    write_anndata,
    write_boundaries,
    write_run_json,
    write_transcripts,
)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def _table(rows):
    """rows: (segger_cell_id, x, y, gene[, assignment, score, cell_id, nuclear])."""
    cols = ["segger_cell_id", "x", "y", "gene", "assignment", "score", "cell_id", "nuclear"]
    full = [tuple(r) + (None,) * (len(cols) - len(r)) for r in rows]
    df = pd.DataFrame(full, columns=cols)
    df["assignment"] = [a if a is not None else "cytoplasm" for a in df["assignment"]]
    df["score"] = np.array([0.9 if pd.isna(v) else v for v in df["score"]], dtype=np.float32)
    df["nuclear"] = np.array([False if pd.isna(v) else bool(v) for v in df["nuclear"]], dtype=bool)
    df["z"] = 0.0
    return df


# ---------------------------------------------------------------------------- transcripts


def test_write_transcripts_roundtrip(tmp_path, lung_result):
    df = lung_result.copy()
    df.loc[df.index[:5], "segger_cell_id"] = None
    out = write_transcripts(df, tmp_path / "t.parquet")
    back = pd.read_parquet(out)
    assert list(back.columns) == list(df.columns)
    assert len(back) == len(df)
    assert (back["segger_cell_id"].iloc[:5] == "UNASSIGNED").all()
    assert back["segger_cell_id"].map(type).eq(str).all()
    np.testing.assert_array_equal(back["x"], df["x"])
    assert back["cell_id"].isna().sum() == df["cell_id"].isna().sum()
    assert _leftovers(tmp_path) == []
    with pytest.raises(SeggerInputError, match="segger_cell_id"):
        write_transcripts(df.drop(columns="segger_cell_id"), tmp_path / "u.parquet")


# ---------------------------------------------------------------------------- boundaries


def test_cell_boundaries_unit_square_area_not_perimeter():
    g = np.linspace(0, 1, 5)
    xx, yy = np.meshgrid(g, g)
    rows = [("sq", x, y, "A") for x, y in zip(xx.ravel(), yy.ravel())]
    rx, ry = np.meshgrid(np.linspace(10, 12, 9), np.linspace(10, 11, 5))
    rows += [("rect", x, y, "A") for x, y in zip(rx.ravel(), ry.ravel())]
    df = _table(rows)
    for method in ("concave", "convex"):
        b = cell_boundaries(df, method=method).set_index("cell_id")
        assert b.loc["sq", "area_um2"] == pytest.approx(1.0)  # not 4 (the perimeter)
        assert b.loc["rect", "area_um2"] == pytest.approx(2.0)  # not 6
        assert b.loc["sq", "n_transcripts"] == 25
        assert b.loc["sq", "centroid_x"] == pytest.approx(0.5)
        assert b.loc["rect", "centroid_y"] == pytest.approx(10.5)
    assert list(cell_boundaries(df).columns) == BOUNDARY_COLUMNS


def test_cell_boundaries_degenerate_and_filters():
    rows = [
        ("line", 0, 0, "A"), ("line", 1, 1, "A"), ("line", 2, 2, "A"),  # collinear
        ("dup", 5, 5, "A"), ("dup", 5, 5, "B"), ("dup", 5, 5, "A"),  # one distinct point
        ("pair", 9, 9, "A"), ("pair", 9, 10, "A"),  # < min_transcripts
        ("UNASSIGNED", 50, 50, "A"), (None, 60, 60, "A"), ("-1", 70, 70, "A"),
        ("ok", 20, 20, "A"), ("ok", 21, 20, "A"), ("ok", 20, 21, "A"),
    ]
    df = _table(rows)
    b = cell_boundaries(df, method="concave")
    assert list(b["cell_id"]) == ["dup", "line", "ok"]
    smooth = cell_boundaries(df)  # the default outlines: same cells, valid polygons with area
    assert list(smooth["cell_id"]) == ["dup", "line", "ok"]
    assert shapely.is_valid(smooth["geometry"].to_numpy()).all() and (smooth["area_um2"] > 0).all()
    assert (shapely.get_type_id(b["geometry"].to_numpy()) == 3).all()
    assert shapely.is_valid(b["geometry"].to_numpy()).all()
    assert (b["area_um2"] > 0).all()
    assert b.set_index("cell_id").loc["ok", "area_um2"] == pytest.approx(0.5)
    b1 = cell_boundaries(df, method="concave", min_transcripts=1)
    assert list(b1["cell_id"]) == ["dup", "line", "ok", "pair"]
    assert (b1["area_um2"] > 0).all()
    assert cell_boundaries(df.iloc[:0]).empty
    with pytest.raises(SeggerInputError):
        cell_boundaries(df, method="alpha")


def test_cell_boundaries_real_crop(segtraq_result):
    conc = cell_boundaries(segtraq_result, method="concave").set_index("cell_id")
    conv = cell_boundaries(segtraq_result, method="convex").set_index("cell_id")
    n_cells = segtraq_result.loc[segtraq_result["segger_cell_id"] != "UNASSIGNED", "segger_cell_id"].nunique()
    counts = segtraq_result["segger_cell_id"].value_counts()
    assert len(conc) == (counts.drop("UNASSIGNED") >= 3).sum() <= n_cells
    geoms = conc["geometry"].to_numpy()
    assert shapely.is_valid(geoms).all() and (conc["area_um2"] > 0).all()
    assert (shapely.get_type_id(geoms) == 3).all()
    assert (conc["area_um2"] <= conv.loc[conc.index, "area_um2"] + 1e-6).all()
    # typical Xenium cells: tens to a few hundred µm²
    assert 10 < conc["area_um2"].median() < 500


@pytest.mark.parametrize("layout", ["wkb", "vertices"])
def test_write_boundaries_roundtrip(tmp_path, segtraq_result, layout):
    b = cell_boundaries(segtraq_result)
    out = write_boundaries(b, tmp_path / f"{layout}.parquet", layout=layout)
    back = read_boundaries(out)
    assert list(back["cell_id"]) == list(b["cell_id"])
    np.testing.assert_allclose(shapely.area(back["geometry"].to_numpy()), b["area_um2"], rtol=1e-9)
    assert shapely.equals_exact(back["geometry"].to_numpy(), b["geometry"].to_numpy(), tolerance=1e-9).all()
    raw = pd.read_parquet(out)
    if layout == "vertices":
        assert list(raw.columns) == ["cell_id", "vertex_x", "vertex_y"]
        first = raw.groupby("cell_id", sort=False).nth(0)
        last = raw.groupby("cell_id", sort=False).nth(-1)
        np.testing.assert_array_equal(first[["vertex_x", "vertex_y"]].to_numpy(), last[["vertex_x", "vertex_y"]].to_numpy())
    else:
        assert set(BOUNDARY_COLUMNS) <= set(raw.columns)
        geo = json.loads(pq.read_schema(out).metadata[b"geo"])
        assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert _leftovers(tmp_path) == []
    with pytest.raises(SeggerInputError):
        write_boundaries(b, tmp_path / "x.parquet", layout="geojson")


# ---------------------------------------------------------------------------- AnnData


def test_build_anndata_hand_table():
    rows = [
        ("c2", 0, 0, "G1", "nucleus", 0.8, "r1", True),
        ("c2", 2, 0, "G1", "cytoplasm", 0.6, "r1", False),
        ("c2", 2, 2, "G2", "cytoplasm", 0.7, "r2", False),
        ("c2", 0, 2, "G2", "cytoplasm", 0.9, None, False),
        ("f1", 10, 10, "G2", "fragment", 0.5, "r2", False),
        ("f1", 12, 10, "G3", "fragment", 0.7, "r2", False),
        ("UNASSIGNED", 5, 5, "G0", "none", 0.0, "r1", False),  # G0 only unassigned: still a var
    ]
    df = _table(rows)
    a = build_anndata(df)
    assert a.shape == (2, 4)
    assert list(a.obs_names) == ["c2", "f1"]
    assert list(a.var_names) == ["G0", "G1", "G2", "G3"]
    assert sp.issparse(a.X) and a.X.format == "csr" and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), [[0, 2, 2, 0], [0, 0, 1, 1]])
    obs = a.obs
    assert list(obs["n_transcripts"]) == [4, 2]
    assert obs.loc["c2", "centroid_x"] == pytest.approx(1.0) and obs.loc["c2", "centroid_y"] == pytest.approx(1.0)
    assert obs.loc["c2", "mean_score"] == pytest.approx(0.75)
    # the area of the cell's outline (the default smooth one: the 2 × 2 square grown by ~1 µm)
    smooth = cell_boundaries(df, min_transcripts=1).set_index("cell_id")
    assert obs.loc["c2", "area_um2"] == pytest.approx(smooth.loc["c2", "area_um2"]) and 12 < smooth.loc["c2", "area_um2"] < 16
    assert build_anndata(df, cell_boundaries(df, method="concave")).obs.loc["c2", "area_um2"] == pytest.approx(4.0)
    assert obs.loc["f1", "area_um2"] > 0  # 2 points: buffered
    assert list(obs["kind"]) == ["nucleus", "fragment"]
    assert list(obs["ref_cell_id"]) == ["r1", "r2"]
    assert list(obs["ref_overlap"]) == pytest.approx([0.5, 1.0])
    np.testing.assert_allclose(a.obsm["spatial"], [[1, 1], [11, 10]])
    assert list(a.var["n_cells"]) == [0, 1, 2, 1]
    # given boundaries: areas taken from them
    bd = pd.DataFrame({"cell_id": ["c2"], "geometry": [shapely.box(0, 0, 3, 3)], "area_um2": [9.0]})
    a2 = build_anndata(df, boundaries_df=bd, reference_column=None)
    assert a2.obs.loc["c2", "area_um2"] == 9.0 and np.isnan(a2.obs.loc["f1", "area_um2"])
    assert "ref_cell_id" not in a2.obs


def test_build_anndata_real_crop_roundtrip(tmp_path, lung_result):
    a = build_anndata(lung_result)
    assigned = lung_result["segger_cell_id"] != "UNASSIGNED"
    assert a.shape == (lung_result.loc[assigned, "segger_cell_id"].nunique(), lung_result["gene"].nunique())
    assert a.X.sum() == assigned.sum()
    assert (a.obs["ref_overlap"] == 1.0).all()
    assert (("seg-" + a.obs["ref_cell_id"]) == a.obs_names).all()
    assert a.obsm["spatial"].shape == (a.n_obs, 2)
    assert a.obs["area_um2"].gt(0).all()
    # scanpy-friendly: str indices, object columns hold only str
    assert all(isinstance(i, str) for i in a.obs_names) and all(isinstance(i, str) for i in a.var_names)
    for col in a.obs.columns:
        if a.obs[col].dtype == object:
            assert a.obs[col].map(type).eq(str).all(), col
    out = write_anndata(a, tmp_path / "cells.h5ad")
    assert _leftovers(tmp_path) == []
    b = anndata.read_h5ad(out)
    assert b.shape == a.shape
    assert (b.X != a.X).nnz == 0
    pd.testing.assert_frame_equal(b.obs, a.obs, check_dtype=False, check_categorical=False)
    np.testing.assert_array_equal(b.obsm["spatial"], a.obsm["spatial"])
    assert list(b.var_names) == list(a.var_names)


def test_write_anndata_failure_keeps_previous(tmp_path, lung_result):
    target = tmp_path / "cells.h5ad"
    target.write_bytes(b"previous")

    class Broken:
        def write_h5ad(self, path, **kw):
            open(path, "wb").write(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_anndata(Broken(), target)
    assert target.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- run json


def test_write_run_json(tmp_path):
    f1 = tmp_path / "transcripts.parquet"
    f1.write_bytes(b"abc" * 1000)
    d = tmp_path / "bundle"
    d.mkdir()
    (d / "nuclei.parquet").write_bytes(b"xyz")
    timings = {"read": 1.5, "graph": 2.0, "train": 30.25, "predict": 3.0, "export": 0.5}
    out = write_run_json(
        tmp_path / "out" / "run.json",
        parameters={"score_cut": 0.5, "tile": (100, 100), "path": tmp_path},
        inputs=[f1, d, tmp_path / "missing.csv"],
        timings=timings,
        versions={"cuda": "12.1"},
        extra={"n_cells": np.int64(7)},
    )
    rec = json.loads(out.read_text())
    assert rec["inputs"][0]["sha256"] == file_sha256(f1)
    assert rec["inputs"][0]["size_bytes"] == 3000
    assert rec["inputs"][0]["hash_seconds"] >= 0
    # a folder is listed with sizes, not hashed (real bundles are tens of GB; the files read are inputs)
    assert rec["inputs"][1]["files"] == [{"path": "nuclei.parquet", "size_bytes": 3}]
    assert rec["inputs"][1]["sha256"] is None
    assert rec["inputs"][2]["exists"] is False
    assert rec["timings"] == timings
    assert rec["total_s"] == pytest.approx(sum(timings.values()))
    assert rec["parameters"]["tile"] == [100, 100]
    for k in ("python", "torch", "torch_geometric", "pytorch_lightning", "numpy", "pandas", "segger"):
        assert k in rec["versions"]
    assert rec["versions"]["numpy"] == np.__version__ and rec["versions"]["cuda"] == "12.1"
    assert rec["extra"] == {"n_cells": 7}
    ts = datetime.fromisoformat(rec["created_utc"])
    assert ts.utcoffset().total_seconds() == 0
    assert _leftovers(tmp_path / "out") == []


def test_anndata_scanpy_smoke(lung_result):
    sc = pytest.importorskip("scanpy")
    a = build_anndata(lung_result)
    sc.pp.calculate_qc_metrics(a, inplace=True, percent_top=None)  # default tops (50..500) exceed small panels
    sc.pp.normalize_total(a)
    sc.pp.log1p(a)
    assert a.n_obs > 0
