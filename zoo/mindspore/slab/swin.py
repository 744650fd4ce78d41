"""MindSpore twins of the SLAB Swin variants (``swin_t_prepbn``: shifted windows of 7; ``slab_swin_*``: global
SLA in stages 1-2, shifted windows in stages 3-4), mirroring ``SlabSwinTransformer`` (NHWC inside)."""
from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import Linear
from ..registry import register_twin
from .attention import SimplifiedLinearAttention, merge_heads, softmax_attention, split_heads
from .blocks import Mlp, PatchEmbed
from .common import NormedStages, base_kwargs, check_pool, make_head
from .norms import NormSpec
from .windows import (pad_bottom_right, relative_position_index, roll2d, window_mask, window_partition,
                      window_reverse)

__all__ = ['SlabSwinTransformer', 'swin_stage_layout']


class WindowAttention(nn.Cell):
    """Swin window attention with a relative position bias table (official layout)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.relative_position_bias_table = Parameter(
            Tensor(np.zeros(((2 * window_size - 1) ** 2, num_heads), np.float32)), name='relative_position_bias_table')
        self.relative_position_index = Tensor(relative_position_index(window_size).reshape(-1))
        self.qkv = Linear(dim, dim * 3, qkv_bias)
        self.proj = Linear(dim, dim)

    def construct(self, x, mask=None):
        B_, N, C = x.shape
        qkv = self.qkv(x)
        q = split_heads(qkv[..., :C], self.num_heads).reshape(B_, self.num_heads, N, -1)
        k = split_heads(qkv[..., C:2 * C], self.num_heads).reshape(B_, self.num_heads, N, -1)
        v = split_heads(qkv[..., 2 * C:], self.num_heads).reshape(B_, self.num_heads, N, -1)
        bias = ops.gather(self.relative_position_bias_table, self.relative_position_index, 0)
        bias = bias.reshape(N, N, -1).transpose(2, 0, 1).expand_dims(0)  # (1, h, N, N)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.expand_dims(0) + mask.expand_dims(1).expand_dims(0)).reshape(1, nw, self.num_heads, N, N)
            bias = ops.broadcast_to(bias, (B_ // nw, nw, self.num_heads, N, N)).reshape(B_, self.num_heads, N, N)
        x = softmax_attention(q, k, v, bias)
        return self.proj(merge_heads(x.reshape(B_ * self.num_heads, N, -1), B_))


class SwinBlock(nn.Cell):
    """Swin block with (shifted) window attention (``'S'``) or global SLA (``'L'``)."""

    def __init__(self, dim: int, num_heads: int, attn_type: str, window_size: int, shift_size: int,
                 pos_size: tuple, mlp_ratio: float, qkv_bias: bool, norm: NormSpec):
        super().__init__()
        self.attn_type = attn_type
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = norm.folded(dim)
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, qkv_bias or norm.deploy)
        else:
            self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias or norm.deploy)
        self.norm2 = norm.folded(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _window_attn(self, x):
        B, H, W, C = x.shape
        ws = self.window_size
        shift = 0 if (H <= ws and W <= ws) else self.shift_size
        hp, wp = -(-H // ws) * ws, -(-W // ws) * ws
        x = pad_bottom_right(x, hp - H, wp - W, True)
        if shift:
            x = roll2d(x, -shift)
        x = window_reverse(self.attn(window_partition(x, ws), window_mask(hp, wp, H, W, ws, shift)), ws, hp, wp)
        if shift:
            x = roll2d(x, shift)
        return x[:, :H, :W]

    def construct(self, x):
        B, H, W, C = x.shape
        y = self.norm1(x)
        if self.attn_type == 'L':
            y = self.attn(y.reshape(B, H * W, C), (H, W)).reshape(B, H, W, C)
        else:
            y = self._window_attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Cell):
    """2x2 neighbourhood concatenation (official order), norm, linear reduction."""

    def __init__(self, dim: int, norm: NormSpec):
        super().__init__()
        self.reduction = Linear(4 * dim, 2 * dim, norm.deploy)
        self.norm = norm.folded(4 * dim)

    def construct(self, x):
        x = ops.concat((x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]), axis=-1)
        return self.reduction(self.norm(x))


def swin_stage_layout(img_size: int, window_size: int, attn_types: str) -> list:
    """Per stage ``(window, shift, position grid)`` of a Swin built for ``img_size`` (as the torch model)."""
    layout = []
    res = img_size // 4
    for i, attn_type in enumerate(attn_types):
        r = res >> i
        if attn_type == 'L':
            layout.append((0, 0, (min(window_size, r), min(window_size, r))))
        else:
            limit = 7 if window_size <= 56 else 12
            ws = min(limit, r)
            layout.append((ws, 0 if r <= limit else ws // 2, (ws, ws)))
    return layout


class SwinStage(nn.Cell):
    def __init__(self, dim: int, depth: int, num_heads: int, attn_type: str, layout: tuple, mlp_ratio: float,
                 qkv_bias: bool, norm: NormSpec, downsample: bool):
        super().__init__()
        ws, shift, pos_size = layout
        self.blocks = nn.CellList([
            SwinBlock(dim, num_heads, attn_type, ws, 0 if i % 2 == 0 else shift, pos_size, mlp_ratio, qkv_bias, norm)
            for i in range(depth)])
        self.downsample = PatchMerging(dim, norm) if downsample else None

    def construct(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


class SlabSwinTransformer(NormedStages):
    """Swin with PRepBN (or RepBN) norms; ``attn_types`` per stage: ``'S'`` shifted windows, ``'L'`` SLA. The
    patch merging of stage ``i`` sits at the end of ``layers.i`` and runs at the start of the next stage."""

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dim: int = 96, depths: tuple = (2, 2, 6, 2), num_heads: tuple = (3, 6, 12, 24),
                 window_size: int = 7, attn_types: str = 'SSSS', mlp_ratio: float = 4., qkv_bias: bool = True,
                 norm: NormSpec = NormSpec()):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
        self.num_stages = len(depths)
        self.patch_embed = PatchEmbed(in_chans, embed_dim, 4, 4, 0, norm.folded)
        layout = swin_stage_layout(img_size, window_size, attn_types)
        self.layers = nn.CellList([
            SwinStage(embed_dim * 2 ** i, depths[i], num_heads[i], attn_types[i], layout[i], mlp_ratio, qkv_bias,
                      norm, i < self.num_stages - 1) for i in range(self.num_stages)])
        num_features = embed_dim * 2 ** (self.num_stages - 1)
        self.norm = norm.standalone(num_features)
        self.head = make_head(num_features, num_classes)

    def _run(self, x, collect: bool):
        x, hw = self.patch_embed(x)
        x = x.reshape(x.shape[0], hw[0], hw[1], -1)
        outs = []
        for i in range(self.num_stages):
            if i > 0:
                x = self.layers[i - 1].downsample(x)
            x = self.layers[i](x)
            if collect:
                outs.append(x.transpose(0, 3, 1, 2))
        return x, outs


_SWIN_SLAB = NormSpec(60000)
_VARIANTS = {
    'swin_t_prepbn': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                          attn_types='SSSS', norm=NormSpec()),
    'slab_swin_t': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=56,
                        attn_types='LLSS', norm=_SWIN_SLAB),
    'slab_swin_s': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=56,
                        attn_types='LLSS', norm=_SWIN_SLAB),
    'slab_swin_b': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=56,
                        attn_types='LLSS', norm=_SWIN_SLAB),
}


def _torch_layout(model: Any) -> list:
    """The per-stage ``(window, shift, position grid)`` a torch Swin was built with."""
    layout = []
    for stage in model.layers:
        first, last = stage.blocks[0], stage.blocks[-1]
        if first.attn_type == 'L':
            layout.append((0, 0, tuple(first.attn.pos_size)))
        else:
            layout.append((first.window_size, last.shift_size, (first.window_size, first.window_size)))
    return layout


def _read_kwargs(model: Any) -> dict:
    """The builder kwargs of a torch Swin, with the smallest ``img_size`` that gives its windows and position
    grids (sizes beyond the largest window build identical models)."""
    from ..api import model_name_of
    cfg = _VARIANTS[model_name_of(model)]
    want = _torch_layout(model)
    for img_size in range(4, 8193, 4):
        if swin_stage_layout(img_size, cfg['window_size'], cfg['attn_types']) == want:
            return dict(base_kwargs(model), img_size=img_size)
    raise ValueError(f'no input size gives the windows of this torch {model_name_of(model)}: {want}')


@register_twin(*_VARIANTS, kwargs_from_torch=_read_kwargs)
def build_swin(variant: str, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
               global_pool: str = 'avg', deploy: bool = False) -> SlabSwinTransformer:
    """The twin of SLAB Swin ``variant`` (``deploy=True``: the form ``model.fuse()`` leaves)."""
    cfg = dict(_VARIANTS[variant])
    cfg['norm'] = cfg['norm'].deployed(deploy)
    return SlabSwinTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes,
                               global_pool=global_pool, **cfg)
