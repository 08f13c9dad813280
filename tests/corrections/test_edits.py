"""Corrections as pure core operations: merge / split / reassign rules, one apply, one "changed" rule.

No Qt: a merge and a split made here are the ones the Correct widget records, so the CLI
(``segger finetune --corrections``) and Python users reproduce them.
"""

import numpy as np
import pandas as pd
import pytest

from segger import schema as S
from segger.corrections import CorrectionStore, apply_corrections, merge_cells, reassign, split_cell
from segger.corrections.edits import changed_transcripts, merge_members, new_split_id
from segger.errors import SeggerInputError


def _result():
    """Two cells side by side: a (x 0–9, its nucleus at x 2) and b (x 20–29), one unassigned."""
    rows = [(i, float(i), 0.0, "a", "nucleus" if i < 4 else "cytoplasm", 0.9) for i in range(10)]
    rows += [(100 + i, 20.0 + i, 0.0, "b", "cytoplasm", 0.8) for i in range(10)]
    rows += [(200, 50.0, 0.0, S.UNASSIGNED, "none", 0.1)]
    df = pd.DataFrame(rows, columns=[S.TX_ID, S.X, S.Y, S.SEGGER_CELL_ID, S.ASSIGNMENT, S.SCORE])
    df[S.ASSIGNMENT] = pd.Categorical(df[S.ASSIGNMENT], categories=list(S.ASSIGNMENT_KINDS))
    df[S.SCORE] = df[S.SCORE].astype(np.float32)
    return df


def test_merge_moves_every_transcript_of_the_source_into_the_target():
    res = _result()
    edit = merge_cells(res, ["b"], "a")
    assert edit.action == "merge" and sorted(edit.transcript_ids) == list(range(100, 110))
    store = CorrectionStore()
    assert edit.record(store) == 10
    out = store.apply(res)
    assert (out[S.SEGGER_CELL_ID] == "a").sum() == 20 and not (out[S.SEGGER_CELL_ID] == "b").any()
    with pytest.raises(SeggerInputError, match="not of the target itself"):
        merge_cells(res, ["a"], "a")
    # the widget's rule: one selected transcript of b brings all of b
    rows, sources = merge_members(res[S.SEGGER_CELL_ID].to_numpy(dtype=object), np.array([12]), "a")
    assert sources == ["b"] and list(rows) == list(range(10, 20))


def test_split_by_line_keeps_the_nucleus_side_and_names_the_new_cell():
    res = _result()
    line = np.array([[-5.0, 5.5], [5.0, 5.5]])  # (y, x): a vertical cut at x = 5.5 through cell a
    edit = split_cell(res, "a", line=line, nucleus_yx=(0.0, 2.0))
    assert edit.action == "split" and edit.new_cells == "a-split-1"
    np.testing.assert_array_equal(np.sort(edit.transcript_ids), [6, 7, 8, 9])  # the side without the nucleus
    store = CorrectionStore()
    edit.record(store)
    out = apply_corrections(res, store)
    assert (out[S.SEGGER_CELL_ID] == "a-split-1").sum() == 4 and (out[S.SEGGER_CELL_ID] == "a").sum() == 6
    # a second split of the same cell gets the next id; seeds work as a line does
    again = split_cell(out, "a", seeds=[(0.0, 0.0), (0.0, 5.0)], nucleus_yx=(0.0, 2.0), existing=store.log()["new_cell"])
    assert again.new_cells == "a-split-2" and sorted(again.transcript_ids) == [3, 4, 5]  # nearer x = 5
    assert new_split_id("a", ["a-split-1", "a-split-2"]) == "a-split-3"
    with pytest.raises(SeggerInputError, match="one side of cell a empty"):
        split_cell(res, "a", line=np.array([[-5.0, 40.0], [5.0, 40.0]]), nucleus_yx=(0.0, 2.0))


def test_apply_updates_assignment_and_score_consistently():
    res = _result()
    store = CorrectionStore()
    reassign(res, [100], "a").record(store)  # b → a (outside a's nucleus)
    reassign(res, [5], S.UNASSIGNED).record(store)
    reassign(res, [200], "b").record(store)
    out = store.apply(res)
    row = out.set_index(S.TX_ID)
    assert row.loc[100, S.SEGGER_CELL_ID] == "a" and row.loc[100, S.ASSIGNMENT] == "cytoplasm"
    assert row.loc[5, S.SEGGER_CELL_ID] == S.UNASSIGNED and row.loc[5, S.ASSIGNMENT] == "none"
    assert row.loc[200, S.ASSIGNMENT] == "cytoplasm"
    assert row.loc[100, S.SCORE] == 1.0 and row.loc[5, S.SCORE] == 0.0 and row.loc[200, S.SCORE] == 1.0
    assert out["corrected"].sum() == 3 and row.loc[0, S.SCORE] == pytest.approx(0.9)  # others untouched
    # assigned ⇔ score ≥ cut still holds for every cut
    for cut in (0.05, 0.5, 1.0):
        ok = out["corrected"].to_numpy()
        assigned = (out[S.SEGGER_CELL_ID] != S.UNASSIGNED).to_numpy()
        assert ((out[S.SCORE].to_numpy() >= cut) == assigned)[ok].all()
    # a row moved back into its own nucleus's cell is "nucleus" again
    s2 = CorrectionStore()
    reassign(res, [1], "b").record(s2)
    s2.assign([1], ["b"], "a")  # and back: no effective correction
    assert len(s2) == 0
    # merging a into b: a's nucleus rows leave their own nucleus's cell (cytoplasm of b)
    s3 = CorrectionStore()
    merge_cells(res, ["a"], "b").record(s3)
    out = apply_corrections(res, s3).set_index(S.TX_ID)
    assert out.loc[0, S.SEGGER_CELL_ID] == "b" and out.loc[0, S.ASSIGNMENT] == "cytoplasm"
    # with the prediction's own nuclei, a row put into the cell whose nucleus it lies in is "nucleus"
    own = np.where(res[S.TX_ID] == 100, "b", None).astype(object)
    out = apply_corrections(res, pd.DataFrame({"transcript_id": [100], "previous_cell": ["a"], "new_cell": ["b"]}),
                            own_cell=own).set_index(S.TX_ID)
    assert out.loc[100, S.ASSIGNMENT] == "nucleus"


def test_changed_ignores_fragment_renumbering_and_corrected_rows():
    before = ["a", "fragment-1", "fragment-1", "b", "fragment-2", "fragment-2", "fragment-2"]
    after = ["a", "fragment-7", "fragment-7", "c", "fragment-8", "fragment-8", "fragment-7"]  # 1→7, 2→8 renamed
    np.testing.assert_array_equal(changed_transcripts(before, after), [3, 6])  # 6 left its fragment
    np.testing.assert_array_equal(changed_transcripts(before, after, np.array([0, 0, 0, 1, 0, 0, 0], bool)), [6])
