"""SLAB PVT: ``pvt_*_prepbn`` (spatial-reduction softmax attention), ``slab_pvt_*`` (SLA) and PVT-v2
(``slab_pvt_v2_b*``: overlapping patch embeddings, convolutional MLP, a norm after each stage).

Official layout (``patch_embed1``, ``pos_embed1``, ``block1``, ``norm1``...), so the released checkpoints
load directly. The four stages are written out by name, the only way TorchScript reaches such attributes.
"""
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ...layers import check_image_input, square_size
from ...layers.factory_kwargs import with_factory_kwargs
from ...layers.linear_attention import resize_token_grid
from ...layers.prepbn import fold_affine_into_conv, fold_affine_into_linear, rep_bn_affine
from ...registry import register_model
from .common import (
    RELEASES, NormFactory, PatchEmbed, SimplifiedLinearAttention, StagedHeadMixin, check_attn_types,
    check_output_fmt, check_pool, filter_official_state_dict, fold_into_linears, init_weights, is_rep, prepbn,
    slab_cfg, tokens_to_map,
)
from ...layers.onednn import use_onednn_linears

__all__ = ['SlabPyramidTransformer']

_NUM_STAGES = 4


class ConvMlp(nn.Module):
    """PVT-v2 MLP: fc1, 3x3 depthwise convolution on the token grid, GELU, fc2."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Module()
        self.dwconv.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = self.fc1(x)
        B, N, C = x.shape
        x = self.dwconv.dwconv(x.transpose(1, 2).reshape(B, C, hw[0], hw[1])).flatten(2).transpose(1, 2).contiguous()
        return self.drop(self.fc2(self.drop(self.act(x))))


class SpatialReductionAttention(nn.Module):
    """PVT softmax attention; keys and values from a map reduced by a strided convolution and a norm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool, norm_layer: NormFactory,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = norm_layer(dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        h, d = self.num_heads, C // self.num_heads
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)
        if hasattr(self, 'sr'):  # sr_ratio > 1 (a static branch for TorchScript)
            x = self.sr(x.transpose(1, 2).reshape(B, C, hw[0], hw[1])).flatten(2).transpose(1, 2)
            x = self.norm(x)
        k, v = self.kv(x).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))

    def fuse_input_norm(self, norm: nn.Module) -> bool:
        if not is_rep(norm):
            return False
        scale, shift = rep_bn_affine(norm)
        self.q = fold_affine_into_linear(self.q, scale, shift)
        if self.sr_ratio > 1:
            self.sr = fold_affine_into_conv(self.sr, scale, shift)
        else:
            self.kv = fold_affine_into_linear(self.kv, scale, shift)
        return True

    def reparameterize(self) -> None:
        if self.sr_ratio > 1 and fold_into_linears(self.norm, self, ('kv',)):
            self.norm = nn.Identity()


class PyramidBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm_layer: NormFactory,
                 attn_type: str, sr_ratio: int, pos_size: tuple[int, int], conv_mlp: bool,
                 proj_drop: float = 0., attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        self.norm1 = norm_layer(dim)
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, qkv_bias, split_qkv=True,
                                                  proj_drop=proj_drop)
        else:
            self.attn = SpatialReductionAttention(dim, num_heads, sr_ratio, qkv_bias, norm_layer, attn_drop,
                                                  proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = ConvMlp(dim, hidden, proj_drop) if conv_mlp else Mlp(dim, hidden, drop=proj_drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        if hasattr(self.mlp, 'dwconv'):  # ConvMlp (a static branch for TorchScript)
            y = self.mlp(self.norm2(x), hw)
        else:
            y = self.mlp(self.norm2(x))
        return x + self.drop_path(y)

    def reparameterize(self) -> None:
        if isinstance(self.attn, SpatialReductionAttention):
            folded = self.attn.fuse_input_norm(self.norm1)
        else:
            folded = fold_into_linears(self.norm1, self.attn, self.attn.input_linears())
        if folded:
            self.norm1 = nn.Identity()
        if fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()
        if isinstance(self.attn, SpatialReductionAttention):
            self.attn.reparameterize()  # its own norm into kv first: then every linear is final
        use_onednn_linears(self)  # oneDNN matmuls, GELU fused into fc1, in CPU inference


class PyramidBlocks(nn.ModuleList):
    """The blocks of one stage (official key layout ``block<i>.<j>``), run in turn on ``(B, H*W, C)`` tokens."""

    def __init__(self, blocks: list[PyramidBlock]):
        super().__init__(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        for blk in self:
            x = checkpoint(blk, x, hw) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x, hw)
        return x


class SlabPyramidTransformer(StagedHeadMixin, nn.Module):
    """PVT (``overlap_embed=False``: patch embeddings, learned position tables, no stage norms) and PVT-v2
    (overlapping patch embeddings, convolutional MLP, a norm after each stage) with PRepBN and SLA / SRA.
    """

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224,
                 in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dims: tuple[int, ...] = (64, 128, 320, 512), num_heads: tuple[int, ...] = (1, 2, 5, 8),
                 mlp_ratios: tuple[float, ...] = (8, 8, 4, 4), depths: tuple[int, ...] = (2, 2, 2, 2),
                 sr_ratios: tuple[int, ...] = (8, 4, 2, 1), attn_types: str = 'LLLL', qkv_bias: bool = True,
                 overlap_embed: bool = False, norm_layer: NormFactory = prepbn(300000, 1e-6),
                 drop_rate: float = 0., proj_drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.):
        super().__init__()
        img_size = square_size(img_size, type(self).__name__)
        per_stage = dict(embed_dims=embed_dims, num_heads=num_heads, mlp_ratios=mlp_ratios, depths=depths,
                         sr_ratios=sr_ratios)
        wrong = [f'{k} has {len(v)}' for k, v in per_stage.items() if len(v) != _NUM_STAGES]
        if wrong:
            raise ValueError(f'PVT has {_NUM_STAGES} stages: give {_NUM_STAGES} values per stage setting '
                             f'({", ".join(wrong)})')
        check_attn_types(attn_types, _NUM_STAGES)
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
        self.in_chans = in_chans
        self.num_stages = _NUM_STAGES
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.overlap_embed = overlap_embed
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.feature_info = []
        self.grid_sizes = []  # learned position tables are laid out for these grids (img_size)
        cur, grid = 0, img_size // 4
        for i in range(self.num_stages):
            cin = in_chans if i == 0 else embed_dims[i - 1]
            if overlap_embed:
                embed = PatchEmbed(cin, embed_dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2, 3 if i == 0 else 1,
                                   norm_layer)
            else:
                embed = PatchEmbed(cin, embed_dims[i], 4 if i == 0 else 2, 4 if i == 0 else 2, 0, norm_layer)
            setattr(self, f'patch_embed{i + 1}', embed)
            if not overlap_embed:
                setattr(self, f'pos_embed{i + 1}', nn.Parameter(torch.zeros(1, grid * grid, embed_dims[i])))
                setattr(self, f'pos_drop{i + 1}', nn.Dropout(proj_drop_rate))
            setattr(self, f'block{i + 1}', PyramidBlocks([
                PyramidBlock(embed_dims[i], num_heads[i], mlp_ratios[i], qkv_bias, norm_layer, attn_types[i],
                             sr_ratios[i], (grid, grid), overlap_embed, proj_drop_rate, attn_drop_rate,
                             dpr[cur + j]) for j in range(depths[i])]))
            if overlap_embed:
                setattr(self, f'norm{i + 1}', norm_layer(embed_dims[i]))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=4 * 2 ** i, module=f'block{i + 1}'))
            self.grid_sizes.append((grid, grid))
            cur += depths[i]
            grid //= 2
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        if not overlap_embed:
            for i in range(self.num_stages):
                trunc_normal_(getattr(self, f'pos_embed{i + 1}'), std=.02)
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in self.modules():
            if isinstance(m, PyramidBlocks):
                m.grad_checkpointing = enable

    def _end_stage(self, x: torch.Tensor, hw: tuple[int, int], i: int, take: list[int],
                   outs: list[torch.Tensor]) -> torch.Tensor:
        """Tokens of stage ``i`` to the NCHW map the next stage takes, kept in ``outs`` if ``i`` is taken."""
        x = tokens_to_map(x, hw)
        if i in take:
            outs.append(x)
        return x

    def _run(self, x: torch.Tensor, take: list[int], last: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stages ``0..last`` (fewer after pruning) from the image; the maps of the stages in ``take``."""
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, 1, 32, type(self).__name__)
        outs: list[torch.Tensor] = []
        x, hw = self.patch_embed1(x)
        if hasattr(self, 'pos_embed1'):
            x = self.pos_drop1(x + resize_token_grid(self.pos_embed1, self.grid_sizes[0], hw))
        x = self.block1(x, hw)
        if hasattr(self, 'norm1'):
            x = self.norm1(x)
        x = self._end_stage(x, hw, 0, take, outs)
        if hasattr(self, 'block2') and last >= 1:
            x, hw = self.patch_embed2(x)
            if hasattr(self, 'pos_embed2'):
                x = self.pos_drop2(x + resize_token_grid(self.pos_embed2, self.grid_sizes[1], hw))
            x = self.block2(x, hw)
            if hasattr(self, 'norm2'):
                x = self.norm2(x)
            x = self._end_stage(x, hw, 1, take, outs)
        if hasattr(self, 'block3') and last >= 2:
            x, hw = self.patch_embed3(x)
            if hasattr(self, 'pos_embed3'):
                x = self.pos_drop3(x + resize_token_grid(self.pos_embed3, self.grid_sizes[2], hw))
            x = self.block3(x, hw)
            if hasattr(self, 'norm3'):
                x = self.norm3(x)
            x = self._end_stage(x, hw, 2, take, outs)
        if hasattr(self, 'block4') and last >= 3:
            x, hw = self.patch_embed4(x)
            if hasattr(self, 'pos_embed4'):
                x = self.pos_drop4(x + resize_token_grid(self.pos_embed4, self.grid_sizes[3], hw))
            x = self.block4(x, hw)
            if hasattr(self, 'norm4'):
                x = self.norm4(x)
            x = self._end_stage(x, hw, 3, take, outs)
        return x, outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        take: list[int] = []
        return self._run(x, take, self.num_stages - 1)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # defined here, not in the mixin: torch.fx wraps the leaf functions (resize_token_grid) it finds in the
        # globals of the modules whose forward it traces, and _run calls it from this module's globals
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """Stage outputs (``indices``: how many of the last, or which) as NCHW maps."""
        check_output_fmt(output_fmt, ('NCHW',))
        take, max_index = feature_take_indices(self.num_stages, indices)
        last = max_index if (stop_early or intermediates_only) else self.num_stages - 1
        x, intermediates = self._run(x, list(take), last)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = feature_take_indices(self.num_stages, indices)
        for i in range(max_index + 1, self.num_stages):
            for attr in ('patch_embed', 'pos_embed', 'pos_drop', 'block', 'norm'):
                if hasattr(self, f'{attr}{i + 1}'):
                    delattr(self, f'{attr}{i + 1}')
        self._keep_stages(max_index + 1)
        if prune_head:
            self.reset_classifier(0)
        return take


def checkpoint_filter_fn(state_dict: dict[str, Any], model: SlabPyramidTransformer) -> dict[str, torch.Tensor]:
    """Official SLAB PVT checkpoint -> zoo model: the norm layout mapped, position tables stored for another
    input size resampled."""
    return filter_official_state_dict(state_dict, model)


def _create_pvt(variant: str, pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return build_model_with_cfg(
        with_factory_kwargs(SlabPyramidTransformer), variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'), **kwargs)


_PVT_CFG = dict(first_conv='patch_embed1.proj', crop_pct=0.9)
default_cfgs = generate_default_cfgs({
    'pvt_t_prepbn.in1k': slab_cfg(f'{RELEASES}/pvt_tiny_prepbn.pth', **_PVT_CFG),
    'pvt_s_prepbn.in1k': slab_cfg(f'{RELEASES}/pvt_small_prepbn.pth', **_PVT_CFG),
    'pvt_m_prepbn.in1k': slab_cfg(f'{RELEASES}/pvt_medium_prepbn.pth', **_PVT_CFG),
    'slab_pvt_t.in1k': slab_cfg(f'{RELEASES}/slab_pvt_tiny.pth', **_PVT_CFG),
    'slab_pvt_s.untrained': slab_cfg(**_PVT_CFG),
    'slab_pvt_m.untrained': slab_cfg(**_PVT_CFG),
    **{f'slab_pvt_v2_b{i}.untrained': slab_cfg(**_PVT_CFG) for i in range(6)},
})

# official configurations: LayerNorm eps 1e-6, a blend of 300k steps
_PVT_NORM = prepbn(300000, 1e-6)
_PVT_V1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
               sr_ratios=(8, 4, 2, 1), norm_layer=_PVT_NORM)
_PVT_V2 = dict(num_heads=(1, 2, 5, 8), sr_ratios=(1, 1, 1, 1), attn_types='LLLL', overlap_embed=True,
               norm_layer=_PVT_NORM)


def _pvt(variant: str, depths: tuple[int, ...], attn_types: str, pretrained: bool,
         **kwargs: Any) -> SlabPyramidTransformer:
    return _create_pvt(variant, pretrained, **dict(_PVT_V1, depths=depths, attn_types=attn_types, **kwargs))


def _pvt_v2(variant: str, embed_dims: tuple[int, ...], depths: tuple[int, ...], mlp_ratios: tuple[int, ...],
            pretrained: bool, **kwargs: Any) -> SlabPyramidTransformer:
    return _create_pvt(variant, pretrained,
                       **dict(_PVT_V2, embed_dims=embed_dims, depths=depths, mlp_ratios=mlp_ratios, **kwargs))


@register_model
def pvt_t_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """PVT-Tiny with PRepBN (spatial-reduction softmax attention)."""
    return _pvt('pvt_t_prepbn', (2, 2, 2, 2), 'SSSS', pretrained, **kwargs)


@register_model
def pvt_s_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """PVT-Small with PRepBN."""
    return _pvt('pvt_s_prepbn', (3, 4, 6, 3), 'SSSS', pretrained, **kwargs)


@register_model
def pvt_m_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """PVT-Medium with PRepBN."""
    return _pvt('pvt_m_prepbn', (3, 4, 18, 3), 'SSSS', pretrained, **kwargs)


@register_model
def slab_pvt_t(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """SLAB-PVT-Tiny: PRepBN and SLA in every stage."""
    return _pvt('slab_pvt_t', (2, 2, 2, 2), 'LLLL', pretrained, **kwargs)


@register_model
def slab_pvt_s(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """SLAB-PVT-Small."""
    return _pvt('slab_pvt_s', (3, 4, 6, 3), 'LLLL', pretrained, **kwargs)


@register_model
def slab_pvt_m(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """SLAB-PVT-Medium."""
    return _pvt('slab_pvt_m', (3, 4, 18, 3), 'LLLL', pretrained, **kwargs)


@register_model
def slab_pvt_v2_b0(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    """SLAB-PVT-v2-b0 (defined by the official code, no released weights)."""
    return _pvt_v2('slab_pvt_v2_b0', (32, 64, 160, 256), (2, 2, 2, 2), (8, 8, 4, 4), pretrained, **kwargs)


@register_model
def slab_pvt_v2_b1(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return _pvt_v2('slab_pvt_v2_b1', (64, 128, 320, 512), (2, 2, 2, 2), (8, 8, 4, 4), pretrained, **kwargs)


@register_model
def slab_pvt_v2_b2(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return _pvt_v2('slab_pvt_v2_b2', (64, 128, 320, 512), (3, 4, 6, 3), (8, 8, 4, 4), pretrained, **kwargs)


@register_model
def slab_pvt_v2_b3(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return _pvt_v2('slab_pvt_v2_b3', (64, 128, 320, 512), (3, 4, 18, 3), (8, 8, 4, 4), pretrained, **kwargs)


@register_model
def slab_pvt_v2_b4(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return _pvt_v2('slab_pvt_v2_b4', (64, 128, 320, 512), (3, 8, 27, 3), (8, 8, 4, 4), pretrained, **kwargs)


@register_model
def slab_pvt_v2_b5(pretrained: bool = False, **kwargs: Any) -> SlabPyramidTransformer:
    return _pvt_v2('slab_pvt_v2_b5', (64, 128, 320, 512), (3, 6, 40, 3), (4, 4, 4, 4), pretrained, **kwargs)
