"""Fixtures for the ecosystem tests (helpers live in ``_eco_helpers``: tests/ has no packages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _eco_helpers import BREAST, LUNG, dapi_labels, make_xenium_store


@pytest.fixture(scope="session")
def spatialdata_mod():
    return pytest.importorskip("spatialdata")


@pytest.fixture(scope="session")
def breast_store(tmp_path_factory, spatialdata_mod) -> Path:
    """The breast crop as a SpatialData store (points, nucleus/cell shapes, image, labels, table)."""
    return make_xenium_store(BREAST, tmp_path_factory.mktemp("sdata") / "xenium_breast.zarr")


@pytest.fixture(scope="session")
def lung_store(tmp_path_factory, spatialdata_mod) -> Path:
    """The lung crop as a SpatialData store (points, nucleus shapes; string cell ids)."""
    return make_xenium_store(LUNG, tmp_path_factory.mktemp("sdata") / "xenium_lung.zarr")


@pytest.fixture(scope="session")
def breast_dapi_labels_tif(tmp_path_factory) -> Path:
    """``dapi_labels`` of the breast crop's DAPI image, saved as a .tif (what Cellpose would write)."""
    import tifffile

    lab = dapi_labels(tifffile.imread(BREAST / "morphology_focus.tif"))
    out = tmp_path_factory.mktemp("labels") / "dapi_nuclei_labels.tif"
    tifffile.imwrite(out, lab)
    return out

