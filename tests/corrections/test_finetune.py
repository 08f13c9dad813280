"""Fine-tuning on corrections: corrected transcripts move, far-away transcripts do not."""

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.corrections import CorrectionStore, FinetuneConfig, finetune_and_repredict
from segger.data import build_graph
from segger.io import read_sample
from segger.prediction import predict
from segger.progress import run
from segger.training import TrainConfig, TrainingRun

SAMPLE = "src/segger/sample_data/xenium_breast"


@pytest.fixture(scope="module")
def trained():
    s = read_sample(SAMPLE)
    b = build_graph(s.transcripts, s.nuclei)
    tr = TrainingRun(b, TrainConfig(epochs=3, hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1))
    run(tr.iter_train())
    return tr.model, predict(tr.model, b)


@pytest.mark.slow
def test_finetune_moves_corrected_and_leaves_far_away(trained):
    model, pred = trained
    before = pred.assign()
    x = before[S.X].to_numpy()
    ids = before[S.SEGGER_CELL_ID].to_numpy()
    # correct 15 transcripts near the left edge to the nucleus of a neighbouring cell's choice
    bd_ids = pred.bundle.nuclei[S.BD_ID].astype(str).to_numpy()
    left, targets = [], []
    for t in np.flatnonzero((x < np.quantile(x, 0.2)) & (ids != S.UNASSIGNED)):
        alt = [bd_ids[k] for k in pred.cand_bd[pred.cand_tx == t] if bd_ids[k] != ids[t]]
        if alt:
            left.append(t)
            targets.append(alt[0])
        if len(left) == 15:
            break
    left = np.asarray(left)
    store = CorrectionStore()
    store.assign(before[S.TX_ID].to_numpy()[left], ids[left], targets)
    gen = finetune_and_repredict(model, pred, store, FinetuneConfig(steps=5))
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            new_model, new_pred, after, changed = stop.value
            break
    assert any(e.stage == "finetune" for e in events)
    moved = after[S.SEGGER_CELL_ID].to_numpy()[left]
    assert (moved == np.array(targets, dtype=object)).all()
    assert after["corrected"].to_numpy()[left].all()
    far = x > np.quantile(x, 0.6)  # more than the re-prediction radius + margin away
    assert (after[S.SEGGER_CELL_ID].to_numpy()[far] == ids[far]).all()
    assert len(changed) == len(after)
