"""SLAB's attention pieces as MindSpore cells and functions, mirroring :mod:`zoo.layers.linear_attention`
and the attention modules of :mod:`zoo.models.slab`.

* :func:`simplified_linear_attention`: ReLU linear attention, normalised per query, plus a depthwise
  convolution of the values on their token grid (one kernel shared by all heads), in the same order of
  multiplication as torch picks.
* :func:`resize_token_grid`: a learned ``(1, H*W, C)`` table resized bilinearly to another grid.
* :func:`softmax_attention`: scaled dot-product attention with an optional additive mask.
* :class:`SimplifiedLinearAttention`: the SLA module of DeiT / PVT / Swin (fused ``qkv`` or PVT's ``q`` + ``kv``).
"""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import Conv2d, Linear

__all__ = ['simplified_linear_attention', 'resize_token_grid', 'softmax_attention', 'split_heads',
           'merge_heads', 'SimplifiedLinearAttention']


def split_heads(x, num_heads: int):
    """(B, N, C) -> (B * heads, N, C / heads)."""
    B, N, C = x.shape
    x = x.reshape(B, N, num_heads, C // num_heads).transpose(0, 2, 1, 3)
    return x.reshape(B * num_heads, N, C // num_heads)


def merge_heads(x, batch: int):
    """(B * heads, N, d) -> (B, N, heads * d)."""
    _, N, d = x.shape
    x = x.reshape(batch, -1, N, d).transpose(0, 2, 1, 3)
    return x.reshape(batch, N, -1)


def simplified_linear_attention(q, k, v, num_heads: int, grid_size: tuple, dwc=None, eps: float = 1e-6):
    """SLA of ``(B, N, C)`` tokens laid out row-major on ``grid_size``; returns ``(B, N, C)`` before the
    output projection."""
    B = q.shape[0]
    H, W = grid_size
    q = ops.relu(split_heads(q, num_heads))
    k = ops.relu(split_heads(k, num_heads))
    v = split_heads(v, num_heads)
    c = q.shape[2]
    i, j = q.shape[1], k.shape[1]
    z = 1.0 / (ops.matmul(q, k.sum(axis=1).expand_dims(-1)) + eps)  # (B*h, i, 1)
    if i * j * (c + c) > c * c * (i + j):
        x = ops.matmul(q, ops.matmul(k.swapaxes(1, 2), v))
    else:
        x = ops.matmul(ops.matmul(q, k.swapaxes(1, 2)), v)
    x = x * z
    if dwc is not None:
        fm = dwc(v.swapaxes(1, 2).reshape(v.shape[0], c, H, W))
        x = x + fm.reshape(fm.shape[0], c, -1).swapaxes(1, 2)
    return merge_heads(x, B)


def resize_token_grid(tokens, src_size: tuple, dst_size: tuple):
    """Resize a ``(1, Hs*Ws, C)`` table to ``(1, Hd*Wd, C)`` bilinearly (align_corners=False), as torch does."""
    if tuple(src_size) == tuple(dst_size):
        return tokens
    C = tokens.shape[-1]
    t = tokens.reshape(1, src_size[0], src_size[1], C).transpose(0, 3, 1, 2)
    t = ops.interpolate(t, size=tuple(dst_size), mode='bilinear', align_corners=False)
    return t.reshape(1, C, -1).swapaxes(1, 2)


def softmax_attention(q, k, v, mask=None):
    """``softmax(q k^T / sqrt(d) + mask) v`` over the last two dimensions (torch's scaled_dot_product_attention)."""
    attn = ops.matmul(q * (q.shape[-1] ** -0.5), k.swapaxes(-2, -1))
    if mask is not None:
        attn = attn + mask
    return ops.matmul(ops.softmax(attn, axis=-1), v)


class SimplifiedLinearAttention(nn.Cell):
    """SLA over ``(B, H*W, C)`` tokens plus learned key positions (resized to the actual grid) and a DWC on
    the values; ``split_qkv`` selects PVT's ``q`` / ``kv`` linears over the fused ``qkv``."""

    def __init__(self, dim: int, num_heads: int, pos_size: tuple, qkv_bias: bool = True, kernel_size: int = 5,
                 split_qkv: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.pos_size = tuple(pos_size)
        self.split_qkv = split_qkv
        head_dim = dim // num_heads
        if split_qkv:
            self.q = Linear(dim, dim, qkv_bias)
            self.kv = Linear(dim, dim * 2, qkv_bias)
        else:
            self.qkv = Linear(dim, dim * 3, qkv_bias)
        self.proj = Linear(dim, dim)
        self.dwc = Conv2d(head_dim, head_dim, kernel_size, padding=kernel_size // 2, groups=head_dim)
        self.positional_encoding = Parameter(
            Tensor(np.zeros((1, self.pos_size[0] * self.pos_size[1], dim), np.float32)), name='positional_encoding')

    def construct(self, x, hw: tuple):
        C = x.shape[-1]
        if self.split_qkv:
            q = self.q(x)
            kv = self.kv(x)
            k, v = kv[..., :C], kv[..., C:]
        else:
            qkv = self.qkv(x)
            q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
        k = k + resize_token_grid(self.positional_encoding, self.pos_size, hw)
        return self.proj(simplified_linear_attention(q, k, v, self.num_heads, hw, self.dwc))
