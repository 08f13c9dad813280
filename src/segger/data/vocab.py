"""Gene vocabulary: gene name → token id, with an unknown-gene token.

Token 0 is reserved for genes the vocabulary does not know, so a checkpoint trained on one
panel can be applied to another: shared genes keep their learned embedding, new genes map to
the unknown token (and are reported by :meth:`GeneVocab.coverage`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

UNKNOWN_GENE = "<unknown>"


@dataclass(frozen=True)
class GeneVocab:
    genes: tuple[str, ...]  # known genes, sorted; token id = position + 1

    @classmethod
    def from_genes(cls, genes: Iterable[str]) -> "GeneVocab":
        uniq = sorted({str(g) for g in genes if g is not None and str(g) != UNKNOWN_GENE})
        return cls(tuple(uniq))

    def __len__(self) -> int:
        """Number of tokens, the unknown token included (use as ``num_tx_tokens``)."""
        return len(self.genes) + 1

    @property
    def unknown_token(self) -> int:
        return 0

    def encode(self, genes: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """Token ids (int64) for ``genes``; unknown genes → 0. Vectorised."""
        cat = pd.Categorical(pd.Series(genes, copy=False).astype(str), categories=list(self.genes))
        return (np.asarray(cat.codes, dtype=np.int64) + 1).clip(min=0)

    def coverage(self, genes: Iterable[str]) -> tuple[float, list[str]]:
        """Fraction of distinct ``genes`` the vocabulary knows, and the unknown ones."""
        distinct = sorted({str(g) for g in genes})
        known = set(self.genes)
        unknown = [g for g in distinct if g not in known]
        frac = 1.0 - len(unknown) / max(len(distinct), 1)
        return frac, unknown

    def to_list(self) -> list[str]:
        return list(self.genes)

    @classmethod
    def from_list(cls, genes: Sequence[str]) -> "GeneVocab":
        return cls(tuple(str(g) for g in genes))
