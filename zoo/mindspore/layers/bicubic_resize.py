"""Bicubic resizing of position tables as fixed matrices, equal to ``torch.nn.functional.interpolate``.

Position tables (ViG's ``pos_embed``, Pyramid ViG's and PyramidTNT's relative-position biases,
PyramidTNT's ``outer_pos``) are resized when a model runs at another input size than it was built for.
Bicubic resizing is separable and linear, so a resize of an (..., h, w) table to (..., h', w') is
``A_h @ table @ A_w.T`` with (h', h) and (w', w) matrices that depend on the sizes alone. The matrices are
computed here with torch's formulas (``align_corners=False``; the plain kernel with a = -0.75 and clamped
borders, or the antialiased kernel with a = -0.5 and renormalised weights), so the MindSpore twins resize
exactly as the torch models do, in PYNATIVE and GRAPH mode alike (a matmul), on any device.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from mindspore import Tensor, ops

__all__ = ['bicubic_matrix', 'resize_bicubic']


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_matrix(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """The (out_size, in_size) float32 matrix of a 1-D bicubic resize as torch computes it.

    ``antialias=False`` is ``F.interpolate(mode='bicubic', align_corners=False)``; ``antialias=True`` adds
    ``antialias=True`` (the kernel widens when shrinking, as timm's position-table resampling does).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f'cannot resize between sizes {in_size} and {out_size}')
    scale = in_size / out_size
    out = np.zeros((out_size, in_size), dtype=np.float64)
    if antialias:
        support = 2.0 * max(scale, 1.0)
        inv = 1.0 / max(scale, 1.0)
        for i in range(out_size):
            centre = scale * (i + 0.5)
            lo = max(int(centre - support + 0.5), 0)
            hi = min(int(centre + support + 0.5), in_size)
            taps = np.arange(lo, hi)
            weights = _cubic((taps - centre + 0.5) * inv, -0.5)
            total = weights.sum()
            out[i, lo:hi] = weights / total if total != 0 else weights
    else:
        for i in range(out_size):
            src = (i + 0.5) * scale - 0.5
            base = math.floor(src)
            t = src - base
            for offset, distance in zip((-1, 0, 1, 2), (1 + t, t, 1 - t, 2 - t)):
                out[i, min(max(base + offset, 0), in_size - 1)] += _cubic(np.array(distance), -0.75)
    out.setflags(write=False)
    return out.astype(np.float32)


def resize_bicubic(table: Tensor, size: tuple[int, int], antialias: bool = False) -> Tensor:
    """Resize the last two axes of ``table`` to ``size`` as ``F.interpolate(mode='bicubic')`` does.

    Returns ``table`` itself when the size already matches. The matrices are constants of the shapes, so
    GRAPH mode folds them at compile time.
    """
    h, w = table.shape[-2], table.shape[-1]
    if h == size[0] and w == size[1]:
        return table
    rows = Tensor(bicubic_matrix(h, size[0], antialias))
    cols = Tensor(bicubic_matrix(w, size[1], antialias).T.copy())
    return ops.matmul(ops.matmul(rows, table), cols)
