"""Strided convolution + optional norm + optional activation: an overlapping patch embedding.

Serves as the stem (e.g. 7x7 stride 4) and as the down-sampling step between stages (3x3 stride 2)
of convolutional pyramids such as Wave-MLP and Hire-MLP.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


class ConvPatchEmbed(nn.Module):
    """``act(norm(proj(x)))`` with ``proj`` a strided Conv2d; norm and act are skipped when None."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int,
            stride: int,
            padding: int,
            norm_layer: Optional[Callable[[int], nn.Module]] = None,
            act_layer: Optional[Callable[[], nn.Module]] = None,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chs, out_chs, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = norm_layer(out_chs) if norm_layer is not None else nn.Identity()
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))
