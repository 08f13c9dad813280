"""GPU out-of-memory: retry with smaller tiles, then the CPU with a notice (issue 6, item 5).

There is no GPU here: the device is faked as ``cuda`` and the scoring function raises
``torch.cuda.OutOfMemoryError`` the first N times it is called on it; a "successful GPU attempt"
runs the real CPU code instead. (The large-layer guard of the GUI is in
tests/napari/test_napari_errors.py.)
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from segger.prediction import oom
from segger.prediction.oom import OOMFallbackWarning, is_oom, iter_with_oom_fallback, run_with_oom_fallback
from segger.progress import Progress, run

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB total capacity)"


def test_is_oom():
    assert is_oom(torch.cuda.OutOfMemoryError(CUDA_OOM))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(RuntimeError(CUDA_OOM))
    assert not is_oom(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_oom(ValueError("out of memory"))  # not a torch error
    assert not is_oom(MemoryError())


@pytest.fixture
def model_and_graph(synthetic_graph):
    from segger.models import SeggerLinkModel, build_hetero_model
    from segger.training import TrainConfig

    torch.manual_seed(0)
    cfg = TrainConfig(hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1)
    model = SeggerLinkModel(build_hetero_model(**cfg.model_config(len(synthetic_graph.vocab)).to_dict()), spatial=True)
    return model.eval(), synthetic_graph


@pytest.fixture
def fake_gpu(monkeypatch):
    """``device='cuda'`` resolves to a CUDA device; ``_iter_predict`` on it raises OOM ``fail`` times
    (then runs the real code on the CPU, as a GPU that now has room would). Records every call."""
    import importlib

    P = importlib.import_module("segger.prediction.predict")  # the package exports a function 'predict'
    real = P._iter_predict
    state = {"fail": 0, "calls": []}

    def fake_iter_predict(model, bundle, config, device):
        state["calls"].append((device.type, config.tile_tx))
        if device.type == "cuda":
            if sum(1 for d, _ in state["calls"] if d == "cuda") <= state["fail"]:
                yield Progress("predict", 0, 1, "embedding")
                raise torch.cuda.OutOfMemoryError(CUDA_OOM)
            device = torch.device("cpu")
        return (yield from real(model, bundle, config, device))

    monkeypatch.setattr(P, "_device", lambda name: torch.device("cuda") if name == "cuda" else torch.device("cpu"))
    monkeypatch.setattr(P, "_iter_predict", fake_iter_predict)
    monkeypatch.setattr(oom, "MIN_TILE_TX", 50)
    return state


def _predict(model, bundle, device):
    from segger.prediction import PredictConfig, iter_predict

    events = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", OOMFallbackWarning)
        pred = run(iter_predict(model, bundle, PredictConfig(device=device)), events.append)
    notices = [str(w.message) for w in caught if issubclass(w.category, OOMFallbackWarning)]
    return pred, events, notices


def test_oom_retries_with_smaller_tiles(model_and_graph, fake_gpu):
    model, bundle = model_and_graph
    n = bundle.data["tx"].num_nodes  # 540
    fake_gpu["fail"] = 2
    pred, events, notices = _predict(model, bundle, "cuda")
    assert fake_gpu["calls"] == [("cuda", n), ("cuda", n // 2), ("cuda", n // 4)]
    assert len(notices) == 2 and all("retrying with tiles of" in m for m in notices)
    assert f"tiles of {n // 4:,} transcripts" in notices[-1]
    assert [e.message for e in events if e.message.startswith("GPU out of memory")] == notices
    assert pred.n_tx == n and np.isfinite(pred.cand_score).all()


def test_oom_falls_back_to_the_cpu_with_a_notice(model_and_graph, fake_gpu):
    model, bundle = model_and_graph
    n = bundle.data["tx"].num_nodes
    fake_gpu["fail"] = 10**6  # the GPU never has room
    pred, events, notices = _predict(model, bundle, "cuda")
    # 3 smaller tiles (540 → 270 → 135 → 67 ≥ 50), then the CPU with the original tile size
    assert fake_gpu["calls"] == [("cuda", n), ("cuda", n // 2), ("cuda", n // 4), ("cuda", n // 8), ("cpu", n)]
    assert len(notices) == 4 and "continuing on the CPU" in notices[-1]
    assert "CUDA out of memory" in notices[-1]  # the reason is named
    # the fallback gives exactly what a CPU run gives
    fake_gpu["calls"].clear()
    plain, _, none = _predict(model, bundle, "cpu")
    assert none == [] and fake_gpu["calls"] == [("cpu", plain.config.tile_tx)]
    np.testing.assert_array_equal(pred.cand_score, plain.cand_score)
    np.testing.assert_array_equal(pred.best_bd, plain.best_bd)


def test_other_errors_are_not_retried():
    calls = []

    def boom(device, tile):
        calls.append((device.type, tile))
        raise RuntimeError("CUDA error: device-side assert triggered")

    with pytest.raises(RuntimeError, match="device-side assert"):
        run_with_oom_fallback(boom, "cuda", 1000, min_tile_tx=10)
    assert calls == [("cuda", 1000)]

    def cpu_oom(device, tile):
        calls.append((device.type, tile))
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB: out of memory")

    calls.clear()
    with pytest.raises(RuntimeError, match="DefaultCPUAllocator"):
        run_with_oom_fallback(cpu_oom, "cpu", 1000)  # nowhere to fall back to
    assert calls == [("cpu", 1000)]


def test_plain_callable_fallback_and_notice_callback():
    """The same helper around a training-style callable (no progress generator)."""
    seen, notices = [], []

    def step(device, tile):
        seen.append((device.type, tile))
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError(CUDA_OOM)
        return f"done on {device.type} with {tile}"

    with pytest.warns(OOMFallbackWarning, match="continuing on the CPU"):
        out = run_with_oom_fallback(step, torch.device("cuda"), 4000, min_tile_tx=1000, max_retries=5,
                                    notice=notices.append)
    assert out == "done on cpu with 4000"
    assert seen == [("cuda", 4000), ("cuda", 2000), ("cuda", 1000), ("cpu", 4000)]
    assert len(notices) == 3


def test_generator_events_pass_through():
    def factory(device, tile):
        yield Progress("predict", 1, 2, f"{device.type}")
        return tile

    events = []
    assert run(iter_with_oom_fallback(factory, "cuda", 7), events.append) == 7
    assert [e.message for e in events] == ["cuda"]


@pytest.mark.slow
def test_cli_reports_the_fallback_once(fake_gpu, corpus_base, tmp_path, capsys, monkeypatch):
    """``segger segment``: the fallback is one 'warning:' line and is recorded in segger_run.json."""
    import importlib

    from _reliability_corpus import TINY_ARGS

    from segger.cli.main import main

    fake_gpu["fail"] = 10**6
    # --device cuda: training is sent to the CPU (no GPU here), prediction meets the fake GPU
    T = importlib.import_module("segger.training.train")
    monkeypatch.setattr(T, "resolve_device", lambda device: ("cpu", 1))
    out = tmp_path / "out"
    rc = main(["segment", str(corpus_base), "-o", str(out), *[a if a != "cpu" else "cuda" for a in TINY_ARGS]])
    err = capsys.readouterr().err
    assert rc == 0, err
    calls = fake_gpu["calls"]
    assert calls[-1] == ("cpu", calls[0][1]) and all(d == "cuda" for d, _ in calls[:-1])
    lines = [ln for ln in err.splitlines() if "GPU out of memory" in ln]
    assert lines and all(ln.startswith("warning: GPU out of memory") for ln in lines), err
    assert sum("continuing on the CPU" in ln for ln in lines) == 1
    run_json = json.loads((out / "segger_run.json").read_text())
    assert any("continuing on the CPU" in w for w in run_json["extra"]["warnings"])
