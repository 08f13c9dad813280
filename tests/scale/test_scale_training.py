"""TrainingRun.fit() (calling thread) and multi-process DDP training on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from segger.progress import run as run_gen

HERE = Path(__file__).resolve().parent


def test_fit_runs_in_calling_thread_and_matches_iter_train(synthetic_graph, tiny_train_config):
    from segger.training import TrainingRun

    a = TrainingRun(synthetic_graph, tiny_train_config(epochs=2))
    run_gen(a.iter_train())
    b = TrainingRun(synthetic_graph, tiny_train_config(epochs=2))
    threads, events = [], []

    def cb(ev):
        threads.append(threading.current_thread())
        events.append(ev)

    assert b.fit(cb) is b
    assert set(threads) == {threading.main_thread()}
    assert any("epoch 2 done" in ev.message for ev in events)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]  # same run, bit for bit
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    assert b.global_rank == 0 and not b.multi_process


def test_multi_process_flag(synthetic_graph, tiny_train_config):
    from segger.training import TrainingRun

    for kw, want in [({}, False), ({"devices": 2}, True), ({"devices": "2"}, True), ({"strategy": "ddp"}, True),
                     ({"num_nodes": 2}, True), ({"devices": [0]}, False), ({"devices": [0, 1]}, True)]:
        assert TrainingRun(synthetic_graph, tiny_train_config(**kw)).multi_process is want, kw


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, pkg_lung_dir):
    """2 processes (Lightning DDP, gloo): both train on disjoint shares of the tiles, validation is
    synchronised, and only rank 0 writes the checkpoints (one best.pt, one last.pt)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("LOCAL_RANK", None)
    p = subprocess.run([sys.executable, str(HERE / "ddp_train_script.py"), str(tmp_path), str(pkg_lung_dir)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert (r0["rank"], r1["rank"]) == (0, 1) and r1["env_local_rank"] == "1"
    n = r0["n_train_tiles"]
    assert n >= 4 and r1["n_train_tiles"] == n
    # Lightning's DistributedSampler: ceil(n / 2) tiles each, together every tile
    assert len(r0["tiles"]) == len(r1["tiles"]) == (n + 1) // 2
    both = {tuple(t) for t in r0["tiles"]} | {tuple(t) for t in r1["tiles"]}
    assert len(both) == n
    assert r0["history"][0]["val_auroc"] == r1["history"][0]["val_auroc"]  # synchronised metric
    assert r0["writes"] and not r1["writes"]  # rank 0 writes, rank 1 never does
    assert sorted(os.listdir(tmp_path / "model")) == ["best.pt", "last.pt", "logs"]
    rows = (tmp_path / "model" / "logs" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2  # header + one epoch, written once (rank 0 only)
    from segger.training.checkpoint import read_checkpoint

    ck = read_checkpoint(tmp_path / "model" / "last.pt")
    assert ck["global_step"] == (n + 1) // 2 and ck["epoch"] == 1
