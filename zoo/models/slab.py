"""SLAB: efficient transformers with simplified linear attention and progressive re-parameterised BatchNorm.

Guo, Chen, Tang, Wang, ICML 2024 (https://arxiv.org/abs/2405.11582), official code xinghaochen/SLAB.

Four backbones, in the official state-dict layouts so the released checkpoints load directly:

* DeiT (``deit_*_prepbn``: softmax attention, class token; ``slab_deit_*``: SLA, average pooling),
* PVT (``pvt_*_prepbn``: spatial-reduction attention; ``slab_pvt_*``: SLA) and PVT-v2 (``slab_pvt_v2_b*``),
* Swin (``swin_t_prepbn``: windows of 7; ``slab_swin_*``: global SLA in stages 1-2, windows in 3-4),
* CSWin (``slab_cswin_*``: global SLA in stages 1-2, cross-shaped windows in 3-4).

Norms are PRepBN (:mod:`zoo.layers.prepbn`), or plain RepBN where the official code builds that
(``deit_t_prepbn``, ``swin_t_prepbn``). The training loop drives the LayerNorm-to-RepBN blend with
``model.set_norm_progress(step)``; eval mode always uses RepBN. ``model.fuse()`` gives the deploy form:
every RepBN folded into the neighbouring linear layer or convolution (a per-channel affine where nothing
can absorb it), same outputs.

Other input sizes than the 224 the variants are built for: learned position tables are resized
(bilinear, as the official PVT does), SLA stages attend globally over the whole feature map (at 224 the
official windows of 56 / stripes of 56 and 28 cover it exactly), and window / stripe attention pads the
map and masks the padding out of the keys.
"""
import math
import re
from functools import partial
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, register_notrace_module, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint, reparameterize_model

from ..layers import check_image_input
from ..layers.factory_kwargs import with_factory_kwargs
from ..layers.linear_attention import resize_token_grid, simplified_linear_attention
from ..layers.prepbn import (
    PRepBN, RepBN, convert_norm_layout, fold_affine_after_conv, fold_affine_into_conv,
    fold_affine_into_linear, rep_bn_affine, set_norm_progress,
)
from ..registry import register_model

__all__ = ['SlabVisionTransformer', 'SlabPyramidTransformer', 'SlabSwinTransformer', 'SlabCSWinTransformer']

NormFactory = Callable[[int], nn.Module]
_PAD_MASK = -100.0  # added to attention logits of masked keys (as Swin's shift mask)


def prepbn(blend_steps: int, eps: float = 1e-5) -> NormFactory:
    """Factory of the official progressive norm (LayerNorm -> RepBN over ``blend_steps``)."""
    return partial(PRepBN, blend_steps=blend_steps, eps=eps)


# ---------------------------------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------------------------------

class SlabMixin:
    """Norm schedule and deploy form, shared by the four backbones."""

    def set_norm_progress(self, step: int) -> None:
        """Set the LayerNorm-to-RepBN blend of every PRepBN to global training step ``step``."""
        set_norm_progress(self, step)

    def on_train_step(self, step: int, total_steps: int) -> None:
        """Per-step hook of the training engine (``zoo.train.hooks``): the blend follows the global step."""
        self.set_norm_progress(step)

    @torch.no_grad()
    def fuse(self) -> 'SlabMixin':
        """Deploy form, in place (eval mode): every RepBN folded into its neighbouring linear layer or
        convolution, the rest turned into per-channel affines; returns the model. The blocks implement
        ``reparameterize()``, so ``timm.models.reparameterize_model`` gives the same result."""
        reparameterize_model(self.eval(), inplace=True)
        return self

    def reparameterize(self) -> 'SlabMixin':
        return self.fuse()


class StagedHeadMixin(SlabMixin):
    """Classifier over the average of the last NCHW feature map, shared by the hierarchical backbones."""

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = _check_pool(global_pool, ('avg', ''))
        self.head = _new_head(self, self.num_features, num_classes)

    def _keep_stages(self, n: int) -> None:
        """After pruning: the first ``n`` stages remain, and the head pools the last of them."""
        self.num_stages = n
        self.feature_info = self.feature_info[:n]
        self.num_features = self.head_hidden_size = self.feature_info[-1]['num_chs']

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class NormedStagesMixin(StagedHeadMixin):
    """Stage loop ``_run`` (NHWC inside) with a final norm: Swin and CSWin."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self._run(x, set(), self.num_stages - 1, False)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        assert output_fmt == 'NCHW'
        take, max_index = feature_take_indices(self.num_stages, indices)
        last = max_index if (stop_early or intermediates_only) else self.num_stages - 1
        x, outs = self._run(x, set(take), last, norm)
        if intermediates_only:
            return outs
        return self.norm(x).permute(0, 3, 1, 2), outs


def _check_pool(global_pool: str, allowed: tuple[str, ...]) -> str:
    if global_pool not in allowed:
        raise ValueError(f'global_pool must be one of {allowed}, got {global_pool!r}')
    return global_pool


def _new_head(model: nn.Module, num_features: int, num_classes: int) -> nn.Module:
    """A fresh classifier (Identity for 0 classes) on the model's device and dtype, in its train / eval mode."""
    ref = next(model.parameters())
    head = nn.Linear(num_features, num_classes, device=ref.device, dtype=ref.dtype) if num_classes > 0 \
        else nn.Identity()
    return head.train(model.training)


