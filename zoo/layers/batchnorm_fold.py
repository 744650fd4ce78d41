"""An eval-mode BatchNorm folded into the convolution before it: the one helper every fast path uses."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

__all__ = ['folded_conv_bn']


def folded_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution, for a BatchNorm that uses its running statistics.

    Computed on every call from the current parameters and statistics, so never stale, and differentiable.
    The caller checks that ``bn`` is in eval mode with running statistics and affine parameters."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale if conv.bias is None else bn.bias + (conv.bias - bn.running_mean) * scale
    return conv.weight * scale.view(-1, 1, 1, 1), shift
