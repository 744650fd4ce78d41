"""MindSpore twins of PyramidTNT (:mod:`zoo.models.pyramid_tnt`), for inference on Ascend.

The cell tree mirrors the torch model attribute for attribute (``patch_embed.{common_conv, inner_convs,
outer_convs}``, ``outer_pos``, ``inner_pos``, ``stages.{i}.{relative_pos, blocks}``, ``word_merges``,
``sentence_merges``, ``norm``, ``head``), so torch weights load by leaf renames alone. Any input whose sides
are multiples of 8 runs, as in torch: ``outer_pos`` and each stage's attention bias are resampled (bicubic,
antialiased, as timm's resampling) to the actual grids. Inference only: dropout and drop path are left out.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..models.pyramid_tnt import PATCH_SIZE, SR_RATIOS, WORDS_SIDE, stage_grids
from .layers import BatchNorm2d, Conv2d, LayerNorm, Linear
from .layers.bicubic_resize import resize_bicubic
from .layers.input_checks import check_image_shape
from .layers.mlp import Mlp
from .registry import register_twin

__all__ = ['PyramidTNT', 'PYRAMID_TNT_CONFIGS']


class Attention(nn.Cell):
    """Multi-head attention; keys and values from the token grid average-pooled by ``sr_ratio`` (then
    ``linear`` and ``norm``) when it is above 1, and an optional additive bias."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False, sr_ratio: int = 1):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = Linear(dim, dim, bias=qkv_bias)
        self.kv = Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.pool = nn.AvgPool2d(sr_ratio, sr_ratio, pad_mode='valid')
            self.linear = Linear(dim, dim)
            self.norm = LayerNorm(dim)
        else:
            self.pool = self.linear = self.norm = None

    def construct(self, x: Tensor, grid: tuple = (1, 1), attn_bias: Tensor | None = None) -> Tensor:
        B, N, C = x.shape
        q = ops.transpose(self.q(x).reshape(B, N, self.num_heads, self.head_dim), (0, 2, 1, 3))
        if self.pool is not None:
            x = self.pool(ops.transpose(x, (0, 2, 1)).reshape(B, C, grid[0], grid[1]))
            x = self.norm(self.linear(ops.transpose(x.reshape(B, C, -1), (0, 2, 1))))
        kv = ops.transpose(self.kv(x).reshape(B, -1, 2, self.num_heads, self.head_dim), (2, 0, 3, 1, 4))
        k, v = kv[0], kv[1]
        attn = ops.matmul(q * self.scale, ops.transpose(k, (0, 1, 3, 2)))
        if attn_bias is not None:
            attn = attn + attn_bias
        x = ops.matmul(ops.softmax(attn, -1), v)
        return self.proj(ops.transpose(x, (0, 2, 1, 3)).reshape(B, N, C))


class Block(nn.Cell):
    """TNT block: an optional inner transformer over each patch's words, projected onto the patch token,
    then an outer transformer over the patch tokens."""

    def __init__(self, outer_dim: int, inner_dim: int, outer_heads: int, inner_heads: int, num_words: int,
                 has_inner: bool, mlp_ratio: float, qkv_bias: bool, sr_ratio: int):
        super().__init__()
        self.has_inner = has_inner
        if has_inner:
            self.inner_norm1 = LayerNorm(num_words * inner_dim)
            self.inner_attn = Attention(inner_dim, inner_heads, qkv_bias)
            self.inner_norm2 = LayerNorm(num_words * inner_dim)
            self.inner_mlp = Mlp(inner_dim, int(inner_dim * mlp_ratio))
            self.proj_norm1 = LayerNorm(num_words * inner_dim)
            self.proj = Linear(num_words * inner_dim, outer_dim, bias=False)
            self.proj_norm2 = LayerNorm(outer_dim)
        self.outer_norm1 = LayerNorm(outer_dim)
        self.outer_attn = Attention(outer_dim, outer_heads, qkv_bias, sr_ratio=sr_ratio)
        self.outer_norm2 = LayerNorm(outer_dim)
        self.outer_mlp = Mlp(outer_dim, int(outer_dim * mlp_ratio))

    def construct(self, inner: Tensor, outer: Tensor, grid: tuple, attn_bias: Tensor) -> tuple[Tensor, Tensor]:
        if self.has_inner:
            B, N, _ = outer.shape
            BN, M, c = inner.shape
            inner = inner + self.inner_attn(self.inner_norm1(inner.reshape(B, N, M * c)).reshape(BN, M, c))
            inner = inner + self.inner_mlp(self.inner_norm2(inner.reshape(B, N, M * c)).reshape(BN, M, c))
            outer = outer + self.proj_norm2(self.proj(self.proj_norm1(inner.reshape(B, N, M * c))))
        outer = outer + self.outer_attn(self.outer_norm1(outer), grid, attn_bias)
        outer = outer + self.outer_mlp(self.outer_norm2(outer))
        return inner, outer


