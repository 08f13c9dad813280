"""Real Xenium crops as schema transcripts tables, loaded without ``segger.io``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import segger

_PKG_DATA = Path(segger.__file__).parent / "sample_data"
_SHARED = Path(os.environ.get("SEGGER_SHARED_DATA", "/work/shared/data"))
CROPS = {
    "lung": [_PKG_DATA / "xenium_lung", _SHARED / "xenium_lung_segger"],
    "segtraq": [_PKG_DATA / "xenium_breast", _SHARED / "xenium_breast_segtraq"],
}


def load_crop(name: str) -> pd.DataFrame:
    """The crop's transcripts.parquet renamed to the schema (vendor cell_id: str or None)."""
    for folder in CROPS[name]:
        f = folder / "transcripts.parquet"
        if f.exists():
            break
    else:
        pytest.skip(f"{name} crop not available")
    raw = pd.read_parquet(f)
    df = pd.DataFrame(
        {
            "transcript_id": raw["transcript_id"].astype("int64").to_numpy(),
            "x": raw["x_location"].to_numpy(dtype=float),
            "y": raw["y_location"].to_numpy(dtype=float),
            "z": raw["z_location"].to_numpy(dtype=float),
            "gene": raw["feature_name"].astype(str).to_numpy(dtype=object),
            "qv": raw["qv"].to_numpy(dtype=float),
            "nuclear": raw["overlaps_nucleus"].astype(bool).to_numpy(),
        }
    )
    cid = raw["cell_id"].astype(str).to_numpy(dtype=object)
    cid[np.isin(cid, ["-1", "UNASSIGNED"])] = None
    df["cell_id"] = cid
    return df


def as_result(tx: pd.DataFrame, prefix: str = "seg-", seed: int = 0) -> pd.DataFrame:
    """A result table whose segmentation is the vendor's, relabelled (ids differ)."""
    df = tx.copy()
    assigned = df["cell_id"].notna().to_numpy()
    seg = np.full(len(df), "UNASSIGNED", dtype=object)
    seg[assigned] = prefix + df.loc[assigned, "cell_id"].astype(str)
    df["segger_cell_id"] = seg
    rng = np.random.default_rng(seed)
    df["score"] = np.where(assigned, rng.uniform(0.5, 1.0, len(df)), 0.0).astype(np.float32)
    df["assignment"] = np.where(~assigned, "none", np.where(df["nuclear"], "nucleus", "cytoplasm"))
    return df


@pytest.fixture(scope="session")
def lung_tx() -> pd.DataFrame:
    return load_crop("lung")


@pytest.fixture(scope="session")
def segtraq_tx() -> pd.DataFrame:
    return load_crop("segtraq")


@pytest.fixture(scope="session")
def lung_result(lung_tx) -> pd.DataFrame:
    return as_result(lung_tx)


@pytest.fixture(scope="session")
def segtraq_result(segtraq_tx) -> pd.DataFrame:
    return as_result(segtraq_tx)


@pytest.fixture(scope="session")
def make_result():
    """``as_result(tx, prefix="seg-", seed=0)``: a relabelled-vendor result table."""
    return as_result
