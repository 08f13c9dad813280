"""Run by tests/scale/test_ddp.py in a fresh interpreter: 2-process CPU DDP training (gloo).

Lightning's DDP launcher re-runs this script for rank 1 (LOCAL_RANK=1), so everything here is
deterministic and idempotent. Each rank writes ``rank<r>.json`` with the training tiles it saw.
"""

import json
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch


class _Seen(pl.Callback):
    def __init__(self):
        self.tiles = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        gi = batch["tx"].global_index
        self.tiles.append([int(gi[0]), int(gi[-1]), int(gi.numel())])


def main(out: Path, data: str) -> None:
    torch.set_num_threads(1)
    from segger.data import build_graph
    from segger.io import read_sample
    from segger.training import TrainConfig, TrainingRun

    sample = read_sample(data)
    bundle = build_graph(sample.transcripts, sample.nuclei)
    cfg = TrainConfig(epochs=1, device="cpu", devices=2, strategy="ddp", tile_tx=1500, hidden_channels=8,
                      out_channels=8, heads=1, num_mid_layers=0, seed=0)
    run = TrainingRun(bundle, cfg, checkpoint_dir=out / "model")
    writes = []
    orig_write = run._write

    def counting_write(path, *a, **k):
        writes.append(Path(path).name)
        return orig_write(path, *a, **k)

    run._write = counting_write
    seen = _Seen()
    # the tiles each rank trains on (Lightning's DistributedSampler shards the training tiles)
    orig = pl.Trainer.__init__

    def init(self, *a, **k):
        k["callbacks"] = list(k.get("callbacks") or []) + [seen]
        orig(self, *a, **k)

    pl.Trainer.__init__ = init
    events = []
    run.fit(callback=events.append)
    rank = run.global_rank
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "env_local_rank": os.environ.get("LOCAL_RANK"), "tiles": seen.tiles,
        "n_train_tiles": run.info.get("n_train_tiles"), "writes": writes, "history": run.history, "n_events": len(events)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
