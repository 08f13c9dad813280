"""LinkHead: the terms of the link score, the d_abs onset, ablations, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from segger.models.link import LINK_TERMS, LinkHead


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():  # plain numbers in this file
        yield


def _head(terms="full"):
    h = LinkHead(terms)
    with torch.no_grad():
        h.bias.fill_(1.0)
        h.raw_slope.fill_(0.0)  # softplus 0.693
        h.raw_abs_slope.fill_(0.0)
    return h


def test_full_is_expression_plus_geometry():
    h = _head()
    dot = torch.tensor([0.5, -0.5])
    geo = torch.tensor([[0.0, 0.0], [9.0, 2.0]])  # inside / 9 µm away and 2 µm farther than the nearest
    g = h.geometry(geo)
    sp = torch.nn.functional.softplus(torch.tensor(0.0))
    expected_far = 1.0 - sp * (9.0 - float(h.onset)) - sp * 2.0
    assert g[0] == pytest.approx(1.0) and g[1] == pytest.approx(float(expected_far), rel=1e-5)
    assert torch.allclose(h(dot, geo), dot + g)


def test_distance_below_the_onset_costs_nothing():
    h = _head()
    inside, near = h.geometry(torch.tensor([[0.0, 0.0], [float(h.onset) - 0.1, 0.0]]))
    assert inside == near  # cytoplasm within the onset scores like the nucleus


def test_ablations():
    dot = torch.tensor([2.0])
    geo = torch.tensor([[12.0, 3.0]])
    assert _head("expression")(dot, geo) == pytest.approx(3.0)  # dot + bias: geometry ignored
    d = _head("distance")
    assert d(dot, geo) == pytest.approx(float(d.geometry(geo)))  # the dot product ignored
    with pytest.raises(ValueError):
        d(dot, None)
    with pytest.raises(ValueError):
        LinkHead("nonsense")
    assert set(LINK_TERMS) == {"full", "distance", "expression"}


def test_config_round_trip_and_legacy_payload():
    for terms in LINK_TERMS:
        assert LinkHead.from_config(LinkHead(terms).config()).terms == terms
    assert LinkHead.from_config({"spatial": True}).terms == "full"  # checkpoints of format 1
    assert LinkHead.from_config({"spatial": False}).terms == "expression"
