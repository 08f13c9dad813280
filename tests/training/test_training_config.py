"""TrainConfig validation and device selection."""

from __future__ import annotations

import pytest
import torch

from segger.errors import SeggerInputError
from segger.training import TrainConfig, available_devices, resolve_device


@pytest.mark.parametrize("kw,name", [
    ({"epochs": -1}, "epochs"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": 1.0}, "learning_rate"),
    ({"supervision_ratio": 0.0}, "supervision_ratio"),
    ({"supervision_ratio": 1.5}, "supervision_ratio"),
    ({"neg_ratio": -1.0}, "neg_ratio"),
    ({"hard_fraction": 1.5}, "hard_fraction"),
    ({"hard_fraction": -0.1}, "hard_fraction"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"val_fraction": -0.2}, "val_fraction"),
    ({"tile_tx": 10}, "tile_tx"),
    ({"tile_margin": -1.0}, "tile_margin"),
    ({"hidden_channels": 0}, "hidden_channels"),
    ({"heads": 0}, "heads"),
    ({"out_channels": -4}, "out_channels"),
    ({"num_mid_layers": -1}, "num_mid_layers"),
])
def test_train_config_rejects_out_of_range(kw, name):
    with pytest.raises(SeggerInputError) as exc:
        TrainConfig(**kw).validate()
    assert name in str(exc.value)


def test_train_config_defaults_valid_and_round_trip():
    cfg = TrainConfig().validate()
    again = TrainConfig.from_dict({**cfg.to_dict(), "not_a_field": 3})
    assert again == cfg
    mc = TrainConfig(hidden_channels=16, out_channels=8, heads=2, num_mid_layers=1).model_config(num_tx_tokens=50)
    assert (mc.num_tx_tokens, mc.hidden_channels, mc.out_channels, mc.heads, mc.num_mid_layers) == (50, 16, 8, 2, 1)


def test_zero_epochs_is_allowed():
    TrainConfig(epochs=0).validate()


def test_available_devices():
    devs = available_devices()
    assert devs[:2] == ["auto", "cpu"]
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert devs[2:] == [f"cuda:{i}" for i in range(n)]


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == ("cpu", 1)
    acc, _ = resolve_device("auto")
    assert acc == ("gpu" if torch.cuda.is_available() else "cpu")
    assert resolve_device("") == resolve_device("auto")


@pytest.mark.parametrize("dev", ["cuda", "cuda:0", "cuda:3"])
def test_resolve_cuda_without_gpu_raises(monkeypatch, dev):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SeggerInputError, match="no CUDA GPU"):
        resolve_device(dev)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the real no-GPU message")
def test_resolve_cuda_on_this_cpu_machine():
    with pytest.raises(SeggerInputError):
        resolve_device("cuda")


@pytest.mark.parametrize("dev", ["tpu", "gpu0", "mps:0", "CPU "])
def test_resolve_unknown_device(dev):
    with pytest.raises(SeggerInputError, match="unknown device"):
        resolve_device(dev)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resolve_cuda_with_gpu():
    assert resolve_device("cuda") == ("gpu", [0])
    assert resolve_device("cuda:0") == ("gpu", [0])
