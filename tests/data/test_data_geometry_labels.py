"""Geometric training labels: unambiguous cytoplasmic pseudo-positives and background negatives."""

from __future__ import annotations

import torch

from segger.data.sampling import geometry_labels


def test_pseudo_positive_background_and_ambiguous():
    # tx0: 1 µm from bd0, 6 µm from bd1 -> positive bd0, negative bd1
    # tx1: 3.0 vs 3.5 µm -> ambiguous: no label
    # tx2: 20 µm from bd0 (beyond the 10 µm reach) -> negative
    # tx3: inside bd1 (has a nucleus) -> no geometric label
    cand = torch.tensor([[0, 0, 1, 1, 2, 3], [0, 1, 0, 1, 0, 1]])
    d_abs = torch.tensor([1.0, 6.0, 3.0, 3.5, 20.0, 0.0])
    eligible = torch.ones(4, dtype=torch.bool)
    has_nucleus = torch.tensor([False, False, False, True])
    index, labels = geometry_labels(cand, d_abs, 4, eligible, has_nucleus, reach=10.0, gap=2.0)
    got = {(int(t), int(b)): float(y) for (t, b), y in zip(index.T.tolist(), labels.tolist())}
    assert got == {(0, 0): 1.0, (0, 1): 0.0, (2, 0): 0.0}


def test_only_eligible_transcripts_are_labelled():
    cand = torch.tensor([[0, 1], [0, 0]])
    d_abs = torch.tensor([1.0, 1.0])
    index, labels = geometry_labels(cand, d_abs, 2, torch.tensor([False, True]), torch.zeros(2, dtype=torch.bool),
                                    reach=10.0, gap=2.0)
    assert index.tolist() == [[1], [0]] and labels.tolist() == [1.0]


def test_no_candidates():
    index, labels = geometry_labels(torch.zeros((2, 0), dtype=torch.long), torch.zeros(0), 3,
                                    torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool), 10.0, 2.0)
    assert index.shape == (2, 0) and labels.numel() == 0
