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

from .hooks import observed
from .onednn import conv_mlp, is_fx_tracing


class MixerBlock(nn.Module):
    """Pre-norm residual block: token mixer, then a 1x1-conv channel MLP of ``mlp_ratio`` expansion.

    The token mixer must return a new tensor (not a view of its input): in eval mode the residual is added into
    it in place."""

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
        if torch.jit.is_scripting():  # TorchScript compiles this branch only: the modules one by one
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        else:
            # the in-place path only where nobody else can hold the branches' outputs: no hook anywhere in them,
            # and no torch.fx graph (feature extraction may return an inner node, which add_ would change)
            if self.training or is_fx_tracing() or observed(*self.attn.modules(), *self.mlp.modules()):
                x = x + self.drop_path(self.attn(self.norm1(x)))
                return x + self.drop_path(self.mlp(self.norm2(x)))
            # eval: the residuals are added into the branches' fresh outputs (no further map written),
            # DropPath is the identity, and the channel MLP runs with its BatchNorm folded into fc1 and GELU
            # fused (zoo.layers.onednn.conv_mlp)
            x = self.attn(self.norm1(x)).add_(x)
            mlp = conv_mlp(x, self.mlp, self.norm2)
            return (self.mlp(self.norm2(x)) if mlp is None else mlp).add_(x)