def _tokens_to_map(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(B, H*W, C) tokens -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], hw[0], hw[1])


def _is_rep(norm: nn.Module) -> bool:
    return isinstance(norm, (RepBN, PRepBN))


def _fold_into_linears(norm: nn.Module, owner: nn.Module, names: tuple[str, ...]) -> bool:
    """Fold ``norm`` into the input side of the linears ``owner.<name>``; True if folded."""
    if not _is_rep(norm):
        return False
    scale, shift = rep_bn_affine(norm)
    for name in names:
        setattr(owner, name, fold_affine_into_linear(getattr(owner, name), scale, shift))
    return True


class PatchEmbed(nn.Module):
    """Convolutional patch embedding to tokens ``(B, H*W, C)``, with an optional norm."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, stride: int, padding: int = 0,
                 norm_layer: Optional[NormFactory] = None):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size, stride, padding)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hw = (x.shape[2], x.shape[3])
        # contiguous: a transposed view would make every later residual add and linear strided (slower)
        return self.norm(x.flatten(2).transpose(1, 2).contiguous()), hw

    def reparameterize(self) -> None:
        if _is_rep(self.norm):
            self.proj = fold_affine_after_conv(self.proj, *rep_bn_affine(self.norm))
            self.norm = nn.Identity()


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


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class SimplifiedLinearAttention(nn.Module):
    """SLA over a ``(B, H*W, C)`` token map: ReLU linear attention + DWC on values + learned key positions.

    ``split_qkv`` selects the official PVT layout (``q`` and ``kv`` linears) over the fused ``qkv``.
    ``pos_size`` is the grid of the learned positional encoding, resized to the actual grid when they differ.
    """

    def __init__(self, dim: int, num_heads: int, pos_size: tuple[int, int], qkv_bias: bool = True,
                 kernel_size: int = 5, split_qkv: bool = False, proj_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.pos_size = tuple(pos_size)
        head_dim = dim // num_heads
        if split_qkv:
            self.q = nn.Linear(dim, dim, bias=qkv_bias)
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.split_qkv = split_qkv
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.pos_size[0] * self.pos_size[1], dim))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        if self.split_qkv:
            q = self.q(x)
            k, v = self.kv(x).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        k = k + resize_token_grid(self.positional_encoding, self.pos_size, hw)
        x = simplified_linear_attention(q, k, v, self.num_heads, hw, self.dwc)
        return self.proj_drop(self.proj(x))

    def input_linears(self) -> tuple[str, ...]:
        return ('q', 'kv') if self.split_qkv else ('qkv',)


# ---------------------------------------------------------------------------------------------------
# DeiT
# ---------------------------------------------------------------------------------------------------

class SoftmaxAttention(nn.Module):
    """Multi-head softmax self-attention with a fused ``qkv`` (ViT layout)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, hw: Optional[tuple[int, int]] = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))

    def input_linears(self) -> tuple[str, ...]:
        return ('qkv',)


class ViTBlock(nn.Module):
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
        if _fold_into_linears(self.norm1, self.attn, self.attn.input_linears()):
            self.norm1 = nn.Identity()
        if _fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()


