"""``DropPath`` (stochastic depth): identity in inference, per-sample residual dropping in training."""
from __future__ import annotations

from mindspore import nn, ops


class DropPath(nn.Cell):
    """Zero a sample's residual branch with probability ``drop_prob`` in training, scaling the kept ones."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def construct(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(keep + ops.rand(shape, dtype=x.dtype))
        return x * mask / keep
