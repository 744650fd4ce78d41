"""``Conv2d`` with torch's arguments and defaults: explicit zero padding and a bias unless ``bias=False``.

MindSpore's own ``nn.Conv2d`` pads ``'same'`` and has no bias by default; this factory sets both the torch way,
so a twin reads like its torch model and the weights (OIHW) and bias keep their names.
"""
from __future__ import annotations

from typing import Union

from mindspore import nn

Pair = Union[int, tuple[int, int]]


def _pair(v: Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def Conv2d(in_channels: int, out_channels: int, kernel_size: Pair, stride: Pair = 1, padding: Pair = 0,
           dilation: Pair = 1, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    """An ``nn.Conv2d`` that computes what ``torch.nn.Conv2d`` with the same arguments computes."""
    ph, pw = _pair(padding)
    return nn.Conv2d(in_channels, out_channels, _pair(kernel_size), stride=_pair(stride), pad_mode='pad',
                     padding=(ph, ph, pw, pw), dilation=_pair(dilation), group=groups, has_bias=bias)
