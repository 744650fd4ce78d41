"""MindSpore twins of the SLAB PVT variants (``pvt_*_prepbn``: spatial-reduction softmax attention;
``slab_pvt_*``: SLA) and PVT-v2 (``slab_pvt_v2_b*``: overlapping patch embeddings, convolutional MLP, stage
norms), mirroring ``SlabPyramidTransformer``."""
from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn

from ..layers import Conv2d, Linear
from ..registry import register_twin
from .attention import SimplifiedLinearAttention, merge_heads, resize_token_grid, softmax_attention, split_heads
from .blocks import ConvMlp, Mlp, PatchEmbed, tokens_to_map
from .common import StagedHead, base_kwargs, check_pool, make_head
from .norms import NormSpec

__all__ = ['SlabPyramidTransformer']


class SpatialReductionAttention(nn.Cell):
    """PVT softmax attention; keys and values from a map reduced by a strided convolution and a norm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool, norm: NormSpec):
        super().__init__()
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = Linear(dim, dim, qkv_bias or norm.deploy)
        self.kv = Linear(dim, dim * 2, qkv_bias or norm.deploy)
        self.proj = Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = norm.folded(dim)

    def construct(self, x, hw: tuple):
        B, N, C = x.shape
        q = split_heads(self.q(x), self.num_heads)
        if self.sr_ratio > 1:
            x = self.sr(tokens_to_map(x, hw))
            x = self.norm(x.reshape(B, C, -1).swapaxes(1, 2))
        kv = self.kv(x)
        k = split_heads(kv[..., :C], self.num_heads)
        v = split_heads(kv[..., C:], self.num_heads)
        return self.proj(merge_heads(softmax_attention(q, k, v), B))


class PyramidBlock(nn.Cell):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm: NormSpec, attn_type: str,
                 sr_ratio: int, pos_size: tuple, conv_mlp: bool):
        super().__init__()
        self.norm1 = norm.folded(dim)
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, qkv_bias or norm.deploy, split_qkv=True)
        else:
            self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias, norm)
        self.norm2 = norm.folded(dim)
        hidden = int(dim * mlp_ratio)
        self.conv_mlp = conv_mlp
        self.mlp = ConvMlp(dim, hidden) if conv_mlp else Mlp(dim, hidden)

    def construct(self, x, hw: tuple):
        x = x + self.attn(self.norm1(x), hw)
        y = self.norm2(x)
        if self.conv_mlp:
            return x + self.mlp(y, hw)
        return x + self.mlp(y)


class SlabPyramidTransformer(StagedHead):
    """PVT (patch embeddings, learned position tables) or PVT-v2 (``overlap_embed``: overlapping patch
    embeddings, convolutional MLP, a norm after each stage), with PRepBN and SLA / spatial-reduction attention."""

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dims: tuple = (64, 128, 320, 512), num_heads: tuple = (1, 2, 5, 8),
                 mlp_ratios: tuple = (8, 8, 4, 4), depths: tuple = (2, 2, 2, 2), sr_ratios: tuple = (8, 4, 2, 1),
                 attn_types: str = 'LLLL', qkv_bias: bool = True, overlap_embed: bool = False,
                 norm: NormSpec = NormSpec(300000, 1e-6)):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
        self.num_stages = len(depths)
        self.overlap_embed = overlap_embed
        self.grid_sizes = []
        grid = img_size // 4
        for i in range(self.num_stages):
            cin = in_chans if i == 0 else embed_dims[i - 1]
            if overlap_embed:
                embed = PatchEmbed(cin, embed_dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2, 3 if i == 0 else 1,
                                   norm.folded)
            else:
                embed = PatchEmbed(cin, embed_dims[i], 4 if i == 0 else 2, 4 if i == 0 else 2, 0, norm.folded)
            setattr(self, f'patch_embed{i + 1}', embed)
            if not overlap_embed:
                setattr(self, f'pos_embed{i + 1}', Parameter(
                    Tensor(np.zeros((1, grid * grid, embed_dims[i]), np.float32)), name=f'pos_embed{i + 1}'))
            setattr(self, f'block{i + 1}', nn.CellList([
                PyramidBlock(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias, norm, attn_types[i],
                             sr_ratios[i], (grid, grid), overlap_embed) for _ in range(depths[i])]))
            if overlap_embed:
                setattr(self, f'norm{i + 1}', norm.standalone(embed_dims[i]))
            self.grid_sizes.append((grid, grid))
            grid //= 2
        self.head = make_head(embed_dims[-1], num_classes)

    def _stage(self, i: int, x):
        """Stage ``i`` from an NCHW map to an NCHW map."""
        x, hw = getattr(self, f'patch_embed{i + 1}')(x)
        if not self.overlap_embed:
            x = x + resize_token_grid(getattr(self, f'pos_embed{i + 1}'), self.grid_sizes[i], hw)
        for blk in getattr(self, f'block{i + 1}'):
            x = blk(x, hw)
        if self.overlap_embed:
            x = getattr(self, f'norm{i + 1}')(x)
        return tokens_to_map(x, hw)

    def forward_features(self, x):
        for i in range(self.num_stages):
            x = self._stage(i, x)
        return x

    def forward_intermediates(self, x) -> list:
        """Each stage's output, (B, C, H, W)."""
        outs = []
        for i in range(self.num_stages):
            x = self._stage(i, x)
            outs.append(x)
        return outs


