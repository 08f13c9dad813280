"""Reliability tests (issue 6): one torch thread, no Lightning chatter, and the corpus base folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _core_env(core_test_env):
    yield


@pytest.fixture(scope="session")
def corpus_base(tmp_path_factory):
    """The cropped lung sample every malformed case starts from (read-only by convention)."""
    from _reliability_corpus import SAMPLE, make_base

    if not (SAMPLE / "transcripts.parquet").is_file():
        pytest.skip("packaged xenium_lung sample not available")
    return make_base(tmp_path_factory.mktemp("corpus") / "base")
