"""Fixtures for tests/models."""

import pytest
import torch

from _model_graphs import make_hetero_graph


@pytest.fixture
def hetero_graph():
    return make_hetero_graph()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny graphs: intra-op threading only adds overhead (and contention on shared CPUs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
