"""``LayerNorm2d``: LayerNorm over the channel axis of an (N, C, H, W) map, as timm's ``LayerNorm2d`` (eps 1e-6).

The affine parameters are named ``gamma`` / ``beta``, so torch's ``weight`` / ``bias`` map onto them by the
converter's leaf renames.
"""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

__all__ = ['LayerNorm2d']


class LayerNorm2d(nn.Cell):
    """timm ``LayerNorm2d(num_channels, eps)``: normalise each pixel's channel vector, then scale and shift."""

    def __init__(self, num_channels: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = Parameter(Tensor(np.ones(num_channels, np.float32)), name='gamma')
        self.beta = Parameter(Tensor(np.zeros(num_channels, np.float32)), name='beta')
        self.norm = ops.LayerNorm(begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

    def construct(self, x: Tensor) -> Tensor:
        y, _, _ = self.norm(x.transpose(0, 2, 3, 1), self.gamma, self.beta)
        return y.transpose(0, 3, 1, 2)
