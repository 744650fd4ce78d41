"""Bilinear resizing as fixed matrices, equal to ``torch.nn.functional.interpolate(mode='bilinear',
align_corners=False)`` without antialiasing.

A bilinear resize is separable and linear: resizing (..., h, w) to (..., h', w') is ``A_h @ x @ A_w.T`` with
matrices that depend on the sizes alone, built here with torch's source-index formula (half-pixel centres,
negative source positions clamped to 0, the upper neighbour clamped to the last row). A matmul runs on every
backend and in PYNATIVE and GRAPH mode alike, and gives torch's results to float rounding.
"""
from __future__ import annotations

import functools

import numpy as np
from mindspore import Tensor, ops

__all__ = ['bilinear_matrix', 'resize_bilinear']


@functools.lru_cache(maxsize=64)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) float32 matrix of a 1-D bilinear resize as torch computes it."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f'cannot resize between sizes {in_size} and {out_size}')
    scale = in_size / out_size
    out = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        lo = min(int(np.floor(src)), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        t = src - lo
        out[i, lo] += 1.0 - t
        out[i, hi] += t
    out.setflags(write=False)
    return out.astype(np.float32)


def resize_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize the last two axes of ``x`` to ``size`` as torch's bilinear ``interpolate`` (align_corners=False)."""
    h, w = x.shape[-2], x.shape[-1]
    if h == size[0] and w == size[1]:
        return x
    rows = Tensor(bilinear_matrix(h, int(size[0])))
    cols = Tensor(bilinear_matrix(w, int(size[1])).T.copy())
    return ops.matmul(ops.matmul(rows, x), cols)
