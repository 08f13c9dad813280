"""TrainingRun: progress events, loss, cancel, determinism, fine-tuning; prepare_tiles."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from segger.data import TX_BD, build_graph
from segger.errors import SeggerInputError
from segger.progress import Progress, run
from segger.training import TrainingRun, prepare_tiles


def _drain(gen):
    """All events of a progress generator and its return value."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def _model_outputs(model, data):
    """Node embeddings of ``data`` (eval mode, no grad): a cheap fingerprint of the weights."""
    from segger.prediction.predict import embed

    return embed(model, data, torch.device("cpu"))


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------------------------
def test_tiny_graph_trains_and_loss_decreases(synthetic_graph, tiny_train_config):
    cfg = tiny_train_config(epochs=12, learning_rate=1e-2, val_fraction=0.0, tile_tx=200)
    tr = TrainingRun(synthetic_graph, cfg)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    events, ret = _drain(tr.iter_train())
    assert ret is tr
    assert events and all(isinstance(e, Progress) for e in events)
    assert all(e.stage == "train" for e in events)
    step_events = [e for e in events if "loss" in e.metrics and "val_auroc" not in e.metrics]
    epoch_events = [e for e in events if "val_auroc" in e.metrics]
    n_tiles = tr.info["n_train_tiles"]
    assert len(step_events) == cfg.epochs * n_tiles
    assert len(epoch_events) == cfg.epochs == len(tr.history)
    assert [e.step for e in step_events] == list(range(1, cfg.epochs * n_tiles + 1))
    assert all(e.total == cfg.epochs * n_tiles for e in step_events)
    assert step_events[-1].fraction == 1.0
    losses = [h["loss"] for h in tr.history]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert losses[-1] < losses[0]
    assert [h["epoch"] for h in tr.history] == [float(i) for i in range(1, cfg.epochs + 1)]
    assert tr.info["cancelled"] is False and tr.info["seconds"] > 0
    # the weights changed, the model is back on the CPU in eval mode
    assert not all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert not tr.model.training
    assert all(p.device.type == "cpu" for p in tr.model.parameters())


def test_validation_metrics_reported(synthetic_tables, tiny_train_config):
    tx, nuc = synthetic_tables(n_side=4, per_cell=50, seed=3)
    b = build_graph(tx, nuc)
    cfg = tiny_train_config(epochs=2, val_fraction=0.25, val_block=20.0, tile_tx=300)
    tr = TrainingRun(b, cfg)
    run(tr.iter_train())
    assert tr.info["n_val_tiles"] >= 1 and tr.info["n_val_tx"] > 0
    for h in tr.history:
        assert 0.0 <= h["val_auroc"] <= 1.0
        assert np.isfinite(h["val_loss"])


def test_cancel_after_first_training_step(synthetic_graph, tiny_train_config):
    cfg = tiny_train_config(epochs=200, val_fraction=0.0, tile_tx=200)
    tr = TrainingRun(synthetic_graph, cfg)
    gen = tr.iter_train()
    for ev in gen:
        if "loss" in ev.metrics:
            break
    t0 = time.perf_counter()
    gen.close()  # GUI cancel
    assert time.perf_counter() - t0 < 30
    assert tr.info["cancelled"] is True
    assert len(tr.history) <= 1  # stopped in the first epoch, far from 200
    assert not tr.model.training
    z = _model_outputs(tr.model, synthetic_graph.data)
    assert z["tx"].shape[0] == synthetic_graph.data["tx"].num_nodes
    assert torch.isfinite(z["tx"]).all() and torch.isfinite(z["bd"]).all()


def test_cancel_after_first_event_marks_cancelled(synthetic_graph, tiny_train_config):
    cfg = tiny_train_config(epochs=50, val_fraction=0.0, tile_tx=200)
    tr = TrainingRun(synthetic_graph, cfg)
    gen = tr.iter_train()
    first = next(gen)
    assert first.stage == "train"
    gen.close()
    # the model is usable either way
    z = _model_outputs(tr.model, synthetic_graph.data)
    assert torch.isfinite(z["tx"]).all()
    assert tr.info.get("cancelled") is True


def test_same_seed_same_weights(synthetic_graph, tiny_train_config):
    cfg = dict(epochs=3, val_fraction=0.0, tile_tx=200, seed=11)
    runs = []
    for _ in range(2):
        tr = TrainingRun(synthetic_graph, tiny_train_config(**cfg))
        run(tr.iter_train())
        runs.append(tr)
    assert _same_state(runs[0].model, runs[1].model)
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    other = TrainingRun(synthetic_graph, tiny_train_config(**{**cfg, "seed": 12}))
    run(other.iter_train())
    assert not _same_state(runs[0].model, other.model)


def test_no_nucleus_links_is_an_input_error(synthetic_tables, tiny_train_config):
    tx, nuc = synthetic_tables(n_side=2, per_cell=20)
    # transcripts nowhere near the nuclei, none flagged nuclear
    b = build_graph(tx.assign(x=tx["x"] + 5000.0, nuclear=False), nuc)
    assert b.data[TX_BD].edge_index.shape[1] == 0
    tr = TrainingRun(b, tiny_train_config(epochs=1))
    with pytest.raises(SeggerInputError, match="no transcript lies in a nucleus"):
        run(tr.iter_train())


def test_invalid_config_is_rejected_at_construction(synthetic_graph, tiny_train_config):
    with pytest.raises(SeggerInputError):
        TrainingRun(synthetic_graph, tiny_train_config(learning_rate=5.0))


