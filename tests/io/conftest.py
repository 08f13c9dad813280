"""Fixtures for the segger.io tests: the real Xenium crops, and MERSCOPE / CosMx / table / label
layouts converted from them into temporary folders (nothing large is committed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from _io_helpers import BIDCELL, COSMX_PX, LUNG, SEGTRAQ


@pytest.fixture(scope="session")
def lung_dir() -> Path:
    if LUNG is None:
        pytest.skip("xenium lung crop not available")
    return LUNG


@pytest.fixture(scope="session")
def segtraq_dir() -> Path:
    if SEGTRAQ is None:
        pytest.skip("xenium segtraq crop not available")
    return SEGTRAQ


@pytest.fixture(scope="session")
def bidcell_dir() -> Path:
    if BIDCELL is None:
        pytest.skip("xenium bidcell crop not available")
    return BIDCELL


@pytest.fixture(scope="session")
def lung_raw(lung_dir) -> pd.DataFrame:
    return pd.read_parquet(lung_dir / "transcripts.parquet").reset_index(drop=True)


@pytest.fixture(scope="session")
def lung_vertices(lung_dir) -> pd.DataFrame:
    return pd.read_parquet(lung_dir / "nucleus_boundaries.parquet").reset_index(drop=True)


@pytest.fixture(scope="session")
def segtraq_raw(segtraq_dir) -> pd.DataFrame:
    return pd.read_parquet(segtraq_dir / "transcripts.parquet")


def _polygons_by_id(vertices: pd.DataFrame) -> tuple[list[str], list]:
    ids, polys = [], []
    for cid, g in vertices.groupby("cell_id", sort=False):  # test helper: few hundred polygons
        ids.append(cid)
        polys.append(shapely.Polygon(g[["vertex_x", "vertex_y"]].to_numpy(float)))
    return ids, polys


@pytest.fixture(scope="session")
def merscope_dir(tmp_path_factory, lung_raw, lung_vertices) -> Path:
    """The lung crop in MERSCOPE layout: detected_transcripts.csv + cell_boundaries.parquet.

    Cell ids become large integers (-1 unassigned); boundaries are WKB MultiPolygons written
    for 7 z-planes, plane k shifted by k µm in x so that the kept (middle) plane is testable.
    """
    out = tmp_path_factory.mktemp("merscope")
    raw = lung_raw
    cells = pd.Series(raw["cell_id"].unique())
    cells = cells[cells != "UNASSIGNED"].reset_index(drop=True)
    int_of = {c: 1_000_000_000_000_000_000 + i for i, c in enumerate(cells)}
    cell_int = raw["cell_id"].map(int_of).fillna(-1).astype(np.int64)
    genes = raw["feature_name"].astype(str)
    # MERSCOPE has "Blank-" controls: rename the Xenium ones
    genes = genes.where(~genes.str.startswith(("BLANK", "NegControl")), "Blank-" + genes.str[-4:])
    df = pd.DataFrame(
        {
            "": np.arange(len(raw)) % 1000,  # MERSCOPE's unnamed per-fov index
            "barcode_id": pd.factorize(genes)[0],
            "global_x": raw["x_location"].astype(float),
            "global_y": raw["y_location"].astype(float),
            "global_z": np.round(raw["z_location"].astype(float) / 4).astype(float),
            "x": raw["x_location"].astype(float) / 0.108,
            "y": raw["y_location"].astype(float) / 0.108,
            "fov": (raw["fov_name"] == "V5").astype(int),
            "gene": genes,
            "transcript_id": "ENST" + pd.Series(pd.factorize(genes)[0]).astype(str).str.zfill(11),
            "cell_id": cell_int,
        }
    )
    df.to_csv(out / "detected_transcripts.csv", index=False)
    ids, polys = _polygons_by_id(lung_vertices)
    rows = []
    for z in range(7):
        shifted = shapely.transform(np.asarray(polys, dtype=object), lambda c, z=z: c + [z, 0.0])
        for cid, poly in zip(ids, shifted):
            rows.append((int_of[cid], z, shapely.to_wkb(shapely.MultiPolygon([poly]))))
    bd = pd.DataFrame(rows, columns=["EntityID", "ZIndex", "Geometry"])
    bd.insert(0, "ID", np.arange(len(bd)))
    bd["Type"] = "cell"
    pq.write_table(pa.Table.from_pandas(bd, preserve_index=False), out / "cell_boundaries.parquet")
    return out





@pytest.fixture(scope="session")
def cosmx_dir(tmp_path_factory, segtraq_raw) -> Path:
    """The segtraq crop in CosMx layout (pixels, 2 FOVs, per-FOV cell numbers, CellComp)."""
    out = tmp_path_factory.mktemp("cosmx")
    raw = segtraq_raw
    x = raw["x_location"].astype(float)
    y = raw["y_location"].astype(float)
    fov = np.where(x < x.median(), 1, 2)
    cell = raw["cell_id"].to_numpy()
    # per-FOV local cell numbers 1..k, deliberately overlapping between the two FOVs
    local = np.zeros(len(raw), dtype=np.int64)
    for f in (1, 2):
        m = (fov == f) & (cell != -1)
        local[m] = pd.factorize(cell[m])[0] + 1
    comp = np.where(cell == -1, "0", np.where(raw["overlaps_nucleus"] == 1, "Nuclear", "Cytoplasm"))
    df = pd.DataFrame(
        {
            "fov": fov,
            "cell_ID": local,
            "x_local_px": (x / COSMX_PX) % 4256,
            "y_local_px": (y / COSMX_PX) % 4256,
            "x_global_px": x / COSMX_PX,
            "y_global_px": y / COSMX_PX,
            "z": np.round(raw["z_location"].astype(float) / 0.8).astype(int),
            "target": raw["feature_name"].astype(str).str.replace("NegControlProbe_", "NegPrb", regex=False),
            "CellComp": comp,
        }
    )
    df.to_csv(out / "Run1_tx_file.csv", index=False)
    return out


@pytest.fixture()
def xenium_copy(tmp_path, lung_dir) -> Path:
    """A writable copy of the lung folder (for tests that damage a file)."""
    dst = tmp_path / "xenium"
    dst.mkdir()
    for p in lung_dir.iterdir():
        if p.suffix == ".parquet":
            (dst / p.name).write_bytes(p.read_bytes())
    return dst
