"""Why a transcript went where it went: its candidate nuclei and the rule's decision, in numbers and words.

:func:`explain_transcript` lists one row per candidate nucleus of a transcript (distance to the outline,
calibrated geometry probability, expression logit, whether it is within the reach and the ambiguity
window, which one the rule chose) and states the decision in one line generated from those numbers and
the rule of :class:`segger.prediction.Prediction` (see :mod:`segger.prediction.predict`): the nearest
nucleus wins unless a rival within ``ambiguity`` µm has an expression logit better by more than
``move_margin``; the winner's geometry probability is the score compared with ``score_cut``.
:func:`explain_cell` summarises the same for every transcript that could join one nucleus.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from segger import schema as S

#: columns of :func:`explain_transcript`'s table
EXPLAIN_COLUMNS = ("bd_index", S.BD_ID, "distance_um", "geometry_p", "expression_logit", "within_reach", "nearest",
                   "in_window", "chosen", S.X, S.Y)
#: what the weights of the explain vectors mean (one line, for a legend)
WEIGHT_NOTE = ("colour = geometry probability (0 → 1): how likely, from the distance to the outline alone, the "
               "transcript lies in that nucleus's cell; the expression logit only decides between nuclei "
               "within the ambiguity window")


def _fmt(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 10 else f"{v:.3g}"


def _signed(v: float) -> str:
    return f"{v:+.2g}" if abs(v) < 10 else f"{v:+.3g}"


def _rule(prediction) -> tuple[float, float, float]:
    reach, amb = prediction._rule
    return float(reach), float(amb), float(prediction.config.move_margin)


def explain_transcript(prediction, tx_index: int, score_cut: float | None = None,
                       fragments: bool | None = None) -> tuple[pd.DataFrame, str]:
    """Candidate table and one-line explanation of transcript ``tx_index`` (a row of the result table).

    ``score_cut`` and ``fragments`` default to the prediction's ``PredictConfig``."""
    p = prediction
    i = int(tx_index)
    if not 0 <= i < p.n_tx:
        raise IndexError(f"transcript {i} out of range (0..{p.n_tx - 1})")
    cut = p.config.score_cut if score_cut is None else float(score_cut)
    reach, amb, margin = _rule(p)
    sel = np.flatnonzero(p.cand_tx == i)
    b = p.cand_bd[sel]
    nuclei = p.bundle.nuclei
    ids = p._nucleus_ids()
    d = p.cand_d_abs[sel] if p.cand_d_abs is not None else np.full(len(sel), np.nan, np.float32)
    ch = p.cand_choice[sel] if p.cand_choice is not None else np.full(len(sel), np.nan, np.float32)
    ok = d <= reach if p.cand_d_abs is not None else np.ones(len(sel), bool)
    near_bd, win_bd = int(p.nearest_bd[i]), int(p.best_bd[i])
    is_near = ok & (b == near_bd)
    d1 = float(d[is_near][0]) if is_near.any() else np.inf
    window = p.geometric and p.cand_choice is not None and amb > 0
    in_win = ok & ~is_near & (d <= d1 + amb) if window else np.zeros(len(sel), bool)
    table = pd.DataFrame({
        "bd_index": b, S.BD_ID: ids[b] if len(b) else np.zeros(0, object), "distance_um": d,
        "geometry_p": p.cand_score[sel], "expression_logit": ch, "within_reach": ok, "nearest": is_near,
        "in_window": in_win, "chosen": b == win_bd,
        S.X: nuclei[S.X].to_numpy(float)[b] if len(b) else np.zeros(0), S.Y: nuclei[S.Y].to_numpy(float)[b]
        if len(b) else np.zeros(0),
    }, columns=list(EXPLAIN_COLUMNS)).sort_values("distance_um", kind="stable").reset_index(drop=True)
    code, _ = p.assign_codes(score_cut=cut, fragments=fragments)
    return table, _sentence(p, i, table, code[i], cut, reach, amb, margin, window)


