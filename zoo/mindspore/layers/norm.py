"""Normalisation layers with torch's epsilons and semantics.

MindSpore names the affine parameters ``gamma`` / ``beta`` (and BatchNorm's statistics ``moving_mean`` /
``moving_variance``), which is the whole of the leaf renaming in :mod:`zoo.mindspore.convert`. Its LayerNorm
defaults to epsilon 1e-7; torch's is 1e-5, set here explicitly.
"""
from __future__ import annotations

from typing import Sequence, Union

from mindspore import nn


def BatchNorm2d(num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> nn.BatchNorm2d:
    """torch's ``BatchNorm2d(num_features, eps, momentum)``; MindSpore's momentum is ``1 - torch momentum``."""
    return nn.BatchNorm2d(num_features, eps=eps, momentum=1.0 - momentum)


def LayerNorm(normalized_shape: Union[int, Sequence[int]], eps: float = 1e-5) -> nn.LayerNorm:
    """torch's ``LayerNorm`` over the last ``len(normalized_shape)`` axes, with torch's epsilon."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return nn.LayerNorm(shape, begin_norm_axis=-len(shape), begin_params_axis=-len(shape), epsilon=eps)


def GroupNorm(num_groups: int, num_channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    """torch's ``GroupNorm`` on (N, C, H, W)."""
    return nn.GroupNorm(num_groups, num_channels, eps=eps)
