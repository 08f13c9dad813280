"""Issue 12 #2 in the panel: Open Sample → Predict with the bundled pretrained model (no training),
on the lung crop it was trained on and on the breast crop (another panel: the unknown-gene warning
is a non-blocking note); Train starts by default from the bundled model (fine-tune).

Driven with real Qt clicks on the tabs and buttons (pytest-qt)."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from segger import schema as S
from segger.napari.layers import LAYER_CELLS, LAYER_TRANSCRIPTS

from _napari_helpers import wait_job
from _napari_helpers import open_panel as _panel, go_tab as _tab, click_button as _click

pytestmark = pytest.mark.gui
LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as N

    seen: dict[str, list[str]] = {"error": [], "warning": []}
    monkeypatch.setattr(N, "show_error", lambda msg: seen["error"].append(str(msg)))
    monkeypatch.setattr(N, "show_warning", lambda msg: seen["warning"].append(str(msg)))
    return seen


def _open_and_build(viewer, qtbot, sample):
    panel = _panel(viewer, qtbot)
    viewer.open_sample("napari-segger", sample)
    d = _tab(qtbot, panel, "Data")
    _click(qtbot, d.build_button)
    wait_job(qtbot, d, 60_000)
    assert panel.state.bundle is not None, d.panel.status.text()
    return panel


def _predict_bundled(qtbot, panel):
    assert panel.state.model is None
    p = _tab(qtbot, panel, "Predict")  # enabled without any trained model
    assert p.model_combo.currentData() == "bundled", p.model_combo.currentText()
    assert "bundled" in p.model_combo.currentText()
    assert "nearest nucleus" in p.model_note.text() and "Model card" in p.model_note.text()
    assert "bundled pretrained model" in p.summary.text()
    _click(qtbot, p.predict_button)
    wait_job(qtbot, p, 180_000)
    qtbot.waitUntil(lambda: not p.outline_busy, timeout=60_000)
    return p


@pytest.mark.parametrize("sample", ["xenium_lung", "xenium_breast"])
def test_open_sample_then_predict_uses_the_bundled_model(make_napari_viewer_proxy, qtbot, notes, sample,
                                                         lung_dir, breast_dir):
    viewer = make_napari_viewer_proxy()
    panel = _open_and_build(viewer, qtbot, sample)
    p = _predict_bundled(qtbot, panel)
    assert not notes["error"], notes["error"]
    st = panel.state
    assert st.result is not None and (st.result[S.ASSIGNMENT].astype(str) != "none").mean() > 0.5
    assert [m["source"] for m in st.models] == ["bundled"]
    assert st.model_label() == "bundled pretrained model"
    assert st.model_info.get("min_coverage") == 0.0  # the bundled model's own vocabulary rule
    assert "made by bundled pretrained model" in p.summary.text()
    for name in (LAYER_TRANSCRIPTS, LAYER_CELLS):
        assert viewer.layers[name].metadata["segger"]["model"] == "bundled pretrained model", name
    # the combo now shows the loaded bundled model as the current one (no second copy offered)
    assert p.model_combo.count() == 1 and p.model_combo.currentData() == st.model_id
    if sample == "xenium_breast":
        # another panel: refused under the 50 % rule, accepted by the bundled model's rule with a note
        assert any("unknown-gene token" in w for w in notes["warning"]), notes["warning"]
        assert p.vocab_note.isVisibleTo(p) and "unknown-gene token" in p.vocab_note.text()
    else:
        assert not p.vocab_note.isVisibleTo(p)


def test_train_fine_tunes_from_the_bundled_model_by_default(make_napari_viewer_proxy, qtbot, notes, lung_dir,
                                                            monkeypatch):
    import segger.training as T
    from segger.models.pretrained import bundled_checkpoint

    started: list = []
    real_run = T.TrainingRun

    def spy(bundle, config=None, checkpoint=None, **kw):
        started.append(checkpoint)
        return real_run(bundle, config, checkpoint=checkpoint, **kw)

    monkeypatch.setattr(T, "TrainingRun", spy)
    viewer = make_napari_viewer_proxy()
    panel = _open_and_build(viewer, qtbot, "xenium_lung")
    t = _tab(qtbot, panel, "Train")
    assert t.bundled_radio.isChecked() and not t.new_radio.isChecked()
    assert not t.size_combo.isEnabled()  # the bundled model keeps its own size
    t.epochs.setValue(1)
    t.device_combo.setCurrentText("cpu")
    _click(qtbot, t.train_button)
    wait_job(qtbot, t, 180_000)
    assert not notes["error"], notes["error"]
    assert started == [str(bundled_checkpoint())]
    st = panel.state
    assert st.models[-1]["source"] == "fine-tuned" and st.models[-1]["epochs"] == 1
    assert "fine-tuned from the bundled model" in st.model_label()
    # "New model" is one click away and trains from scratch
    qtbot.mouseClick(t.new_radio, LEFT, pos=t.new_radio.rect().center())
    assert t.new_radio.isChecked() and t.size_combo.isEnabled()
    t.size_combo.setCurrentText("tiny")
    _click(qtbot, t.train_button)
    wait_job(qtbot, t, 180_000)
    assert started[-1] is None and st.models[-1]["source"] == "trained"
