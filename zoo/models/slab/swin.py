"""SLAB Swin: ``swin_t_prepbn`` (shifted windows of 7) and ``slab_swin_*`` (global SLA in stages 1-2, shifted
windows in stages 3-4).

Official layout (``layers.<i>.blocks``, the patch merging at the end of ``layers.<i>``), so the released
checkpoints load directly. Other input sizes: window attention pads the map and masks the padding out of
the keys; SLA stages attend globally over the whole map (at 224 the official windows of 56 cover it).
"""
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.layers import DropPath, Mlp, register_notrace_module, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ...layers import check_image_input, square_size
from ...layers.factory_kwargs import with_factory_kwargs
from ...layers.prepbn import RepBN
from ...registry import register_model
from .common import (
    RELEASES, NormFactory, NormedStagesMixin, PatchEmbed, SimplifiedLinearAttention, check_attn_types,
    check_pool, filter_official_state_dict, fold_into_linears, init_weights, prepbn, slab_cfg,
)
from ...layers.onednn import use_onednn_linears

__all__ = ['SlabSwinTransformer']


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


def _window_mask(hp: int, wp: int, h: int, w: int, ws: int, shift: int,
                 device: torch.device) -> Optional[torch.Tensor]:
    """(nW, ws*ws, ws*ws) additive mask: Swin's shifted-window regions and padded keys; None if not needed."""
    if shift == 0 and hp == h and wp == w:
        return None
    rows = torch.arange(hp, device=device)
    cols = torch.arange(wp, device=device)
    if shift > 0:  # Swin's nine regions: [0, -ws), [-ws, -shift), [-shift, end) along each axis
        row_region = (rows >= hp - ws).long() + (rows >= hp - shift).long()
        col_region = (cols >= wp - ws).long() + (cols >= wp - shift).long()
        region = (row_region[:, None] * 3 + col_region[None, :]).float()
    else:
        region = torch.zeros(hp, wp, device=device)
    pad = (rows[:, None] >= h) | (cols[None, :] >= w)
    if shift > 0:
        pad = torch.roll(pad, shifts=(-shift, -shift), dims=(0, 1))
    region = _window_partition(region[None, :, :, None], ws).squeeze(-1)
    pad = _window_partition(pad[None, :, :, None].float(), ws).squeeze(-1) > 0
    mask = (region.unsqueeze(1) != region.unsqueeze(2)) | pad.unsqueeze(1)
    return mask.float() * -100.0  # Swin's shift-mask logit, also for padded keys


class WindowAttention(nn.Module):
    """Swin window attention with a relative position bias table (official layout)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True, attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
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
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
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
        hp, wp = (H + ws - 1) // ws * ws, (W + ws - 1) // ws * ws  # ceil; -(-a // b) exports wrongly to ONNX
        x = F.pad(x, (0, 0, 0, wp - W, 0, hp - H))
        if shift > 0:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        mask = _window_mask(hp, wp, H, W, ws, shift, x.device)
        x = _window_reverse(self.attn(_window_partition(x, ws), mask), ws, hp, wp)
        if shift > 0:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        y = self.norm1(x)
        if hasattr(self.attn, 'positional_encoding'):  # SLA (a static branch for TorchScript)
            y = self.attn(y.reshape(B, H * W, C), (H, W)).reshape(B, H, W, C)
        else:
            y = self._window_attn(y)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def reparameterize(self) -> None:
        if fold_into_linears(self.norm1, self.attn, self.attn.input_linears()):
            self.norm1 = nn.Identity()
        if fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()
        use_onednn_linears(self)  # oneDNN matmuls, GELU fused into fc1, in CPU inference


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
        if fold_into_linears(self.norm, self, ('reduction',)):
            self.norm = nn.Identity()
        use_onednn_linears(self)  # oneDNN matmuls, GELU fused into fc1, in CPU inference


class SwinStage(nn.Module):
    """The blocks of one stage on an NHWC map; the patch merging that starts the next stage (``downsample``)
    is kept here, as in the official layout, and run by the model."""

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

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224,
                 patch_size: int = 4, in_chans: int = 3, num_classes: int = 1000,
                 global_pool: str = 'avg', embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: tuple[int, ...] = (3, 6, 12, 24), window_size: int = 7, attn_types: str = 'SSSS',
                 mlp_ratio: float = 4., qkv_bias: bool = True, norm_layer: NormFactory = RepBN,
                 drop_rate: float = 0., proj_drop_rate: float = 0., attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.1):
        super().__init__()
        img_size = square_size(img_size, type(self).__name__)
        if len(num_heads) != len(depths):
            raise ValueError(f'give one num_heads per stage: {len(depths)} depths, {len(num_heads)} num_heads')
        check_attn_types(attn_types, len(depths))
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
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
        self.apply(init_weights)

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

    def _run(self, x: torch.Tensor, take: list[int], last: int,
             norm: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stages ``0..last`` on the NHWC map; the NCHW outputs of the stages in ``take`` (the last one through
        the final norm if ``norm``)."""
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, 32, 32, type(self).__name__)
        x, hw = self.patch_embed(x)
        x = self.pos_drop(x).reshape(x.shape[0], hw[0], hw[1], -1)
        outs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            if i <= last:
                x = layer(x)
                if i in take:
                    y = self.norm(x) if (norm and i == self.num_stages - 1) else x
                    outs.append(y.permute(0, 3, 1, 2))
                if layer.downsample is not None:  # the next stage's patch merging
                    if i < last:
                        x = layer.downsample(x)
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


def checkpoint_filter_fn(state_dict: dict[str, Any], model: SlabSwinTransformer) -> dict[str, torch.Tensor]:
    """Official SLAB Swin checkpoint -> zoo model: the buffers the model recomputes for its input size (shift
    masks, relative position indices) dropped, the norm layout mapped, SLA position tables resampled."""
    return filter_official_state_dict(state_dict, model, recomputed=('attn_mask', 'relative_position_index'))


def _create_swin(variant: str, pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    return build_model_with_cfg(
        with_factory_kwargs(SlabSwinTransformer), variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'), **kwargs)


default_cfgs = generate_default_cfgs({
    'swin_t_prepbn.in1k': slab_cfg(f'{RELEASES}/swin_tiny_prepbn.pth', crop_pct=0.9),
    'slab_swin_t.in1k': slab_cfg(f'{RELEASES}/slab_swin_tiny.pth', crop_pct=0.9),
    'slab_swin_s.in1k': slab_cfg(f'{RELEASES}/slab_swin_small.pth', crop_pct=0.9),
    'slab_swin_b.untrained': slab_cfg(crop_pct=0.9),
})

_SWIN_SLAB = prepbn(60000)  # official: LayerNorm eps 1e-5, a blend of 60k steps


@register_model(input_divisor=32)
def swin_t_prepbn(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """Swin-T with RepBN in place of LayerNorm (the official code builds plain RepBN for this one)."""
    cfg = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7, attn_types='SSSS',
               norm_layer=RepBN)
    return _create_swin('swin_t_prepbn', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_t(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-T: PRepBN, global SLA in stages 1-2, shifted windows in stages 3-4."""
    cfg = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _create_swin('slab_swin_t', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_s(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-S."""
    cfg = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _create_swin('slab_swin_s', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_swin_b(pretrained: bool = False, **kwargs: Any) -> SlabSwinTransformer:
    """SLAB-Swin-B."""
    cfg = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=56, attn_types='LLSS',
               norm_layer=_SWIN_SLAB)
    return _create_swin('slab_swin_b', pretrained, **dict(cfg, **kwargs))