def _sentence(p, i, t, code, cut, reach, amb, margin, window) -> str:
    if code <= -2:
        tail = f"fragment {p.cell_ids(np.array([code]))[0]} (grouped with look-alike free neighbours)"
    else:
        tail = "unassigned (no fragment formed here)"
    if not t["within_reach"].any():
        if len(t) == 0:
            return f"no candidate nucleus at all: {tail}"
        r = t.iloc[0]
        return (f"no nucleus within reach {_fmt(reach)} µm (nearest {r[S.BD_ID]} at {_fmt(r['distance_um'])} µm): "
                f"{tail}")
    chosen = t[t["chosen"]].iloc[0]
    score = float(chosen["geometry_p"])
    if not p.geometric:
        rest = t[t["within_reach"] & ~t["chosen"]].sort_values("geometry_p", ascending=False)
        s = f"plain score: {chosen[S.BD_ID]} scores highest (p={_fmt(score)})"
        if len(rest):
            s += f" over {rest.iloc[0][S.BD_ID]} (p={_fmt(rest.iloc[0]['geometry_p'])})"
    else:
        near = t[t["nearest"]].iloc[0]
        s = f"nearest nucleus {near[S.BD_ID]} at {_fmt(near['distance_um'])} µm (p={_fmt(near['geometry_p'])}); "
        rivals = t[t["in_window"]].sort_values("expression_logit", ascending=False, kind="stable")
        if not chosen["nearest"]:
            gain = float(chosen["expression_logit"] - near["expression_logit"])
            s += (f"rival {chosen[S.BD_ID]} at {_fmt(chosen['distance_um'])} µm is within the {_fmt(amb)} µm "
                  f"ambiguity window and its expression logit is {_signed(gain)} better (needs {_signed(margin)}): "
                  f"moved by expression to {chosen[S.BD_ID]}")
        elif len(rivals):
            r = rivals.iloc[0]
            gain = float(r["expression_logit"] - near["expression_logit"])
            s += (f"rival {r[S.BD_ID]} at {_fmt(r['distance_um'])} µm is within the {_fmt(amb)} µm ambiguity window "
                  f"but its expression logit is only {_signed(gain)} better (needs {_signed(margin)}): "
                  f"stays with {near[S.BD_ID]}")
        else:
            others = t[t["within_reach"] & ~t["nearest"]]
            nxt = (f" (next {others.iloc[0][S.BD_ID]} at {_fmt(others.iloc[0]['distance_um'])} µm)"
                   if len(others) else "")
            what = f"no rival within the {_fmt(amb)} µm ambiguity window" if window else "no ambiguity window"
            s += f"{what}{nxt}: geometry decides, {near[S.BD_ID]}"
    if code >= 0:
        s += f"; score {_fmt(score)} ≥ cut {_fmt(cut)}: assigned to {chosen[S.BD_ID]}"
    else:
        s += f"; score {_fmt(score)} < cut {_fmt(cut)}: cut by score, {tail}"
    return s


def explain_cell(prediction, cell_id: str, score_cut: float | None = None) -> tuple[pd.DataFrame, str]:
    """Per-transcript table and a one-line summary for nucleus ``cell_id``: every transcript that has
    it as a candidate within the reach (its nearest, rival or winner) — how many joined it, were
    contested (a rival within the ambiguity window), moved by expression (in or out) or cut by score."""
    p = prediction
    ids = p._nucleus_ids()
    hit = np.flatnonzero(ids == str(cell_id))
    if not len(hit):
        raise KeyError(f"no nucleus {cell_id!r} in this prediction")
    k = int(hit[0])
    cut = p.config.score_cut if score_cut is None else float(score_cut)
    reach, amb, _ = _rule(p)
    code, _ = p.assign_codes(score_cut=cut)
    t, b = p.cand_tx, p.cand_bd
    d = p.cand_d_abs if p.cand_d_abs is not None else np.zeros(len(t), np.float32)
    ok = d <= reach
    tx = np.unique(t[ok & (b == k)])
    d1 = np.full(p.n_tx, np.inf, np.float32)
    np.minimum.at(d1, t[ok], d[ok])
    window = p.geometric and p.cand_choice is not None and amb > 0
    rival = ok & (b != p.nearest_bd[t]) & (d <= d1[t] + amb) if window else np.zeros(len(t), bool)
    contested = np.zeros(p.n_tx, bool)
    contested[t[rival]] = True
    near, win = p.nearest_bd[tx], p.best_bd[tx]
    df = pd.DataFrame({
        "tx_index": tx, "nearest": near == k, "winner": win == k, "contested": contested[tx] & ((near == k) | (win == k)),
        "moved_in": (win == k) & (near != k), "moved_out": (near == k) & (win != k),
        "cut_by_score": (win == k) & (code[tx] < 0), "assigned": code[tx] == k, S.SCORE: p.best_score[tx],
    })
    n = df.sum(numeric_only=False)
    s = (f"{cell_id}: {int(n['assigned'])} transcripts assigned of {len(df)} within reach {_fmt(reach)} µm; "
         f"{int(n['contested'])} contested (a rival within the {_fmt(amb)} µm ambiguity window), "
         f"{int(n['moved_in'])} moved in and {int(n['moved_out'])} moved out by expression, "
         f"{int(n['cut_by_score'])} cut by score (< {_fmt(cut)})")
    return df, s