# ----------------------------------------------------------------------------------------------
# checkpoints written by a run, fine-tuning, resume


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, synthetic_graph, tiny_train_config, core_env_ctx):
    out = tmp_path_factory.mktemp("trained")
    with core_env_ctx():
        tr = TrainingRun(synthetic_graph, tiny_train_config(epochs=2, val_fraction=0.0, tile_tx=200),
                         checkpoint_dir=out / "model")
        run(tr.iter_train())
    return out, tr


def test_run_writes_best_and_last(trained_dir):
    from segger.training import read_checkpoint

    out, tr = trained_dir
    files = sorted(p.name for p in (out / "model").iterdir())
    assert files == ["best.pt", "last.pt", "logs"]  # no temporary files left (logs: tests/training/test_training_logs.py)
    last = read_checkpoint(out / "model" / "last.pt")
    assert last["epoch"] == 2 and "optimizer_state" in last
    assert last["vocab"] == list(tr.bundle.vocab.genes)


def test_fine_tune_from_checkpoint(trained_dir, synthetic_graph, tiny_train_config):
    from segger.training import load_checkpoint

    out, _ = trained_dir
    ckpt = out / "model" / "last.pt"
    loaded, *_ = load_checkpoint(ckpt)
    ft = TrainingRun(synthetic_graph, tiny_train_config(epochs=1, val_fraction=0.0, tile_tx=200), checkpoint=ckpt)
    assert _same_state(ft.model, loaded)  # starts from the checkpoint's weights
    run(ft.iter_train())
    assert len(ft.history) == 1
    assert not _same_state(ft.model, loaded)


def test_resume_continues_the_epoch_count(trained_dir, synthetic_graph, tiny_train_config):
    out, _ = trained_dir
    ft = TrainingRun(synthetic_graph, tiny_train_config(epochs=3, val_fraction=0.0, tile_tx=200),
                     checkpoint=out / "model" / "last.pt", resume=True)
    assert ft.start_epoch == 2
    run(ft.iter_train())
    assert len(ft.history) == 1  # 3 - 2 epochs left


def test_fine_tune_vocabulary_mismatch(trained_dir, synthetic_tables, tiny_train_config):
    out, _ = trained_dir
    tx, nuc = synthetic_tables()
    other = build_graph(tx.assign(gene="X" + tx["gene"].astype(str)), nuc)
    with pytest.raises(SeggerInputError, match="gene vocabulary"):
        TrainingRun(other, tiny_train_config(epochs=1), checkpoint=out / "model" / "best.pt")


def test_fine_tune_with_the_checkpoint_vocabulary_works(trained_dir, synthetic_tables, tiny_train_config):
    """A panel with extra genes, built with the checkpoint's vocabulary (as segger.pipeline does)."""
    from segger.training import load_checkpoint

    out, _ = trained_dir
    _, _, vocab, _, _ = load_checkpoint(out / "model" / "best.pt")
    tx, nuc = synthetic_tables(seed=5)
    tx.loc[::7, "gene"] = "NEWGENE"
    b = build_graph(tx, nuc, vocab=vocab)
    assert (b.data["tx"].x == 0).sum() == len(tx.loc[::7])
    ft = TrainingRun(b, tiny_train_config(epochs=1, val_fraction=0.0, tile_tx=200), checkpoint=out / "model" / "best.pt")
    run(ft.iter_train())
    assert len(ft.history) == 1


# ----------------------------------------------------------------------------------------------
# prepare_tiles


def test_prepare_tiles_on_lung(pkg_lung_graph, tiny_train_config):
    cfg = tiny_train_config(tile_tx=3000)
    train_items, val_items, info = prepare_tiles(pkg_lung_graph, cfg)
    assert info["n_train_tiles"] == len(train_items) > 1
    assert info["n_val_tiles"] == len(val_items) >= 1
    assert 0 < info["n_val_tx"] < pkg_lung_graph.data["tx"].num_nodes
    seen_val_pos = set()
    for v in val_items:
        n_pos = int(v.labels.sum())
        assert n_pos > 0 and v.label_index.shape == (2, v.labels.numel())
        # validation positives are hidden nucleus links of the tile, negatives are other nuclei
        bel = {tuple(e) for e in v[TX_BD].edge_index[:, v.hidden].T.tolist()}
        pos = {tuple(e) for e in v.label_index[:, v.labels == 1].T.tolist()}
        assert pos <= bel
        neg = v.label_index[:, v.labels == 0]
        own = dict(zip(v[TX_BD].edge_index[0].tolist(), v[TX_BD].edge_index[1].tolist()))
        assert all(own.get(int(t)) != int(b) for t, b in neg.T)
        gt = v["tx"].global_index
        gb = v["bd"].global_index
        for t, b in v.label_index[:, v.labels == 1].T.tolist():
            key = (int(gt[t]), int(gb[b]))
            assert key not in seen_val_pos, "a validation link is counted in two tiles"
            seen_val_pos.add(key)
    # training tiles never supervise a held-out transcript: no transcript a validation tile holds out
    # (its hidden, labelled links) is a training transcript of any tile
    val_tx = {int(v["tx"].global_index[t]) for v in val_items for t in v.label_index[0].tolist()}
    assert val_tx
    n_train = 0
    for t in train_items:
        assert t.train_tx.dtype == torch.bool and t.hidden.shape == (t[TX_BD].edge_index.shape[1],)
        trained = {int(g) for g in t["tx"].global_index[t.train_tx].tolist()}
        assert not (trained & val_tx), "a training tile supervises a held-out transcript"
        n_train += len(trained)
        # hidden (validation) links start at held-out transcripts only
        src = t[TX_BD].edge_index[0][t.hidden]
        assert not t.train_tx[src].any()
    assert n_train > 0
    # deterministic: the same config gives the same validation labels
    _, val2, _ = prepare_tiles(pkg_lung_graph, cfg)
    assert all(torch.equal(a.label_index, b.label_index) for a, b in zip(val_items, val2))
