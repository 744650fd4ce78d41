"""MindSpore twins of the SLAB DeiT variants (``deit_*_prepbn``: softmax attention with a class token;
``slab_deit_*``: simplified linear attention, average pooling), mirroring ``SlabVisionTransformer``."""
from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import Linear
from ..registry import register_twin
from .attention import SimplifiedLinearAttention, merge_heads, resize_token_grid, softmax_attention, split_heads
from .blocks import Mlp, PatchEmbed, tokens_to_map
from .common import base_kwargs, check_pool, make_head
from .norms import NormSpec

__all__ = ['SlabVisionTransformer']


class SoftmaxAttention(nn.Cell):
    """Multi-head softmax self-attention with a fused ``qkv`` (ViT layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3, qkv_bias)
        self.proj = Linear(dim, dim)

    def construct(self, x, hw: tuple = None):
        B, N, C = x.shape
        qkv = self.qkv(x)
        q = split_heads(qkv[..., :C], self.num_heads)
        k = split_heads(qkv[..., C:2 * C], self.num_heads)
        v = split_heads(qkv[..., 2 * C:], self.num_heads)
        return self.proj(merge_heads(softmax_attention(q, k, v), B))


class ViTBlock(nn.Cell):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm: NormSpec, attn_type: str,
                 pos_size: tuple):
        super().__init__()
        self.norm1 = norm.folded(dim)
        bias = qkv_bias or norm.deploy  # a folded norm leaves a bias on the layer it went into
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, bias)
        else:
            self.attn = SoftmaxAttention(dim, num_heads, bias)
        self.norm2 = norm.folded(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def construct(self, x, hw: tuple):
        x = x + self.attn(self.norm1(x), hw)
        return x + self.mlp(self.norm2(x))


class SlabVisionTransformer(nn.Cell):
    """DeiT with PRepBN / RepBN norms; softmax attention and a class token (``'S'``) or SLA without one
    (``'L'``, features are then a (B, C, H, W) map)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'token', embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
                 mlp_ratio: float = 4., qkv_bias: bool = True, attn_type: str = 'S', norm: NormSpec = NormSpec()):
        super().__init__()
        self.use_cls_token = attn_type == 'S'
        self.num_prefix_tokens = 1 if self.use_cls_token else 0
        self.global_pool = check_pool(global_pool, ('token', 'avg') if self.use_cls_token else ('avg', ''))
        self.num_classes = num_classes
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, patch_size)
        if self.use_cls_token:
            self.cls_token = Parameter(Tensor(np.zeros((1, 1, embed_dim), np.float32)), name='cls_token')
        num_pos = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.pos_embed = Parameter(Tensor(np.zeros((1, num_pos, embed_dim), np.float32)), name='pos_embed')
        self.blocks = nn.CellList([ViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, norm, attn_type,
                                            self.grid_size) for _ in range(depth)])
        self.norm = norm.standalone(embed_dim)
        self.head = make_head(embed_dim, num_classes)

    def _embed(self, x):
        x, hw = self.patch_embed(x)
        if self.use_cls_token:
            pos = resize_token_grid(self.pos_embed[:, 1:], self.grid_size, hw)
            pos = ops.concat((self.pos_embed[:, :1], pos), axis=1)
            cls = ops.broadcast_to(self.cls_token, (x.shape[0], 1, x.shape[2]))
            x = ops.concat((cls, x), axis=1)
        else:
            pos = resize_token_grid(self.pos_embed, self.grid_size, hw)
        return x + pos, hw

    def forward_features(self, x):
        x, hw = self._embed(x)
        for blk in self.blocks:
            x = blk(x, hw)
        x = self.norm(x)
        return x if self.use_cls_token else tokens_to_map(x, hw)

    def forward_head(self, x, pre_logits: bool = False):
        if not self.use_cls_token:
            if self.global_pool == 'avg':
                x = x.mean(axis=(2, 3))
        elif self.global_pool == 'token':
            x = x[:, 0]
        else:
            x = x[:, 1:].mean(axis=1)
        return x if pre_logits else self.head(x)

    def forward_intermediates(self, x) -> list:
        """Every block's output as a (B, C, H, W) map (class token left out, no final norm)."""
        x, hw = self._embed(x)
        outs = []
        for blk in self.blocks:
            x = blk(x, hw)
            outs.append(tokens_to_map(x[:, self.num_prefix_tokens:], hw))
        return outs

    def construct(self, x):
        return self.forward_head(self.forward_features(x))


_DEIT_PREPBN = NormSpec(300000, 1e-6)
_DEIT_SLAB = NormSpec(60000, 1e-6)
_VARIANTS = {
    'deit_t_prepbn': dict(embed_dim=192, num_heads=3, attn_type='S', global_pool='token', norm=NormSpec()),
    'deit_s_prepbn': dict(embed_dim=384, num_heads=6, attn_type='S', global_pool='token', norm=_DEIT_PREPBN),
    'slab_deit_t': dict(embed_dim=192, num_heads=3, attn_type='L', global_pool='avg', norm=_DEIT_SLAB),
    'slab_deit_s': dict(embed_dim=384, num_heads=6, attn_type='L', global_pool='avg', norm=_DEIT_SLAB),
}


def _read_kwargs(model: Any) -> dict:
    return dict(base_kwargs(model), img_size=model.grid_size[0] * model.patch_size)


@register_twin(*_VARIANTS, kwargs_from_torch=_read_kwargs)
def build_deit(variant: str, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
               global_pool: str | None = None, deploy: bool = False) -> SlabVisionTransformer:
    """The twin of SLAB DeiT ``variant`` (``deploy=True``: the form ``model.fuse()`` leaves)."""
    cfg = dict(_VARIANTS[variant])
    cfg['norm'] = cfg['norm'].deployed(deploy)
    if global_pool is not None:
        cfg['global_pool'] = global_pool
    return SlabVisionTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **cfg)
