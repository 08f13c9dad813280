"""segger.pipeline.segment on the breast sample: outputs, progress, and all-or-nothing output folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from segger import schema as S

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("core_test_env")]

OUTPUTS = ["qc.json", "segger_boundaries.parquet", "segger_cells.h5ad", "segger_run.json",
           "segger_transcripts.parquet"]


def _configs(epochs=2):
    from segger.prediction import PredictConfig
    from segger.training import TrainConfig

    train = TrainConfig(epochs=epochs, hidden_channels=16, out_channels=16, heads=2, num_mid_layers=1)
    return {"train": train, "predict": PredictConfig(), "device": "cpu"}


def _leftovers(folder: Path) -> list[str]:
    """Staging folders and temporary files anywhere under ``folder``."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.name.startswith(".segger-staging") or ".tmp-" in p.name or p.name.startswith(".")]


@pytest.fixture(scope="module")
def breast_run(tmp_path_factory, pkg_breast_dir, core_env_ctx):
    from segger.pipeline import iter_segment

    out = tmp_path_factory.mktemp("pipeline") / "out"
    events = []
    with core_env_ctx():
        gen = iter_segment(pkg_breast_dir, out, **_configs())
        while True:
            try:
                events.append(next(gen))
            except StopIteration as stop:
                result = stop.value
                break
    return out, result, events


def test_segment_writes_all_outputs(breast_run, pkg_breast_dir):
    out, res, _ = breast_run
    assert res.output == out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(OUTPUTS + ["model/best.pt", "model/last.pt", "model/logs/hparams.yaml",
                                      "model/logs/metrics.csv"])
    assert _leftovers(out) == []
    for name, path in res.files.items():
        assert (path.is_dir() if name == "model/logs" else path.is_file()) and path == out / name
    df = pd.read_parquet(out / "segger_transcripts.parquet")
    assert len(df) == len(res.result) == res.bundle.data["tx"].num_nodes
    assert {S.SEGGER_CELL_ID, S.SCORE, S.ASSIGNMENT} <= set(df.columns)
    # int cell ids of the breast crop come through as strings and name real nuclei
    nuclei = set(res.bundle.nuclei[S.BD_ID].astype(str))
    assigned = df[S.ASSIGNMENT].astype(str).isin(["nucleus", "cytoplasm"])
    assert assigned.mean() > 0.5
    assert set(df.loc[assigned, S.SEGGER_CELL_ID].astype(str)) <= nuclei
    run = json.loads((out / "segger_run.json").read_text())
    assert {"read", "graph", "train", "predict", "export"} <= set(run["timings"]) == set(res.timings)
    assert res.qc and json.loads((out / "qc.json").read_text())


def test_segment_progress_stages_in_order(breast_run):
    _, _, events = breast_run
    stages = [e.stage for e in events]
    order = ["read", "graph", "train", "predict", "export"]
    firsts = [stages.index(s) for s in order]
    assert firsts == sorted(firsts)
    assert events[-1].stage == "export" and events[-1].fraction == 1.0


def _copy_complete(breast_run, tmp_path) -> Path:
    src, _, _ = breast_run
    dst = tmp_path / "out"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("target,exc", [
    ("segger.export.write_anndata", RuntimeError("injected: disk full while writing the AnnData")),
    ("segger.export.write_boundaries", KeyboardInterrupt()),
    ("segger.validation.qc_report", ValueError("injected QC failure")),
    ("segger.export.write_run_json", OSError("injected: no space left on device")),
])
def test_failure_mid_run_keeps_previous_output(breast_run, pkg_breast_dir, tmp_path, tree_sha256, monkeypatch,
                                               target, exc):
    from segger.pipeline import segment

    out = _copy_complete(breast_run, tmp_path)
    before = tree_sha256(out)

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(target, boom)
    with pytest.raises(type(exc)):
        segment(pkg_breast_dir, out, **_configs(epochs=1))
    assert tree_sha256(out) == before, "the previous complete output changed"
    assert _leftovers(out) == []


def test_failure_in_training_keeps_previous_output(breast_run, pkg_breast_dir, tmp_path, tree_sha256, monkeypatch):
    from segger.pipeline import segment
    from segger.training import TrainingRun

    out = _copy_complete(breast_run, tmp_path)
    before = tree_sha256(out)

    def boom(self):
        yield from ()
        raise RuntimeError("injected training failure")

    monkeypatch.setattr(TrainingRun, "iter_train", boom)
    with pytest.raises(RuntimeError, match="injected training failure"):
        segment(pkg_breast_dir, out, **_configs(epochs=1))
    assert tree_sha256(out) == before
    assert _leftovers(out) == []


def test_failure_while_moving_outputs_into_place(breast_run, pkg_breast_dir, tmp_path, tree_sha256, monkeypatch):
    from segger.pipeline import segment

    out = _copy_complete(breast_run, tmp_path)
    before = tree_sha256(out)
    real_replace = os.replace
    moved = []

    def flaky_replace(src, dst, *a, **k):
        src, dst = Path(src), Path(dst)
        # count only the pipeline's moves from its staging folder into the output folder
        if ".segger-staging" in str(src) and ".segger-staging" not in str(dst):
            moved.append(dst.name)
            if len(moved) == 3:
                raise OSError("injected: device error while moving outputs into place")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="injected"):
        segment(pkg_breast_dir, out, **_configs(epochs=1))
    assert len(moved) == 3
    assert _leftovers(out) == []
    assert tree_sha256(out) == before, "the output folder now mixes files of two runs"


def test_failed_first_run_leaves_no_output_files(pkg_breast_dir, tmp_path, monkeypatch):
    from segger.pipeline import segment

    out = tmp_path / "fresh"
    monkeypatch.setattr("segger.export.write_anndata", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        segment(pkg_breast_dir, out, **_configs(epochs=1))
    assert not out.exists() or list(out.rglob("*")) == []


def test_output_inside_input_is_refused(pkg_breast_dir):
    from segger.errors import SeggerInputError
    from segger.pipeline import segment

    with pytest.raises(SeggerInputError, match="input folder"):
        segment(pkg_breast_dir, pkg_breast_dir, **_configs(epochs=1))


def test_reuse_checkpoint_without_training(breast_run, pkg_breast_dir, tmp_path):
    from segger.pipeline import segment

    src, first, _ = breast_run
    out = tmp_path / "reuse"
    cfg = _configs(epochs=0)
    res = segment(pkg_breast_dir, out, checkpoint=src / "model" / "best.pt", **cfg)
    assert not (out / "model").exists()
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS
    assert res.timings["train"] < 5.0
    assert len(res.result) == len(first.result)
