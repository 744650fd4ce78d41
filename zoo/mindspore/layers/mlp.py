"""``Mlp``: timm's transformer MLP, ``fc2(gelu(fc1(x)))`` with the exact GELU (dropout is the identity in
inference), and ``ConvMlp``, the same on NCHW maps with 1x1 convolutions; parameter names ``fc1`` / ``fc2`` as in
timm."""
from __future__ import annotations

from mindspore import Tensor, nn

from .activations import GELU
from .conv import Conv2d
from .linear import Linear

__all__ = ['Mlp', 'ConvMlp']


class Mlp(nn.Cell):
    """timm ``Mlp(dim, hidden)``: Linear, GELU, Linear back to ``dim``."""

    def __init__(self, dim: int, hidden: int, fc1_bias: bool = True):
        super().__init__()
        self.fc1 = Linear(dim, hidden, fc1_bias)
        self.act = GELU()
        self.fc2 = Linear(hidden, dim)

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(nn.Cell):
    """timm ``ConvMlp(dim, hidden)`` without a norm: 1x1 conv ``fc1``, exact GELU, 1x1 conv ``fc2`` back to ``dim``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = Conv2d(dim, hidden, 1)
        self.act = GELU()
        self.fc2 = Conv2d(hidden, dim, 1)

    def construct(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