class SlabVisionTransformer(SlabMixin, nn.Module):
    """DeiT with PRepBN norms and softmax (``attn_type='S'``, class token) or SLA (``'L'``, average pool).

    The official SLA model carries a ``cls_token`` it never uses (it never gets a gradient); it is left out
    here and the checkpoint filter drops it. Without a class token the features are a (B, C, H, W) map, as
    for the pyramid backbones; with one they are the tokens (B, 1 + H*W, C).
    """

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'token', embed_dim: int = 192, depth: int = 12, num_heads: int = 3,
                 mlp_ratio: float = 4., qkv_bias: bool = True, attn_type: str = 'S',
                 norm_layer: NormFactory = RepBN, drop_rate: float = 0., proj_drop_rate: float = 0.,
                 attn_drop_rate: float = 0., drop_path_rate: float = 0.):
        super().__init__()
        self.use_cls_token = attn_type == 'S'
        self.num_classes = num_classes
        self.global_pool = _check_pool(global_pool, self._pools())
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
        self.blocks = nn.Sequential(*[
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
        self.apply(_init_weights)

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
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = _check_pool(global_pool, self._pools())
        self.head = _new_head(self, self.embed_dim, num_classes)

    def _pools(self) -> tuple[str, ...]:
        """Pooling choices: the class token or the token average; a map (no class token) may stay unpooled."""
        return ('token', 'avg') if self.use_cls_token else ('avg', '')

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
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
        return x if self.use_cls_token else _tokens_to_map(x, hw)

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
        assert output_fmt in ('NCHW', 'NLC')
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



# ---------------------------------------------------------------------------------------------------
# PVT and PVT-v2
# ---------------------------------------------------------------------------------------------------

class SpatialReductionAttention(nn.Module):
    """PVT softmax attention; keys and values from a map reduced by a strided convolution and a norm."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool, norm_layer: NormFactory,
                 attn_drop: float = 0., proj_drop: float = 0.):
        super().__init__()
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
        if self.sr_ratio > 1:
            x = self.sr(x.transpose(1, 2).reshape(B, C, hw[0], hw[1])).flatten(2).transpose(1, 2)
            x = self.norm(x)
        k, v = self.kv(x).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))

    def fuse_input_norm(self, norm: nn.Module) -> bool:
        if not _is_rep(norm):
            return False
        scale, shift = rep_bn_affine(norm)
        self.q = fold_affine_into_linear(self.q, scale, shift)
        if self.sr_ratio > 1:
            self.sr = fold_affine_into_conv(self.sr, scale, shift)
        else:
            self.kv = fold_affine_into_linear(self.kv, scale, shift)
        return True

    def reparameterize(self) -> None:
        if self.sr_ratio > 1 and _fold_into_linears(self.norm, self, ('kv',)):
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
        self.conv_mlp = conv_mlp
        self.mlp = ConvMlp(dim, hidden, proj_drop) if conv_mlp else Mlp(dim, hidden, drop=proj_drop)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), hw))
        y = self.norm2(x)
        return x + self.drop_path(self.mlp(y, hw) if self.conv_mlp else self.mlp(y))

    def reparameterize(self) -> None:
        if isinstance(self.attn, SpatialReductionAttention):
            folded = self.attn.fuse_input_norm(self.norm1)
        else:
            folded = _fold_into_linears(self.norm1, self.attn, self.attn.input_linears())
        if folded:
            self.norm1 = nn.Identity()
        if _fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()


class SlabPyramidTransformer(StagedHeadMixin, nn.Module):
    """PVT (``overlap_embed=False``: patch embeddings, learned position tables, no stage norms) and PVT-v2
    (overlapping patch embeddings, convolutional MLP, a norm after each stage) with PRepBN and SLA / SRA.
    """

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dims: tuple[int, ...] = (64, 128, 320, 512), num_heads: tuple[int, ...] = (1, 2, 5, 8),
                 mlp_ratios: tuple[float, ...] = (8, 8, 4, 4), depths: tuple[int, ...] = (2, 2, 2, 2),
                 sr_ratios: tuple[int, ...] = (8, 4, 2, 1), attn_types: str = 'LLLL', qkv_bias: bool = True,
                 overlap_embed: bool = False, norm_layer: NormFactory = prepbn(300000, 1e-6),
                 drop_rate: float = 0., proj_drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = _check_pool(global_pool, ('avg', ''))
        self.in_chans = in_chans
        self.num_stages = len(depths)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.overlap_embed = overlap_embed
        self.grad_checkpointing = False
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
            setattr(self, f'block{i + 1}', nn.ModuleList([
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
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


    def _stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i`` from an NCHW map to an NCHW map."""
        x, hw = getattr(self, f'patch_embed{i + 1}')(x)
        if not self.overlap_embed:
            pos = resize_token_grid(getattr(self, f'pos_embed{i + 1}'), self.grid_sizes[i], hw)
            x = getattr(self, f'pos_drop{i + 1}')(x + pos)
        for blk in getattr(self, f'block{i + 1}'):
            x = checkpoint(blk, x, hw) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x, hw)
        if self.overlap_embed:
            x = getattr(self, f'norm{i + 1}')(x)
        return x.transpose(1, 2).reshape(x.shape[0], -1, hw[0], hw[1])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_image_input(x, self.in_chans, 1, 32, type(self).__name__)
        for i in range(self.num_stages):
            x = self._stage(i, x)
        return x


    def forward_intermediates(self, x: torch.Tensor, indices: Optional[Union[int, list[int]]] = None,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = 'NCHW',
                              intermediates_only: bool = False):
        assert output_fmt == 'NCHW'
        check_image_input(x, self.in_chans, 1, 32, type(self).__name__)
        take, max_index = feature_take_indices(self.num_stages, indices)
        intermediates = []
        last = max_index if (stop_early or intermediates_only) else self.num_stages - 1
        for i in range(last + 1):
            x = self._stage(i, x)
            if i in take:
                intermediates.append(x)
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



# ---------------------------------------------------------------------------------------------------
# Swin
# ---------------------------------------------------------------------------------------------------

def _window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    B, H, W, C = x.shape
    x = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def _window_reverse(x: torch.Tensor, ws: int, H: int, W: int) -> torch.Tensor:
    C = x.shape[-1]
    x = x.view(-1, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def _relative_position_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing='ij')).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]


