"""Fixtures of the scale tests: one torch thread, and a tiny checkpoint trained on the packaged lung crop."""

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