class SentenceAggregation(nn.Cell):
    """Outer tokens downsampled 2x: norm, then a 3x3 stride-2 conv over the patch grid."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = LayerNorm(dim_in)
        self.conv = nn.SequentialCell([Conv2d(dim_in, dim_out, 3, stride=2, padding=1)])

    def construct(self, x: Tensor, grid: tuple) -> tuple[Tensor, tuple]:
        B, N, C = x.shape
        x = self.conv(ops.transpose(self.norm(x), (0, 2, 1)).reshape(B, C, grid[0], grid[1]))
        new_grid = (x.shape[2], x.shape[3])
        return ops.transpose(x.reshape(x.shape[0], x.shape[1], -1), (0, 2, 1)), new_grid


class WordAggregation(nn.Cell):
    """Words downsampled with their patches: the 4x4 words of each 2x2 group of patches (odd grids
    zero-padded) form an 8x8 word image that a 3x3 stride-2 conv takes back to 4x4."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.norm = LayerNorm(dim_in)
        self.conv = nn.SequentialCell([Conv2d(dim_in, dim_out, 3, stride=2, padding=1)])

    def construct(self, x: Tensor, grid: tuple) -> Tensor:
        s = WORDS_SIDE
        C = x.shape[-1]
        x = self.norm(x).reshape(-1, grid[0], grid[1], s * s * C)
        H, W = grid[0] + grid[0] % 2, grid[1] + grid[1] % 2
        if H != grid[0] or W != grid[1]:
            x = ops.pad(x, (0, 0, 0, W - grid[1], 0, H - grid[0]))
        x = ops.transpose(x.reshape(-1, H // 2, 2, W // 2, 2, s, s, C), (0, 1, 3, 7, 2, 5, 4, 6))
        x = self.conv(x.reshape(-1, C, 2 * s, 2 * s))
        return ops.transpose(x.reshape(x.shape[0], x.shape[1], -1), (0, 2, 1))


class Stem(nn.Cell):
    """A shared stride-2 conv, then a stride-1 branch cut into 4x4 words per 8x8-pixel patch and a stride-4
    branch giving one outer token per patch."""

    def __init__(self, in_chans: int, outer_dim: int, inner_dim: int):
        super().__init__()
        self.inner_dim = inner_dim
        self.common_conv = nn.SequentialCell([
            Conv2d(in_chans, inner_dim * 2, 3, stride=2, padding=1), BatchNorm2d(inner_dim * 2), nn.ReLU()])
        self.inner_convs = nn.SequentialCell([
            Conv2d(inner_dim * 2, inner_dim, 3, padding=1), BatchNorm2d(inner_dim), nn.ReLU()])
        self.outer_convs = nn.SequentialCell([
            Conv2d(inner_dim * 2, inner_dim * 4, 3, stride=2, padding=1), BatchNorm2d(inner_dim * 4), nn.ReLU(),
            Conv2d(inner_dim * 4, inner_dim * 8, 3, stride=2, padding=1), BatchNorm2d(inner_dim * 8), nn.ReLU(),
            Conv2d(inner_dim * 8, outer_dim, 3, padding=1), BatchNorm2d(outer_dim), nn.ReLU()])

    def construct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        H, W = x.shape[2] // PATCH_SIZE, x.shape[3] // PATCH_SIZE
        s = WORDS_SIDE
        x = self.common_conv(x)
        inner = ops.transpose(self.inner_convs(x).reshape(B, self.inner_dim, H, s, W, s), (0, 2, 4, 3, 5, 1))
        inner = inner.reshape(B * H * W, s * s, self.inner_dim)
        outer = self.outer_convs(x)
        outer = ops.transpose(outer.reshape(B, outer.shape[1], -1), (0, 2, 1))
        return inner, outer


class Stage(nn.Cell):
    """TNT blocks sharing one learned outer attention bias ``relative_pos``, stored for ``grid`` and
    resampled for other grids (keys first, then queries, as torch)."""

    def __init__(self, depth: int, outer_dim: int, inner_dim: int, outer_heads: int, inner_heads: int,
                 grid: tuple, num_words: int, sr_ratio: int, mlp_ratio: float, qkv_bias: bool):
        super().__init__()
        self.grid = tuple(grid)
        self.sr_ratio = sr_ratio
        num_inner = 2 if depth > 6 else 1
        self.blocks = nn.CellList([
            Block(outer_dim, inner_dim, outer_heads, inner_heads, num_words, j < num_inner, mlp_ratio, qkv_bias,
                  sr_ratio) for j in range(depth)])
        keys = (grid[0] // sr_ratio) * (grid[1] // sr_ratio)
        self.relative_pos = Parameter(Tensor(np.zeros((1, outer_heads, grid[0] * grid[1], keys), np.float32)))

    def attn_bias(self, grid: tuple) -> Tensor:
        """The bias for a query grid of ``grid``."""
        (qh, qw), r = self.grid, self.sr_ratio
        kh, kw, nkh, nkw = qh // r, qw // r, grid[0] // r, grid[1] // r
        table = self.relative_pos
        if qh == grid[0] and qw == grid[1] and kh == nkh and kw == nkw:
            return table
        heads = table.shape[1]
        t = resize_bicubic(table.reshape(heads, qh * qw, kh, kw), (nkh, nkw), antialias=True)
        t = ops.transpose(t.reshape(heads, qh, qw, nkh * nkw), (0, 3, 1, 2))
        t = resize_bicubic(t, (grid[0], grid[1]), antialias=True)
        return ops.transpose(t, (0, 2, 3, 1)).reshape(1, heads, grid[0] * grid[1], nkh * nkw)

    def construct(self, inner: Tensor, outer: Tensor, grid: tuple) -> tuple[Tensor, Tensor]:
        bias = self.attn_bias(grid)
        for block in self.blocks:
            inner, outer = block(inner, outer, grid, bias)
        return inner, outer


class PyramidTNT(nn.Cell):
    """PyramidTNT; arguments as :class:`zoo.models.pyramid_tnt.PyramidTNT`."""

    def __init__(
            self,
            depths: Sequence[int] = (2, 8, 4, 2),
            outer_dims: Sequence[int] = (128, 256, 512, 512),
            inner_dims: Sequence[int] = (8, 16, 32, 32),
            outer_heads: Sequence[int] = (4, 8, 16, 16),
            inner_heads: Sequence[int] = (2, 4, 8, 8),
            img_size: int | tuple[int, int] = 256,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            mlp_ratio: float = 4.0,
            qkv_bias: bool = False,
            name: str = 'PyramidTNT',
    ):
        super().__init__()
        if global_pool not in ('', 'avg'):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.model_name = name
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = outer_dims[-1]
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        grids = stage_grids(img_size)
        self.grid = grids[0]
        num_words = WORDS_SIDE * WORDS_SIDE
        self.patch_embed = Stem(in_chans, outer_dims[0], inner_dims[0])
        self.outer_pos = Parameter(Tensor(np.zeros((1, self.grid[0] * self.grid[1], outer_dims[0]), np.float32)))
        self.inner_pos = Parameter(Tensor(np.zeros((1, num_words, inner_dims[0]), np.float32)))
        word_merges, sentence_merges, stages = [], [], []
        for i, (grid, sr_ratio) in enumerate(zip(grids, SR_RATIOS)):
            if i > 0:
                word_merges.append(WordAggregation(inner_dims[i - 1], inner_dims[i]))
                sentence_merges.append(SentenceAggregation(outer_dims[i - 1], outer_dims[i]))
            stages.append(Stage(depths[i], outer_dims[i], inner_dims[i], outer_heads[i], inner_heads[i], grid,
                                num_words, sr_ratio, mlp_ratio, qkv_bias))
        self.word_merges = nn.CellList(word_merges)
        self.sentence_merges = nn.CellList(sentence_merges)
        self.stages = nn.CellList(stages)
        self.norm = LayerNorm(outer_dims[-1])
        self.head = Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _embed(self, x: Tensor) -> tuple[Tensor, Tensor, tuple]:
        check_image_shape(x.shape, self.in_chans, PATCH_SIZE, 4 * PATCH_SIZE, self.model_name)
        inner, outer = self.patch_embed(x)
        grid = (x.shape[2] // PATCH_SIZE, x.shape[3] // PATCH_SIZE)
        pos = self.outer_pos
        if grid[0] != self.grid[0] or grid[1] != self.grid[1]:
            C = pos.shape[-1]
            pos = ops.transpose(pos.reshape(1, self.grid[0], self.grid[1], C), (0, 3, 1, 2))
            pos = resize_bicubic(pos, grid, antialias=True)
            pos = ops.transpose(pos, (0, 2, 3, 1)).reshape(1, grid[0] * grid[1], C)
        return inner + self.inner_pos, outer + pos, grid

    def _run(self, x: Tensor, keep: bool) -> tuple[Tensor, tuple, list]:
        inner, outer, grid = self._embed(x)
        maps = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                inner = self.word_merges[i - 1](inner, grid)
                outer, grid = self.sentence_merges[i - 1](outer, grid)
            inner, outer = stage(inner, outer, grid)
            if keep:
                maps.append(_tokens_to_map(outer, grid))
        return outer, grid, maps

    def forward_features(self, x: Tensor) -> Tensor:
        outer, grid, _ = self._run(x, False)
        return _tokens_to_map(self.norm(outer), grid)

    def forward_intermediates(self, x: Tensor) -> list:
        """Every stage's outer tokens as (B, C, H, W) maps: the torch model's ``forward_intermediates(x,
        intermediates_only=True)``."""
        return self._run(x, True)[2]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == 'avg':
            x = ops.mean(x, (2, 3))
        return x if pre_logits else self.head(x)

    def construct(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _tokens_to_map(x: Tensor, grid: tuple) -> Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return ops.transpose(x, (0, 2, 1)).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def _pyramid(outer_dim: int, inner_dim: int, outer_head: int, inner_head: int, depths: Sequence[int],
             img_size: int) -> dict:
    """Variant config: widths and heads double at stage 2 and again at stage 3, which stage 4 keeps."""
    scale = (1, 2, 4, 4)
    return dict(depths=tuple(depths), outer_dims=tuple(outer_dim * s for s in scale),
                inner_dims=tuple(inner_dim * s for s in scale), outer_heads=tuple(outer_head * s for s in scale),
                inner_heads=tuple(inner_head * s for s in scale), img_size=img_size)


#: Architecture of each registered variant (the torch entrypoints' arguments).
PYRAMID_TNT_CONFIGS: dict[str, dict[str, Any]] = {
    'ptnt_ti_patch16_192': _pyramid(80, 5, 2, 1, (2, 6, 3, 2), 192),
    'ptnt_s_patch16_256': _pyramid(128, 8, 4, 2, (2, 8, 4, 2), 256),
    'ptnt_m_patch16_256': _pyramid(192, 12, 4, 2, (2, 8, 6, 2), 256),
    'ptnt_b_patch16_256': _pyramid(256, 16, 4, 2, (2, 10, 6, 2), 256),
}


def _pyramid_tnt_kwargs(model: Any) -> dict:
    """Builder kwargs of a torch PyramidTNT: classes, input channels, stored size and pooling."""
    return dict(num_classes=model.num_classes, in_chans=model.in_chans, img_size=tuple(model.img_size),
                global_pool=model.global_pool)


@register_twin(*PYRAMID_TNT_CONFIGS, kwargs_from_torch=_pyramid_tnt_kwargs)
def create_pyramid_tnt(variant: str, img_size: int | tuple[int, int] | None = None, in_chans: int = 3,
                       num_classes: int = 1000, global_pool: str = 'avg') -> PyramidTNT:
    """The MindSpore twin of PyramidTNT ``variant`` (``img_size``: the size its position tables are stored for)."""
    config = dict(PYRAMID_TNT_CONFIGS[variant])
    if img_size is not None:
        config['img_size'] = img_size
    return PyramidTNT(in_chans=in_chans, num_classes=num_classes, global_pool=global_pool, name=variant, **config)