class WindowAttention(nn.Module):
    """Swin window attention with a relative position bias table (official layout)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', _relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        B_, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(0) + mask[None, :, None]).expand(B_ // nw, -1, -1, -1, -1)
            bias = bias.reshape(B_, self.num_heads, N, N)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                           dropout_p=self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B_, N, C)))

    def input_linears(self) -> tuple[str, ...]:
        return ('qkv',)


def _window_mask(hp: int, wp: int, h: int, w: int, ws: int, shift: int, device: torch.device) -> Optional[torch.Tensor]:
    """(nW, ws*ws, ws*ws) additive mask: Swin's shifted-window regions and padded keys; None if not needed."""
    if shift == 0 and hp == h and wp == w:
        return None
    region = torch.zeros(hp, wp, device=device)
    if shift > 0:
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                region[hs, wsl] = cnt
                cnt += 1
    pad = torch.zeros(hp, wp, dtype=torch.bool, device=device)
    pad[h:, :] = True
    pad[:, w:] = True
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
    region = _window_partition(region[None, :, :, None], ws).squeeze(-1)
    pad = _window_partition(pad[None, :, :, None].float(), ws).squeeze(-1) > 0
    mask = (region.unsqueeze(1) != region.unsqueeze(2)) | pad.unsqueeze(1)
    return mask.float() * _PAD_MASK


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class SwinBlock(nn.Module):
    """Swin block with (shifted) window attention (``'S'``) or global SLA (``'L'``)."""

    def __init__(self, dim: int, num_heads: int, attn_type: str, window_size: int, shift_size: int,
                 pos_size: tuple[int, int], mlp_ratio: float, qkv_bias: bool, norm_layer: NormFactory,
                 proj_drop: float = 0., attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        self.attn_type = attn_type
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = norm_layer(dim)
        if attn_type == 'L':
            self.attn = SimplifiedLinearAttention(dim, num_heads, pos_size, qkv_bias, proj_drop=proj_drop)
        else:
            self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, attn_drop, proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)

    def _window_attn(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ws = self.window_size
        shift = 0 if (H <= ws and W <= ws) else self.shift_size
        hp, wp = -(-H // ws) * ws, -(-W // ws) * ws
        x = F.pad(x, (0, 0, 0, wp - W, 0, hp - H))
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        mask = _window_mask(hp, wp, H, W, ws, shift, x.device)
        x = _window_reverse(self.attn(_window_partition(x, ws), mask), ws, hp, wp)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        y = self.norm1(x)
        if self.attn_type == 'L':
            y = self.attn(y.reshape(B, H * W, C), (H, W)).reshape(B, H, W, C)
        else:
            y = self._window_attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def reparameterize(self) -> None:
        if _fold_into_linears(self.norm1, self.attn, self.attn.input_linears()):
            self.norm1 = nn.Identity()
        if _fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()


class PatchMerging(nn.Module):
    """2x2 neighbourhood concatenation (official order), norm, linear reduction."""

    def __init__(self, dim: int, norm_layer: NormFactory):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))

    def reparameterize(self) -> None:
        if _fold_into_linears(self.norm, self, ('reduction',)):
            self.norm = nn.Identity()


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, attn_type: str, window_size: int,
                 resolution: tuple[int, int], mlp_ratio: float, qkv_bias: bool, norm_layer: NormFactory,
                 downsample: bool, proj_drop: float = 0., attn_drop: float = 0., drop_path: tuple[float, ...] = ()):
        super().__init__()
        if attn_type == 'L':
            pos_size = (min(window_size, resolution[0]), min(window_size, resolution[1]))
            ws = shift = 0
        else:
            ws = min(window_size, min(resolution))
            shift = 0 if min(resolution) <= window_size else ws // 2
            pos_size = (ws, ws)
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, attn_type, ws, 0 if i % 2 == 0 else shift, pos_size, mlp_ratio, qkv_bias,
                      norm_layer, proj_drop, attn_drop, drop_path[i]) for i in range(depth)])
        self.downsample = PatchMerging(dim, norm_layer) if downsample else None
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
        return x


