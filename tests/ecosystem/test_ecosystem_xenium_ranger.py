"""Xenium Ranger ``import-segmentation`` inputs checked against the format rules (real lung crop).

Rules (Baysor legacy layout read by ``xeniumranger import-segmentation --transcript-assignment
--viz-polygons --units=microns``): CSV columns transcript_id, cell, gene, x, y, z,
assignment_confidence, is_noise (last); transcript_id = the bundle's unsigned molecule ids, unique;
cell = "<prefix>-<N>" or empty; is_noise true exactly for the empty cells; one closed,
counter-clockwise, valid µm polygon per cell and no other; legacy GeoJSON = GeometryCollection
of Polygons with the integer N in "cell"; FeatureCollection = Features with id "<prefix>-<N>".
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import shapely

from _eco_helpers import LUNG, vendor_result
from segger.errors import SeggerInputError
from segger.export.xenium_ranger import (
    ASSIGNMENT_COLUMNS,
    import_segmentation_command,
    write_xenium_ranger,
    xenium_ranger_tables,
)
from segger.io import read_sample


@pytest.fixture(scope="module")
def lung_result():
    return vendor_result(read_sample(LUNG).transcripts)


@pytest.fixture(scope="module")
def legacy_export(lung_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("xr")
    return write_xenium_ranger(lung_result, out, xenium_bundle=LUNG, run_id="segger_lung"), out


def _read_csv(path):
    return pd.read_csv(path, dtype={"cell": str, "is_noise": str}, keep_default_na=False)


def test_transcript_assignment_csv_rules(legacy_export, lung_result):
    exp, _ = legacy_export
    header = exp.transcript_assignment.read_text().splitlines()[0].split(",")
    assert header == ASSIGNMENT_COLUMNS and header[-1] == "is_noise"
    t = _read_csv(exp.transcript_assignment)
    bundle_ids = pd.read_parquet(LUNG / "transcripts.parquet", columns=["transcript_id"])["transcript_id"]
    assert pd.api.types.is_integer_dtype(t["transcript_id"]) and (t["transcript_id"] >= 0).all()
    assert t["transcript_id"].is_unique
    assert set(t["transcript_id"]) <= set(bundle_ids.astype(np.int64))  # the bundle's own ids
    assert t["transcript_id"].tolist() == lung_result["transcript_id"].tolist()
    assert set(t["is_noise"]) <= {"true", "false"}
    noise = t["is_noise"] == "true"
    assert ((t["cell"] == "") == noise).all()
    named = t.loc[~noise, "cell"]
    assert named.map(lambda c: re.fullmatch(r"segger-[1-9][0-9]*", c) is not None).all()
    numbers = sorted({int(c.rsplit("-", 1)[1]) for c in named})
    assert numbers == list(range(1, len(numbers) + 1))
    assert noise.sum() == (lung_result["segger_cell_id"] == "UNASSIGNED").sum()
    # every cell name stands for exactly one segger cell, as the id map says
    seg = lung_result.loc[~noise.to_numpy(), "segger_cell_id"].to_numpy()
    pairs = pd.DataFrame({"cell": named.to_numpy(), "seg": seg}).drop_duplicates()
    assert pairs["cell"].is_unique and pairs["seg"].is_unique
    idmap = pd.read_csv(exp.id_map)
    assert dict(zip(idmap["cell"], idmap["segger_cell_id"])) == dict(zip(pairs["cell"], pairs["seg"]))
    np.testing.assert_allclose(t["x"], lung_result["x"], atol=1e-4)
    assert t.loc[noise, "assignment_confidence"].eq(0).all()
    assert t.loc[~noise, "assignment_confidence"].between(0.5, 1.0).all()


def test_viz_polygons_legacy_rules(legacy_export, lung_result):
    exp, _ = legacy_export
    g = json.loads(exp.viz_polygons.read_text())
    assert g["type"] == "GeometryCollection" and set(g) == {"type", "geometries"}
    t = _read_csv(exp.transcript_assignment)
    cells = {int(c.rsplit("-", 1)[1]) for c in t["cell"] if c}
    got = [geom["cell"] for geom in g["geometries"]]
    assert all(isinstance(c, int) for c in got)
    assert sorted(got) == sorted(cells)  # one polygon per cell, no other
    xmin, ymin = lung_result[["x", "y"]].min() - 5
    xmax, ymax = lung_result[["x", "y"]].max() + 5
    polys = {}
    for geom in g["geometries"]:
        assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 1  # exterior only
        ring = np.asarray(geom["coordinates"][0], dtype=float)
        assert ring.shape[1] == 2 and len(ring) >= 4
        assert np.array_equal(ring[0], ring[-1])  # closed
        assert shapely.is_ccw(shapely.linearrings(ring))  # RFC 7946 exterior orientation
        poly = shapely.Polygon(ring)
        assert poly.is_valid and poly.area > 0
        assert xmin <= ring[:, 0].min() and ring[:, 0].max() <= xmax  # µm, like the transcripts
        assert ymin <= ring[:, 1].min() and ring[:, 1].max() <= ymax
        polys[geom["cell"]] = poly
    # each polygon outlines its own cell's transcripts
    named = t[t["cell"] != ""]
    num = named["cell"].str.rsplit("-", n=1).str[1].astype(int).to_numpy()
    geoms = np.array([polys[n] for n in num], dtype=object)
    inside = shapely.dwithin(geoms, shapely.points(named["x"].to_numpy(), named["y"].to_numpy()), 0.01)
    assert inside.mean() > 0.99


def test_feature_collection_and_min_transcripts(lung_result):
    table, geo, idmap = xenium_ranger_tables(lung_result, polygon_format="feature-collection",
                                              cell_prefix="seg", min_transcripts=20)
    assert geo["type"] == "FeatureCollection"
    names = {c for c in table["cell"] if c}
    assert {f["id"] for f in geo["features"]} == names == set(idmap["cell"])
    for f in geo["features"]:
        assert f["type"] == "Feature" and f["geometry"]["type"] == "Polygon"
        assert f["properties"]["cell_id"] == f["id"]
    assert idmap["n_transcripts"].min() >= 20
    small = lung_result.groupby("segger_cell_id").size()
    small = set(small[small < 20].index) - {"UNASSIGNED"}
    assert small and table.loc[lung_result["segger_cell_id"].isin(small).to_numpy(), "is_noise"].all()


def test_command_and_errors(legacy_export, lung_result, tmp_path):
    exp, _ = legacy_export
    assert exp.command.startswith("xeniumranger import-segmentation ")
    assert "--id=segger_lung" in exp.command and "--units=microns" in exp.command
    assert f"--xenium-bundle={LUNG}" in exp.command
    assert f"--transcript-assignment={exp.transcript_assignment.resolve()}" in exp.command
    assert f"--viz-polygons={exp.viz_polygons.resolve()}" in exp.command
    cmd = import_segmentation_command(None, "a b.csv", "p.geojson", localcores=4)
    assert "'--transcript-assignment=" in cmd and "--localcores=4" in cmd  # quoted path with a space
    with pytest.raises(SeggerInputError, match="transcript_id"):
        xenium_ranger_tables(lung_result.drop(columns="transcript_id"))
    with pytest.raises(SeggerInputError, match="duplicates"):
        xenium_ranger_tables(pd.concat([lung_result, lung_result.iloc[:1]]))
    with pytest.raises(SeggerInputError, match="cell_prefix"):
        xenium_ranger_tables(lung_result, cell_prefix="a-b")
    (tmp_path / "f").write_text("x")
    with pytest.raises(SeggerInputError, match="not a folder"):
        write_xenium_ranger(lung_result, tmp_path / "f")
