"""PyramidTNT: Transformer in Transformer with a pyramid.

Paper: `PyramidTNT: Improved Transformer-in-Transformer Baselines with Pyramid Architecture`
(arXiv:2201.00978). Official code: huawei-noah/Efficient-AI-Backbones, ``tnt_pytorch/pyramid_tnt.py``.

Two levels of tokens: an *outer* token ("sentence") per 8x8-pixel patch and 4x4 *inner* tokens
("words") inside every patch. A convolutional stem makes both; four stages of TNT blocks follow, and
between stages both levels are downsampled 2x (outer tokens by a strided conv over the patch grid, words
by gathering the 8x8 words of each 2x2 group of patches and a strided conv back to 4x4). The first block
of a stage (the first two in stages deeper than six blocks) also runs the inner transformer and adds the
words to their patch token; outer attention uses spatially reduced keys and values and a learned
bias between every query and key position.

Beyond the official code: any input size whose sides are multiples of 8 runs (the outer position
embedding and every stage's attention bias are resampled to the actual grids; the words are always a
4x4 grid, so their position embedding needs no resampling), and the four stages' outer tokens are
available as feature maps (``features_only=True`` / ``forward_intermediates``). Parameter names follow
the official state dict, so official checkpoints load directly.
"""
import math
from typing import List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.layers import (
    DropPath, Mlp, calculate_drop_path_rates, register_notrace_function, resample_abs_pos_embed, to_2tuple,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ..layers.attention_bias import resample_attention_bias
from ..layers.factory_kwargs import with_factory_kwargs
from ..layers.input_checks import check_image_input
from ..layers.onednn import use_onednn_linears
from ..registry import register_model
from ..state_dicts import unwrap_state_dict

__all__ = ['PyramidTNT']

Grid = Tuple[int, int]

#: Spatial reduction of the keys and values of the outer attention, per stage.
SR_RATIOS = (4, 2, 1, 1)
#: Words per patch side; the stem and every word aggregation produce a 4x4 grid of words.
WORDS_SIDE = 4
#: Pixels per outer token side at the first stage.
PATCH_SIZE = 8


def stage_grids(img_size: Grid) -> List[Grid]:
    """The outer token grid of each stage for an input of ``img_size`` (H, W)."""
    h, w = img_size[0] // PATCH_SIZE, img_size[1] // PATCH_SIZE
    grids = [(h, w)]
    for _ in range(len(SR_RATIOS) - 1):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        grids.append((h, w))
    return grids


class Attention(nn.Module):
    """Multi-head attention with optional spatial reduction of keys/values and an additive bias."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            qkv_bias: bool = False,
            attn_drop: float = 0.,
            proj_drop: float = 0.,
            sr_ratio: int = 1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim {dim} must be divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5

        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.pool = nn.AvgPool2d(sr_ratio, stride=sr_ratio)
            self.linear = nn.Linear(dim, dim)
            self.norm = nn.LayerNorm(dim)
        else:
            self.pool = self.linear = self.norm = None

    def forward(self, x: torch.Tensor, grid: Optional[Grid] = None,
                attn_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        if self.pool is not None and self.linear is not None and self.norm is not None:
            assert grid is not None, 'spatially reduced attention needs the token grid'
            x = self.pool(x.transpose(1, 2).reshape(B, C, grid[0], grid[1])).flatten(2).transpose(1, 2)
            x = self.norm(self.linear(x))
        k, v = self.kv(x).reshape(B, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

        # explicit attention: on CPU it beats the fused kernels for these short sequences (16 words) and
        # additive biases; the attention maps stay small thanks to the spatially reduced keys
        attn = (q * self.scale) @ k.transpose(-2, -1)
        if attn_bias is not None:
            attn += attn_bias  # in place: the product itself is not needed for the backward pass
        x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Block(nn.Module):
    """TNT block: an optional inner transformer over the words of each patch whose result is projected
    onto the patch token, then an outer transformer over the patch tokens."""

    def __init__(
            self,
            outer_dim: int,
            inner_dim: int,
            outer_heads: int,
            inner_heads: int,
            num_words: int,
            has_inner: bool = True,
            mlp_ratio: float = 4.,
            qkv_bias: bool = False,
            proj_drop: float = 0.,
            attn_drop: float = 0.,
            drop_path: float = 0.,
            sr_ratio: int = 1,
            act_layer: Type[nn.Module] = nn.GELU,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.has_inner = has_inner
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        if has_inner:
            # inner norms act on all words of a patch at once (num_words * inner_dim features)
            self.inner_norm1 = norm_layer(num_words * inner_dim)
            self.inner_attn = Attention(inner_dim, inner_heads, qkv_bias, attn_drop, proj_drop)
            self.inner_norm2 = norm_layer(num_words * inner_dim)
            self.inner_mlp = Mlp(inner_dim, int(inner_dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
            self.proj_norm1 = norm_layer(num_words * inner_dim)
            self.proj = nn.Linear(num_words * inner_dim, outer_dim, bias=False)
            self.proj_norm2 = norm_layer(outer_dim)
        self.outer_norm1 = norm_layer(outer_dim)
        self.outer_attn = Attention(outer_dim, outer_heads, qkv_bias, attn_drop, proj_drop, sr_ratio=sr_ratio)
        self.outer_norm2 = norm_layer(outer_dim)
        self.outer_mlp = Mlp(outer_dim, int(outer_dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)

    def forward(self, inner: torch.Tensor, outer: torch.Tensor, grid: Grid,
                attn_bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """inner: (B * N, num_words, inner_dim); outer: (B, N, outer_dim) on the ``grid`` of N patches."""
        if hasattr(self, 'inner_attn'):  # has_inner (hasattr: TorchScript resolves it when compiling)
            B, N, _ = outer.shape
            BN, M, c = inner.shape
            inner = inner + self.drop_path(self.inner_attn(self.inner_norm1(inner.reshape(B, N, M * c)).view(BN, M, c)))
            inner = inner + self.drop_path(self.inner_mlp(self.inner_norm2(inner.reshape(B, N, M * c)).view(BN, M, c)))
            outer = outer + self.proj_norm2(self.proj(self.proj_norm1(inner.reshape(B, N, M * c))))
        outer = outer + self.drop_path(self.outer_attn(self.outer_norm1(outer), grid, attn_bias))
        outer = outer + self.drop_path(self.outer_mlp(self.outer_norm2(outer)))
        return inner, outer


class SentenceAggregation(nn.Module):
    """Downsample the outer tokens 2x: norm, then a 3x3 stride-2 conv over the patch grid."""

    def __init__(self, dim_in: int, dim_out: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.norm = nn.LayerNorm(dim_in)
        self.conv = nn.Sequential(nn.Conv2d(dim_in, dim_out, 2 * stride - 1, stride=stride, padding=stride - 1))

    def forward(self, x: torch.Tensor, grid: Grid) -> Tuple[torch.Tensor, Grid]:
        B, N, C = x.shape
        x = self.norm(x).transpose(1, 2).reshape(B, C, grid[0], grid[1])
        x = self.conv(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


@register_notrace_function  # padding depends on the grid: a leaf for torch.fx
def pad_to_even_grid(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad the (B, H, W, ...) word grid of ``x`` to even H and W."""
    H, W = x.shape[1], x.shape[2]
    if H % 2 or W % 2:
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, W % 2, 0, H % 2))
    return x


