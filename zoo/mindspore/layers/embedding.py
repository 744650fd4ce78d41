"""``Embedding``: a learned table read whole or by index, with torch's parameter name ``weight``.

MindSpore's ``nn.Embedding`` names its table ``embedding_table``; SAM's prompt and output tokens read the whole
(n, dim) table, so a plain parameter named ``weight`` keeps torch checkpoints loading by leaf renames alone.
"""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

__all__ = ['Embedding']


class Embedding(nn.Cell):
    """torch ``nn.Embedding(num_embeddings, embedding_dim)``; ``construct(ids)`` looks rows up."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        table = np.random.default_rng(0).standard_normal((num_embeddings, embedding_dim)).astype(np.float32)
        self.weight = Parameter(Tensor(table), name='weight')

    def construct(self, ids: Tensor) -> Tensor:
        return ops.gather(self.weight, ids, 0)
