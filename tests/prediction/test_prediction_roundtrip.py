"""Held-out round trip: the trained model vs the nearest-nucleus baseline on the SAME labelled pairs.

The validation labels are the ones :func:`segger.training.prepare_tiles` builds (and the training
run scores each epoch): in held-out spatial blocks, a share of the nucleus links is hidden from
message passing and used as positives, with ``neg_ratio`` negatives each (half neighbouring
candidate nuclei, half random nuclei of the tile). The baseline scores a (transcript, nucleus) pair
by ``-distance`` from the transcript to the nucleus outline, as
:func:`segger.prediction.nearest_nucleus_scores` does for candidate edges.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import torch
from torchmetrics.functional.classification import binary_auroc

from segger.data import TX_CAND
from segger.prediction import nearest_nucleus_scores
from segger.training import message_graph, prepare_tiles

pytestmark = pytest.mark.slow  # uses the model trained on the real lung crop

# The validation positives are nuclear transcripts (inside their own nucleus, distance 0), so the
# geometric baseline is near-perfect on this label set (AUROC 0.9999): the full score cannot beat it
# there and this file does not pretend it does. What the label set *can* show is whether the GNN's
# expression term learned anything: its AUROC with the geometry hidden (``val_auroc_dot``).


def _pairs_and_labels(val_items):
    """Global (tx, bd) indices, labels and the model inputs of every validation item."""
    tx, bd, lab = [], [], []
    for v in val_items:
        tx.append(v["tx"].global_index.numpy()[v.label_index[0].numpy()])
        bd.append(v["bd"].global_index.numpy()[v.label_index[1].numpy()])
        lab.append(v.labels.numpy())
    return np.concatenate(tx), np.concatenate(bd), np.concatenate(lab)


@torch.no_grad()
def _model_scores(model, val_items) -> np.ndarray:
    """The probability the training run's validation step computes, for every labelled pair."""
    model.eval()
    out = []
    for v in val_items:
        z = model(*message_graph(v, v.hidden))
        if hasattr(model, "logits"):
            logits = model.logits(z, v.label_index, v["label_geo"])
        else:
            logits = (z["tx"][v.label_index[0]] * z["bd"][v.label_index[1]]).sum(-1)
        out.append(torch.sigmoid(logits.float()).numpy())
    return np.concatenate(out)


@torch.no_grad()
def _expression_scores(model, val_items) -> np.ndarray:
    """The expression term alone (no geometry) for every labelled pair."""
    out = []
    for v in val_items:
        z = model(*message_graph(v, v.hidden))
        out.append(model.head.expression_logit(model.dot(z, v.label_index)).float().numpy())
    return np.concatenate(out)


def _baseline_scores(bundle, tx, bd) -> np.ndarray:
    pts = shapely.points(bundle.transcripts["x"].to_numpy()[tx], bundle.transcripts["y"].to_numpy()[tx])
    return -shapely.distance(pts, bundle.nuclei["geometry"].to_numpy()[bd])


def _auroc(scores, labels) -> float:
    return float(binary_auroc(torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).long()))


@pytest.fixture(scope="module")
def round_trip(lung_trained, pkg_lung_graph, core_env_ctx):
    with core_env_ctx():
        _, val_items, info = prepare_tiles(pkg_lung_graph, lung_trained.config)
        tx, bd, lab = _pairs_and_labels(val_items)
        model_s = _model_scores(lung_trained.model, val_items)
        expr_s = _expression_scores(lung_trained.model, val_items)
    base_s = _baseline_scores(pkg_lung_graph, tx, bd)
    return {"tx": tx, "bd": bd, "labels": lab, "model": model_s, "baseline": base_s, "info": info,
            "model_auroc": _auroc(model_s, lab), "baseline_auroc": _auroc(base_s, lab),
            "expression_auroc": _auroc(expr_s, lab)}


def test_validation_pairs_are_the_runs(round_trip, lung_trained, pkg_lung_graph):
    """The reconstructed labels are the run's: same split, and the same AUROC as its last epoch."""
    rt = round_trip
    assert rt["info"]["n_val_tx"] == lung_trained.info["n_val_tx"]
    assert rt["info"]["n_val_tiles"] == lung_trained.info["n_val_tiles"]
    n_pos = int(rt["labels"].sum())
    assert n_pos > 100 and len(rt["labels"]) > 3 * n_pos * 0.9
    # positives are unique held-out nucleus links; no negative is a transcript's own nucleus
    pos = rt["labels"] == 1
    own = dict(zip(rt["tx"][pos].tolist(), rt["bd"][pos].tolist()))
    assert len(own) == n_pos
    neg = ~pos
    assert not any(own.get(t) == b for t, b in zip(rt["tx"][neg].tolist(), rt["bd"][neg].tolist()))
    last = lung_trained.history[-1]["val_auroc"]
    assert rt["model_auroc"] == pytest.approx(last, abs=2e-3)


def test_baseline_matches_nearest_nucleus_scores(round_trip, pkg_lung_graph):
    """Our pair distances are segger.prediction.nearest_nucleus_scores' for candidate pairs."""
    rt = round_trip
    cand = pkg_lung_graph.data[TX_CAND].edge_index.numpy()
    n_bd = pkg_lung_graph.data["bd"].num_nodes
    ref = dict(zip((cand[0] * n_bd + cand[1]).tolist(), nearest_nucleus_scores(pkg_lung_graph).tolist()))
    keys = (rt["tx"] * n_bd + rt["bd"]).tolist()
    hits = [(ref[k], s) for k, s in zip(keys, rt["baseline"]) if k in ref]
    assert len(hits) > len(keys) // 2
    np.testing.assert_allclose([h[0] for h in hits], [h[1] for h in hits], atol=1e-9)
    assert rt["baseline_auroc"] > 0.9


def test_model_learned_something(round_trip):
    assert round_trip["model_auroc"] > 0.9


def test_expression_term_is_logged_as_the_runs(round_trip, lung_trained):
    """``val_auroc_dot`` in the history is the expression term's AUROC on these very pairs."""
    assert lung_trained.history[-1]["val_auroc_dot"] == pytest.approx(round_trip["expression_auroc"], abs=2e-3)


def test_expression_term_learned_without_geometry(round_trip):
    """With the geometry hidden, the GNN's dot product still tells a transcript's own nucleus from
    its neighbours' (chance is 0.5; an untrained or expression-free model scores ~0.5 — measured
    0.50–0.55 before the expression objective existed)."""
    assert round_trip["expression_auroc"] > 0.6, round_trip["expression_auroc"]
