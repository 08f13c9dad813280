"""Helpers shared by the segger.io tests (unique module name: tests/ has no packages)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from segger import schema

SHARED = Path(os.environ.get("SEGGER_SHARED_DATA", "/work/shared/data"))
PACKAGED = Path(__file__).resolve().parents[2] / "src" / "segger" / "sample_data"


def _pick(shared_name: str, packaged_name: str | None) -> Path | None:
    if (SHARED / shared_name / "transcripts.parquet").is_file():
        return SHARED / shared_name
    if packaged_name and (PACKAGED / packaged_name / "transcripts.parquet").is_file():
        return PACKAGED / packaged_name
    return None


LUNG = _pick("xenium_lung_segger", "xenium_lung")
SEGTRAQ = _pick("xenium_breast_segtraq", "xenium_breast")
BIDCELL = _pick("xenium_breast_bidcell", None)

#: µm per CosMx pixel used to build the CosMx layout.
COSMX_PX = 0.12028


def tree_hash(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (to prove inputs are left unchanged)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }



TX_DTYPES = {
    schema.TX_ID: np.dtype("int64"),
    schema.X: np.dtype("float64"),
    schema.Y: np.dtype("float64"),
    schema.Z: np.dtype("float64"),
    schema.GENE: np.dtype("O"),
    schema.QV: np.dtype("float64"),
    schema.NUCLEAR: np.dtype("bool"),
    schema.CELL_ID: np.dtype("O"),
}


def assert_tx_schema(df: pd.DataFrame) -> None:
    assert list(df.columns[: len(schema.TX_COLUMNS)]) == schema.TX_COLUMNS
    for col, dtype in TX_DTYPES.items():
        assert df[col].dtype == dtype, col
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    assert df[schema.TX_ID].is_unique
    ids = df[schema.CELL_ID].to_numpy()
    assert all(v is None or (isinstance(v, str) and v) for v in pd.unique(ids))
    assert all(isinstance(g, str) for g in pd.unique(df[schema.GENE]))


def assert_nuclei_schema(nuc: pd.DataFrame, source: str | None = None) -> None:
    assert list(nuc.columns) == schema.BD_COLUMNS
    assert nuc[schema.X].dtype == np.float64 and nuc[schema.Y].dtype == np.float64
    assert nuc[schema.BD_ID].is_unique
    geoms = nuc[schema.GEOMETRY].to_numpy()
    if len(geoms):
        assert (shapely.get_type_id(geoms) == 3).all()
        assert shapely.is_valid(geoms).all()
        cent = shapely.centroid(geoms)
        np.testing.assert_allclose(shapely.get_x(cent), nuc[schema.X])
        np.testing.assert_allclose(shapely.get_y(cent), nuc[schema.Y])
        assert all(isinstance(b, str) for b in nuc[schema.BD_ID])
    if source is not None:
        assert (nuc[schema.BD_SOURCE] == source).all()
