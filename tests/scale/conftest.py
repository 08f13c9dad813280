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


#: ``segger segment --out-of-core`` on the lung crop with a tiny model: 9 tiles of 70 µm, 4 training tiles
SEGMENT_OOC_ARGS = ["--hidden-channels", "16", "--out-channels", "16", "--heads", "2", "--num-mid-layers", "1",
                    "--epochs", "2", "--train-tile-tx", "1500", "--device", "cpu", "--quiet", "--out-of-core",
                    "--tile-size", "70", "--train-tiles", "4"]


@pytest.fixture(scope="session")
def segment_ooc_args() -> list[str]:
    return list(SEGMENT_OOC_ARGS)


@pytest.fixture(scope="session")
def segment_ooc_sync(tmp_path_factory, pkg_lung_dir, core_env_ctx) -> Path:
    """The output folder of ``segger segment --out-of-core --scheduler synchronous`` (:data:`SEGMENT_OOC_ARGS`):
    the reference the cluster runs of the same command are compared to."""
    from segger.cli.main import main

    out = tmp_path_factory.mktemp("segment-ooc") / "sync"
    with core_env_ctx():
        assert main(["segment", str(pkg_lung_dir), "--output", str(out), *SEGMENT_OOC_ARGS,
                     "--scheduler", "synchronous"]) == 0
    return out

