"""Small synthetic graphs for the model tests (CPU, a few dozen nodes).

A uniquely named helper module (not ``conftest``) so that imports cannot clash with other
test folders' conftest files.
"""

import torch

N_TOKENS = 50


def make_hetero_graph(n_tx=40, n_bd=6, n_tokens=N_TOKENS, k=4, seed=0, orphan_bd=2):
    """tx tokens + bd features; the last ``orphan_bd`` bd nodes have no incoming edge."""
    g = torch.Generator().manual_seed(seed)
    x_dict = {
        "tx": torch.randint(0, n_tokens, (n_tx,), generator=g),
        "bd": torch.randn(n_bd, 4, generator=g),
    }
    dst = torch.arange(n_tx).repeat_interleave(k)
    src = torch.randint(0, n_tx, (n_tx * k,), generator=g)
    belongs_src = torch.arange(0, n_tx, 2)  # half of the tx belong to a bd
    belongs_dst = torch.randint(0, n_bd - orphan_bd, (belongs_src.numel(),), generator=g)
    edge_index_dict = {
        ("tx", "belongs", "bd"): torch.stack([belongs_src, belongs_dst]),
        ("tx", "neighbors", "tx"): torch.stack([src, dst]),
    }
    return x_dict, edge_index_dict
