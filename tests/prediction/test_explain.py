"""Issue 12 #7: the explanation of one transcript's assignment names the winner and the rival and says
"moved by expression" exactly when the rule moved it (small hand-made graphs, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from segger import schema as S
from segger.prediction import PredictConfig, explain_cell, explain_transcript

from test_prediction_rules import _bundle, _prediction


def _prefer_n1(gain):
    return lambda c, d: np.where(c[1] == 1, gain, 0.0).astype(np.float32)


@pytest.mark.parametrize("gain, moved", [(3.0, True), (0.4, False)])
def test_rival_in_the_window_moves_only_past_the_margin(gain, moved):
    # x=4.9: 2.9 µm from n0's outline, 3.1 µm from n1's (within the 1 µm window); margin 2
    b = _bundle([(4.9, 0)], [(0, 0), (10, 0)], max_distance=10.0)
    p = _prediction(b, choice=_prefer_n1(gain))
    table, text = explain_transcript(p, 0, score_cut=0.0)
    winner = p.assign(score_cut=0.0)[S.SEGGER_CELL_ID].iloc[0]
    assert winner == ("n1" if moved else "n0")
    assert table[S.BD_ID].tolist() == ["n0", "n1"]
    assert table["chosen"].tolist() == [not moved, moved]
    assert table["nearest"].tolist() == [True, False] and table["in_window"].tolist() == [False, True]
    assert np.allclose(table["distance_um"], [2.9, 3.1], atol=1e-4)
    assert "nearest nucleus n0 at 2.9 µm" in text and "rival n1 at 3.1 µm" in text
    assert "within the 1 µm ambiguity window" in text and "(needs +2)" in text
    assert ("moved by expression" in text) == moved
    if moved:
        assert "+3 better" in text and text.endswith("assigned to n1")
    else:
        assert "only +0.4 better" in text and "stays with n0" in text and text.endswith("assigned to n0")


def test_geometry_decides_outside_the_window_and_score_cut_is_named():
    b = _bundle([(3, 0)], [(0, 0), (10, 0)], max_distance=10.0)
    p = _prediction(b, choice=_prefer_n1(10.0), score=lambda c, d: np.where(d < 2, 0.4, 0.1).astype(np.float32))
    table, text = explain_transcript(p, 0, score_cut=0.5)
    assert not table["in_window"].any() and "moved by expression" not in text
    assert "no rival within the 1 µm ambiguity window (next n1 at 5 µm): geometry decides, n0" in text
    assert "score 0.4 < cut 0.5: cut by score, unassigned" in text


def test_no_nucleus_within_reach():
    b = _bundle([(32, 0)], [(0, 0)], max_distance=5.0)
    p = _prediction(b)
    _, text = explain_transcript(p, 0)
    assert text.startswith("no nucleus within reach 5 µm") or text.startswith("no candidate nucleus")
    assert "unassigned" in text or "fragment" in text


def test_explain_cell_counts_contested_moved_and_cut():
    # three transcripts between n0 and n1: one moved to n1 by expression, one contested but stays, one near n0
    b = _bundle([(4.9, 0), (4.95, 1), (3, 0)], [(0, 0), (10, 0)], max_distance=10.0)
    gains = np.array([3.0, 0.4, 0.0], np.float32)
    p = _prediction(b, choice=lambda c, d: np.where(c[1] == 1, gains[c[0]], 0.0).astype(np.float32),
                    config=PredictConfig(score_cut=0.0))
    df, text = explain_cell(p, "n0")
    assert df["moved_out"].sum() == 1 and df["contested"].sum() == 2 and df["assigned"].sum() == 2
    assert "2 transcripts assigned" in text and "2 contested" in text and "1 moved out" in text
    df1, text1 = explain_cell(p, "n1")
    assert df1["moved_in"].sum() == 1 and "1 moved in" in text1
