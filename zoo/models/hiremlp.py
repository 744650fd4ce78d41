"""Hire-MLP: "Hire-MLP: Vision MLP via Hierarchical Rearrangement" (Guo et al., CVPR 2022).

The token mixer groups ``region_size`` consecutive rows (columns) into one region, stacks the region's
rows (columns) along channels and mixes them with a channel MLP (inner-region rearrangement); between
blocks the map is circularly shifted by a few rows and columns so that regions straddle the previous
region borders (cross-region rearrangement). A channel-fc branch joins the height and width branches
and split attention fuses the three.

Paper: https://arxiv.org/abs/2108.13341
Official code: https://github.com/ggjy/Hire-Wave-MLP.pytorch (mlp_based/hire_mlp.py)

Official checkpoints load as they are (same state-dict layout). Any input of at least 3x3 pixels works:
a map whose side is not a multiple of the region size is padded circularly to the next multiple and
cropped back after the region MLP, as in the official code; a multiple is not padded at all, and the
padding also works where it exceeds the map (e.g. a 1-pixel map with 3-pixel regions), where the
official ``F.pad`` refuses. Stage outputs have reductions 4/8/16/32.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import register_notrace_function
from timm.models import build_model_with_cfg, generate_default_cfgs
from torch import nn

from ..layers.branch_reweight import BranchReweight
from ..layers.factory_kwargs import with_factory_kwargs
from ..layers.hooks import observed
from .mixer_pyramid import MixerPyramid
from ..registry import register_model

__all__ = ['HireMLP', 'HierarchicalRearrangeMixing', 'gather_regions', 'scatter_regions', 'shift_and_pad',
           'unstack_regions']


def _wrapped_positions(length: int, offset: int, size: int, device: torch.device) -> torch.Tensor:
    """``(arange(length) + offset) % size``: the source position of every output position of a circular
    shift (and circular padding or cropping) along an axis of ``size``."""
    return torch.arange(length, device=device).add(offset).remainder(size)


@register_notrace_function  # padding depends on the map size: a leaf for torch.fx
def gather_regions(x: torch.Tensor, dim: int, region_size: int, shift: int) -> torch.Tensor:
    """Shift ``x`` (B, C, H, W) circularly by ``shift`` along ``dim`` (2: height, 3: width), pad it
    circularly to a multiple of ``region_size`` and stack each region's rows (columns) along channels.

    Returns (B, C * region_size, ceil(H / region_size), W) for dim 2, channel ``c * region_size + i``
    holding row ``i`` of each region; (B, C * region_size, H, ceil(W / region_size)) for dim 3.
    The shift and the padding are one gather of rows (columns), which the exporters express exactly for
    any map size (the padding may exceed the map, e.g. a 1-pixel map with 3-pixel regions).
    """
    B, C, H, W = x.shape
    size = x.shape[dim]
    # positive operands only: the exporters turn integer // into a division that truncates towards zero
    padded = (size + region_size - 1) // region_size * region_size
    if shift or padded != size:
        x = x.index_select(dim, _wrapped_positions(padded, -shift, size, x.device))
    n = padded // region_size
    if dim == 2:
        return x.reshape(B, C, n, region_size, W).transpose(2, 3).reshape(B, C * region_size, n, W)
    return x.reshape(B, C, H, n, region_size).permute(0, 1, 4, 2, 3).reshape(B, C * region_size, H, n)


@register_notrace_function  # cropping depends on the map size: a leaf for torch.fx
def scatter_regions(x: torch.Tensor, dim: int, region_size: int, shift: int, size: int) -> torch.Tensor:
    """Inverse of :func:`gather_regions`: unstack the regions, crop the padding to ``size`` and undo
    the shift (one gather)."""
    B, stacked, rows, cols = x.shape
    C = stacked // region_size
    x = x.reshape(B, C, region_size, rows, cols)
    if dim == 2:
        x = x.transpose(2, 3).reshape(B, C, rows * region_size, cols)
    else:
        x = x.permute(0, 1, 3, 4, 2).reshape(B, C, rows, cols * region_size)
    if shift or x.shape[dim] != size:
        x = x.index_select(dim, _wrapped_positions(size, shift, size, x.device))
    return x


@register_notrace_function  # padding depends on the map size: a leaf for torch.fx
def shift_and_pad(x: torch.Tensor, dim: int, region_size: int, shift: int) -> torch.Tensor:
    """The shift and circular padding of :func:`gather_regions` without the stacking: (B, C, padded, W)
    for dim 2. The rows (columns) are gathered in NHWC memory, where each is one contiguous block."""
    size = x.shape[dim]
    padded = (size + region_size - 1) // region_size * region_size
    if not shift and padded == size:
        return x
    positions = _wrapped_positions(padded, -shift, size, x.device)
    return x.permute(0, 2, 3, 1).index_select(dim - 1, positions).permute(0, 3, 1, 2)


@register_notrace_function  # cropping depends on the map size: a leaf for torch.fx
def unstack_regions(x: torch.Tensor, dim: int, region_size: int, shift: int, size: int) -> torch.Tensor:
    """:func:`scatter_regions` as ONE gather in NHWC memory: unstacking, cropping and undoing the shift
    each copied the whole map before. Returns (B, C, size, W) for dim 2, (B, C, H, size) for dim 3."""
    B, stacked, rows, cols = x.shape
    C = stacked // region_size
    # NHWC view (B, rows, cols, C, region_size): channel c * region_size + i is row (column) i of a region
    x = x.permute(0, 2, 3, 1).reshape(B, rows, cols, C, region_size)
    source = _wrapped_positions(size, shift, size, x.device)  # row of the unstacked map for each output row
    region, within = source // region_size, source % region_size
    if dim == 2:
        out = x.permute(0, 1, 4, 2, 3)[:, region, within]  # (B, size, cols, C)
    else:
        out = x.permute(0, 1, 2, 4, 3)[:, :, region, within]  # (B, rows, size, C)
    return out.permute(0, 3, 1, 2)


class HierarchicalRearrangeMixing(nn.Module):
    """Hire-MLP token mixer: region MLPs along height and width (after a circular shift of ``shift``)
    plus a channel fc, fused by split attention."""

    def __init__(self, dim: int, region_size: int = 2, shift: int = 0) -> None:
        super().__init__()
        self.region_size = region_size
        self.shift = shift
        hidden = dim // 2
        self.mlp_h1 = nn.Conv2d(dim * region_size, hidden, 1, bias=False)
        self.mlp_h1_norm = nn.BatchNorm2d(hidden)
        self.mlp_h2 = nn.Conv2d(hidden, dim * region_size, 1)
        self.mlp_w1 = nn.Conv2d(dim * region_size, hidden, 1, bias=False)
        self.mlp_w1_norm = nn.BatchNorm2d(hidden)
        self.mlp_w2 = nn.Conv2d(hidden, dim * region_size, 1)
        self.mlp_c = nn.Conv2d(dim, dim, 1)
        self.act = nn.ReLU()
        self.reweight = BranchReweight(dim, num_branches=3)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _region_fc1(self, x: torch.Tensor, dim: int, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """``fc1(gather_regions(x))`` without stacking the regions: fc1 on the stacked regions is a (p x 1)
        conv of stride p on the shifted map (its weight viewed so, channel c * p + i being row i of
        channel c). Same arithmetic, one copy fewer."""
        p = self.region_size
        kernel = (p, 1) if dim == 2 else (1, p)
        weight = weight.reshape(weight.shape[0], x.shape[1], kernel[0], kernel[1])
        return F.conv2d(shift_and_pad(x, dim, p, self.shift), weight, bias, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each region MLP: scatter_regions(fc2(act(norm(fc1(gather_regions(x)))))), the unstacking being
        # one gather (:func:`unstack_regions`)
        p, s = self.region_size, self.shift
        H, W = x.shape[2], x.shape[3]
        hooked = False
        if not torch.jit.is_scripting():  # TorchScript drops this branch
            hooked = observed(self.mlp_h1, self.mlp_w1)
        if hooked:  # hooked fc1s run as modules, on the stacked regions
            h, w = self.mlp_h1(gather_regions(x, 2, p, s)), self.mlp_w1(gather_regions(x, 3, p, s))
        else:
            h = self._region_fc1(x, 2, self.mlp_h1.weight, self.mlp_h1.bias)
            w = self._region_fc1(x, 3, self.mlp_w1.weight, self.mlp_w1.bias)
        h = unstack_regions(self.mlp_h2(self.act(self.mlp_h1_norm(h))), 2, p, s, H)
        w = unstack_regions(self.mlp_w2(self.act(self.mlp_w1_norm(w))), 3, p, s, W)
        c = self.mlp_c(x)
        return self.proj(self.reweight([h, w, c]))

    def extra_repr(self) -> str:
        return f'region_size={self.region_size}, shift={self.shift}'


class HireMLP(MixerPyramid):
    """Hire-MLP: a four-stage pyramid of hierarchical-rearrangement blocks.

    Args:
        depths: blocks per stage.
        embed_dims: channels per stage.
        mlp_ratios: channel-MLP expansion per stage.
        region_sizes: rows / columns per region in each stage.
        shift_periods: block j of a stage shifts by ``(j % shift_period) * shift_step`` ...
        shift_steps: ... rows and columns (cross-region rearrangement).
        in_chans, num_classes, global_pool, drop_rate, drop_path_rate: as in timm.
    """

    def __init__(
            self,
            depths=(2, 2, 4, 2),
            embed_dims=(64, 128, 320, 512),
            mlp_ratios=(4, 4, 4, 4),
            region_sizes=(4, 3, 3, 2),
            shift_periods=(2, 2, 3, 2),
            shift_steps=(2, 2, 1, 1),
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
    ) -> None:
        def make_mixer(stage: int, block: int, dim: int) -> nn.Module:
            shift = (block % shift_periods[stage]) * shift_steps[stage]
            return HierarchicalRearrangeMixing(dim, region_size=region_sizes[stage], shift=shift)

        super().__init__(
            make_mixer, depths=depths, embed_dims=embed_dims, mlp_ratios=mlp_ratios,
            norm_layer=nn.BatchNorm2d, embed_norm_layer=nn.BatchNorm2d, embed_act_layer=nn.ReLU,
            in_chans=in_chans, num_classes=num_classes, global_pool=global_pool,
            drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        # as the official code: truncated-normal linear and conv weights
        self.init_weights(include_convs=True)


def _create_hiremlp(variant: str, pretrained: bool = False, **kwargs: Any) -> HireMLP:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        with_factory_kwargs(HireMLP), variant, pretrained,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


_RELEASES = 'https://github.com/ggjy/Hire-Wave-MLP.pytorch/releases/download/log'


def _cfg(url: str = '', **kwargs: Any) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.9, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj', 'classifier': 'head',
        'paper_ids': 'arXiv:2108.13341', 'license': 'mit',
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    'hire_mlp_tiny.in1k': _cfg(url=f'{_RELEASES}/hire_mlp_tiny.pth'),
    'hire_mlp_small.in1k': _cfg(url=f'{_RELEASES}/hire_mlp_small.pth'),
    'hire_mlp_base.in1k': _cfg(url=f'{_RELEASES}/hire_mlp_base.pth'),
    # in the official results table, no released weights
    'hire_mlp_large.untrained': _cfg(),
})


@register_model
def hire_mlp_tiny(pretrained: bool = False, **kwargs: Any) -> HireMLP:
    """Hire-MLP-Tiny (18M params, 2.1G MACs)."""
    model_args = dict(depths=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512))
    return _create_hiremlp('hire_mlp_tiny', pretrained, **dict(model_args, **kwargs))


@register_model
def hire_mlp_small(pretrained: bool = False, **kwargs: Any) -> HireMLP:
    """Hire-MLP-Small (33M params, 4.2G MACs)."""
    model_args = dict(depths=(3, 4, 10, 3), embed_dims=(64, 128, 320, 512))
    return _create_hiremlp('hire_mlp_small', pretrained, **dict(model_args, **kwargs))


@register_model
def hire_mlp_base(pretrained: bool = False, **kwargs: Any) -> HireMLP:
    """Hire-MLP-Base (58M params, 8.1G MACs)."""
    model_args = dict(depths=(4, 6, 24, 3), embed_dims=(64, 128, 320, 512))
    return _create_hiremlp('hire_mlp_base', pretrained, **dict(model_args, **kwargs))


@register_model
def hire_mlp_large(pretrained: bool = False, **kwargs: Any) -> HireMLP:
    """Hire-MLP-Large (96M params, 13.4G MACs)."""
    model_args = dict(depths=(4, 6, 24, 3), embed_dims=(96, 192, 384, 768))
    return _create_hiremlp('hire_mlp_large', pretrained, **dict(model_args, **kwargs))