class WordAggregation(nn.Module):
    """Downsample the words with the patches: the 2x2 patches that merge bring their 4x4 words together
    as an 8x8 word image (odd grids are zero-padded), which a 3x3 stride-2 conv takes back to 4x4."""

    def __init__(self, dim_in: int, dim_out: int, stride: int = 2):
        super().__init__()
        self.stride = stride
        self.words_side = WORDS_SIDE
        self.norm = nn.LayerNorm(dim_in)
        self.conv = nn.Sequential(nn.Conv2d(dim_in, dim_out, 2 * stride - 1, stride=stride, padding=stride - 1))

    def forward(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        H, W = grid[0] + grid[0] % 2, grid[1] + grid[1] % 2
        s = self.words_side
        x = pad_to_even_grid(self.norm(x).reshape(-1, grid[0], grid[1], s, s, x.shape[-1]))
        C = x.shape[-1]
        # (B, H/2, dh, W/2, dw, s, s, C) -> (B * H/2 * W/2, C, dh * s, dw * s)
        x = x.reshape(-1, H // 2, 2, W // 2, 2, s, s, C).permute(0, 1, 3, 7, 2, 5, 4, 6)
        x = self.conv(x.reshape(-1, C, 2 * s, 2 * s))
        return x.flatten(2).transpose(1, 2)


class Stem(nn.Module):
    """Convolutional stem: a shared stride-2 conv, then a stride-1 branch cut into 4x4 words per 8x8-pixel
    patch and a stride-4 branch giving one outer token per patch."""

    def __init__(self, in_chans: int = 3, outer_dim: int = 768, inner_dim: int = 24):
        super().__init__()
        self.inner_dim = inner_dim
        self.patch_size = PATCH_SIZE
        self.words_side = WORDS_SIDE
        self.common_conv = nn.Sequential(
            nn.Conv2d(in_chans, inner_dim * 2, 3, stride=2, padding=1),
            nn.BatchNorm2d(inner_dim * 2),
            nn.ReLU(inplace=True),
        )
        self.inner_convs = nn.Sequential(
            nn.Conv2d(inner_dim * 2, inner_dim, 3, stride=1, padding=1),
            nn.BatchNorm2d(inner_dim),
            nn.ReLU(inplace=True),
        )
        self.outer_convs = nn.Sequential(
            nn.Conv2d(inner_dim * 2, inner_dim * 4, 3, stride=2, padding=1),
            nn.BatchNorm2d(inner_dim * 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner_dim * 4, inner_dim * 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(inner_dim * 8),
            nn.ReLU(inplace=True),
            nn.Conv2d(inner_dim * 8, outer_dim, 3, stride=1, padding=1),
            nn.BatchNorm2d(outer_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Grid]:
        B = x.shape[0]
        H, W = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        s = self.words_side
        x = self.common_conv(x)
        inner = self.inner_convs(x)  # (B, c, H * s, W * s) -> (B * H * W, s * s, c)
        inner = inner.reshape(B, self.inner_dim, H, s, W, s).permute(0, 2, 4, 3, 5, 1)
        inner = inner.reshape(B * H * W, s * s, self.inner_dim)
        outer = self.outer_convs(x).flatten(2).transpose(1, 2)
        return inner, outer, (H, W)


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def stage_attention_bias(table: torch.Tensor, h: int, w: int, new_h: int, new_w: int, sr_ratio: int) -> torch.Tensor:
    """A stage's (1, heads, h*w, (h//sr)*(w//sr)) bias table for a ``new_h`` x ``new_w`` query grid."""
    return resample_attention_bias(
        table, [h, w], [h // sr_ratio, w // sr_ratio], [new_h, new_w], [new_h // sr_ratio, new_w // sr_ratio])


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def resampled_outer_pos(pos: torch.Tensor, h: int, w: int, new_h: int, new_w: int) -> torch.Tensor:
    """The (1, h*w, C) outer position table resampled to a ``new_h`` x ``new_w`` grid."""
    return resample_abs_pos_embed(pos, new_size=[new_h, new_w], old_size=[h, w], num_prefix_tokens=0)


class Stage(nn.Module):
    """TNT blocks sharing one learned outer attention bias (``relative_pos``) between every query and
    every (spatially reduced) key position, stored for ``grid`` and resampled for other grids."""

    def __init__(
            self,
            depth: int,
            outer_dim: int,
            inner_dim: int,
            outer_heads: int,
            inner_heads: int,
            grid: Grid,
            num_words: int,
            sr_ratio: int = 1,
            drop_path: Union[float, Sequence[float]] = 0.,
            **block_kwargs,
    ):
        super().__init__()
        self.grid = tuple(grid)
        self.sr_ratio = sr_ratio
        key_grid = self.key_grid(self.grid)
        drop_path = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        # the inner transformer runs in the first block, and also in the second one of deep stages
        num_inner = 2 if depth > 6 else 1
        self.blocks = nn.ModuleList([
            Block(outer_dim, inner_dim, outer_heads, inner_heads, num_words, has_inner=j < num_inner,
                  drop_path=drop_path[j], sr_ratio=sr_ratio, **block_kwargs)
            for j in range(depth)])
        self.relative_pos = nn.Parameter(torch.randn(
            1, outer_heads, grid[0] * grid[1], key_grid[0] * key_grid[1]))
        self.grad_checkpointing = False

    def key_grid(self, grid: Grid) -> Grid:
        return grid[0] // self.sr_ratio, grid[1] // self.sr_ratio

    def attn_bias(self, grid: Grid) -> torch.Tensor:
        """The outer attention bias for a query grid of ``grid`` (resampled when it is not the stored one)."""
        return stage_attention_bias(self.relative_pos, self.grid[0], self.grid[1], grid[0], grid[1], self.sr_ratio)

    def forward(self, inner: torch.Tensor, outer: torch.Tensor, grid: Grid) -> Tuple[torch.Tensor, torch.Tensor]:
        bias = self.attn_bias(grid)
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                inner, outer = checkpoint(blk, inner, outer, grid, bias)
            else:
                inner, outer = blk(inner, outer, grid, bias)
        return inner, outer


class PyramidTNT(nn.Module):
    """PyramidTNT (arXiv:2201.00978): a four-stage Transformer in Transformer.

    ``img_size`` only sets the grid at which the position tables are stored (the training size of the
    official weights); any input whose sides are multiples of 8 (at least 32) runs.
    """

    def __init__(
            self,
            depths: Sequence[int] = (2, 8, 4, 2),
            outer_dims: Sequence[int] = (128, 256, 512, 512),
            inner_dims: Sequence[int] = (8, 16, 32, 32),
            outer_heads: Sequence[int] = (4, 8, 16, 16),
            inner_heads: Sequence[int] = (2, 4, 8, 8),
            img_size: Union[int, Grid] = 256,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            mlp_ratio: float = 4.,
            qkv_bias: bool = False,
            drop_rate: float = 0.,
            pos_drop_rate: float = 0.,
            proj_drop_rate: float = 0.,
            attn_drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            norm_layer: Type[nn.Module] = nn.LayerNorm,
            act_layer: Type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        if global_pool not in ('', 'avg'):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = outer_dims[-1]
        self.img_size = to_2tuple(img_size)
        self.grid = stage_grids(self.img_size)[0]
        num_words = WORDS_SIDE * WORDS_SIDE

        self.patch_embed = Stem(in_chans=in_chans, outer_dim=outer_dims[0], inner_dim=inner_dims[0])
        self.outer_pos = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], outer_dims[0]))
        self.inner_pos = nn.Parameter(torch.zeros(1, num_words, inner_dims[0]))
        self.pos_drop = nn.Dropout(p=pos_drop_rate)

        dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))
        self.word_merges = nn.ModuleList()
        self.sentence_merges = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.feature_info = []
        for i, (grid, sr_ratio) in enumerate(zip(stage_grids(self.img_size), SR_RATIOS)):
            if i > 0:
                self.word_merges.append(WordAggregation(inner_dims[i - 1], inner_dims[i]))
                self.sentence_merges.append(SentenceAggregation(outer_dims[i - 1], outer_dims[i]))
            first = sum(depths[:i])
            self.stages.append(Stage(
                depths[i], outer_dims[i], inner_dims[i], outer_heads[i], inner_heads[i], grid, num_words,
                sr_ratio=sr_ratio, drop_path=dpr[first:first + depths[i]], mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias, proj_drop=proj_drop_rate, attn_drop=attn_drop_rate,
                act_layer=act_layer, norm_layer=norm_layer))
            self.feature_info.append(dict(num_chs=outer_dims[i], reduction=PATCH_SIZE * 2 ** i, module=f'stages.{i}'))

        self.norm = norm_layer(outer_dims[-1])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

        trunc_normal_(self.outer_pos, std=.02)
        trunc_normal_(self.inner_pos, std=.02)
        self.apply(self._init_weights)
        # linear layers (about 60% of the time) and the MLPs' GELU through oneDNN in inference calls: same
        # parameters and module tree, see zoo.layers.onednn
        use_onednn_linears(self)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'outer_pos', 'inner_pos'}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('', 'avg'):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        weight = self.outer_pos
        head = nn.Linear(self.num_features, num_classes, device=weight.device, dtype=weight.dtype) \
            if num_classes > 0 else nn.Identity()
        self.head = head.train(self.training)

    @torch.jit.unused
    def _check(self, x: torch.Tensor) -> None:
        check_image_input(x, self.in_chans, PATCH_SIZE, 4 * PATCH_SIZE, name=type(self).__name__)

    def _embed(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Grid]:
        if not torch.jit.is_scripting():
            self._check(x)
        inner, outer, grid = self.patch_embed(x)
        pos = resampled_outer_pos(self.outer_pos, self.grid[0], self.grid[1], grid[0], grid[1])
        return inner + self.inner_pos, outer + self.pos_drop(pos), grid

    def _stage(self, i: int, inner: torch.Tensor, outer: torch.Tensor,
               grid: Grid) -> Tuple[torch.Tensor, torch.Tensor, Grid]:
        if i > 0:
            inner = self.word_merges[i - 1](inner, grid)
            outer, grid = self.sentence_merges[i - 1](outer, grid)
        inner, outer = self.stages[i](inner, outer, grid)
        return inner, outer, grid

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Outer tokens after each selected stage as (B, C, H, W) maps.

        Args:
            x: input images.
            indices: take the last n stages if an int, those listed if a sequence, all if None.
            norm: apply the final norm to the last stage's map.
            stop_early: stop after the last selected stage.
            output_fmt: 'NCHW' only.
            intermediates_only: return only the maps.
        Returns:
            The maps, or (final normalized outer tokens as a (B, C, H, W) map, maps).
        """
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1
        num_stages = max_index + 1 if stop_early else len(self.stages)

        intermediates = []
        inner, outer, grid = self._embed(x)
        for i in range(num_stages):
            inner, outer, grid = self._stage(i, inner, outer, grid)
            if i in take_indices:
                y = self.norm(outer) if norm and i == last_idx else outer
                intermediates.append(_tokens_to_map(y, grid))
        if intermediates_only:
            return intermediates
        if num_stages - 1 == last_idx:
            outer = self.norm(outer)
        return _tokens_to_map(outer, grid), intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Drop the stages after the last selected one (and the norm / head as timm does)."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        if prune_norm or prune_end:
            self.norm = nn.Identity()  # sized for the last stage only
        self.stages = self.stages[:max_index + 1]
        self.word_merges = self.word_merges[:max_index]
        self.sentence_merges = self.sentence_merges[:max_index]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized outer tokens of the last stage as a (B, C, H, W) map."""
        inner, outer, grid = self._embed(x)
        # every stage but the last is followed by its merges (zip stops there; TorchScript-friendly)
        for stage, word_merge, sentence_merge in zip(self.stages, self.word_merges, self.sentence_merges):
            inner, outer = stage(inner, outer, grid)
            inner = word_merge(inner, grid)
            outer, grid = sentence_merge(outer, grid)
        inner, outer = self.stages[-1](inner, outer, grid)
        return _tokens_to_map(self.norm(outer), grid)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _tokens_to_map(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def checkpoint_filter_fn(state_dict: dict, model: PyramidTNT) -> dict:
    """Official checkpoints load as they are; position tables stored for another input size than the
    model's ``img_size`` are resampled to it."""
    state_dict = unwrap_state_dict(state_dict)
    pos = state_dict.get('outer_pos')
    if pos is None or pos.shape == model.outer_pos.shape:
        return state_dict
    old_grids = stage_grids(_stored_img_size(pos.shape[1], model.grid))
    out = {}
    for k, v in state_dict.items():
        if k == 'outer_pos':
            v = resample_abs_pos_embed(v, new_size=model.grid, old_size=old_grids[0], num_prefix_tokens=0)
        elif k.startswith('stages.') and k.endswith('.relative_pos'):
            i = int(k.split('.')[1])
            stage = model.stages[i]
            v = resample_attention_bias(
                v, old_grids[i], stage.key_grid(old_grids[i]), stage.grid, stage.key_grid(stage.grid))
        out[k] = v
    return out


def _stored_img_size(num_patches: int, grid: Grid) -> Grid:
    """The input size an ``outer_pos`` of ``num_patches`` positions was made for: square (as all official
    models are) when ``num_patches`` is a square, else of the aspect ratio of ``grid``."""
    h = math.isqrt(num_patches)
    if h * h != num_patches:
        h = max(1, round(math.sqrt(num_patches * grid[0] / grid[1])))
    w = num_patches // h
    if h * w != num_patches:
        raise ValueError(f'cannot infer the grid of an outer_pos with {num_patches} positions')
    return h * PATCH_SIZE, w * PATCH_SIZE


def _create_pyramid_tnt(variant: str, pretrained: bool = False, **kwargs) -> PyramidTNT:
    if pretrained and not (kwargs.get('pretrained_cfg_overlay') or {}).get('file') \
            and not kwargs.get('pretrained_cfg'):
        url, password = BAIDU_SHARES[variant]
        raise RuntimeError(
            f'{variant}: the official weights are published on BaiduDisk only ({url}, password {password}); '
            f'download the file and load it with pretrained_cfg_overlay=dict(file=PATH)')
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_cfg(
        with_factory_kwargs(PyramidTNT), variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs)


def _cfg(variant: str, **kwargs) -> dict:
    url, password = BAIDU_SHARES[variant]
    return {
        'url': '',  # a BaiduDisk share is a web page, not a file: nothing a program can download
        'notes': (f'official weights: BaiduDisk share {url}, password {password} (download by hand, then '
                  f'pretrained_cfg_overlay=dict(file=PATH))',),
        'num_classes': 1000, 'input_size': (3, 256, 256), 'pool_size': (4, 4),
        'crop_pct': .9, 'interpolation': 'bicubic',
        'mean': IMAGENET_INCEPTION_MEAN, 'std': IMAGENET_INCEPTION_STD,
        'first_conv': 'patch_embed.common_conv.0', 'classifier': 'head',
        'paper_ids': 'arXiv:2201.00978',
        'paper_name': 'PyramidTNT: Improved Transformer-in-Transformer Baselines with Pyramid Architecture',
        'origin_url': 'https://github.com/huawei-noah/Efficient-AI-Backbones/tree/master/tnt_pytorch',
        'license': 'apache-2.0',
        **kwargs,
    }


# The official weights (raw state dicts in this model's layout) are published on BaiduDisk only
# (tnt_pytorch/readme.md), which cannot be downloaded programmatically: the pretrained_cfgs carry no url (so
# timm.list_pretrained() does not offer them) and zoo.model_info(name).official_url keeps the share for people
# to follow; download a file by hand and load it with pretrained_cfg_overlay=dict(file=PATH).
BAIDU_SHARES = {
    'ptnt_ti_patch16_192': ('https://pan.baidu.com/s/1xm3DSGcAJbvFQm4jmDAlnQ', '0r5t'),
    'ptnt_s_patch16_256': ('https://pan.baidu.com/s/1xha8x3DTlPq9-KeC6EPPow', 'v5w5'),
    'ptnt_m_patch16_256': ('https://pan.baidu.com/s/1B9zkWkrUAETuiyr08ClY-w', 'jqm3'),
    'ptnt_b_patch16_256': ('https://pan.baidu.com/s/1tT0mxRrZQx6facYsdPBt0g', 'ns4t'),
}
default_cfgs = generate_default_cfgs({
    'ptnt_ti_patch16_192.in1k': _cfg('ptnt_ti_patch16_192', input_size=(3, 192, 192), pool_size=(3, 3)),
    'ptnt_s_patch16_256.in1k': _cfg('ptnt_s_patch16_256'),
    'ptnt_m_patch16_256.in1k': _cfg('ptnt_m_patch16_256'),
    'ptnt_b_patch16_256.in1k': _cfg('ptnt_b_patch16_256'),
})


def _pyramid(outer_dim: int, inner_dim: int, outer_head: int, inner_head: int, depths: Sequence[int]) -> dict:
    """Variant config: widths and heads double at stage 2 and again at stage 3, which stage 4 keeps."""
    scale = (1, 2, 4, 4)
    return dict(
        depths=tuple(depths),
        outer_dims=tuple(outer_dim * s for s in scale), inner_dims=tuple(inner_dim * s for s in scale),
        outer_heads=tuple(outer_head * s for s in scale), inner_heads=tuple(inner_head * s for s in scale))


_PTNT = dict(contract_input_size=(3, 64, 64), input_divisor=PATCH_SIZE)


@register_model(**_PTNT, official_url=BAIDU_SHARES['ptnt_ti_patch16_192'][0])
def ptnt_ti_patch16_192(pretrained: bool = False, **kwargs) -> PyramidTNT:
    """PyramidTNT-Ti: 10.6M params, 0.6G MACs at 192."""
    cfg = dict(_pyramid(80, 5, 2, 1, (2, 6, 3, 2)), img_size=192)
    return _create_pyramid_tnt('ptnt_ti_patch16_192', pretrained, **dict(cfg, **kwargs))


@register_model(**_PTNT, official_url=BAIDU_SHARES['ptnt_s_patch16_256'][0])
def ptnt_s_patch16_256(pretrained: bool = False, **kwargs) -> PyramidTNT:
    """PyramidTNT-S: 32.0M params, 3.3G MACs at 256."""
    cfg = dict(_pyramid(128, 8, 4, 2, (2, 8, 4, 2)), img_size=256)
    return _create_pyramid_tnt('ptnt_s_patch16_256', pretrained, **dict(cfg, **kwargs))


@register_model(**_PTNT, official_url=BAIDU_SHARES['ptnt_m_patch16_256'][0])
def ptnt_m_patch16_256(pretrained: bool = False, **kwargs) -> PyramidTNT:
    """PyramidTNT-M: 85.0M params, 8.2G MACs at 256."""
    cfg = dict(_pyramid(192, 12, 4, 2, (2, 8, 6, 2)), img_size=256)
    return _create_pyramid_tnt('ptnt_m_patch16_256', pretrained, **dict(cfg, **kwargs))


@register_model(**_PTNT, official_url=BAIDU_SHARES['ptnt_b_patch16_256'][0])
def ptnt_b_patch16_256(pretrained: bool = False, **kwargs) -> PyramidTNT:
    """PyramidTNT-B: 157.0M params, 16.0G MACs at 256."""
    cfg = dict(_pyramid(256, 16, 4, 2, (2, 10, 6, 2)), img_size=256)
    return _create_pyramid_tnt('ptnt_b_patch16_256', pretrained, **dict(cfg, **kwargs))
