"""Small SLAB building blocks as MindSpore cells (timm's ``Mlp`` is ``zoo.mindspore.layers.mlp``): ``ConvMlp`` is
PVT-v2's MLP with the official ``dwconv.dwconv`` nesting; ``PatchEmbed`` is a convolution to ``(B, H*W, C)``
tokens with an optional norm.
"""
from __future__ import annotations

from typing import Callable, Optional

from mindspore import nn

from ..layers import GELU, Conv2d, Linear
from ..layers.mlp import Mlp

__all__ = ['Mlp', 'ConvMlp', 'PatchEmbed', 'Holder', 'tokens_to_map']


def tokens_to_map(x, hw: tuple):
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return x.swapaxes(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


class Holder(nn.Cell):
    """An empty cell that only names its children (torch's bare ``nn.Module()`` containers)."""


class ConvMlp(nn.Cell):
    """PVT-v2 MLP: fc1, 3x3 depthwise convolution on the token grid, exact GELU, fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.dwconv = Holder()
        self.dwconv.dwconv = Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = GELU()
        self.fc2 = Linear(hidden, dim)

    def construct(self, x, hw: tuple):
        x = self.dwconv.dwconv(tokens_to_map(self.fc1(x), hw))
        x = x.reshape(x.shape[0], x.shape[1], -1).swapaxes(1, 2)
        return self.fc2(self.act(x))


class PatchEmbed(nn.Cell):
    """Convolution to ``(B, H*W, C)`` tokens and an optional norm; returns the tokens and the grid ``(H, W)``."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int, padding: int = 0,
                 norm_layer: Optional[Callable[[int], nn.Cell]] = None):
        super().__init__()
        self.proj = Conv2d(in_chans, embed_dim, kernel_size, stride, padding)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def construct(self, x):
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.reshape(x.shape[0], x.shape[1], -1).swapaxes(1, 2)), hw
