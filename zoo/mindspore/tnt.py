"""MindSpore twins of TNT (Transformer in Transformer) as the zoo adopts it: timm's ``tnt_*`` models.

The cell tree mirrors timm's ``TNT`` attribute for attribute (``pixel_embed.proj``, ``norm1_proj``, ``proj``,
``norm2_proj``, ``cls_token``, ``patch_pos``, ``pixel_pos``, ``blocks.{i}.{norm_in, attn_in, norm_mlp_in,
mlp_in, norm1_proj, proj, norm2_proj, norm_out, attn_out, norm_mlp, mlp}``, ``norm``, ``head``), every bias
included (the MindSpore port in ``mindspore-ai/models`` lacks several). Like timm's model, a twin takes only
its ``img_size`` (224 for the registered variants). Inference only: dropout and drop path are left out.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from .layers import Conv2d, LayerNorm, Linear
from .layers.input_checks import check_image_shape
from .layers.mlp import Mlp
from .registry import register_twin

__all__ = ['TNT', 'TNT_CONFIGS']


class Attention(nn.Cell):
    """TNT's attention: queries and keys from one ``qk`` projection, values from ``v``, then ``proj``."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qk = Linear(dim, dim * 2, bias=qkv_bias)
        self.v = Linear(dim, dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)

    def construct(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qk = ops.transpose(self.qk(x).reshape(B, N, 2, self.num_heads, self.head_dim), (2, 0, 3, 1, 4))
        q, k = qk[0], qk[1]
        v = ops.transpose(self.v(x).reshape(B, N, self.num_heads, -1), (0, 2, 1, 3))
        attn = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * self.scale, -1)
        x = ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)).reshape(B, N, -1)
        return self.proj(x)


class Block(nn.Cell):
    """Inner transformer over each patch's pixels, their projection added to the patch tokens (the class
    token excepted), then the outer transformer."""

    def __init__(self, dim: int, dim_out: int, num_pixel: int, num_heads_in: int, num_heads_out: int,
                 mlp_ratio: float = 4.0, qkv_bias: bool = False):
        super().__init__()
        self.norm_in = LayerNorm(dim)
        self.attn_in = Attention(dim, num_heads_in, qkv_bias)
        self.norm_mlp_in = LayerNorm(dim)
        self.mlp_in = Mlp(dim, dim * 4)
        self.norm1_proj = LayerNorm(dim * num_pixel)
        self.proj = Linear(dim * num_pixel, dim_out, bias=False)
        self.norm2_proj = LayerNorm(dim_out)
        self.norm_out = LayerNorm(dim_out)
        self.attn_out = Attention(dim_out, num_heads_out, qkv_bias)
        self.norm_mlp = LayerNorm(dim_out)
        self.mlp = Mlp(dim_out, int(dim_out * mlp_ratio))

    def construct(self, pixel_embed: Tensor, patch_embed: Tensor) -> tuple[Tensor, Tensor]:
        pixel_embed = pixel_embed + self.attn_in(self.norm_in(pixel_embed))
        pixel_embed = pixel_embed + self.mlp_in(self.norm_mlp_in(pixel_embed))
        B, N, _ = patch_embed.shape
        words = self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(B, N - 1, -1))))
        patch_embed = ops.cat([patch_embed[:, 0:1], patch_embed[:, 1:] + words], 1)
        patch_embed = patch_embed + self.attn_out(self.norm_out(patch_embed))
        patch_embed = patch_embed + self.mlp(self.norm_mlp(patch_embed))
        return pixel_embed, patch_embed


