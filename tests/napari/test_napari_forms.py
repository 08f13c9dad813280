"""The parameter forms of the dock widgets are generated from the parameter dataclasses (issue 11 #1):
tooltip = the field's help, initial value = the dataclass default, range / choices from the
declaration, the values read back as the dataclass the widget hands to the workflow."""

from __future__ import annotations

import dataclasses

import pytest

from segger.corrections import FinetuneConfig
from segger.data import GraphParams
from segger.errors import SeggerInputError
from segger.params import _default, field_kind
from segger.prediction import PredictConfig
from segger.training import TrainConfig

from _napari_helpers import dock_widget, wait_job

pytestmark = pytest.mark.gui

#: dock widget -> (its form attribute, the dataclass)
FORMS = {"Data & graph": ("graph_form", GraphParams), "Train / fine-tune": ("train_form", TrainConfig),
         "Predict": ("predict_form", PredictConfig)}
CLASSES = [GraphParams, TrainConfig, PredictConfig, FinetuneConfig]


def _bounds(cls, f, w):
    """(lowest, highest) value the input may take by the declaration (an open bound: one step inside)."""
    md = f.metadata
    kind = field_kind(cls, f)[0]
    eps = 1 if kind == "int" else 10.0 ** -w.native.decimals()
    lo = md.get("low")
    hi = md.get("high")
    lo = None if lo is None else lo + (eps if md.get("low_open") else 0)
    hi = None if hi is None else hi - (eps if md.get("high_open") else 0)
    return lo, hi


@pytest.mark.parametrize("name", list(FORMS))
def test_widget_forms_come_from_the_dataclass(name, make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy()
    w = dock_widget(viewer, name)
    attr, cls = FORMS[name]
    form = getattr(w, attr)
    assert form.cls is cls and form.widgets
    values = form.values()
    for fname, mw in form.widgets.items():
        f = {x.name: x for x in dataclasses.fields(cls)}[fname]
        md = f.metadata
        # tooltip: the declared help text (+ unit), the label's too
        assert md["help"] in mw.native.toolTip(), (cls.__name__, fname)
        if md.get("unit"):
            assert md["unit"] in mw.native.toolTip()
        # initial value: the dataclass default (one default, everywhere)
        assert values[fname] == _default(f), (cls.__name__, fname, values[fname])
        # range / choices enforced by the input
        kind = field_kind(cls, f)[0]
        if md.get("choices"):
            assert list(mw.choices) == list(md["choices"])
        elif kind in ("int", "float"):
            lo, hi = _bounds(cls, f, mw)
            native = mw.native
            if hi is not None:
                assert native.maximum() == pytest.approx(hi)
                native.setValue(hi + 1000)
                assert native.value() == pytest.approx(hi)
            if lo is not None:
                assert native.minimum() == pytest.approx(lo)
                native.setValue(lo - 1000)
                assert native.value() == pytest.approx(lo)
    # the old attribute names are the generated Qt inputs (tests and users reach them so)
    olds = {"Data & graph": {"k_tx": "k_tx", "dist_tx": "dist_tx", "k_bd": "k_bd", "dist_bd": "dist_bd",
                             "use_z": "use_z"},
            "Train / fine-tune": {"epochs": "epochs", "lr": "learning_rate"},
            "Predict": {"cut_box": "score_cut", "fragments": "fragments",
                        "max_frag_extent": "max_fragment_extent", "reach": "max_distance"}}[name]
    for old, fname in olds.items():
        assert getattr(w, old) is form.native(fname)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_field_makes_an_input_with_its_help(cls, qtbot):
    """A field without help text fails here (and in tests/test_params.py): its input would have no tooltip."""
    from segger.napari._forms import param_form

    form = param_form(cls)
    for f in dataclasses.fields(cls):
        help_text = f.metadata.get("help", "").strip()
        assert help_text, f"{cls.__name__}.{f.name} has no help text (declare it with param())"
        assert form.native(f.name).toolTip().startswith(help_text)
    assert form.value() == cls()  # every input at its default reads back as the default dataclass


def test_choices_are_a_combo_and_ranges_are_checked_on_read(qtbot):
    from segger.napari._forms import param_form

    form = param_form(GraphParams, ["belongs", "k_tx", "max_distance"])
    combo = form.widgets["belongs"]
    assert type(combo).__name__ == "ComboBox" and list(combo.choices) == ["auto", "flag", "polygon"]
    with pytest.raises(ValueError):
        combo.value = "nonsense"
    combo.value = "polygon"
    assert form.values()["max_distance"] is None  # optional field at its lowest value: unset
    assert form.native("max_distance").specialValueText() == "unset"
    form.native("max_distance").setValue(7.5)
    got = form.value()
    assert (got.belongs, got.max_distance, got.k_tx) == ("polygon", 7.5, GraphParams().k_tx)
    # the dataclass's own validate() runs on read (here a cross-field rule of PredictConfig)
    pform = param_form(PredictConfig, ["min_fragment_size", "max_fragment_size"])
    pform.native("min_fragment_size").setValue(50)
    pform.native("max_fragment_size").setValue(20)
    with pytest.raises(SeggerInputError, match="max_fragment_size"):
        pform.value()


def _type(qtbot, box, text):
    from qtpy.QtCore import Qt

    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def test_typed_values_reach_the_workflow(make_napari_viewer_proxy, qtbot, monkeypatch):
    """Real key events into the generated inputs change the dataclass the widget passes on."""
    import segger.data

    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-segger", "xenium_lung")
    d = dock_widget(viewer, "Data & graph")
    _type(qtbot, d.k_tx, "9")
    _type(qtbot, d.dist_bd, "12.5")
    seen = []

    def fake_build(tx, nuclei, params):
        seen.append(params)
        raise SeggerInputError("stopped by the test")

    monkeypatch.setattr(segger.data, "build_graph", fake_build)
    d.build_button.click()
    wait_job(qtbot, d, 60_000)
    assert seen, d.panel.status.text()
    assert isinstance(seen[0], GraphParams)
    assert (seen[0].k_tx, seen[0].dist_bd, seen[0].k_bd) == (9, 12.5, GraphParams().k_bd)

    t = dock_widget(viewer, "Train / fine-tune")
    _type(qtbot, t.epochs, "7")
    _type(qtbot, t.lr, "0.0125")
    cfg = t.config()
    assert isinstance(cfg, TrainConfig) and (cfg.epochs, cfg.learning_rate) == (7, 0.0125)

    p = dock_widget(viewer, "Predict")
    for box in (p.max_frag_extent, p.reach):  # enabled once a prediction exists; the typing is the point here
        box.setEnabled(True)
    _type(qtbot, p.max_frag_extent, "44")
    _type(qtbot, p.reach, "6")
    assert p.fragment_rule() == {"max_fragment_size": PredictConfig().max_fragment_size,
                                 "max_fragment_extent": 44.0, "max_distance": 6.0}
    assert p.predict_form.value().max_fragment_extent == 44.0
