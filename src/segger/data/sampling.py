"""Training labels: which nucleus links are supervised, and which negatives go with them.

Positives are ``('tx','belongs','bd')`` edges (a transcript inside its nucleus). A supervised
positive is *removed from message passing* for that step, so the model must recognise the
transcript's nucleus from context — exactly the situation of a cytoplasmic transcript at
prediction time (the reference implementation keeps the supervised edge in the graph, which lets
a nucleus embedding aggregate the very transcripts it is scored against).

Negatives per positive (``neg_ratio`` in all):
* hard (``hard_fraction``): the transcript paired with a *neighbouring* nucleus — one of its own
  ``('tx','candidate','bd')`` edges to another nucleus;
* random: the transcript paired with a random other nucleus of the tile.

Geometric labels for the transcripts outside nuclei (:func:`geometry_labels`), so that the link
score learns how far a cell reaches instead of seeing only distance-0 positives:

* a cytoplasmic transcript whose nearest nucleus outline is within the reach and at least ``gap``
  µm nearer than any other candidate's is a (pseudo-)positive for that nucleus and a negative for
  its other candidates — geometry is unambiguous there;
* a transcript farther than the reach from every candidate is a negative for all of them
  (background: the "no cell" outcome).

Transcripts whose two nearest nuclei are within ``gap`` µm of each other get no geometric label:
that is where the expression term has to decide.
"""

from __future__ import annotations

import numpy as np
import torch

from segger.data.graph import TX_BD, TX_CAND


def sample_labels(belongs: torch.Tensor, candidates: torch.Tensor, n_bd: int, eligible: torch.Tensor,
                  generator: torch.Generator, supervision_ratio: float = 0.5, neg_ratio: float = 3.0,
                  hard_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick supervised positives among ``eligible`` belongs edges and draw their negatives.

    Returns ``(supervised_edge_mask [E_belongs] bool, label_index [2, L], labels [L] float)``.
    Everything is on the CPU and deterministic under ``generator``.
    """
    n_e = belongs.shape[1]
    elig = torch.nonzero(eligible, as_tuple=False).flatten()
    n_sup = int(round(len(elig) * supervision_ratio))
    sup_mask = torch.zeros(n_e, dtype=torch.bool)
    if n_sup == 0 or n_bd == 0:
        return sup_mask, torch.zeros((2, 0), dtype=torch.long), torch.zeros(0)
    chosen = elig[torch.randperm(len(elig), generator=generator)[:n_sup]]
    sup_mask[chosen] = True
    pos = belongs[:, chosen]
    negs = draw_negatives(pos, candidates, n_bd, generator, neg_ratio, hard_fraction)
    label_index = torch.cat([pos, negs], dim=1)
    labels = torch.cat([torch.ones(pos.shape[1]), torch.zeros(negs.shape[1])])
    return sup_mask, label_index, labels


def draw_negatives(pos: torch.Tensor, candidates: torch.Tensor, n_bd: int, generator: torch.Generator,
                   neg_ratio: float, hard_fraction: float) -> torch.Tensor:
    """Negative (tx, bd) pairs for positives ``pos`` [2, P] (see the module docstring)."""
    n_pos = pos.shape[1]
    n_neg = int(round(neg_ratio * n_pos))
    if n_neg == 0 or n_bd < 2:
        return torch.zeros((2, 0), dtype=torch.long)
    n_tx = int(max(pos[0].max().item(), candidates[0].max().item() if candidates.numel() else 0)) + 1
    own = torch.full((n_tx,), -1, dtype=torch.long)
    own[pos[0]] = pos[1]
    parts = []
    n_hard_target = int(round(hard_fraction * n_neg))
    if n_hard_target and candidates.numel():
        c_own = own[candidates[0]]
        hard = candidates[:, (c_own >= 0) & (candidates[1] != c_own)]
        if hard.shape[1] > n_hard_target:
            hard = hard[:, torch.randperm(hard.shape[1], generator=generator)[:n_hard_target]]
        parts.append(hard)
    n_rand = n_neg - sum(p.shape[1] for p in parts)
    if n_rand > 0:
        src = pos[0, torch.randint(0, n_pos, (n_rand,), generator=generator)]
        dst = torch.randint(0, n_bd, (n_rand,), generator=generator)
        clash = dst == own[src]
        dst[clash] = (dst[clash] + 1 + torch.randint(0, n_bd - 1, (int(clash.sum()),), generator=generator)) % n_bd
        parts.append(torch.stack([src, dst]))
    return torch.cat(parts, dim=1)


def geometry_labels(candidates: torch.Tensor, d_abs: torch.Tensor, n_tx: int, eligible_tx: torch.Tensor,
                    has_nucleus: torch.Tensor, reach: float, gap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-positive / background labels of the module docstring: ``(index [2, L], labels [L])``.

    ``candidates`` [2, E] (tx, bd) with ``d_abs`` [E] µm; ``eligible_tx`` and ``has_nucleus`` are
    bool over the ``n_tx`` transcripts (labels only for eligible transcripts without a nucleus).
    """
    empty = (torch.zeros((2, 0), dtype=torch.long), torch.zeros(0))
    if candidates.numel() == 0:
        return empty
    t, b = candidates[0].long(), candidates[1].long()
    tn, dn = t.numpy(), d_abs.float().numpy()
    order = np.lexsort((np.arange(len(tn)), dn, tn))  # by transcript, then distance (ties: edge order)
    ts, ds = tn[order], dn[order]
    head = np.r_[True, ts[1:] != ts[:-1]]  # the nearest candidate of each transcript, in sorted order
    first = np.zeros(len(tn), dtype=bool)
    first[order[head]] = True
    d1 = np.full(n_tx, np.inf)
    d2 = np.full(n_tx, np.inf)
    d1[ts[head]] = ds[head]
    # the second nearest is the next one in sorted order (the same as a minimum over the others)
    second = np.flatnonzero(head[:-1] & ~head[1:]) + 1
    d2[ts[second]] = ds[second]
    d1, d2 = torch.from_numpy(d1), torch.from_numpy(d2)
    not_first = torch.from_numpy(~first)
    use = eligible_tx & ~has_nucleus
    pos_tx = use & (d1 <= reach) & ((d2 - d1) >= gap)
    bg_tx = use & (d1 > reach) & torch.isfinite(d1)
    keep = pos_tx[t] | bg_tx[t]
    if not bool(keep.any()):
        return empty
    labels = (pos_tx[t] & ~not_first).float()
    return torch.stack([t[keep], b[keep]]), labels[keep]


def spatial_holdout(pos_xy: np.ndarray, block: float, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of transcripts in held-out square blocks (``fraction`` of the blocks)."""
    if fraction <= 0 or len(pos_xy) == 0:
        return np.zeros(len(pos_xy), dtype=bool)
    ij = np.floor((pos_xy - pos_xy.min(axis=0)) / block).astype(np.int64)
    key = ij[:, 0] * (ij[:, 1].max() + 1) + ij[:, 1]
    blocks = np.unique(key)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(fraction * len(blocks)))) if len(blocks) > 1 else 0
    val_blocks = rng.choice(blocks, size=n_val, replace=False) if n_val else np.zeros(0, np.int64)
    return np.isin(key, val_blocks)


__all__ = ["sample_labels", "draw_negatives", "geometry_labels", "spatial_holdout", "TX_BD", "TX_CAND"]
