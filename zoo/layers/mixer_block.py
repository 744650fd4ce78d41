"""Residual block of a token-mixing MLP on NCHW maps: ``x + mixer(norm1(x))``, then ``x + mlp(norm2(x))``.

The token mixer is the family-specific part (Wave-MLP's phase-aware mixing, Hire-MLP's hierarchical
rearrangement); the channel MLP is a pair of 1x1 convolutions. Attribute names (``norm1``, ``attn``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``) follow the official Wave-MLP / Hire-MLP checkpoints.
"""
from __future__ import annotations

from typing import Callable, Type

import torch
from timm.layers import ConvMlp, DropPath
from torch import nn


class MixerBlock(nn.Module):
    """Pre-norm residual block: token mixer, then a 1x1-conv channel MLP of ``mlp_ratio`` expansion."""

    def __init__(
            self,
            dim: int,
            token_mixer: nn.Module,
            mlp_ratio: float = 4.,
            norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
            act_layer: Type[nn.Module] = nn.GELU,
            drop_path: float = 0.,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = token_mixer
        self.norm2 = norm_layer(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=act_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x