class PixelEmbed(nn.Cell):
    """Cuts the image into ``patch_size`` patches (as ``nn.Unfold``) and embeds each with a 7x7 stride-4 conv
    into a grid of pixel tokens, adding ``pixel_pos``."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, in_dim: int, stride: int = 4):
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.in_dim = in_dim
        self.proj = Conv2d(in_chans, in_dim, 7, stride=stride, padding=3)

    def construct(self, x: Tensor, pixel_pos: Tensor) -> Tensor:
        B, C, H, W = x.shape
        (gh, gw), p = self.grid, self.patch_size
        x = ops.transpose(x.reshape(B, C, gh, p, gw, p), (0, 2, 4, 1, 3, 5)).reshape(B * gh * gw, C, p, p)
        x = self.proj(x) + pixel_pos
        return ops.transpose(x.reshape(B * gh * gw, self.in_dim, -1), (0, 2, 1))


class TNT(nn.Cell):
    """Transformer in Transformer (timm's non-legacy layout); arguments as timm's ``TNT``."""

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, global_pool: str = 'token', embed_dim: int = 768, inner_dim: int = 48,
                 depth: int = 12, num_heads_inner: int = 4, num_heads_outer: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, first_stride: int = 4):
        super().__init__()
        if global_pool not in ('', 'token', 'avg'):
            raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.global_pool = global_pool
        self.num_features = embed_dim
        self.pixel_embed = PixelEmbed(self.img_size, patch_size, in_chans, inner_dim, first_stride)
        self.num_patches = self.pixel_embed.num_patches
        side = -(-patch_size // first_stride)
        num_pixel = side * side
        self.norm1_proj = LayerNorm(num_pixel * inner_dim)
        self.proj = Linear(num_pixel * inner_dim, embed_dim)
        self.norm2_proj = LayerNorm(embed_dim)
        self.cls_token = Parameter(Tensor(np.zeros((1, 1, embed_dim), np.float32)))
        self.patch_pos = Parameter(Tensor(np.zeros((1, self.num_patches + 1, embed_dim), np.float32)))
        self.pixel_pos = Parameter(Tensor(np.zeros((1, inner_dim, side, side), np.float32)))
        self.blocks = nn.CellList([
            Block(inner_dim, embed_dim, num_pixel, num_heads_inner, num_heads_outer, mlp_ratio, qkv_bias)
            for _ in range(depth)])
        self.norm = LayerNorm(embed_dim)
        self.head = Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _check(self, x: Tensor) -> None:
        check_image_shape(x.shape, self.in_chans, name='TNT')
        if x.shape[2] != self.img_size[0] or x.shape[3] != self.img_size[1]:
            raise ValueError(f'TNT takes {self.img_size[0]}x{self.img_size[1]} inputs only, got '
                             f'{x.shape[2]}x{x.shape[3]}: build it with img_size=({x.shape[2]}, {x.shape[3]})')

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        self._check(x)
        B = x.shape[0]
        pixel_embed = self.pixel_embed(x, self.pixel_pos)
        patch_embed = self.norm2_proj(self.proj(self.norm1_proj(pixel_embed.reshape(B, self.num_patches, -1))))
        patch_embed = ops.cat([ops.broadcast_to(self.cls_token, (B, -1, -1)), patch_embed], 1)
        return pixel_embed, patch_embed + self.patch_pos

    def forward_features(self, x: Tensor) -> Tensor:
        pixel_embed, patch_embed = self._embed(x)
        for block in self.blocks:
            pixel_embed, patch_embed = block(pixel_embed, patch_embed)
        return self.norm(patch_embed)

    def forward_intermediates(self, x: Tensor) -> list:
        """Every block's patch tokens as (B, C, H, W) maps: timm's ``forward_intermediates(x,
        intermediates_only=True)``."""
        pixel_embed, patch_embed = self._embed(x)
        B, (gh, gw) = x.shape[0], self.pixel_embed.grid
        out = []
        for block in self.blocks:
            pixel_embed, patch_embed = block(pixel_embed, patch_embed)
            out.append(ops.transpose(patch_embed[:, 1:].reshape(B, gh, gw, -1), (0, 3, 1, 2)))
        return out

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == 'avg':
            x = ops.mean(x[:, 1:], 1)
        elif self.global_pool == 'token':
            x = x[:, 0]
        return x if pre_logits else self.head(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


#: Architecture of each registered variant (timm's entrypoints' arguments).
TNT_CONFIGS: dict[str, dict[str, Any]] = {
    'tnt_s_patch16_224': dict(patch_size=16, embed_dim=384, inner_dim=24, depth=12, num_heads_outer=6),
    'tnt_b_patch16_224': dict(patch_size=16, embed_dim=640, inner_dim=40, depth=12, num_heads_outer=10),
}


def _tnt_kwargs(model: Any) -> dict:
    """Builder kwargs of a timm TNT: classes, input channels, input size and pooling."""
    return dict(num_classes=model.num_classes, in_chans=model.in_chans,
                img_size=tuple(model.pixel_embed.img_size), global_pool=model.global_pool)


@register_twin(*TNT_CONFIGS, kwargs_from_torch=_tnt_kwargs)
def create_tnt(variant: str, img_size: int | tuple[int, int] = 224, in_chans: int = 3, num_classes: int = 1000,
               global_pool: str = 'token') -> TNT:
    """The MindSpore twin of TNT ``variant``."""
    return TNT(img_size=img_size, in_chans=in_chans, num_classes=num_classes, global_pool=global_pool,
               **TNT_CONFIGS[variant])
