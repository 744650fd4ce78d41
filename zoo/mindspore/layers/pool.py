"""``GlobalAvgPool``: the mean over H and W, keeping them as 1 x 1 (timm's ``SelectAdaptivePool2d('avg')``
with ``flatten=False``); a reduction, so it runs on every backend in both modes."""
from __future__ import annotations

from mindspore import nn, ops


class GlobalAvgPool(nn.Cell):
    """(N, C, H, W) -> (N, C, 1, 1), or (N, C) with ``flatten``."""

    def __init__(self, flatten: bool = False):
        super().__init__()
        self.flatten = flatten

    def construct(self, x):
        x = ops.mean(x, (2, 3), keep_dims=True)
        return x.reshape(x.shape[0], -1) if self.flatten else x
