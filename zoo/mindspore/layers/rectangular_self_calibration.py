"""The rectangular self-calibration module (RCM, CGRSeg) with the torch layer's parameter names
(:mod:`zoo.layers.rectangular_self_calibration`): axial pools -> band convs -> sigmoid gate over a depthwise
conv, in a residual block with a conv MLP and a layer scale ``gamma``. Inference only (no drop path)."""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .conv import Conv2d
from .mlp import ConvMlp
from .norm import BatchNorm2d

__all__ = ['RectangularSelfCalibrationAttention', 'RectangularSelfCalibrationModule']


class RectangularSelfCalibrationAttention(nn.Cell):
    """``excite(mean_W(x) + mean_H(x)) * dwconv_hw(x)``; ``excite`` = (1, k) conv, BN, ReLU, (k, 1) conv, sigmoid."""

    def __init__(self, dim: int, band_kernel_size: int = 11, square_kernel_size: int = 3, ratio: int = 1):
        super().__init__()
        hidden = dim // ratio
        self.dwconv_hw = Conv2d(dim, dim, square_kernel_size, padding=square_kernel_size // 2, groups=dim)
        self.excite = nn.SequentialCell([
            Conv2d(dim, hidden, (1, band_kernel_size), padding=(0, band_kernel_size // 2), groups=hidden),
            BatchNorm2d(hidden),
            nn.ReLU(),
            Conv2d(hidden, dim, (band_kernel_size, 1), padding=(band_kernel_size // 2, 0), groups=hidden),
            nn.Sigmoid(),
        ])

    def construct(self, x: Tensor) -> Tensor:
        context = ops.mean(x, 3, keep_dims=True) + ops.mean(x, 2, keep_dims=True)
        return self.excite(context) * self.dwconv_hw(x)


class RectangularSelfCalibrationModule(nn.Cell):
    """``x + gamma * mlp(norm(token_mixer(x)))`` (layer scale always present, as in CGRSeg)."""

    def __init__(self, dim: int, band_kernel_size: int = 11, square_kernel_size: int = 3, ratio: int = 1,
                 mlp_ratio: float = 2.0):
        super().__init__()
        self.token_mixer = RectangularSelfCalibrationAttention(dim, band_kernel_size, square_kernel_size, ratio)
        self.norm = BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim))
        self.gamma = Parameter(Tensor(np.full((dim,), 1e-6, np.float32)))

    def construct(self, x: Tensor) -> Tensor:
        y = self.mlp(self.norm(self.token_mixer(x)))
        return x + y * self.gamma.reshape(1, -1, 1, 1)
