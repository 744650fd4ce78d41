"""Rectangular self-calibration (CGRSeg, ECCV 2024): axial context that attends to rectangular regions.

``RectangularSelfCalibrationAttention`` pools a feature map along each axis, adds the two strip descriptors
into a rank-one "cross" map, and shapes it with a horizontal then a vertical band convolution (the shape
self-calibration) into a sigmoid gate over a local depthwise-conv branch. ``RectangularSelfCalibrationModule``
wraps it in a MetaNeXt-style residual block (mixer -> BN -> conv MLP -> layer scale).

Parameter names follow the official CGRSeg release so its checkpoints load unchanged.
"""
from __future__ import annotations

from typing import Type

import torch
from torch import nn
from timm.layers import ConvMlp, DropPath

__all__ = ['RectangularSelfCalibrationAttention', 'RectangularSelfCalibrationModule']


class RectangularSelfCalibrationAttention(nn.Module):
    """Gate a depthwise ``square_kernel_size`` conv with an attention map built from axial average pools.

    Args:
        dim: channels (kept).
        band_kernel_size: length of the (1, k) and (k, 1) band convolutions that shape the attention.
        square_kernel_size: kernel of the local depthwise branch.
        ratio: channel reduction of the band convolutions (``dim // ratio`` groups and hidden channels).
    """

    def __init__(self, dim: int, band_kernel_size: int = 11, square_kernel_size: int = 3, ratio: int = 1) -> None:
        super().__init__()
        hidden = dim // ratio
        self.dwconv_hw = nn.Conv2d(dim, dim, square_kernel_size, padding=square_kernel_size // 2, groups=dim)
        self.excite = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=(1, band_kernel_size), padding=(0, band_kernel_size // 2),
                      groups=hidden),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, dim, kernel_size=(band_kernel_size, 1), padding=(band_kernel_size // 2, 0),
                      groups=hidden),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, 1) + (B, C, 1, W) broadcasts to the rectangular "cross" context map
        context = x.mean(dim=3, keepdim=True) + x.mean(dim=2, keepdim=True)
        return self.excite(context) * self.dwconv_hw(x)


class RectangularSelfCalibrationModule(nn.Module):
    """Residual block ``x + gamma * mlp(norm(rca(x)))`` (the paper's RCM).

    Args:
        dim: channels.
        band_kernel_size: band length of the attention (the configs' ``dw_size`` / ``neck_size``).
        square_kernel_size: kernel of the attention's local branch.
        ratio: channel reduction inside the attention.
        mlp_ratio: hidden width of the conv MLP relative to ``dim``.
        act_layer: MLP activation.
        ls_init_value: initial layer-scale value (None: no layer scale).
        drop_path: stochastic depth rate of the residual branch.
    """

    def __init__(
            self,
            dim: int,
            band_kernel_size: int = 11,
            square_kernel_size: int = 3,
            ratio: int = 1,
            mlp_ratio: float = 2.,
            act_layer: Type[nn.Module] = nn.GELU,
            ls_init_value: float | None = 1e-6,
            drop_path: float = 0.,
    ) -> None:
        super().__init__()
        self.token_mixer = RectangularSelfCalibrationAttention(
            dim, band_kernel_size=band_kernel_size, square_kernel_size=square_kernel_size, ratio=ratio)
        self.norm = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(mlp_ratio * dim), act_layer=act_layer)
        self.gamma = nn.Parameter(ls_init_value * torch.ones(dim)) if ls_init_value else None
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.token_mixer(x)))
        if self.gamma is not None:
            y = y * self.gamma.view(1, -1, 1, 1)
        return x + self.drop_path(y)
