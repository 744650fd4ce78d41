"""MindSpore twin of Hire-MLP (:mod:`zoo.models.hiremlp`): hierarchical-rearrangement mixing on the pyramid.

The shift between blocks follows the PyTorch code's ``torch.roll(x, +shift)``; the official MindSpore port
(``research/cv/HireMLP``) shifts the other way, so the same weights give other logits there. ``ops.roll`` has no
CPU kernel, so the circular shift and padding here are slices and concatenations (every backend, both modes).
"""
from __future__ import annotations

from typing import Any

from mindspore import nn, ops

from .layers import BatchNorm2d, Conv2d
from .mixer_pyramid import BranchReweight, MixerPyramid, mixer_kwargs_from_torch
from .registry import register_twin

__all__ = ['HireMLP', 'HierarchicalRearrangeMixing', 'roll', 'gather_regions', 'scatter_regions']

_BASE = dict(depths=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512))
#: Registered name -> constructor arguments (as in zoo.models.hiremlp).
VARIANTS = {
    'hire_mlp_tiny': dict(_BASE),
    'hire_mlp_small': dict(_BASE, depths=(3, 4, 10, 3)),
    'hire_mlp_base': dict(_BASE, depths=(4, 6, 24, 3)),
    'hire_mlp_large': dict(depths=(4, 6, 24, 3), embed_dims=(96, 192, 384, 768)),
}


def roll(x, shift: int, dim: int):
    """``torch.roll(x, shift, dim)``: element ``i`` moves to ``(i + shift) % size``."""
    size = x.shape[dim]
    shift = shift % size
    if shift == 0:
        return x
    return ops.cat((ops.narrow(x, dim, size - shift, shift), ops.narrow(x, dim, 0, size - shift)), dim)


def _circular_pad(x, dim: int, padded: int):
    """Extend ``x`` along ``dim`` to ``padded`` by repeating it from its start (as often as needed)."""
    size = x.shape[dim]
    parts = [x] * (padded // size)
    if padded % size:
        parts.append(ops.narrow(x, dim, 0, padded % size))
    return ops.cat(tuple(parts), dim) if len(parts) > 1 else parts[0]


def gather_regions(x, dim: int, region_size: int, shift: int):
    """Shift ``x`` (B, C, H, W) along ``dim``, pad it circularly to a multiple of ``region_size`` and stack each
    region's rows (columns) along channels (channel ``c * region_size + i`` holds row ``i`` of each region)."""
    b, c, h, w = x.shape
    size = x.shape[dim]
    padded = -(-size // region_size) * region_size
    x = roll(x, shift, dim) if shift else x
    if padded != size:
        x = _circular_pad(x, dim, padded)
    n = padded // region_size
    if dim == 2:
        return ops.transpose(x.reshape(b, c, n, region_size, w), (0, 1, 3, 2, 4)).reshape(b, c * region_size, n, w)
    return ops.transpose(x.reshape(b, c, h, n, region_size), (0, 1, 4, 2, 3)).reshape(b, c * region_size, h, n)


def scatter_regions(x, dim: int, region_size: int, shift: int, size: int):
    """Inverse of :func:`gather_regions`: unstack, crop the padding to ``size``, undo the shift."""
    b, stacked, rows, cols = x.shape
    x = x.reshape(b, stacked // region_size, region_size, rows, cols)
    if dim == 2:
        x = ops.transpose(x, (0, 1, 3, 2, 4)).reshape(b, stacked // region_size, rows * region_size, cols)
    else:
        x = ops.transpose(x, (0, 1, 3, 4, 2)).reshape(b, stacked // region_size, rows, cols * region_size)
    if x.shape[dim] != size:
        x = ops.narrow(x, dim, 0, size)
    return roll(x, -shift, dim) if shift else x


class HierarchicalRearrangeMixing(nn.Cell):
    """Region MLPs along height and width (after a circular shift) plus a channel fc, by split attention."""

    def __init__(self, dim: int, region_size: int = 2, shift: int = 0):
        super().__init__()
        self.region_size = region_size
        self.shift = shift
        hidden = dim // 2
        self.mlp_h1 = Conv2d(dim * region_size, hidden, 1, bias=False)
        self.mlp_h1_norm = BatchNorm2d(hidden)
        self.mlp_h2 = Conv2d(hidden, dim * region_size, 1)
        self.mlp_w1 = Conv2d(dim * region_size, hidden, 1, bias=False)
        self.mlp_w1_norm = BatchNorm2d(hidden)
        self.mlp_w2 = Conv2d(hidden, dim * region_size, 1)
        self.mlp_c = Conv2d(dim, dim, 1)
        self.act = nn.ReLU()
        self.reweight = BranchReweight(dim, num_branches=3)
        self.proj = Conv2d(dim, dim, 1)

    def construct(self, x):
        hh, ww = x.shape[2], x.shape[3]
        p, s = self.region_size, self.shift
        h = self.mlp_h2(self.act(self.mlp_h1_norm(self.mlp_h1(gather_regions(x, 2, p, s)))))
        w = self.mlp_w2(self.act(self.mlp_w1_norm(self.mlp_w1(gather_regions(x, 3, p, s)))))
        h = scatter_regions(h, 2, p, s, hh)
        w = scatter_regions(w, 3, p, s, ww)
        return self.proj(self.reweight((h, w, self.mlp_c(x))))


class HireMLP(MixerPyramid):
    """Hire-MLP: a four-stage pyramid of hierarchical-rearrangement blocks (as :class:`zoo.models.hiremlp.HireMLP`)."""

    def __init__(self, depths, embed_dims, mlp_ratios=(4, 4, 4, 4), region_sizes=(4, 3, 3, 2),
                 shift_periods=(2, 2, 3, 2), shift_steps=(2, 2, 1, 1), **kwargs: Any):
        def make_mixer(stage: int, block: int, dim: int) -> nn.Cell:
            shift = (block % shift_periods[stage]) * shift_steps[stage]
            return HierarchicalRearrangeMixing(dim, region_size=region_sizes[stage], shift=shift)

        super().__init__(make_mixer, depths, embed_dims, mlp_ratios, BatchNorm2d, BatchNorm2d, nn.ReLU, **kwargs)


@register_twin(*VARIANTS, kwargs_from_torch=mixer_kwargs_from_torch)
def hiremlp(variant: str, **kwargs: Any) -> HireMLP:
    """The twin of a registered Hire-MLP variant (``num_classes``, ``in_chans``, ``global_pool``, ...)."""
    return HireMLP(**dict(VARIANTS[variant], **kwargs))