_PVT_NORM = NormSpec(300000, 1e-6)
_PVT_V1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
               sr_ratios=(8, 4, 2, 1))
_PVT_V2 = dict(num_heads=(1, 2, 5, 8), sr_ratios=(1, 1, 1, 1), attn_types='LLLL', overlap_embed=True)
_V2_WIDE = (64, 128, 320, 512)
_VARIANTS = {
    'pvt_t_prepbn': dict(_PVT_V1, depths=(2, 2, 2, 2), attn_types='SSSS'),
    'pvt_s_prepbn': dict(_PVT_V1, depths=(3, 4, 6, 3), attn_types='SSSS'),
    'pvt_m_prepbn': dict(_PVT_V1, depths=(3, 4, 18, 3), attn_types='SSSS'),
    'slab_pvt_t': dict(_PVT_V1, depths=(2, 2, 2, 2), attn_types='LLLL'),
    'slab_pvt_s': dict(_PVT_V1, depths=(3, 4, 6, 3), attn_types='LLLL'),
    'slab_pvt_m': dict(_PVT_V1, depths=(3, 4, 18, 3), attn_types='LLLL'),
    'slab_pvt_v2_b0': dict(_PVT_V2, embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4)),
    'slab_pvt_v2_b1': dict(_PVT_V2, embed_dims=_V2_WIDE, depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4)),
    'slab_pvt_v2_b2': dict(_PVT_V2, embed_dims=_V2_WIDE, depths=(3, 4, 6, 3), mlp_ratios=(8, 8, 4, 4)),
    'slab_pvt_v2_b3': dict(_PVT_V2, embed_dims=_V2_WIDE, depths=(3, 4, 18, 3), mlp_ratios=(8, 8, 4, 4)),
    'slab_pvt_v2_b4': dict(_PVT_V2, embed_dims=_V2_WIDE, depths=(3, 8, 27, 3), mlp_ratios=(8, 8, 4, 4)),
    'slab_pvt_v2_b5': dict(_PVT_V2, embed_dims=_V2_WIDE, depths=(3, 6, 40, 3), mlp_ratios=(4, 4, 4, 4)),
}


def _read_kwargs(model: Any) -> dict:
    return dict(base_kwargs(model), img_size=model.grid_sizes[0][0] * 4)


@register_twin(*_VARIANTS, kwargs_from_torch=_read_kwargs)
def build_pvt(variant: str, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
              global_pool: str = 'avg', deploy: bool = False) -> SlabPyramidTransformer:
    """The twin of SLAB PVT / PVT-v2 ``variant`` (``deploy=True``: the form ``model.fuse()`` leaves)."""
    return SlabPyramidTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes,
                                  global_pool=global_pool, norm=_PVT_NORM.deployed(deploy), **_VARIANTS[variant])
