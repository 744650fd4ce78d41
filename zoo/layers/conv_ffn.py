"""Feed-forward block on feature maps: 1x1 conv + BN, activation, 1x1 conv + BN, residual (ViG's FFN)."""
from __future__ import annotations

from typing import Optional, Type

import torch
from torch import nn
from timm.layers import DropPath

from .pointwise import activate, conv_bn

__all__ = ['ConvFFN']


class ConvFFN(nn.Module):
    """``x + drop_path(fc2(act(fc1(x))))`` with ``fc1``/``fc2`` = (1x1 conv, BatchNorm) pairs.

    Parameter names (``fc1.0``, ``fc1.1``, ``fc2.0``, ``fc2.1``) follow the official ViG layout. The pairs
    run through :func:`~zoo.layers.pointwise.conv_bn` (eval-mode BatchNorm folded; oneDNN's convolution in plain
    CPU inference, batched matmuls with the residual in the second product's bias term under autograd): same
    arithmetic up to float rounding, fewer passes.
    """

    def __init__(
            self,
            dim: int,
            hidden_dim: Optional[int] = None,
            act_layer: Type[nn.Module] = nn.GELU,
            drop_path: float = 0.0,
    ):
        super().__init__()
        hidden_dim = hidden_dim or dim
        self.fc1 = nn.Sequential(nn.Conv2d(dim, hidden_dim, 1), nn.BatchNorm2d(hidden_dim))
        self.act = act_layer()
        self.fc2 = nn.Sequential(nn.Conv2d(hidden_dim, dim, 1), nn.BatchNorm2d(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only: the modules one by one
            return x + self.drop_path(self.fc2(self.act(self.fc1(x))))
        else:
            h = activate(self.act, conv_bn(self.fc1, x))
            if self.training and not isinstance(self.drop_path, nn.Identity):
                return self.drop_path(conv_bn(self.fc2, h)) + x
            return conv_bn(self.fc2, h, residual=x)  # DropPath is the identity in eval mode
