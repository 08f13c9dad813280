"""Shared fixtures of the core tests (tests/data, training, prediction, cli, test_pipeline.py).

Everything here is opt-in (no autouse fixture), named with a ``pkg_`` / ``synthetic_`` prefix so
it never shadows the fixtures of the other test folders, and imports the heavy libraries
(torch, shapely, segger.io) only inside the fixtures so collecting other folders stays fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import segger

# tests never write into the user's ~/.cache (napari auto-saves checkpoints, corrections of samples)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="segger-test-cache-")

SAMPLE_DATA = Path(segger.__file__).resolve().parent / "sample_data"


def _shared_data() -> Path:
    """The shared real crops: $SEGGER_SHARED_DATA, else ../shared/data beside the checkout (as CI
    lays it out), else /work/shared/data. Exported so every test folder's helpers agree."""
    env = os.environ.get("SEGGER_SHARED_DATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


os.environ["SEGGER_SHARED_DATA"] = str(_shared_data())

#: Smallest sensible model: fast on 2 shared CPU cores.
TINY_MODEL = dict(hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1)


def quiet_lightning() -> None:
    """Silence Lightning's banner / tips (they go through logging and warnings)."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric",
                 "pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning.*")
    warnings.filterwarnings("ignore", module="lightning.*")


def sha256_tree(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` (hidden files included)."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def make_synthetic_tables(n_side: int = 3, per_cell: int = 60, spacing: float = 20.0, radius: float = 3.0,
                          seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small sample in the :mod:`segger.schema` layout.

    ``n_side``² round nuclei (``radius`` µm) on a grid ``spacing`` µm apart; ``per_cell``
    transcripts per cell drawn around its centre (σ = 4 µm). Three cell types, each with its own
    four genes, so a GNN has something to learn; ``nuclear`` = inside the own nucleus polygon,
    ``cell_id`` = the nucleus id (like the vendor's flag + cell id).
    """
    import shapely

    rng = np.random.default_rng(seed)
    tx_parts, nuc_rows = [], []
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            cx, cy = 10.0 + i * spacing, 10.0 + j * spacing
            cid = f"cell-{k}"
            geom = shapely.Point(cx, cy).buffer(radius, quad_segs=8)
            nuc_rows.append({"bd_id": cid, "geometry": geom, "x": cx, "y": cy, "source": "polygon"})
            xy = rng.normal([cx, cy], 4.0, size=(per_cell, 2))
            genes = rng.choice([f"G{(k % 3) * 4 + g}" for g in range(4)], size=per_cell)
            inside = shapely.contains_xy(geom, xy[:, 0], xy[:, 1])
            tx_parts.append(pd.DataFrame({
                "x": xy[:, 0], "y": xy[:, 1], "z": 0.0, "gene": genes.astype(object), "qv": 40.0,
                "nuclear": inside, "cell_id": np.full(per_cell, cid, dtype=object),
            }))
            k += 1
    tx = pd.concat(tx_parts, ignore_index=True)
    tx.insert(0, "transcript_id", np.arange(len(tx), dtype=np.int64))
    return tx, pd.DataFrame(nuc_rows)


@contextlib.contextmanager
def core_env():
    """One torch thread (2 shared cores; small graphs) and no Lightning chatter; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            quiet_lightning()
            yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def core_env_ctx():
    """The :func:`core_env` context manager, for module-scoped fixtures (they start before autouse ones)."""
    return core_env


@pytest.fixture
def core_test_env():
    with core_env():
        yield


@pytest.fixture(scope="session")
def tree_sha256():
    """Function ``tree_sha256(folder) -> {relative path: sha256}``."""
    return sha256_tree


@pytest.fixture(scope="session")
def synthetic_tables():
    """Factory: ``synthetic_tables(**kw) -> (transcripts, nuclei)`` (see :func:`make_synthetic_tables`)."""
    return make_synthetic_tables


@pytest.fixture(scope="session")
def synthetic_graph():
    """A built graph of the default synthetic sample (9 nuclei, 540 transcripts). Do not mutate."""
    from segger.data import build_graph

    tx, nuc = make_synthetic_tables()
    return build_graph(tx, nuc)


@pytest.fixture(scope="session")
def tiny_train_config():
    """Factory: a TrainConfig with the tiny model on the CPU (keyword overrides allowed)."""
    from segger.training import TrainConfig

    def make(**kw):
        base = dict(TINY_MODEL, epochs=2, device="cpu", seed=0)
        base.update(kw)
        return TrainConfig(**base)

    return make


@pytest.fixture(scope="session")
def pkg_lung_dir() -> Path:
    d = SAMPLE_DATA / "xenium_lung"
    if not (d / "transcripts.parquet").is_file():
        pytest.skip("packaged xenium_lung sample not available")
    return d


@pytest.fixture(scope="session")
def pkg_breast_dir() -> Path:
    d = SAMPLE_DATA / "xenium_breast"
    if not (d / "transcripts.parquet").is_file():
        pytest.skip("packaged xenium_breast sample not available")
    return d


@pytest.fixture(scope="session")
def pkg_lung_sample(pkg_lung_dir):
    """``segger.io.read_sample`` of the packaged lung crop (qv ≥ 20, controls dropped). Do not mutate."""
    from segger.io import read_sample

    return read_sample(pkg_lung_dir)


@pytest.fixture(scope="session")
def pkg_lung_graph(pkg_lung_sample):
    """The default graph of the lung crop (vendor-flag belongs). Do not mutate."""
    from segger.data import build_graph

    return build_graph(pkg_lung_sample.transcripts, pkg_lung_sample.nuclei)



# --- real Xenium crops as schema transcripts tables, loaded without segger.io (tests/export, tests/validation)
_PKG_DATA = Path(segger.__file__).parent / "sample_data"
_SHARED = Path(os.environ["SEGGER_SHARED_DATA"])
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

if os.environ.get("SEGGER_REQUIRE_EXTRAS") == "1":
    # `make test` (and so CI) installs every test extra: a missing optional library there is an
    # install bug, so make importorskip fail loudly instead of skipping the tests silently.
    import importlib

    def _import_or_fail(modname, minversion=None, reason=None, **kwargs):
        return importlib.import_module(modname)

    pytest.importorskip = _import_or_fail
