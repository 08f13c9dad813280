"""Fixtures of the scale tests: one torch thread, a tiny checkpoint trained on the packaged lung crop and
the synchronous out-of-core run of it on 9 tiles."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _core_env(core_test_env):
    yield


@pytest.fixture
def one_thread():
    yield  # the autouse fixture above already holds one torch thread


@pytest.fixture(scope="session")
def lung_checkpoint(tmp_path_factory, pkg_lung_graph, tiny_train_config, core_env_ctx) -> Path:
    """``best.pt`` of the tiny model trained 1 epoch on the packaged lung crop (vendor polygons)."""
    from segger.training import TrainingRun

    out = tmp_path_factory.mktemp("scale-ckpt")
    with core_env_ctx():
        run = TrainingRun(pkg_lung_graph, tiny_train_config(epochs=1, tile_tx=4000), checkpoint_dir=out / "model")
        run.fit()
    return out / "model" / "best.pt"


#: the tile grid of the multi-tile out-of-core tests on the lung crop: 3 × 3 tiles of 70 µm
OOC_TILING = dict(tile_size=70.0, margin=30.0)


@pytest.fixture(scope="session")
def ooc_sync(tmp_path_factory, lung_checkpoint, pkg_lung_dir, core_env_ctx):
    """The synchronous out-of-core run on 9 tiles: ``(OutOfCoreResult, result table)`` — the reference
    the cluster runs are compared to."""
    import pandas as pd

    from segger.scale import OutOfCoreConfig, predict_out_of_core

    out = tmp_path_factory.mktemp("ooc") / "sync.parquet"
    with core_env_ctx():
        res = predict_out_of_core(pkg_lung_dir, lung_checkpoint, out, OutOfCoreConfig(**OOC_TILING, scheduler="synchronous"))
    return res, pd.read_parquet(out)
