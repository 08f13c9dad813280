"""The AnnData output works in scanpy as it is (real lung crop)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from _eco_helpers import LUNG, vendor_result
from segger.export import build_anndata, write_anndata
from segger.export.spatialdata import boundaries_for_all_cells
from segger.io import read_sample


@pytest.fixture(scope="module")
def lung_h5ad(tmp_path_factory):
    sample = read_sample(LUNG)
    result = vendor_result(sample.transcripts)
    bounds = boundaries_for_all_cells(result)
    path = write_anndata(build_anndata(result, bounds), tmp_path_factory.mktemp("h5ad") / "cells.h5ad")
    return path, result, bounds


def test_anndata_contract(lung_h5ad):
    import anndata as ad

    path, result, bounds = lung_h5ad
    a = ad.read_h5ad(path)
    assigned = result[result["segger_cell_id"] != "UNASSIGNED"]
    assert a.n_obs == assigned["segger_cell_id"].nunique()
    assert a.n_vars == result["gene"].nunique()
    # counts in X: whole numbers, row sums = transcripts per cell
    x = a.X.toarray()
    assert np.array_equal(x, np.round(x)) and x.min() >= 0
    per_cell = assigned.groupby("segger_cell_id").size()
    np.testing.assert_array_equal(x.sum(axis=1), per_cell[a.obs_names].to_numpy())
    # obsm['spatial'] = mean transcript position in µm, inside the crop
    sp = a.obsm["spatial"]
    assert sp.shape == (a.n_obs, 2)
    mx = assigned.groupby("segger_cell_id")[["x", "y"]].mean().loc[a.obs_names].to_numpy()
    np.testing.assert_allclose(sp, mx)
    # areas in µm²: the outline's area, plausible for cells (not pixels, not mm²)
    area = a.obs["area_um2"].to_numpy()
    assert np.isfinite(area).all()
    b = bounds.set_index("cell_id").loc[a.obs_names]
    np.testing.assert_allclose(area, shapely.area(b["geometry"].to_numpy()))
    assert 5 < np.median(area) < 500
    assert (a.obs["mean_score"].between(0.5, 1.0)).all()
    assert (a.obs["ref_overlap"] == 1.0).all()  # vendor segmentation vs itself


@pytest.mark.slow  # numba compiles scanpy's neighbour graph on first use (~10 s)
def test_scanpy_workflow(lung_h5ad):
    sc = pytest.importorskip("scanpy")
    import anndata as ad

    a = ad.read_h5ad(lung_h5ad[0])
    sc.pp.calculate_qc_metrics(a, inplace=True, percent_top=None)
    np.testing.assert_allclose(a.obs["total_counts"], a.obs["n_transcripts"])
    sc.pp.filter_cells(a, min_counts=10)
    a.layers["counts"] = a.X.copy()
    sc.pp.normalize_total(a, target_sum=100)
    sc.pp.log1p(a)
    sc.pp.pca(a, n_comps=15)
    sc.pp.neighbors(a, n_neighbors=10, random_state=0)
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, random_state=0)
    assert a.obsm["X_pca"].shape == (a.n_obs, 15)
    assert a.obs["leiden"].nunique() >= 2
    # spatial neighbours from obsm['spatial'] (what squidpy uses) are near in µm
    sc.pp.neighbors(a, use_rep="spatial", n_neighbors=6, key_added="spatial")
    d = a.obsp["spatial_distances"]
    assert 0 < np.median(d.data) < 50
