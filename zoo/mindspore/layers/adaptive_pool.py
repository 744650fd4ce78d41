"""Adaptive average pooling as fixed matrices, equal to ``torch.nn.functional.adaptive_avg_pool2d``.

torch's output cell ``i`` of ``out`` averages input rows ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)``
(bins overlap when ``out`` does not divide ``in``). That is a linear map per axis, so the pool of an
(..., h, w) map is ``P_h @ x @ P_w.T``: exact for any pair of sizes, and a plain matmul in PYNATIVE and GRAPH
mode on every backend (MindSpore's own adaptive pool kernels are not available everywhere).
"""
from __future__ import annotations

import functools

import numpy as np
from mindspore import Tensor, ops

__all__ = ['adaptive_pool_matrix', 'adaptive_avg_pool2d']


@functools.lru_cache(maxsize=64)
def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) float32 averaging matrix of a 1-D adaptive average pool."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f'cannot pool between sizes {in_size} and {out_size}')
    out = np.zeros((out_size, in_size), dtype=np.float32)
    for i in range(out_size):
        start, end = (i * in_size) // out_size, -(-((i + 1) * in_size) // out_size)
        out[i, start:end] = 1.0 / (end - start)
    out.setflags(write=False)
    return out


def adaptive_avg_pool2d(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` on the last two axes of ``x``."""
    h, w = x.shape[-2], x.shape[-1]
    if h == size[0] and w == size[1]:
        return x
    rows = Tensor(adaptive_pool_matrix(h, size[0]))
    cols = Tensor(adaptive_pool_matrix(w, size[1]).T.copy())
    return ops.matmul(ops.matmul(rows, x), cols)
