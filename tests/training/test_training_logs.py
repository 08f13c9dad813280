"""Training metrics through Lightning loggers (issue 13 #5): a CSV log (one row per epoch) in the
run's checkpoint folder, TensorBoard event files when ``tensorboard`` is installed, no file without
a checkpoint folder; a resumed run appends; the output folder of ``segment`` publishes the logs."""

from __future__ import annotations

import csv

import pytest

from segger.progress import run
from segger.training import TrainingRun
from segger.training.train import LOG_DIR, LOG_METRICS, tensorboard_available


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_log_holds_one_row_per_epoch_with_every_metric(tmp_path, synthetic_tables, tiny_train_config, core_test_env):
    from segger.data import build_graph

    tx, nuc = synthetic_tables(n_side=4, per_cell=50, seed=3)
    b = build_graph(tx, nuc)
    tr = TrainingRun(b, tiny_train_config(epochs=3, val_fraction=0.25, val_block=20.0, tile_tx=300),
                     checkpoint_dir=tmp_path / "model")
    run(tr.iter_train())
    log = tmp_path / "model" / LOG_DIR / "metrics.csv"
    rows = _rows(log)
    assert len(rows) == 3 == len(tr.history)
    assert set(LOG_METRICS) | {"step"} <= set(rows[0])
    for row, h in zip(rows, tr.history):  # the same numbers as TrainingRun.history
        for k in LOG_METRICS:
            assert float(row[k]) == pytest.approx(h[k], nan_ok=True), k
        assert float(row["step"]) == h["step"]
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0, 3.0]
    assert float(rows[-1]["val_auroc"]) > 0  # validation ran and was logged
    events = list((tmp_path / "model" / LOG_DIR / "tensorboard").glob("events.out.tfevents.*"))
    if tensorboard_available():
        assert events and events[0].stat().st_size > 0
    else:  # skipped silently: no folder, no warning needed
        assert not (tmp_path / "model" / LOG_DIR / "tensorboard").exists()

    # a resumed run appends its epochs to the log of the run it continues
    tr2 = TrainingRun(b, tiny_train_config(epochs=5, val_fraction=0.25, val_block=20.0, tile_tx=300),
                      checkpoint=tmp_path / "model" / "last.pt", checkpoint_dir=tmp_path / "model", resume=True)
    run(tr2.iter_train())
    rows2 = _rows(log)
    assert [float(r["epoch"]) for r in rows2] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert rows2[:3] == [{k: r.get(k, "") for k in rows2[0]} for r in rows]

    # a new (not resumed) run into the same folder starts a new log
    tr3 = TrainingRun(b, tiny_train_config(epochs=1, val_fraction=0.0, tile_tx=300), checkpoint_dir=tmp_path / "model")
    run(tr3.iter_train())
    assert [float(r["epoch"]) for r in _rows(log)] == [1.0]


def test_no_checkpoint_folder_writes_no_file(tmp_path, synthetic_graph, tiny_train_config, core_test_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = TrainingRun(synthetic_graph, tiny_train_config(epochs=1, val_fraction=0.0, tile_tx=200))
    run(tr.iter_train())
    assert len(tr.history) == 1
    assert list(tmp_path.iterdir()) == []  # no lightning_logs/, no metrics.csv


def test_tensorboard_is_skipped_when_not_installed(tmp_path, monkeypatch):
    import importlib.util

    from segger.training.train import make_loggers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    loggers = make_loggers(tmp_path / "logs")
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger"]
    assert make_loggers(None) == []


def test_segment_publishes_the_log(tmp_path, pkg_lung_dir, core_test_env):
    from segger.training import TrainConfig
    from segger.workflows import segment

    out = tmp_path / "out"
    segment(pkg_lung_dir, out, train=TrainConfig(epochs=1, hidden_channels=8, out_channels=8, num_mid_layers=0,
                                                 heads=1, tile_tx=20000))
    rows = _rows(out / "model" / LOG_DIR / "metrics.csv")
    assert len(rows) == 1 and set(LOG_METRICS) <= set(rows[0])
    assert not [p for p in out.iterdir() if p.name.startswith(".segger-")]  # staged and published
