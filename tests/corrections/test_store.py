import os

import pandas as pd
import pytest

from segger.corrections import CorrectionStore, corrections_from_table, sidecar_path
from segger.errors import SeggerInputError


def _result():
    return pd.DataFrame({"transcript_id": [1, 2, 3, 4], "segger_cell_id": ["a", "a", "b", "UNASSIGNED"]})


def test_record_undo_redo(tmp_path):
    s = CorrectionStore(tmp_path / "c.csv")
    assert s.assign([1, 2], ["a", "a"], "b") == 2
    assert s.unassign([3], ["b"]) == 1
    assert len(s) == 3
    assert s.undo()
    assert set(s.effective()["transcript_id"]) == {1, 2}
    assert s.redo()
    assert set(s.effective()["transcript_id"]) == {1, 2, 3}
    assert s.undo() and s.undo() and not s.undo()
    assert len(s) == 0 and s.can_redo
    s.assign([4], ["UNASSIGNED"], "a")
    assert not s.can_redo  # a new edit clears the redo stack


def test_conflicting_edits_latest_wins_and_noops_dropped():
    s = CorrectionStore()
    s.assign([1], ["a"], "b")
    s.assign([1], ["b"], "c")
    eff = s.effective().set_index("transcript_id")
    assert eff.loc[1, "new_cell"] == "c"
    assert eff.loc[1, "previous_cell"] == "a"  # the cell it had before any correction
    s.assign([1], ["c"], "a")  # back to where it started: no effective correction
    assert len(s) == 0
    assert s.assign([2], ["a"], "a") == 0  # nothing changes


def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "sample.segger-corrections.csv"
    s = CorrectionStore(path)
    s.assign([1, 2], ["a", "a"], "b")
    s.merge([3], "b", "a")
    assert path.exists()
    again = CorrectionStore.load(path)
    pd.testing.assert_frame_equal(again.effective().reset_index(drop=True), s.effective().reset_index(drop=True),
                                  check_dtype=False)
    assert again.undo() and len(again) == 2
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # atomic writes leave no temp files


def test_apply_marks_corrected():
    s = CorrectionStore()
    s.assign([4], ["UNASSIGNED"], "b")
    out = s.apply(_result())
    assert out.loc[out.transcript_id == 4, "segger_cell_id"].item() == "b"
    assert out["corrected"].tolist() == [False, False, False, True]


def test_export_and_table_round_trip(tmp_path):
    s = CorrectionStore()
    s.assign([1], ["a"], "b")
    f = s.export(tmp_path / "corr.parquet")
    store = corrections_from_table(pd.read_parquet(f))
    assert store.effective()["new_cell"].tolist() == ["b"]


def test_bad_inputs(tmp_path):
    with pytest.raises(SeggerInputError, match="unknown correction action"):
        CorrectionStore().record("explode", [1], ["a"], "b")
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(SeggerInputError, match="lacks column"):
        CorrectionStore.load(bad)


def test_sidecar_next_to_writable_data(tmp_path):
    data = tmp_path / "run"
    data.mkdir()
    assert sidecar_path(data) == tmp_path / "run.segger-corrections.csv"
