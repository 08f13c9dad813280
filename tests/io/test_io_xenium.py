"""Real Xenium crops read into the tidy schema with the documented counts."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from segger import schema
from segger.io import (
    DEFAULT_CONTROL_PATTERNS,
    SpatialSample,
    approximate_nuclei,
    detect_platform,
    read_sample,
    read_transcripts,
)

from _io_helpers import PACKAGED, assert_nuclei_schema, assert_tx_schema, tree_hash


def test_lung_counts(lung_dir, lung_raw):
    before = tree_hash(lung_dir)
    s = read_sample(lung_dir)
    assert isinstance(s, SpatialSample)
    assert s.platform == "xenium" and s.nuclei_source == "polygon"
    assert s.nuclei_path.endswith("nucleus_boundaries.parquet")
    assert_tx_schema(s.transcripts)
    assert_nuclei_schema(s.nuclei, "polygon")
    assert len(s.nuclei) == 221

    r = s.filter_report
    assert r.rows_in == 15_000
    genes = lung_raw["feature_name"].astype(str)
    ctrl = genes.str.startswith(tuple(DEFAULT_CONTROL_PATTERNS))
    assert ctrl.sum() == 33 and r.removed_controls == 33
    assert r.removed_controls_by_pattern == {"NegControl": 19, "BLANK": 14}
    assert (lung_raw["qv"] < 20).sum() == 2081
    assert r.removed_qv == int(((lung_raw["qv"] < 20) & ~ctrl).sum())
    assert r.rows_kept == int(((lung_raw["qv"] >= 20) & ~ctrl).sum()) == len(s.transcripts)
    assert r.removed_nonfinite == 0
    assert (s.transcripts[schema.QV] >= 20).all()
    assert not s.transcripts[schema.GENE].str.startswith(("NegControl", "BLANK")).any()
    # string ids, "UNASSIGNED" -> None
    kept = lung_raw[(lung_raw["qv"] >= 20) & ~ctrl].reset_index(drop=True)
    expect = kept["cell_id"].where(kept["cell_id"] != "UNASSIGNED", None)
    assert s.transcripts[schema.CELL_ID].tolist() == expect.tolist()
    assert (s.transcripts[schema.NUCLEAR] == (kept["overlaps_nucleus"] == 1)).all()
    assert (s.transcripts[schema.TX_ID] == kept["transcript_id"].astype(np.int64)).all()
    np.testing.assert_array_equal(s.transcripts[schema.X], kept["x_location"].astype(np.float64))
    # other input columns kept after the canonical ones
    assert list(s.transcripts.columns[len(schema.TX_COLUMNS):]) == ["fov_name", "nucleus_distance"]
    assert set(s.nuclei[schema.BD_ID]) <= set(lung_raw["cell_id"])
    assert s.warnings == []
    assert "12," in r.summary() and "qv < 20" in r.summary()
    d = r.to_dict()
    assert d["rows_in"] == 15_000 and d["removed_controls_by_pattern"]["BLANK"] == 14
    assert tree_hash(lung_dir) == before


def test_segtraq_int_ids_and_crop(segtraq_dir, segtraq_raw):
    s = read_sample(segtraq_dir)
    assert_tx_schema(s.transcripts)
    assert_nuclei_schema(s.nuclei, "polygon")
    assert len(s.nuclei) == 132
    assert s.filter_report.rows_in == 23_691
    # int32 ids, -1 -> None, others their decimal text
    raw = read_transcripts(segtraq_dir)
    expect = [None if v == -1 else str(v) for v in segtraq_raw["cell_id"]]
    assert raw[schema.CELL_ID].tolist() == expect
    assert raw[schema.CELL_ID].isna().sum() == 1243
    # the polygons extend past the transcripts: cropped to the bbox + 1 µm margin
    t = s.transcripts
    b = shapely.total_bounds(s.nuclei[schema.GEOMETRY].to_numpy())
    assert b[0] >= t.x.min() - 1.0 - 1e-9 and b[2] <= t.x.max() + 1.0 + 1e-9
    assert b[1] >= t.y.min() - 1.0 - 1e-9 and b[3] <= t.y.max() + 1.0 + 1e-9
    # cell boundaries on request
    c = read_sample(segtraq_dir, boundaries="cell")
    assert c.nuclei_path.endswith("cell_boundaries.parquet")
    assert 150 <= len(c.nuclei) <= 158
    assert_nuclei_schema(c.nuclei, "polygon")


def test_bidcell_approximated(bidcell_dir):
    s = read_sample(bidcell_dir)
    assert s.filter_report.rows_in == 186_146
    assert s.filter_report.rows_kept == 186_146
    assert len(s.transcripts) == 186_146
    assert_tx_schema(s.transcripts)
    assert s.nuclei_source == "approximated" and s.nuclei_path is None
    assert_nuclei_schema(s.nuclei, "approximated")
    t = s.transcripts
    nuc_counts = t[t.nuclear & t.cell_id.notna()].groupby("cell_id").size()
    assert len(s.nuclei) == int((nuc_counts >= 3).sum())
    assert set(s.nuclei[schema.BD_ID]) == set(nuc_counts.index[nuc_counts >= 3])
    assert any("approximated" in w for w in s.warnings)
    assert t[schema.CELL_ID].isna().sum() == 2773


def test_approximate_nuclei_cover_their_transcripts(lung_dir):
    s = read_sample(lung_dir, nuclei="approximate", min_nuclear_transcripts=5)
    assert s.nuclei_source == "approximated"
    t = s.transcripts
    nuclear = t[t.nuclear & t.cell_id.notna()]
    counts = nuclear.groupby("cell_id").size()
    assert len(s.nuclei) == int((counts >= 5).sum())
    nuc = s.nuclei.set_index(schema.BD_ID)
    sub = nuclear[nuclear.cell_id.isin(nuc.index)]
    geoms = nuc.loc[sub.cell_id, schema.GEOMETRY].to_numpy()
    assert shapely.covers(geoms, shapely.points(sub.x.to_numpy(), sub.y.to_numpy())).all()
    # directly, with a bigger minimum
    fewer = approximate_nuclei(t, min_transcripts=20)
    assert len(fewer) == int((counts >= 20).sum())


def test_no_nuclei_and_filters_off(lung_dir):
    s = read_sample(lung_dir, nuclei="none", min_qv=0, filter_controls=False)
    assert len(s.transcripts) == 15_000
    assert s.nuclei_source == "none"
    assert_nuclei_schema(s.nuclei)
    assert len(s.nuclei) == 0
    assert s.filter_report.removed_qv == 0 and s.filter_report.removed_controls == 0
    assert "15,000 transcripts read, 15,000 kept" in s.filter_report.summary()


def test_detect_platform_xenium(lung_dir):
    assert detect_platform(lung_dir) == "xenium"
    assert detect_platform(lung_dir / "transcripts.parquet") == "xenium"
    # a Xenium transcripts file directly: boundaries come from its folder
    s = read_sample(lung_dir / "transcripts.parquet")
    assert len(s.nuclei) == 221


def test_xenium_csv_gz_and_bytes(tmp_path, lung_raw, lung_vertices):
    """Same crop as csv.gz (string ids via the CSV reader) and as parquet with bytes columns."""
    a = tmp_path / "csv"
    a.mkdir()
    lung_raw.to_csv(a / "transcripts.csv.gz", index=False)
    lung_vertices.to_csv(a / "nucleus_boundaries.csv.gz", index=False)
    s = read_sample(a)
    assert len(s.transcripts) == 12_919 and len(s.nuclei) == 221
    assert_tx_schema(s.transcripts)

    b = tmp_path / "bytes"
    b.mkdir()
    raw = lung_raw.copy()
    raw["cell_id"] = raw["cell_id"].str.encode("utf-8")
    raw["feature_name"] = raw["feature_name"].astype(str).str.encode("utf-8")
    raw.to_parquet(b / "transcripts.parquet", index=False)
    vert = lung_vertices.copy()
    vert["cell_id"] = vert["cell_id"].str.encode("utf-8")
    vert.to_parquet(b / "nucleus_boundaries.parquet", index=False)
    sb = read_sample(b)
    assert_tx_schema(sb.transcripts)
    assert sb.transcripts[schema.CELL_ID].tolist() == s.transcripts[schema.CELL_ID].tolist()
    assert sb.transcripts[schema.GENE].tolist() == s.transcripts[schema.GENE].tolist()
    assert sorted(sb.nuclei[schema.BD_ID]) == sorted(s.nuclei[schema.BD_ID])

    c = tmp_path / "categorical"
    c.mkdir()
    raw = lung_raw.copy()
    raw["feature_name"] = raw["feature_name"].astype("category")
    raw["cell_id"] = raw["cell_id"].astype("category")
    raw.to_parquet(c / "transcripts.parquet", index=False)
    sc = read_sample(c, nuclei="none")
    assert sc.transcripts[schema.GENE].tolist() == s.transcripts[schema.GENE].tolist()
    assert sc.transcripts[schema.CELL_ID].tolist() == s.transcripts[schema.CELL_ID].tolist()


@pytest.mark.slow
def test_packaged_sample_data_matches_shared():
    """The crops shipped in the package are the shared real crops: same files, same reading."""
    import os
    from pathlib import Path

    import pandas as pd

    shared = Path(os.environ["SEGGER_SHARED_DATA"])
    for name, twin in (("xenium_lung", "xenium_lung_segger"), ("xenium_breast", "xenium_breast_segtraq")):
        folder = PACKAGED / name
        if not (folder / "transcripts.parquet").is_file():
            pytest.skip("packaged sample data missing")
        if not (shared / twin / "transcripts.parquet").is_file():
            pytest.skip(f"shared crop {twin} missing")
        for f in ("transcripts.parquet", "nucleus_boundaries.parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(folder / f), pd.read_parquet(shared / twin / f))
        s = read_sample(folder)
        t = read_sample(shared / twin)
        assert len(s.nuclei) == {"xenium_lung": 221, "xenium_breast": 132}[name]
        pd.testing.assert_frame_equal(s.transcripts, t.transcripts)
        assert s.nuclei[schema.BD_ID].tolist() == t.nuclei[schema.BD_ID].tolist()
