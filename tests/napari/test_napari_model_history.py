"""Issue 12 #3 in the panel: every model of the session is kept with its source, epochs and
metrics; the result layers say which model made them (until Predict runs again) and Revert goes
back to an earlier model. Real Qt clicks and keys on the tabs, buttons and combo boxes."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from segger.napari.layers import LAYER_CELLS, LAYER_TRANSCRIPTS

from _napari_helpers import real_viewer, wait_job
from _napari_helpers import go_tab as _tab, click_button as _click

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


def _radio(qtbot, radio):
    qtbot.mouseClick(radio, LEFT, pos=radio.rect().center())
    assert radio.isChecked()


def _train_new(qtbot, panel):
    t = _tab(qtbot, panel, "Train")
    _radio(qtbot, t.new_radio)
    t.epochs.setValue(1)
    t.size_combo.setCurrentText("tiny")
    t.device_combo.setCurrentText("cpu")
    _click(qtbot, t.train_button)
    wait_job(qtbot, t, 180_000)
    return t


def _predict(qtbot, panel):
    p = _tab(qtbot, panel, "Predict")
    _click(qtbot, p.predict_button)
    wait_job(qtbot, p, 180_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    return p


def _made_by(viewer):
    return {n: viewer.layers[n].metadata["segger"]["model"] for n in (LAYER_TRANSCRIPTS, LAYER_CELLS)}


def test_layers_keep_their_model_until_predict_and_revert_restores_model_1(make_napari_viewer_proxy, qtbot,
                                                                          lung_dir, monkeypatch):
    import napari.utils.notifications as N

    errors: list[str] = []
    monkeypatch.setattr(N, "show_error", lambda msg: errors.append(str(msg)))
    viewer = make_napari_viewer_proxy()
    dock, panel = real_viewer(viewer).window.add_plugin_dock_widget("napari-segger", "Segger")
    qtbot.waitUntil(lambda: panel.ready, timeout=60_000)
    viewer.open_sample("napari-segger", "xenium_lung")
    d = _tab(qtbot, panel, "Data")
    _click(qtbot, d.build_button)
    wait_job(qtbot, d, 60_000)
    st = panel.state

    _train_new(qtbot, panel)
    model1, label1 = st.model, st.model_label()
    assert label1.startswith("model 1")
    # auto-saved: the history entry points at a checkpoint in the user cache that loads
    import os
    from pathlib import Path

    from segger.training import read_checkpoint

    saved = st.models[-1]["info"].get("checkpoint")
    assert saved and Path(saved).is_file() and str(Path(saved)).startswith(os.environ["XDG_CACHE_HOME"])
    assert read_checkpoint(saved)["state_dict"]
    p = _predict(qtbot, panel)
    assert set(_made_by(viewer).values()) == {label1}
    assert f"made by {label1}" in p.summary.text()

    t = _train_new(qtbot, panel)
    label2 = st.model_label()
    assert label2.startswith("model 2") and st.model is not model1
    # the history: both models with source, epochs and metrics
    assert [(m["source"], m["epochs"]) for m in st.models] == [("trained", 1), ("trained", 1)]
    assert all("val_auroc_dot" in m["metrics"] for m in st.models)
    assert t.history_combo.count() == 2 and "(current)" in t.history_combo.itemText(1)
    # the layers still say model 1 (no re-predict yet) and Predict says they are stale
    assert set(_made_by(viewer).values()) == {label1}
    assert st.stale and label1 in p.summary.text() and label2 in p.summary.text()

    # Revert: pick model 1 in the history combo (a real key press) and click Revert
    t = _tab(qtbot, panel, "Train")
    assert not t.revert_button.isEnabled()  # the current model is selected
    t.history_combo.setFocus()
    qtbot.keyClick(t.history_combo, Qt.Key.Key_Up)
    assert t.history_combo.currentData() == 1
    _click(qtbot, t.revert_button)
    assert st.model is model1 and st.model_label() == label1
    assert not st.stale  # the layers were made by model 1: up to date again
    assert "(current)" in t.history_combo.itemText(0)
    assert len(st.models) == 2  # reverting adds no model
    p = _tab(qtbot, panel, "Predict")
    assert p.model_combo.currentData() == 1
    assert f"made by {label1}" in p.summary.text()
    assert not errors, errors
