"""End to end through the CLI: ``segger segment STORE.zarr`` then ``segger export`` to every format."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from _eco_helpers import IMAGE_OFFSET_UM, PIXEL, tree_hash
from segger.cli.main import main

pytest.importorskip("spatialdata")


@pytest.fixture(scope="module")
def store_run(breast_store, breast_dapi_labels_tif, tmp_path_factory):
    """A 2-epoch segger run on the breast SpatialData store, nuclei from the DAPI label image."""
    before = tree_hash(breast_store)
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main([
        "segment", str(breast_store), "--output", str(out), "--device", "cpu", "--epochs", "2", "--quiet",
        "--nuclei-labels", str(breast_dapi_labels_tif), "--pixel-size", str(PIXEL),
        "--labels-offset", str(IMAGE_OFFSET_UM[0]), str(IMAGE_OFFSET_UM[1]),
    ])
    assert rc == 0
    assert tree_hash(breast_store) == before
    return out


@pytest.mark.slow
def test_segment_store_and_export_everything(store_run, breast_store, tmp_path, capsys):
    import anndata as ad
    import spatialdata as sd

    run = json.loads((store_run / "segger_run.json").read_text())
    assert run["parameters"]["platform"] == "spatialdata"
    assert run["parameters"]["nuclei_source"] == "labels"
    assert run["inputs"][0]["path"] == str(breast_store.resolve())
    result = pd.read_parquet(store_run / "segger_transcripts.parquet")
    assert (result["segger_cell_id"] != "UNASSIGNED").mean() > 0.5

    # spatialdata: a copy of the input store (found through segger_run.json)
    before = tree_hash(breast_store)
    capsys.readouterr()
    assert main(["export", str(store_run), "--to", "spatialdata", "--output", str(tmp_path / "seg.zarr")]) == 0
    assert f"a copy of {breast_store.resolve()}" in capsys.readouterr().out
    assert tree_hash(breast_store) == before
    o = sd.read_zarr(tmp_path / "seg.zarr")
    assert {"morphology_focus"} <= set(o.images) and {"nucleus_labels"} <= set(o.labels)
    assert {"nucleus_boundaries", "cell_boundaries", "segger_boundaries"} <= set(o.shapes)
    assert {"table", "segger_table"} <= set(o.tables)
    pts = o.points["transcripts"].compute()
    got = pts.set_index(pts["transcript_id"].astype(np.int64)).loc[result["transcript_id"], "segger_cell_id"]
    assert got.tolist() == result["segger_cell_id"].tolist()
    assert o.tables["segger_table"].n_obs == len(o.shapes["segger_boundaries"])
    # an existing output is not replaced without --overwrite: exit 2, one line
    assert main(["export", str(store_run), "--to", "spatialdata", "--output", str(tmp_path / "seg.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segger: error:") and "already exists" in err and "\n" not in err

    # anndata
    assert main(["export", str(store_run), "--to", "anndata", "--output", str(tmp_path / "cells.h5ad")]) == 0
    a = ad.read_h5ad(tmp_path / "cells.h5ad")
    assert a.n_obs == result.loc[result["segger_cell_id"] != "UNASSIGNED", "segger_cell_id"].nunique()
    assert np.isfinite(a.obs["area_um2"]).all() and "spatial" in a.obsm

    # xenium ranger: files + the command printed
    capsys.readouterr()
    assert main(["export", str(store_run), "--to", "xenium-ranger", "--output", str(tmp_path / "xr"),
                 "--input", "/data/xenium/outs"]) == 0
    printed = capsys.readouterr().out
    assert "xeniumranger import-segmentation --id=segger --xenium-bundle=/data/xenium/outs" in printed
    assert (tmp_path / "xr" / "segger_transcript_assignment.csv").is_file()
    assert (tmp_path / "xr" / "segger_viz_polygons.geojson").is_file()


def test_export_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--to", "anndata", "--output", str(tmp_path / "a.h5ad")]) == 2
    assert "segger_transcripts.parquet not found" in capsys.readouterr().err
