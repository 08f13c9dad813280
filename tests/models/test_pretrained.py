"""The bundled pretrained model (issue 12 #2): it ships, loads through the one checkpoint loader,
its card describes exactly the file beside it, and its vocabulary rule lets it run on any panel."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import segger.training.checkpoint as C
from segger import schema as S
from segger.errors import CheckpointError
from segger.models import pretrained as P


def test_bundled_checkpoint_ships_and_is_small():
    path = P.bundled_checkpoint()
    assert path.is_file() and path.name == P.CHECKPOINT_NAME
    assert path.stat().st_size < 2 * 1024 * 1024  # the budget of issue 12 #2


def test_load_pretrained_goes_through_model_from_payload(monkeypatch):
    calls = []
    real = C.model_from_payload

    def spy(payload):
        calls.append(payload)
        return real(payload)

    monkeypatch.setattr(C, "model_from_payload", spy)
    model, config, vocab, params, payload = P.load_pretrained()
    assert len(calls) == 1 and calls[0] is payload
    assert not model.training
    assert config.num_tx_tokens == len(vocab) and len(vocab) > 300  # the lung panel + the unknown-gene token
    assert payload["link_head"]["terms"] == "full"  # default training: expression + geometry
    assert "optimizer_state" not in payload  # bundled without it
    assert payload["min_vocab_coverage"] == 0.0


def test_the_card_describes_the_file_beside_it():
    card = P.model_card()
    path = P.bundled_checkpoint()
    assert card["file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert card["file_bytes"] == path.stat().st_size
    assert card["training_data"]["path"] == "src/segger/sample_data/xenium_lung"
    assert card["seed"] == 0 and card["deterministic"] is True
    for key in ("command", "date", "git_commit", "versions", "parameters", "validation_metrics"):
        assert card.get(key), key
    assert card["versions"]["torch"]
    # benchmark numbers are copied from the results JSON by the script, not typed
    from pathlib import Path

    results = json.loads((Path(__file__).resolve().parents[2] / card["benchmark"]["source"]).read_text())
    seg = results["results"]["segtraq"]
    assert card["benchmark"]["datasets"]["segtraq"]["methods"]["pretrained"]["agreement_mutual"] == \
        seg["methods"]["pretrained"]["agreement_mutual"]
    assert results["meta"]["checkpoint_sha256"] == card["file_sha256"]  # measured with this very file
    md = (P.HERE / P.CARD_MD).read_text()
    assert f"{seg['methods']['pretrained']['agreement_mutual']:.3f}" in md


def test_missing_checkpoint_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "HERE", tmp_path)
    with pytest.raises(CheckpointError) as exc:
        P.bundled_checkpoint()
    msg = str(exc.value)
    assert "\n" not in msg and "missing" in msg and "--checkpoint" in msg
    with pytest.raises(CheckpointError):
        P.load_pretrained()
    assert P.model_card() == {}


def test_its_vocabulary_rule_admits_another_panel():
    """The breast panel shares ~25 % of its genes with the lung model: refused by the default 50 %
    rule, admitted by the rule the bundled checkpoint declares (with the unknown-gene warning)."""
    from segger.workflows import MIN_VOCAB_COVERAGE, check_vocabulary, vocab_rule

    _, _, vocab, _, payload = P.load_pretrained()
    genes = list(vocab.genes[:20]) + [f"NOT_IN_LUNG_{i}" for i in range(60)]
    with pytest.raises(Exception, match="trained on another panel"):
        check_vocabulary(vocab, genes, "m.pt")
    warns = check_vocabulary(vocab, genes, "m.pt", min_coverage=vocab_rule(payload))
    assert warns and "unknown-gene token" in warns[0] and "60 genes" in warns[0]
    assert vocab_rule({}) is None and vocab_rule({"min_vocab_coverage": 2}) is None
    assert vocab_rule({"min_vocab_coverage": True}) is None and MIN_VOCAB_COVERAGE == 0.5


def test_the_model_scores_a_graph_of_its_vocabulary(synthetic_tables):
    """A forward pass on a small graph built with the bundled vocabulary (all genes unknown)."""
    from segger.data import build_graph
    from segger.prediction import PredictConfig, predict

    model, _, vocab, _, _ = P.load_pretrained()
    tx, nuc = synthetic_tables()
    bundle = build_graph(tx, nuc, vocab=vocab)
    assert int(bundle.data["tx"].x.max()) == 0  # G0..G11 are unknown to the lung panel
    pred = predict(model, bundle, PredictConfig(device="cpu"))
    res = pred.assign()
    assert torch.isfinite(torch.as_tensor(res[S.SCORE].to_numpy())).all()
    assert (res[S.SEGGER_CELL_ID] != S.UNASSIGNED).mean() > 0.5
