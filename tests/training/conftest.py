"""Every test here runs with one torch thread and without Lightning's console chatter."""

import pytest


@pytest.fixture(autouse=True)
def _core_env(core_test_env):
    yield
