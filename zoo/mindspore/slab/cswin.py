"""MindSpore twins of the SLAB CSWin variants (``slab_cswin_*``: global SLA plus LePE in stages 1-2,
cross-shaped stripe attention in stages 3-4), mirroring ``SlabCSWinTransformer`` (NHWC inside)."""
from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import Conv2d, Linear
from ..registry import register_twin
from .attention import resize_token_grid, simplified_linear_attention, softmax_attention
from .blocks import Mlp
from .common import NormedStages, base_kwargs, check_pool, make_head
from .norms import NormSpec
from .windows import pad_bottom_right, stripe_pad_mask

__all__ = ['SlabCSWinTransformer']


def _stripes(x, hs: int, ws: int):
    """(B, C, H, W) -> (B * nWin, C, hs, ws) windows in row-major window order."""
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // hs, hs, W // ws, ws).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, C, hs, ws)


def _unstripes(x, B: int, H: int, W: int):
    """(B * nWin, C, hs, ws) -> (B, H, W, C)."""
    _, C, hs, ws = x.shape
    x = x.reshape(B, H // hs, W // ws, C, hs, ws).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(B, H, W, C)


class LePEAttention(nn.Cell):
    """CSWin stripe attention with locally-enhanced positional encoding (``get_v``, 3x3 depthwise on V);
    ``branch`` 0: vertical stripes ``split`` wide, 1: horizontal stripes, -1: the whole map."""

    def __init__(self, dim: int, num_heads: int, branch: int, split: int):
        super().__init__()
        self.num_heads = num_heads
        self.branch = branch
        self.split = split
        self.get_v = Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def _window(self, H: int, W: int) -> tuple:
        if self.branch == -1:
            return H, W
        return (H, self.split) if self.branch == 0 else (self.split, W)

    def _heads(self, t, n: int):
        """(B * nWin, C, hs, ws) -> (B * nWin, heads, n, d)."""
        return t.reshape(t.shape[0], self.num_heads, -1, n).swapaxes(2, 3)

    def construct(self, q, k, v):
        """``q, k, v``: (B, C, H, W) maps; returns (B, H, W, C)."""
        B, C, H, W = q.shape
        hs, ws = self._window(H, W)
        hp, wp = -(-H // hs) * hs, -(-W // ws) * ws
        q = _stripes(pad_bottom_right(q, hp - H, wp - W, False), hs, ws)
        k = _stripes(pad_bottom_right(k, hp - H, wp - W, False), hs, ws)
        v = _stripes(pad_bottom_right(v, hp - H, wp - W, False), hs, ws)
        n = hs * ws
        lepe = self._heads(self.get_v(v), n)
        mask = None
        if hp != H or wp != W:
            mask = ops.tile(stripe_pad_mask(H, W, hs, ws), (B, 1, 1, 1))
        x = softmax_attention(self._heads(q, n), self._heads(k, n), self._heads(v, n), mask)
        x = (x + lepe).swapaxes(2, 3).reshape(-1, C, hs, ws)
        return _unstripes(x, B, hp, wp)[:, :H, :W]


class CSWinLinearAttention(nn.Cell):
    """SLA over the whole map plus CSWin's LePE (laid out per head, as the official SLA branch)."""

    def __init__(self, dim: int, num_heads: int, pos_size: tuple, kernel_size: int = 5):
        super().__init__()
        self.num_heads = num_heads
        self.pos_size = tuple(pos_size)
        head_dim = dim // num_heads
        self.get_v = Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.dwc = Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = Parameter(
            Tensor(np.zeros((1, self.pos_size[0] * self.pos_size[1], dim), np.float32)), name='positional_encoding')

    def construct(self, q, k, v):
        B, C, H, W = q.shape
        lepe = self.get_v(v)
        q = q.reshape(B, C, -1).swapaxes(1, 2)
        k = k.reshape(B, C, -1).swapaxes(1, 2) + resize_token_grid(self.positional_encoding, self.pos_size, (H, W))
        v = v.reshape(B, C, -1).swapaxes(1, 2)
        x = simplified_linear_attention(q, k, v, self.num_heads, (H, W), self.dwc)
        lepe = lepe.reshape(B, self.num_heads, C // self.num_heads, H * W).transpose(0, 3, 1, 2).reshape(B, H * W, C)
        return (x + lepe).reshape(B, H, W, C)


class CSWinBlock(nn.Cell):
    def __init__(self, dim: int, num_heads: int, attn_type: str, split: int, single_branch: bool, pos_size: tuple,
                 mlp_ratio: float, qkv_bias: bool, norm: NormSpec):
        super().__init__()
        self.qkv = Linear(dim, dim * 3, qkv_bias or norm.deploy)
        self.norm1 = norm.folded(dim)
        self.proj = Linear(dim, dim)
        if attn_type == 'L':
            self.attns = nn.CellList([CSWinLinearAttention(dim, num_heads, pos_size)])
        elif single_branch:
            self.attns = nn.CellList([LePEAttention(dim, num_heads, -1, split)])
        else:
            self.attns = nn.CellList([LePEAttention(dim // 2, num_heads // 2, b, split) for b in (0, 1)])
        self.branches = len(self.attns)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = norm.folded(dim)

    def construct(self, x):
        C = x.shape[3]
        qkv = self.qkv(self.norm1(x)).transpose(0, 3, 1, 2)  # B, 3C, H, W
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        if self.branches == 1:
            y = self.attns[0](q, k, v)
        else:
            h = C // 2
            y = ops.concat((self.attns[0](q[:, :h], k[:, :h], v[:, :h]),
                            self.attns[1](q[:, h:], k[:, h:], v[:, h:])), axis=-1)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


class MergeBlock(nn.Cell):
    """CSWin downsampling: 3x3 stride-2 convolution and a norm."""

    def __init__(self, dim: int, dim_out: int, norm: NormSpec):
        super().__init__()
        self.conv = Conv2d(dim, dim_out, 3, 2, 1)
        self.norm = norm.folded(dim_out)

    def construct(self, x):
        return self.norm(self.conv(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1))


class TokensLast(nn.Cell):
    """(B, C, H, W) -> (B, H, W, C)."""

    def construct(self, x):
        return x.transpose(0, 2, 3, 1)


class SlabCSWinTransformer(NormedStages):
    """CSWin with PRepBN; ``attn_types`` per stage: ``'L'`` global SLA (+LePE), ``'S'`` cross-shaped stripes."""

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: int = 1000, global_pool: str = 'avg',
                 embed_dim: int = 64, depths: tuple = (2, 4, 18, 1), num_heads: tuple = (2, 4, 8, 16),
                 split_sizes: tuple = (1, 2, 7, 7), attn_types: str = 'LLSS', mlp_ratio: float = 4.,
                 qkv_bias: bool = True, norm: NormSpec = NormSpec(120000)):
        super().__init__()
        self.num_classes = num_classes
        self.global_pool = check_pool(global_pool, ('avg', ''))
        self.num_stages = len(depths)
        self.stage1_conv_embed = nn.SequentialCell([Conv2d(in_chans, embed_dim, 7, 4, 2), TokensLast(),
                                                    norm.folded(embed_dim)])
        dim, res = embed_dim, img_size // 4
        for i in range(self.num_stages):
            if i > 0:
                setattr(self, f'merge{i}', MergeBlock(dim, dim * 2, norm))
                dim, res = dim * 2, res // 2
            single = i == self.num_stages - 1 or res == split_sizes[i]
            setattr(self, f'stage{i + 1}', nn.CellList([
                CSWinBlock(dim, num_heads[i], attn_types[i], split_sizes[i], single, (res, res), mlp_ratio, qkv_bias,
                           norm) for _ in range(depths[i])]))
        self.norm = norm.standalone(dim)
        self.head = make_head(dim, num_classes)

    def _run(self, x, collect: bool):
        x = self.stage1_conv_embed(x)
        outs = []
        for i in range(self.num_stages):
            if i > 0:
                x = getattr(self, f'merge{i}')(x)
            for blk in getattr(self, f'stage{i + 1}'):
                x = blk(x)
            if collect:
                outs.append(x.transpose(0, 3, 1, 2))
        return x, outs


_CSWIN_NORM = NormSpec(120000)
_VARIANTS = {
    'slab_cswin_t': dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
                         attn_types='LLSS'),
    'slab_cswin_s': dict(embed_dim=64, depths=(2, 4, 32, 2), num_heads=(2, 4, 8, 16), split_sizes=(1, 2, 7, 7),
                         attn_types='LLSS'),
}


def _read_kwargs(model: Any) -> dict:
    """The builder kwargs of a torch CSWin; its first stage's position grid is the input size / 4."""
    return dict(base_kwargs(model), img_size=4 * model.stage1[0].attns[0].pos_size[0])


@register_twin(*_VARIANTS, kwargs_from_torch=_read_kwargs)
def build_cswin(variant: str, num_classes: int = 1000, in_chans: int = 3, img_size: int = 224,
                global_pool: str = 'avg', deploy: bool = False) -> SlabCSWinTransformer:
    """The twin of SLAB CSWin ``variant`` (``deploy=True``: the form ``model.fuse()`` leaves)."""
    return SlabCSWinTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes,
                                global_pool=global_pool, norm=_CSWIN_NORM.deployed(deploy), **_VARIANTS[variant])
