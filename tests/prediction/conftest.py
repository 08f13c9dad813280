"""Fixtures of the prediction tests: one tiny model trained on the real lung crop (shared)."""

import pytest

#: Training budget of the shared lung model (tiny model, CPU): ~10-20 s on 2 shared cores.
LUNG_EPOCHS = 20


@pytest.fixture(autouse=True)
def _core_env(core_test_env):
    yield


@pytest.fixture(scope="session")
def lung_trained(pkg_lung_graph, tiny_train_config, core_env_ctx):
    """``TrainingRun`` of the tiny model on the lung crop (default validation split, seed 0). Do not mutate."""
    from segger.progress import run
    from segger.training import TrainingRun

    with core_env_ctx():
        tr = TrainingRun(pkg_lung_graph, tiny_train_config(epochs=LUNG_EPOCHS))
        run(tr.iter_train())
    return tr


@pytest.fixture(scope="session")
def lung_prediction(lung_trained, pkg_lung_graph, core_env_ctx):
    """Cached candidate scores of the lung crop (whole graph, CPU)."""
    from segger.prediction import PredictConfig, predict

    with core_env_ctx():
        return predict(lung_trained.model, pkg_lung_graph, PredictConfig(device="cpu"))
