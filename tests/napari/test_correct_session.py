"""The correction session model without Qt (no qtbot, no viewer): selection, target, edits by the
core's rules, undo/redo, what changed, what the widget shows (issue 11 #5)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.corrections import CorrectionStore
from segger.errors import SeggerInputError
from segger.napari._correct_session import CorrectionSession


def _result():
    """Two cells of four transcripts along x (cell a at x 0..3, cell b at x 10..13)."""
    x = np.array([0, 1, 2, 3, 10, 11, 12, 13], float)
    df = pd.DataFrame({S.TX_ID: np.arange(100, 108), S.X: x, S.Y: np.zeros(8),
                       S.SEGGER_CELL_ID: ["a"] * 4 + ["b"] * 4})
    df[S.SCORE] = np.float32(0.9)
    df[S.ASSIGNMENT] = pd.Categorical(["cytoplasm"] * 8, categories=list(S.ASSIGNMENT_KINDS))
    return df


def _session(tmp_path=None):
    store = CorrectionStore(None if tmp_path is None else tmp_path / "c.csv", autosave=tmp_path is not None)
    s = CorrectionSession(store)
    s.set_base(_result())
    up = s.update(full=True)
    assert up.rows is None and up.result is not None
    return s


def _yx(s):
    r = s.base_result
    return lambda rows: np.column_stack([r[S.Y].to_numpy(float)[rows], r[S.X].to_numpy(float)[rows]])


def test_session_model_imports_no_qt():
    code = ("import sys, segger.napari._correct_session; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', "
            "'PySide6', 'napari', 'vispy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_selection_target_and_shown_text():
    s = CorrectionSession()
    assert not s.has_result and "Run Predict first" in s.selection_text(np.zeros(0, int))
    with pytest.raises(SeggerInputError, match="run Predict first"):
        s.require_result()
    s = _session()
    s.click_row(1)
    s.click_row(2, add=True)
    s.click_row(1, add=True)  # Shift+click again removes
    assert s.clicked == [2]
    np.testing.assert_array_equal(s.selection_rows(np.array([5, 2])), [2, 5])
    s.start_pick_target()
    assert s.picking and "click a transcript or a nucleus" in s.selection_text(np.array([2]))
    assert s.target_at(6) == "b" and s.target == "b" and not s.picking
    assert s.target_at(-1, nucleus=lambda: "a") == "a"  # no transcript hit: the nucleus under the click
    with pytest.raises(SeggerInputError, match="no cell there"):
        s.target_at(-1)
    text = s.selection_text(np.array([2, 3]))
    assert text == "Selection: 2 transcript(s) in a. Target: a. Corrections: 0."
    s.clear_selection()
    assert (s.clicked, s.target, s.picking) == ([], None, False)


def test_assign_undo_redo_and_the_rows_to_redraw(tmp_path):
    s = _session(tmp_path)
    with pytest.raises(SeggerInputError, match="nothing selected"):
        s.assign(s.selection_rows())
    s.click_row(0)
    with pytest.raises(SeggerInputError, match="no target cell"):
        s.assign(s.selection_rows())
    s.set_target("b")
    n, verb = s.assign(s.selection_rows())
    assert n == 1 and verb == "Assigned to b" and s.clicked == []  # the selection is consumed
    up = s.update(shown=object())
    np.testing.assert_array_equal(up.rows, [0])
    assert list(up.cells) == ["b"] and list(up.flags) == [True]
    assert up.result is not None and up.result[S.SEGGER_CELL_ID].iloc[0] == "b"
    assert s.cells[0] == "b" and s.corrected.tolist() == [True] + [False] * 7
    assert (tmp_path / "c.csv").is_file() and s.where_saved().startswith("saved to")
    # nothing changed since: no rows to redraw, the published result stays
    up2 = s.update(shown=s.published)
    assert len(up2.rows) == 0 and up2.result is None
    assert s.can_undo and not s.can_redo
    assert s.undo_redo("undo")
    up = s.update(shown=s.published)
    np.testing.assert_array_equal(up.rows, [0])
    assert s.cells[0] == "a" and not s.corrected.any() and up.result is s.base_result
    assert s.can_redo and s.undo_redo("redo") and not s.undo_redo("redo")
    s.update()
    assert s.cells[0] == "b"


def test_unassign_merge_split_follow_the_core_rules():
    s = _session()
    s.select_rows([4])
    n, _ = s.unassign(s.selection_rows())
    s.update()
    assert n == 1 and s.cells[4] == S.UNASSIGNED
    kinds = s.update(full=True).kinds
    assert kinds[4] == "none"
    # merge: every transcript of the selection's cell goes to the target
    s.select_rows([5])
    s.set_target("a")
    n, verb = s.merge(s.selection_rows())
    s.update()
    assert verb == "Merged b into a" and (s.cells[5:] == "a").all() and s.cells[4] == S.UNASSIGNED
    # split cell a by two seeds: the far side gets a new id, the side with the nucleus keeps "a"
    s.set_target(None)
    s.select_rows([0, 7])
    n, verb = s.split([], _yx(s), [], nucleus_yx=lambda cell: np.array([0.0, 1.0]))
    s.update()
    assert verb == "Split a: new cell a-split-1"
    assert (s.cells[:4] == "a").all() and (s.cells[5:] == "a-split-1").all()
    # a line split needs no seeds; one cell is needed
    s.select_rows([0, 5])
    with pytest.raises(SeggerInputError, match="split needs one cell"):
        s.split([], _yx(s), [])
    s.clear_selection()
    s.set_target("a")
    with pytest.raises(SeggerInputError, match="two seed transcripts"):
        s.split([], _yx(s), [])
    n, verb = s.split([], _yx(s), [np.array([[-1.0, 1.5], [1.0, 1.5]])], nucleus_yx=lambda c: np.array([0.0, 0.0]))
    s.update()
    assert verb.startswith("Split a: new cell a-split-2") and n == 2
    assert list(s.cells[:4]) == ["a", "a", "a-split-2", "a-split-2"]
    _, corrected, eff = s.corrected_cells()
    rows, feats = s.corrected_markers(eff, corrected)
    assert len(rows) == s.corrected.sum() and set(feats["action"]) <= {"unassign", "merge", "split"}


def test_set_base_keeps_the_corrections_on_a_new_assignment():
    s = _session()
    s.select_rows([0])
    s.set_target("b")
    s.assign(s.selection_rows())
    s.update()
    new = _result()
    new[S.SEGGER_CELL_ID] = ["a"] * 3 + ["b"] * 5  # a re-threshold moved row 3
    s.set_base(new)
    up = s.update(full=True)
    assert list(up.result[S.SEGGER_CELL_ID]) == ["b", "a", "a", "b", "b", "b", "b", "b"]
    assert bool(up.result["corrected"].iloc[0]) and not bool(up.result["corrected"].iloc[3])


def test_layer_names_match_the_layers_module():
    from segger.napari import _correct_session as cs
    from segger.napari.layers import LAYER_SELECTION, LAYER_TRANSCRIPTS

    assert (cs._TRANSCRIPTS, cs._SELECTION) == (LAYER_TRANSCRIPTS, LAYER_SELECTION)