class SlabSwinTransformer(NormedStagesMixin, nn.Module):
    """Swin with PRepBN (or RepBN) norms; ``attn_types`` per stage: ``'S'`` shifted windows, ``'L'`` SLA.

    Feature maps are NHWC inside; stage outputs and ``forward_features`` are NCHW. The patch merging of
    stage ``i`` sits at the end of ``layers.i`` (official layout) and runs at the start of the next stage.
    """

    def __init__(self, img_size: int = 224, patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'avg', embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: tuple[int, ...] = (3, 6, 12, 24), window_size: int = 7, attn_types: str = 'SSSS',
                 mlp_ratio: float = 4., qkv_bias: bool = True, norm_layer: NormFactory = RepBN,
                 drop_rate: float = 0., proj_drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = _check_pool(global_pool, ('avg', ''))
        self.in_chans = in_chans
        self.num_stages = len(depths)
        self.num_features = self.head_hidden_size = int(embed_dim * 2 ** (self.num_stages - 1))
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size, patch_size, 0, norm_layer)
        self.pos_drop = nn.Dropout(proj_drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        res = img_size // patch_size
        self.layers = nn.ModuleList()
        self.feature_info = []
        for i in range(self.num_stages):
            dim = int(embed_dim * 2 ** i)
            # SLA stages use the official large window (56: the whole map at 224), softmax stages 7 (12 beyond 56)
            ws = window_size if attn_types[i] == 'L' else (7 if window_size <= 56 else 12)
            self.layers.append(SwinStage(
                dim, depths[i], num_heads[i], attn_types[i], ws, (res >> i, res >> i), mlp_ratio, qkv_bias,
                norm_layer, i < self.num_stages - 1, proj_drop_rate, attn_drop_rate,
                tuple(dpr[sum(depths[:i]):sum(depths[:i + 1])])))
            self.feature_info.append(dict(num_chs=dim, reduction=patch_size * 2 ** i, module=f'layers.{i}'))
        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {'relative_position_bias_table', 'positional_encoding'}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for layer in self.layers:
            layer.grad_checkpointing = enable


    def _run(self, x: torch.Tensor, take: set[int], last: int, norm: bool) -> tuple[torch.Tensor, list]:
        check_image_input(x, self.in_chans, 32, 32, type(self).__name__)
        x, (H, W) = self.patch_embed(x)
        x = self.pos_drop(x).reshape(x.shape[0], H, W, -1)
        outs = []
        for i in range(last + 1):
            if i > 0:
                x = self.layers[i - 1].downsample(x)
            x = self.layers[i](x)
            if i in take:
                y = self.norm(x) if (norm and i == self.num_stages - 1) else x
                outs.append(y.permute(0, 3, 1, 2))
        return x, outs


    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = feature_take_indices(self.num_stages, indices)
        self.layers = self.layers[:max_index + 1]
        self.layers[-1].downsample = None
        if prune_norm or max_index + 1 < self.num_stages:  # the final norm has the last stage's width
            self.norm = nn.Identity()
        self._keep_stages(max_index + 1)
        if prune_head:
            self.reset_classifier(0)
        return take



# ---------------------------------------------------------------------------------------------------
# CSWin
# ---------------------------------------------------------------------------------------------------

def _stripes(x: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * nWin, C, hs, ws) windows in row-major window order."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // hs, hs, W // ws, ws).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, hs, ws)


def _unstripes(x: torch.Tensor, B: int, H: int, W: int) -> torch.Tensor:
    """(B * nWin, hs*ws, C) -> (B, H, W, C)."""
    _, C, hs, ws = x.shape
    x = x.view(B, H // hs, W // ws, C, hs, ws).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(B, H, W, C)


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class LePEAttention(nn.Module):
    """CSWin stripe attention with locally-enhanced positional encoding (``get_v``, 3x3 depthwise on V).

    ``branch``: 0 vertical stripes (full height, ``split`` wide), 1 horizontal stripes, -1 the whole map.
    """

    def __init__(self, dim: int, num_heads: int, branch: int, split: int, attn_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads
        self.branch = branch
        self.split = split
        self.attn_drop = attn_drop
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def _window(self, H: int, W: int) -> tuple[int, int]:
        if self.branch == -1:
            return H, W
        return (H, self.split) if self.branch == 0 else (self.split, W)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q, k, v``: (B, C, H, W) maps; returns (B, H, W, C)."""
        B, C, H, W = q.shape
        hs, ws = self._window(H, W)
        hp, wp = -(-H // hs) * hs, -(-W // ws) * ws
        pad = (0, wp - W, 0, hp - H)
        q, k, v = (_stripes(F.pad(t, pad), hs, ws) for t in (q, k, v))
        lepe = self.get_v(v)
        h, d, n = self.num_heads, C // self.num_heads, hs * ws
        q, k, v, lepe = (t.reshape(-1, h, d, n).transpose(2, 3) for t in (q, k, v, lepe))
        mask = None
        if hp != H or wp != W:
            valid = F.pad(torch.ones(1, 1, H, W, device=q.device), pad)
            mask = (_stripes(valid, hs, ws).reshape(-1, 1, 1, n) == 0).float() * _PAD_MASK
            mask = mask.repeat(B, 1, 1, 1).to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.)
        x = (x + lepe).transpose(2, 3).reshape(-1, C, hs, ws)
        return _unstripes(x, B, hp, wp)[:, :H, :W]


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class CSWinLinearAttention(nn.Module):
    """SLA over the whole map plus CSWin's LePE (the official model's unused ``scale`` parameter, which
    never gets a gradient, is left out; the checkpoint filter drops it)."""

    def __init__(self, dim: int, num_heads: int, pos_size: tuple[int, int], kernel_size: int = 5):
        super().__init__()
        self.num_heads = num_heads
        self.pos_size = tuple(pos_size)
        head_dim = dim // num_heads
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.pos_size[0] * self.pos_size[1], dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, C, H, W = q.shape
        lepe = self.get_v(v)
        q, k, v = (t.flatten(2).transpose(1, 2) for t in (q, k, v))
        k = k + resize_token_grid(self.positional_encoding, self.pos_size, (H, W))
        x = simplified_linear_attention(q, k, v, self.num_heads, (H, W), self.dwc)
        # the official LePE of SLA branches is laid out per head: (B*h, N, d) from channel groups of d
        lepe = lepe.reshape(B, self.num_heads, C // self.num_heads, H * W).permute(0, 3, 1, 2).reshape(B, H * W, C)
        return (x + lepe).reshape(B, H, W, C)


class CSWinBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, attn_type: str, split: int, single_branch: bool,
                 pos_size: tuple[int, int], mlp_ratio: float, qkv_bias: bool, norm_layer: NormFactory,
                 proj_drop: float = 0., attn_drop: float = 0., drop_path: float = 0.):
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.norm1 = norm_layer(dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if attn_type == 'L':
            self.attns = nn.ModuleList([CSWinLinearAttention(dim, num_heads, pos_size)])
        elif single_branch:
            self.attns = nn.ModuleList([LePEAttention(dim, num_heads, -1, split, attn_drop)])
        else:
            self.attns = nn.ModuleList([LePEAttention(dim // 2, num_heads // 2, b, split, attn_drop) for b in (0, 1)])
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.norm2 = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        qkv = self.qkv(self.norm1(x)).permute(0, 3, 1, 2)  # B, 3C, H, W
        q, k, v = qkv.chunk(3, dim=1)
        if len(self.attns) == 1:
            y = self.attns[0](q, k, v)
        else:
            h = C // 2
            y = torch.cat([self.attns[0](q[:, :h], k[:, :h], v[:, :h]),
                           self.attns[1](q[:, h:], k[:, h:], v[:, h:])], dim=-1)
        x = x + self.drop_path(self.proj_drop(self.proj(y)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def reparameterize(self) -> None:
        if _fold_into_linears(self.norm1, self, ('qkv',)):
            self.norm1 = nn.Identity()
        if _fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()


class MergeBlock(nn.Module):
    """CSWin downsampling: 3x3 stride-2 convolution and a norm."""

    def __init__(self, dim: int, dim_out: int, norm_layer: NormFactory):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1)
        self.norm = norm_layer(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous())

    def reparameterize(self) -> None:
        if _is_rep(self.norm):
            self.conv = fold_affine_after_conv(self.conv, *rep_bn_affine(self.norm))
            self.norm = nn.Identity()


class TokensLast(nn.Module):
    """(B, C, H, W) -> (B, H, W, C), contiguous so the token stream's linears run on dense rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).contiguous()


class ConvStem(nn.Sequential):
    """CSWin stem (official layout ``0`` conv 7x7/4, ``2`` norm), NCHW image to NHWC tokens."""

    def __init__(self, in_chans: int, dim: int, norm_layer: NormFactory):
        super().__init__(nn.Conv2d(in_chans, dim, 7, 4, 2), TokensLast(), norm_layer(dim))

    def reparameterize(self) -> None:
        if _is_rep(self[2]):
            self[0] = fold_affine_after_conv(self[0], *rep_bn_affine(self[2]))
            self[2] = nn.Identity()


class SlabCSWinTransformer(NormedStagesMixin, nn.Module):
    """CSWin with PRepBN; ``attn_types`` per stage: ``'L'`` global SLA (+LePE), ``'S'`` cross-shaped stripes."""

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dim: int = 64, depths: tuple[int, ...] = (2, 4, 18, 1), num_heads: tuple[int, ...] = (2, 4, 8, 16),
                 split_sizes: tuple[int, ...] = (1, 2, 7, 7), attn_types: str = 'LLSS', mlp_ratio: float = 4.,
                 qkv_bias: bool = True, norm_layer: NormFactory = prepbn(120000), drop_rate: float = 0.,
                 proj_drop_rate: float = 0., attn_drop_rate: float = 0., drop_path_rate: float = 0.):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = _check_pool(global_pool, ('avg', ''))
        self.in_chans = in_chans
        self.num_stages = len(depths)
        self.stage1_conv_embed = ConvStem(in_chans, embed_dim, norm_layer)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        dim, res, cur = embed_dim, img_size // 4, 0
        self.feature_info = []
        for i in range(self.num_stages):
            if i > 0:
                setattr(self, f'merge{i}', MergeBlock(dim, dim * 2, norm_layer))
                dim, res = dim * 2, res // 2
            last = i == self.num_stages - 1
            setattr(self, f'stage{i + 1}', nn.ModuleList([
                CSWinBlock(dim, num_heads[i], attn_types[i], split_sizes[i], last or res == split_sizes[i],
                           (res, res), mlp_ratio, qkv_bias, norm_layer, proj_drop_rate, attn_drop_rate, dpr[cur + j])
                for j in range(depths[i])]))
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2 ** i, module=f'stage{i + 1}'))
            cur += depths[i]
        self.num_features = self.head_hidden_size = dim
        self.norm = norm_layer(dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.grad_checkpointing = False
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


    def _run(self, x: torch.Tensor, take: set[int], last: int, norm: bool) -> tuple[torch.Tensor, list]:
        check_image_input(x, self.in_chans, 32, 32, type(self).__name__)
        x = self.stage1_conv_embed(x)
        outs = []
        for i in range(last + 1):
            if i > 0:
                x = getattr(self, f'merge{i}')(x)
            for blk in getattr(self, f'stage{i + 1}'):
                x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
            if i in take:
                y = self.norm(x) if (norm and i == self.num_stages - 1) else x
                outs.append(y.permute(0, 3, 1, 2))
        return x, outs


    def prune_intermediate_layers(self, indices: Union[int, list[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        take, max_index = feature_take_indices(self.num_stages, indices)
        for i in range(max_index + 1, self.num_stages):
            delattr(self, f'merge{i}')
            delattr(self, f'stage{i + 1}')
        if prune_norm or max_index + 1 < self.num_stages:  # the final norm has the last stage's width
            self.norm = nn.Identity()
        self._keep_stages(max_index + 1)
        if prune_head:
            self.reset_classifier(0)
        return take



# ---------------------------------------------------------------------------------------------------
# weights, loading, registration
# ---------------------------------------------------------------------------------------------------

def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


_DROPPED_KEYS = ('attn_mask', 'relative_position_index')
#: parameters of the official models that the forward pass never uses (SLA DeiT's class token, CSWin SLA's
#: ``scale``): dropped when the model has no such key
_DEAD_KEYS = ('cls_token', 'scale')


_POSITION_TABLE = re.compile(r'(^|\.)(pos_embed\d*|positional_encoding)$')


def _square_side(positions: int, key: str) -> int:
    side = math.isqrt(positions)
    if side * side != positions:
        raise ValueError(f'{key}: {positions} positions are not a square grid; cannot resample it')
    return side


def resample_position_tables(state_dict: dict[str, torch.Tensor],
                             target: dict[str, torch.Tensor], num_prefix_tokens: int = 0) -> dict[str, torch.Tensor]:
    """Learned position tables (``pos_embed*``, ``positional_encoding``) stored for another input size, resized
    (bilinear, as the models resize them at run time) to the shapes of ``target``; e.g. a checkpoint
    pre-trained at 128 px fine-tuned at 224. A ViT's class-token position is kept as it is."""
    out = dict(state_dict)
    for key, value in state_dict.items():
        want = target.get(key)
        if want is None or value.shape == want.shape or value.ndim != 3 or not _POSITION_TABLE.search(key):
            continue
        prefix = num_prefix_tokens if key.endswith('pos_embed') and '.' not in key else 0
        src = _square_side(value.shape[1] - prefix, key)
        dst = _square_side(want.shape[1] - prefix, key)
        grid = resize_token_grid(value[:, prefix:], (src, src), (dst, dst))
        out[key] = torch.cat([value[:, :prefix], grid], dim=1)
    return out


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Official SLAB checkpoint -> zoo model: drops recomputed buffers (Swin masks and relative position
    indices, which depend on the input size), maps between the RepBN and progressive norm layouts, and
    resamples position tables stored for another input size."""
    state_dict = state_dict.get('model', state_dict.get('state_dict', state_dict))
    target = model.state_dict()
    out = {k.removeprefix('module.'): v for k, v in state_dict.items()
           if k.rsplit('.', 1)[-1] not in _DROPPED_KEYS}
    out = {k: v for k, v in out.items() if k in target or k.rsplit('.', 1)[-1] not in _DEAD_KEYS}
    out = resample_position_tables(out, target, getattr(model, 'num_prefix_tokens', 0))
    return convert_norm_layout(out, target)


_MODEL_CLASSES = {
    'vit': SlabVisionTransformer, 'pyramid': SlabPyramidTransformer, 'swin': SlabSwinTransformer,
    'cswin': SlabCSWinTransformer,
}


def _create(kind: str, variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    if kind == 'vit':
        feature_cfg = dict(out_indices=3, feature_cls='getter')
    else:
        feature_cfg = dict(out_indices=(0, 1, 2, 3), feature_cls='getter')
    return build_model_with_cfg(
        with_factory_kwargs(_MODEL_CLASSES[kind]), variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=feature_cfg, **kwargs)


_RELEASES = 'https://github.com/xinghaochen/SLAB/releases/download/ckpts'


def _cfg(url: str = '', first_conv: str = 'patch_embed.proj', **kwargs: Any) -> dict[str, Any]:
    return {
        'url': url, 'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7), 'crop_pct': 0.875,
        'interpolation': 'bicubic', 'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': first_conv, 'classifier': 'head', 'license': 'apache-2.0', **kwargs,
    }


_PVT = dict(first_conv='patch_embed1.proj', crop_pct=0.9)
default_cfgs = generate_default_cfgs({
    'deit_t_prepbn.in1k': _cfg(f'{_RELEASES}/deit_tiny_prepbn.pth', pool_size=(14, 14)),
    'deit_s_prepbn.in1k': _cfg(f'{_RELEASES}/deit_small_prepbn.pth', pool_size=(14, 14)),
    'slab_deit_t.in1k': _cfg(f'{_RELEASES}/slab_deit_tiny.pth', pool_size=(14, 14)),
    'slab_deit_s.in1k': _cfg(f'{_RELEASES}/slab_deit_small.pth', pool_size=(14, 14)),
    'pvt_t_prepbn.in1k': _cfg(f'{_RELEASES}/pvt_tiny_prepbn.pth', **_PVT),
    'pvt_s_prepbn.in1k': _cfg(f'{_RELEASES}/pvt_small_prepbn.pth', **_PVT),
    'pvt_m_prepbn.in1k': _cfg(f'{_RELEASES}/pvt_medium_prepbn.pth', **_PVT),
    'slab_pvt_t.in1k': _cfg(f'{_RELEASES}/slab_pvt_tiny.pth', **_PVT),
    'slab_pvt_s.untrained': _cfg(**_PVT),
    'slab_pvt_m.untrained': _cfg(**_PVT),
    **{f'slab_pvt_v2_b{i}.untrained': _cfg(**_PVT) for i in range(6)},
    'swin_t_prepbn.in1k': _cfg(f'{_RELEASES}/swin_tiny_prepbn.pth', crop_pct=0.9),
    'slab_swin_t.in1k': _cfg(f'{_RELEASES}/slab_swin_tiny.pth', crop_pct=0.9),
    'slab_swin_s.in1k': _cfg(f'{_RELEASES}/slab_swin_small.pth', crop_pct=0.9),
    'slab_swin_b.untrained': _cfg(crop_pct=0.9),
    'slab_cswin_t.in1k': _cfg(f'{_RELEASES}/slab_cswin_tiny.pth', first_conv='stage1_conv_embed.0', crop_pct=0.9),
    'slab_cswin_s.untrained': _cfg(first_conv='stage1_conv_embed.0', crop_pct=0.9),
})

# official configurations: DeiT / PVT LayerNorm eps 1e-6, Swin / CSWin 1e-5; blend steps per family
_DEIT_PREPBN = prepbn(300000, 1e-6)
_DEIT_SLAB = prepbn(60000, 1e-6)
_PVT_NORM = prepbn(300000, 1e-6)
_SWIN_SLAB = prepbn(60000)
_CSWIN_SLAB = prepbn(120000)
_PVT_V1 = dict(embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
               sr_ratios=(8, 4, 2, 1), norm_layer=_PVT_NORM)
_PVT_V2 = dict(num_heads=(1, 2, 5, 8), sr_ratios=(1, 1, 1, 1), attn_types='LLLL', overlap_embed=True,
               norm_layer=_PVT_NORM)


@register_model(contract_input_size=(3, 64, 64))
def deit_t_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """DeiT-T with RepBN in place of LayerNorm (the official code builds plain RepBN for this one)."""
    cfg = dict(embed_dim=192, depth=12, num_heads=3, attn_type='S', global_pool='token', norm_layer=RepBN)
    return _create('vit', 'deit_t_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def deit_s_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """DeiT-S with PRepBN."""
    cfg = dict(embed_dim=384, depth=12, num_heads=6, attn_type='S', global_pool='token', norm_layer=_DEIT_PREPBN)
    return _create('vit', 'deit_s_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def slab_deit_t(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """SLAB-DeiT-T: PRepBN and simplified linear attention."""
    cfg = dict(embed_dim=192, depth=12, num_heads=3, attn_type='L', global_pool='avg', norm_layer=_DEIT_SLAB)
    return _create('vit', 'slab_deit_t', pretrained, **dict(cfg, **kwargs))


@register_model(contract_input_size=(3, 64, 64))
def slab_deit_s(pretrained: bool = False, **kwargs: Any) -> SlabVisionTransformer:
    """SLAB-DeiT-S: PRepBN and simplified linear attention."""
    cfg = dict(embed_dim=384, depth=12, num_heads=6, attn_type='L', global_pool='avg', norm_layer=_DEIT_SLAB)
    return _create('vit', 'slab_deit_s', pretrained, **dict(cfg, **kwargs))


def _pvt(variant: str, depths: tuple[int, ...], attn_types: str, pretrained: bool, **kwargs: Any):
    return _create('pyramid', variant, pretrained, **dict(_PVT_V1, depths=depths, attn_types=attn_types, **kwargs))


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


def _pvt_v2(variant: str, embed_dims: tuple[int, ...], depths: tuple[int, ...], mlp_ratios: tuple[int, ...],
            pretrained: bool, **kwargs: Any):
    return _create('pyramid', variant, pretrained,
                   **dict(_PVT_V2, embed_dims=embed_dims, depths=depths, mlp_ratios=mlp_ratios, **kwargs))


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


def _swin(variant: str, pretrained: bool, **kwargs: Any):
    return _create('swin', variant, pretrained, **kwargs)


@register_model(input_divisor=32)
def swin_t_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """Swin-T with RepBN in place of LayerNorm (the official code builds plain RepBN for this one)."""
    cfg = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, attn_types='SSSS',
               norm_layer=RepBN)
    return _swin('swin_t_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_t(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-T: PRepBN, global SLA in stages 1-2, shifted windows in stages 3-4."""
    cfg = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _swin('slab_swin_t', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_s(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-S."""
    cfg = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _swin('slab_swin_s', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_b(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-B."""
    cfg = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _swin('slab_swin_b', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_cswin_t(pretrained: bool = False, **kwargs: Any) -> SlabCSWinTransformer:
    """SLAB-CSWin-T: PRepBN, global SLA in stages 1-2, cross-shaped windows in stages 3-4."""
    cfg = dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
               attn_types='LLSS', norm_layer=_CSWIN_SLAB)
    return _create('cswin', 'slab_cswin_t', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_cswin_s(pretrained: bool = False, **kwargs: Any) -> SlabCSWinTransformer:
    """SLAB-CSWin-S."""
    cfg = dict(embed_dim=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
               attn_types='LLSS', norm_layer=_CSWIN_SLAB)
    return _create('cswin', 'slab_cswin_s', pretrained, **dict(cfg, **kwargs))
