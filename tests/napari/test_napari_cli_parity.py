"""GUI and CLI on the same folder build the same graph and write the same files (issue 11 #2).

The GUI path is driven with real Qt clicks (open the folder with the plugin's reader, Build graph,
Train, Predict, Export); the CLI path is ``segger segment`` (or the workflow calls it makes). The
graphs' ``summary()`` must be equal, and the output folders must hold the same file names with the
same columns. Above :data:`segger.napari.layers.MAX_SHAPES` nuclei the reader shows the nuclei as a
Labels raster: the Data step must still build from the sample's polygons (not a trace of the raster,
which renumbers and reshapes the nuclei).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt

from segger import schema as S

from _napari_helpers import dock_widget, wait_job

pytestmark = pytest.mark.gui


@pytest.fixture
def errors(monkeypatch):
    import napari.utils.notifications as N

    seen: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def _click(qtbot, button):
    from qtpy.QtCore import Qt

    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _open(viewer, folder):
    viewer.open(str(folder), plugin="napari-segger")


def _gui_graph(viewer, qtbot, folder, errors):
    _open(viewer, folder)
    w = dock_widget(viewer, "Data & graph")
    w.reset_choices()
    _click(qtbot, w.build_button)
    wait_job(qtbot, w, 300_000)
    assert not errors, errors
    assert w.state.bundle is not None, w.panel.status.text()
    return w


def _cli_graph(folder):
    """The graph ``segger segment`` builds (its read and graph steps)."""
    from segger.data import GraphParams, build_graph
    from segger.workflows import read_input

    sample = read_input(folder, require_nuclei="")
    return build_graph(sample.transcripts, sample.nuclei, GraphParams())


def _columns(folder) -> dict:
    import anndata as ad

    out = {}
    for name in ("segger_transcripts.parquet", "segger_boundaries.parquet"):
        out[name] = list(pd.read_parquet(folder / name).columns)
    a = ad.read_h5ad(folder / "segger_cells.h5ad")
    out["segger_cells.h5ad"] = {"obs": list(a.obs.columns), "var": list(a.var.columns), "obsm": sorted(a.obsm)}
    out["qc.json"] = sorted(json.loads((folder / "qc.json").read_text()))
    return out


def _files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------------ the lung crop
@pytest.mark.slow
def test_gui_and_cli_on_the_lung_crop_build_one_graph_and_write_one_file_set(
        make_napari_viewer_proxy, qtbot, errors, lung_dir, tmp_path):
    from segger.cli.main import main
    from segger.utils.outdir import OUTPUT_FILES

    viewer = make_napari_viewer_proxy()
    w = _gui_graph(viewer, qtbot, lung_dir, errors)
    assert w.state.bundle_source["from_sample"] == {"transcripts": True, "nuclei": True}
    assert w.state.bundle.summary() == _cli_graph(lung_dir).summary()

    t = dock_widget(viewer, "Train / fine-tune")
    t.epochs.setValue(1)
    # a new model of this size (the default start is fine-tuning the bundled model)
    qtbot.mouseClick(t.new_radio, Qt.MouseButton.LeftButton, pos=t.new_radio.rect().center())
    t.size_combo.setCurrentText("tiny")
    t.device_combo.setCurrentText("cpu")
    _click(qtbot, t.train_button)
    wait_job(qtbot, t, 300_000)
    assert not errors, errors
    ckpt = t.save_checkpoint(tmp_path / "gui.pt")
    p = dock_widget(viewer, "Predict")
    _click(qtbot, p.predict_button)
    wait_job(qtbot, p, 300_000)
    assert not errors, errors
    e = dock_widget(viewer, "Export")
    e.folder.setText(str(tmp_path / "gui"))
    _click(qtbot, e.export_button)
    wait_job(qtbot, e, 300_000)
    assert not errors, errors

    rc = main(["segment", str(lung_dir), "--output", str(tmp_path / "cli"), "--checkpoint", str(ckpt),
               "--epochs", "0", "--device", "cpu", "--quiet"])
    assert rc == 0
    gui, cli = tmp_path / "gui", tmp_path / "cli"
    assert _files(gui) == _files(cli) == set(OUTPUT_FILES)
    assert _columns(gui) == _columns(cli)
    run_gui = json.loads((gui / "segger_run.json").read_text())
    run_cli = json.loads((cli / "segger_run.json").read_text())
    assert run_gui["extra"]["graph_summary"] == run_cli["extra"]["graph_summary"]
    assert set(run_cli["parameters"]) <= set(run_gui["parameters"]) | {"min_qv", "filter_controls", "nuclei",
                                                                       "pixel_size", "device", "finetune"}
    # the same transcripts in the same order, with the same vendor columns
    a = pd.read_parquet(gui / "segger_transcripts.parquet")
    b = pd.read_parquet(cli / "segger_transcripts.parquet")
    np.testing.assert_array_equal(a[S.TX_ID].to_numpy(), b[S.TX_ID].to_numpy())


# ------------------------------------------------------------------------------------ > 3,000 nuclei
def _tile_lung(src, out, copies_per_side: int):
    """``copies_per_side``² copies of the lung crop side by side (own molecule and cell ids)."""
    tx = pd.read_parquet(src / "transcripts.parquet")
    bd = pd.read_parquet(src / "nucleus_boundaries.parquet")
    w = float(tx["x_location"].max() - tx["x_location"].min()) + 30.0
    h = float(tx["y_location"].max() - tx["y_location"].min()) + 30.0
    txs, bds = [], []
    for c in range(copies_per_side ** 2):
        i, j = divmod(c, copies_per_side)
        t = tx.copy()
        t["x_location"] = (t["x_location"] + i * w).astype(np.float32)
        t["y_location"] = (t["y_location"] + j * h).astype(np.float32)
        t["transcript_id"] = t["transcript_id"].astype(np.uint64) + np.uint64(c) * np.uint64(1 << 50)
        t["cell_id"] = np.where(t["cell_id"] == "UNASSIGNED", t["cell_id"], t["cell_id"] + f"-t{c}")
        b = bd.copy()
        b["vertex_x"] = (b["vertex_x"] + i * w).astype(np.float32)
        b["vertex_y"] = (b["vertex_y"] + j * h).astype(np.float32)
        b["cell_id"] = b["cell_id"] + f"-t{c}"
        txs.append(t)
        bds.append(b)
    out.mkdir()
    pd.concat(txs, ignore_index=True).to_parquet(out / "transcripts.parquet", index=False)
    pd.concat(bds, ignore_index=True).to_parquet(out / "nucleus_boundaries.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def tiled_lung(lung_dir, tmp_path_factory):
    return _tile_lung(lung_dir, tmp_path_factory.mktemp("tiled") / "lung_x16", 4)


@pytest.mark.slow
def test_gui_and_cli_agree_above_3000_nuclei(make_napari_viewer_proxy, qtbot, errors, tiled_lung):
    from segger.napari.layers import MAX_SHAPES

    cli = _cli_graph(tiled_lung)
    assert len(cli.nuclei) > MAX_SHAPES  # the reader shows them as a raster
    viewer = make_napari_viewer_proxy()
    w = _gui_graph(viewer, qtbot, tiled_lung, errors)
    nuclei_layer = next(l for l in viewer.layers if l.name.endswith("nuclei"))
    assert type(getattr(nuclei_layer, "__wrapped__", nuclei_layer)).__name__ == "Labels"
    assert w.state.bundle.summary() == cli.summary()
    assert w.state.bundle_source["from_sample"] == {"transcripts": True, "nuclei": True}
    # the same nuclei ids (not the raster's renumbering)
    assert list(w.state.bundle.nuclei[S.BD_ID]) == list(cli.nuclei[S.BD_ID])


def test_an_edited_layer_is_read_back(make_napari_viewer_proxy, qtbot, errors, lung_dir):
    """A drawn or edited layer is a new input: its table is read from the layer, not the sample."""
    viewer = make_napari_viewer_proxy()
    _open(viewer, lung_dir)
    nuclei = next(l for l in viewer.layers if l.name.endswith("nuclei"))
    nuclei.data = nuclei.data[:-1]  # the user deleted a nucleus
    w = dock_widget(viewer, "Data & graph")
    w.reset_choices()
    _click(qtbot, w.build_button)
    wait_job(qtbot, w, 120_000)
    assert not errors, errors
    assert w.state.bundle_source["from_sample"] == {"transcripts": True, "nuclei": False}
    assert w.state.bundle.summary()["n_bd"] == len(nuclei.data)


def test_gui_refuses_a_checkpoint_of_another_panel_with_the_cli_message(make_napari_viewer_proxy, qtbot, errors,
                                                                      lung_dir, tmp_path, monkeypatch):
    """One vocabulary rule: a checkpoint knowing < 50 % of the panel's genes is refused by Train /
    Load checkpoint with the message of `segger segment --checkpoint` (no silent rebuild)."""
    import segger.training
    from segger.data import GeneVocab
    from segger.errors import SeggerInputError
    from segger.workflows import check_vocabulary

    viewer = make_napari_viewer_proxy()
    w = _gui_graph(viewer, qtbot, lung_dir, errors)
    bundle = w.state.bundle
    genes = list(bundle.vocab.genes)
    vocab = GeneVocab.from_genes(genes[: len(genes) // 4] + [f"other{i}" for i in range(50)])
    ckpt = tmp_path / "other_panel.pt"
    ckpt.write_bytes(b"stand-in: load_checkpoint is replaced")
    monkeypatch.setattr(segger.training, "load_checkpoint", lambda path: (None, None, vocab, None, {}))
    with pytest.raises(SeggerInputError) as cli:
        check_vocabulary(vocab, bundle.transcripts[S.GENE].unique(), str(ckpt))
    t = dock_widget(viewer, "Train / fine-tune")
    t.ckpt_path.setText(str(ckpt))
    t.ckpt_radio.setChecked(True)
    for button in (t.load_button, t.train_button):
        errors.clear()
        _click(qtbot, button)
        wait_job(qtbot, t, 60_000)
        assert errors == [str(cli.value)]
        assert w.state.bundle is bundle and w.state.model is None  # nothing rebuilt, no model
