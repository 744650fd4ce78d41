"""SLAB CSWin: ``slab_cswin_*`` (global SLA in stages 1-2, cross-shaped stripe attention in stages 3-4).

Official layout (``stage1_conv_embed``, ``stage<i>``, ``merge<i>``), so the released checkpoints load
directly. The four stages are written out by name, the only way TorchScript reaches such attributes.
Other input sizes: stripe attention pads the map and masks the padding out of the keys; SLA stages attend
globally over the whole map (at 224 the official stripes of 56 and 28 cover it).
"""
from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from timm.layers import DropPath, Mlp, register_notrace_module
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ...layers import check_image_input, square_size
from ...layers.factory_kwargs import with_factory_kwargs
from ...layers.linear_attention import resize_token_grid, simplified_linear_attention
from ...layers.prepbn import fold_affine_after_conv, rep_bn_affine
from ...registry import register_model
from .common import (
    RELEASES, NormFactory, NormedStagesMixin, check_attn_types, check_pool, filter_official_state_dict,
    fold_into_linears, init_weights, is_rep, prepbn, slab_cfg,
)
from ...layers.onednn import use_onednn_linears

__all__ = ['SlabCSWinTransformer']

_NUM_STAGES = 4


def _stripes(x: torch.Tensor, hs: int, ws: int) -> torch.Tensor:
    """(B, C, H, W) -> (B * nWin, C, hs, ws) windows in row-major window order."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // hs, hs, W // ws, ws).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, hs, ws)


def _unstripes(x: torch.Tensor, B: int, H: int, W: int) -> torch.Tensor:
    """(B * nWin, C, hs, ws) -> (B, H, W, C)."""
    _, C, hs, ws = x.shape
    x = x.view(B, H // hs, W // ws, C, hs, ws).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(B, H, W, C)


def _stripe_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B * nWin, C, hs, ws) -> (B * nWin, heads, hs*ws, C // heads)."""
    n = x.shape[2] * x.shape[3]
    return x.reshape(-1, num_heads, x.shape[1] // num_heads, n).transpose(2, 3)


@register_notrace_module  # shape-dependent windows / grids: a leaf for torch.fx
class LePEAttention(nn.Module):
    """CSWin stripe attention with locally-enhanced positional encoding (``get_v``, 3x3 depthwise on V).

    ``branch``: 0 vertical stripes (full height, ``split`` wide), 1 horizontal stripes, -1 the whole map.
    """

    def __init__(self, dim: int, num_heads: int, branch: int, split: int, attn_drop: float = 0.):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
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
        hp, wp = (H + hs - 1) // hs * hs, (W + ws - 1) // ws * ws  # ceil; -(-a // b) exports wrongly to ONNX
        pad = [0, wp - W, 0, hp - H]
        q = _stripes(F.pad(q, pad), hs, ws)
        k = _stripes(F.pad(k, pad), hs, ws)
        v = _stripes(F.pad(v, pad), hs, ws)
        lepe = _stripe_heads(self.get_v(v), self.num_heads)
        q, k, v = _stripe_heads(q, self.num_heads), _stripe_heads(k, self.num_heads), _stripe_heads(v, self.num_heads)
        mask: Optional[torch.Tensor] = None
        if hp != H or wp != W:
            valid = F.pad(torch.ones(1, 1, H, W, device=q.device), pad)
            mask = (_stripes(valid, hs, ws).reshape(-1, 1, 1, hs * ws) == 0).float() * -100.0  # as Swin's
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
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be a multiple of num_heads ({num_heads})')
        self.num_heads = num_heads
        self.pos_size = (int(pos_size[0]), int(pos_size[1]))
        head_dim = dim // num_heads
        self.get_v = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.dwc = nn.Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = nn.Parameter(torch.zeros(1, self.pos_size[0] * self.pos_size[1], dim))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        B, C, H, W = q.shape
        lepe = self.get_v(v)
        q, k, v = q.flatten(2).transpose(1, 2), k.flatten(2).transpose(1, 2), v.flatten(2).transpose(1, 2)
        k = k + resize_token_grid(self.positional_encoding, self.pos_size, (H, W))
        x = simplified_linear_attention(q, k, v, self.num_heads, (H, W), self.dwc.weight, self.dwc.bias)
        # the official LePE of SLA branches is laid out per head: (B*h, N, d) from channel groups of d
        lepe = lepe.reshape(B, self.num_heads, C // self.num_heads, H * W).permute(0, 3, 1, 2).reshape(B, H * W, C)
        return (x + lepe).reshape(B, H, W, C)


class AttentionBranches(nn.ModuleList):
    """The attention branches of a block (official layout ``attns.<i>``): each takes its equal share of the
    channels of ``q, k, v`` (B, C, H, W); their (B, H, W, C / n) outputs are concatenated."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__(branches)
        self.num_branches = len(branches)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n = self.num_branches
        qs, ks, vs = q.chunk(n, dim=1), k.chunk(n, dim=1), v.chunk(n, dim=1)
        outs: list[torch.Tensor] = []
        for i, attn in enumerate(self):
            outs.append(attn(qs[i], ks[i], vs[i]))
        return outs[0] if n == 1 else torch.cat(outs, dim=-1)


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
            self.attns = AttentionBranches([CSWinLinearAttention(dim, num_heads, pos_size)])
        elif single_branch:
            self.attns = AttentionBranches([LePEAttention(dim, num_heads, -1, split, attn_drop)])
        else:
            self.attns = AttentionBranches([LePEAttention(dim // 2, num_heads // 2, b, split, attn_drop)
                                            for b in (0, 1)])
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.norm2 = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(self.norm1(x)).permute(0, 3, 1, 2)  # B, 3C, H, W
        q, k, v = qkv.chunk(3, dim=1)
        y = self.attns(q, k, v)
        x = x + self.drop_path(self.proj_drop(self.proj(y)))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def reparameterize(self) -> None:
        if fold_into_linears(self.norm1, self, ('qkv',)):
            self.norm1 = nn.Identity()
        if fold_into_linears(self.norm2, self.mlp, ('fc1',)):
            self.norm2 = nn.Identity()
        use_onednn_linears(self)  # oneDNN matmuls, GELU fused into fc1, in CPU inference


class CSWinStage(nn.ModuleList):
    """The blocks of one stage (official layout ``stage<i>.<j>``), run in turn on an NHWC map."""

    def __init__(self, blocks: list[CSWinBlock]):
        super().__init__(blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self:
            x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
        return x


class MergeBlock(nn.Module):
    """CSWin downsampling: 3x3 stride-2 convolution and a norm."""

    def __init__(self, dim: int, dim_out: int, norm_layer: NormFactory):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1)
        self.norm = norm_layer(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous())

    def reparameterize(self) -> None:
        if is_rep(self.norm):
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
        if is_rep(self[2]):
            self[0] = fold_affine_after_conv(self[0], *rep_bn_affine(self[2]))
            self[2] = nn.Identity()


class SlabCSWinTransformer(NormedStagesMixin, nn.Module):
    """CSWin with PRepBN; ``attn_types`` per stage: ``'L'`` global SLA (+LePE), ``'S'`` cross-shaped stripes."""

    def __init__(self, img_size: Union[int, Tuple[int, int]] = 224,
                 in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dim: int = 64, depths: tuple[int, ...] = (2, 4, 18, 1),
                 num_heads: tuple[int, ...] = (2, 4, 8, 16), split_sizes: tuple[int, ...] = (1, 2, 7, 7), attn_types: str = 'LLSS', mlp_ratio: float = 4.,
                 qkv_bias: bool = True, norm_layer: NormFactory = prepbn(120000), drop_rate: float = 0.,
                 proj_drop_rate: float = 0., attn_drop_rate: float = 0., drop_path_rate: float = 0.):
        super().__init__()
        img_size = square_size(img_size, type(self).__name__)
        per_stage = dict(depths=depths, num_heads=num_heads, split_sizes=split_sizes)
        wrong = [f'{k} has {len(v)}' for k, v in per_stage.items() if len(v) != _NUM_STAGES]
        if wrong:
            raise ValueError(f'CSWin has {_NUM_STAGES} stages: give {_NUM_STAGES} values per stage setting '
                             f'({", ".join(wrong)})')
        check_attn_types(attn_types, _NUM_STAGES)
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
        self.in_chans = in_chans
        self.num_stages = _NUM_STAGES
        self.stage1_conv_embed = ConvStem(in_chans, embed_dim, norm_layer)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device='cpu').tolist()
        dim, res, cur = embed_dim, img_size // 4, 0
        self.feature_info = []
        for i in range(self.num_stages):
            if i > 0:
                setattr(self, f'merge{i}', MergeBlock(dim, dim * 2, norm_layer))
                dim, res = dim * 2, res // 2
            last = i == self.num_stages - 1
            setattr(self, f'stage{i + 1}', CSWinStage([
                CSWinBlock(dim, num_heads[i], attn_types[i], split_sizes[i], last or res == split_sizes[i],
                           (res, res), mlp_ratio, qkv_bias, norm_layer, proj_drop_rate, attn_drop_rate, dpr[cur + j])
                for j in range(depths[i])]))
            self.feature_info.append(dict(num_chs=dim, reduction=4 * 2 ** i, module=f'stage{i + 1}'))
            cur += depths[i]
        self.num_features = self.head_hidden_size = dim
        self.norm = norm_layer(dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for m in self.modules():
            if isinstance(m, CSWinStage):
                m.grad_checkpointing = enable

    def _end_stage(self, x: torch.Tensor, i: int, take: list[int], norm: bool, outs: list[torch.Tensor]) -> None:
        """Keeps the NCHW output of stage ``i`` in ``outs`` if ``i`` is taken (the last stage's through the final
        norm if ``norm``)."""
        if i in take:
            y = self.norm(x) if (norm and i == self.num_stages - 1) else x
            outs.append(y.permute(0, 3, 1, 2))

    def _run(self, x: torch.Tensor, take: list[int], last: int,
             norm: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stages ``0..last`` (fewer after pruning) on the NHWC map; the outputs of the stages in ``take``."""
        if not torch.jit.is_scripting():
            check_image_input(x, self.in_chans, 32, 32, type(self).__name__)
        outs: list[torch.Tensor] = []
        x = self.stage1(self.stage1_conv_embed(x))
        self._end_stage(x, 0, take, norm, outs)
        if hasattr(self, 'stage2') and last >= 1:
            x = self.stage2(self.merge1(x))
            self._end_stage(x, 1, take, norm, outs)
        if hasattr(self, 'stage3') and last >= 2:
            x = self.stage3(self.merge2(x))
            self._end_stage(x, 2, take, norm, outs)
        if hasattr(self, 'stage4') and last >= 3:
            x = self.stage4(self.merge3(x))
            self._end_stage(x, 3, take, norm, outs)
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


def checkpoint_filter_fn(state_dict: dict[str, Any], model: SlabCSWinTransformer) -> dict[str, torch.Tensor]:
    """Official SLAB CSWin checkpoint -> zoo model: the SLA branches' unused ``scale`` dropped, the norm layout
    mapped, SLA position tables stored for another input size resampled."""
    return filter_official_state_dict(state_dict, model, unused=('scale',))


def _create_cswin(variant: str, pretrained: bool = False, **kwargs: Any) -> SlabCSWinTransformer:
    return build_model_with_cfg(
        with_factory_kwargs(SlabCSWinTransformer), variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'), **kwargs)


_CSWIN_CFG = dict(first_conv='stage1_conv_embed.0', crop_pct=0.9)
default_cfgs = generate_default_cfgs({
    'slab_cswin_t.in1k': slab_cfg(f'{RELEASES}/slab_cswin_tiny.pth', **_CSWIN_CFG),
    'slab_cswin_s.untrained': slab_cfg(**_CSWIN_CFG),
})

_CSWIN_SLAB = prepbn(120000)  # official: LayerNorm eps 1e-5, a blend of 120k steps


@register_model(input_divisor=32)
def slab_cswin_t(pretrained: bool = False, **kwargs: Any) -> SlabCSWinTransformer:
    """SLAB-CSWin-T: PRepBN, global SLA in stages 1-2, cross-shaped windows in stages 3-4."""
    cfg = dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
               attn_types='LLSS', norm_layer=_CSWIN_SLAB)
    return _create_cswin('slab_cswin_t', pretrained, **dict(cfg, **kwargs))


@register_model(input_divisor=32)
def slab_cswin_s(pretrained: bool = False, **kwargs: Any) -> SlabCSWinTransformer:
    """SLAB-CSWin-S."""
    cfg = dict(embed_dim=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
               attn_types='LLSS', norm_layer=_CSWIN_SLAB)
    return _create_cswin('slab_cswin_s', pretrained, **dict(cfg, **kwargs))
