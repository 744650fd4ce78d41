"""SLAB DeiT: ``deit_*_prepbn`` (softmax attention, class token) and ``slab_deit_*`` (SLA, average pooling).

Official layout (xinghaochen/SLAB, ``classification``), so the released checkpoints load directly.
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
from ...layers.prepbn import RepBN
from ...registry import register_model
from .common import (
    RELEASES, NormFactory, SimplifiedLinearAttention, SlabMixin, PatchEmbed, check_output_fmt, check_pool,
    filter_official_state_dict, fold_into_linears, init_weights, new_head, prepbn, slab_cfg, tokens_to_map,
)
from ...layers.onednn import use_onednn_linears

__all__ = ['SlabVisionTransformer']


class SoftmaxAttention(nn.Module):
    """Multi-head softmax self-attention with a fused ``qkv`` (ViT layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))

    def input_linears(self) -> tuple[str, ...]:
        return ('qkv',)


class ViTBlock(nn.Module):
    """Pre-norm transformer block; ``attn_type`` ``'S'`` softmax attention, ``'L'`` SLA."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, norm_layer: NormFactory,
                 attn_type: str, pos_size: tuple[int, int], proj_drop: float = 0., attn_drop: float = 0.,
                 drop_path: float = 0.):
        super().__init__()
        self.norm1 = norm_layer(dim)
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, qkv_bias, proj_drop=proj_drop)
        else:
            self.attn = SoftmaxAttention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def reparameterize(self) -> None:
        if fold_into_linears(self.norm1, self.attn, self.attn.input_linears()):
            self.norm1 = nn.Identity()
        if fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()
        use_onednn_linears(self)  # oneDNN matmuls, GELU fused into fc1, in CPU inference


class SlabVisionTransformer(SlabMixin, nn.Module):
    """DeiT with PRepBN norms and softmax (``attn_type='S'``, class token) or SLA (``'L'``, average pool).

    The official SLA model carries a ``cls_token`` it never uses (it never gets a gradient); it is left out
    here and the checkpoint filter drops it. Without a class token the features are a (B, C, H, W) map, as
    for the pyramid backbones; with one they are the tokens (B, 1 + H*W, C).
    """

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'token', embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
                 mlp_ratio: float = 4., qkv_bias: bool = True, attn_type: str = 'S',
                 norm_layer: NormFactory = RepBN, drop_rate: float = 0., proj_drop_rate: float = 0.,
                 attn_drop_rate: float = 0., drop_path_rate: float = 0.):
        super().__init__()
        img_size = square_size(img_size, type(self).__name__)
        if attn_type not in ('S', 'L'):
            raise ValueError(f"attn_type must be 'S' (softmax, class token) or 'L' (linear), got {attn_type!r}")
        self.use_cls_token = attn_type == 'S'
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, self._pools())
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.in_chans = in_chans
        self.patch_size = patch_size
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_prefix_tokens = 1 if self.use_cls_token else 0
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if self.use_cls_token else None
        num_pos = self.grid_size[0] * self.grid_size[1] + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, num_pos, embed_dim))
        self.pos_drop = nn.Dropout(proj_drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()
        self.blocks = nn.ModuleList([
            ViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer, attn_type, self.grid_size,
                     proj_drop_rate, attn_drop_rate, dpr[i]) for i in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f'blocks.{i}')
                             for i in range(depth)]
        trunc_normal_(self.pos_embed, std=.02)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=.02)
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {'pos_embed', 'cls_token'}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new classifier for ``num_classes`` (0: none); ``global_pool`` one of :meth:`_pools`."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = check_pool(global_pool, self._pools())
        self.head = new_head(self, self.embed_dim, num_classes)

    def _pools(self) -> tuple[str, ...]:
        """Pooling choices: the class token or the token average; a map (no class token) may stay unpooled."""
        return ('token', 'avg') if self.use_cls_token else ('avg', '')

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, 1, self.patch_size, type(self).__name__)
        x, hw = self.patch_embed(x)
        pos = self.pos_embed
        prefix, pos = pos[:, :self.num_prefix_tokens], pos[:, self.num_prefix_tokens:]
        pos = resize_token_grid(pos, self.grid_size, hw)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            pos = torch.cat([prefix, pos], dim=1)
        return self.pos_drop(x + pos), hw

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, hw = self._embed(x)
        for blk in self.blocks:
            x = checkpoint(blk, x, hw) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x, hw)
        return self._output(self.norm(x), hw)

    def _output(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return x if self.use_cls_token else tokens_to_map(x, hw)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if not self.use_cls_token:
            x = x.mean(dim=(2, 3)) if self.global_pool == 'avg' else x
        else:
            x = x[:, 0] if self.global_pool == 'token' else x[:, self.num_prefix_tokens:].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        """Block outputs (``indices``: how many of the last, or which) as maps or, with ``'NLC'``, tokens."""
        check_output_fmt(output_fmt, ('NCHW', 'NLC'))
        take, max_index = feature_take_indices(len(self.blocks), indices)
        x, hw = self._embed(x)
        blocks = self.blocks[:max_index + 1] if stop_early else self.blocks
        intermediates = []
        for i, blk in enumerate(blocks):
            x = blk(x, hw)
            if i in take:
                y = self.norm(x) if norm else x
                y = y[:, self.num_prefix_tokens:]
                if output_fmt == 'NCHW':
                    y = y.transpose(1, 2).reshape(y.shape[0], -1, hw[0], hw[1])
                intermediates.append(y)
        if intermediates_only:
            return intermediates
        return self._output(self.norm(x), hw), intermediates

    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[:max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take


def checkpoint_filter_fn(state_dict: dict[str, Any], model: SlabVisionTransformer) -> dict[str, torch.Tensor]:
    """Official SLAB DeiT checkpoint -> zoo model: the SLA models' unused ``cls_token`` dropped, the norm layout
    mapped, position tables stored for another input size resampled (the class-token position kept)."""
    return filter_official_state_dict(state_dict, model, unused=('cls_token',),
                                      num_prefix_tokens=model.num_prefix_tokens)


def _create_deit(variant: str, pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    return build_model_with_cfg(
        with_factory_kwargs(SlabVisionTransformer), variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=3, feature_cls='getter'), **kwargs)


default_cfgs = generate_default_cfgs({
    'deit_t_prepbn.in1k': slab_cfg(f'{RELEASES}/deit_tiny_prepbn.pth', pool_size=(14, 14)),
    'deit_s_prepbn.in1k': slab_cfg(f'{RELEASES}/deit_small_prepbn.pth', pool_size=(14, 14)),
    'slab_deit_t.in1k': slab_cfg(f'{RELEASES}/slab_deit_tiny.pth', pool_size=(14, 14)),
    'slab_deit_s.in1k': slab_cfg(f'{RELEASES}/slab_deit_small.pth', pool_size=(14, 14)),
})

# official norms: LayerNorm eps 1e-6, blends of 300k (softmax) and 60k (SLA) steps
_DEIT_PREPBN = prepbn(300000, 1e-6)
_DEIT_SLAB = prepbn(60000, 1e-6)


@register_model(contract_input_size=(3, 64, 64))
def deit_t_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """DeiT-T with RepBN in place of LayerNorm (the official code builds plain RepBN for this one)."""
    cfg = dict(embed_dim=192, depth=12, num_heads=3, attn_type='S', global_pool='token', norm_layer=RepBN)
    return _create_deit('deit_t_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def deit_s_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """DeiT-S with PRepBN."""
    cfg = dict(embed_dim=384, depth=12, num_heads=6, attn_type='S', global_pool='token', norm_layer=_DEIT_PREPBN)
    return _create_deit('deit_s_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def slab_deit_t(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """SLAB-DeiT-T: PRepBN and simplified linear attention."""
    cfg = dict(embed_dim=192, depth=12, num_heads=3, attn_type='L', global_pool='avg', norm_layer=_DEIT_SLAB)
    return _create_deit('slab_deit_t', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def slab_deit_s(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """SLAB-DeiT-S: PRepBN and simplified linear attention."""
    cfg = dict(embed_dim=384, depth=12, num_heads=6, attn_type='L', global_pool='avg', norm_layer=_DEIT_SLAB)
    return _create_deit('slab_deit_s', pretrained, **dict(cfg, **kwargs))
