"""Simplified linear attention (SLA, from SLAB): ReLU kernel, linear-complexity aggregation, DWC on values.

For each head, with ``phi = ReLU``::

    out_i = sum_j phi(q_i) . phi(k_j) v_j / (phi(q_i) . sum_j phi(k_j) + eps) + DWC(V)_i

Aggregating ``phi(K)^T V`` first costs O(N c d) instead of O(N^2 c); the cheaper order is chosen from the
shapes (both orders give the same result). The depthwise convolution runs on the values laid out on their
2-D token grid, with one kernel shared by all heads, and restores the feature diversity a low-rank linear
attention map loses. Positional encodings of keys are added by the caller (:func:`resize_token_grid`
adapts a learned table to another grid).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

from .onednn import plain_cpu_inference

__all__ = ['simplified_linear_attention', 'resize_token_grid']


def simplified_linear_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_heads: int,
        grid_size: tuple[int, int],
        dwc_weight: Optional[torch.Tensor] = None,
        dwc_bias: Optional[torch.Tensor] = None,
        eps: float = 1e-6,
) -> torch.Tensor:
    """SLA of token tensors ``q, k, v`` of shape ``(B, N, C)`` laid out row-major on ``grid_size``.

    ``dwc_weight`` / ``dwc_bias``: the depthwise convolution on the values (a ``(c, 1, k, k)`` kernel shared by
    the heads, zero-padded to keep the grid), passed as tensors so that the function also compiles with
    TorchScript. Returns ``(B, N, C)`` before the output projection. Runs in float32 (also under autocast), as
    the normaliser needs the range.
    """
    dtype = q.dtype
    if torch.jit.is_scripting():  # TorchScript has no autocast context to leave
        x = _sla_float32(q, k, v, num_heads, grid_size, dwc_weight, dwc_bias, eps)
    elif _takes_inference_path(q, k, v, dwc_weight, dwc_bias):
        return _sla_inference(q, k, v, num_heads, grid_size, dwc_weight, dwc_bias, eps)
    else:
        # autocast has no 'meta' device (shape-only runs): any device type disables nothing there
        with torch.autocast(device_type='cpu' if q.device.type == 'meta' else q.device.type, enabled=False):
            x = _sla_float32(q, k, v, num_heads, grid_size, dwc_weight, dwc_bias, eps)
    return x.to(dtype)


def _takes_inference_path(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether :func:`_sla_inference` applies: a plain CPU float32 inference call (TorchScript never asks)."""
    return plain_cpu_inference(*[t for t in tensors if t is not None])


def _heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, N, C) -> float32 (B * num_heads, N, C // num_heads)."""
    B, N, C = t.shape
    c = C // num_heads
    return t.float().reshape(B, -1, num_heads, c).transpose(1, 2).reshape(B * num_heads, -1, c)


def _sla_float32(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, grid_size: tuple[int, int],
                 dwc_weight: Optional[torch.Tensor], dwc_bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    B, N, C = q.shape
    H, W = grid_size
    c = C // num_heads
    q = F.relu(_heads(q, num_heads))
    k = F.relu(_heads(k, num_heads))
    v = _heads(v, num_heads)
    i, j = q.shape[1], k.shape[1]
    z = 1.0 / (q @ k.sum(dim=1).unsqueeze(-1) + eps)  # (B*h, i, 1)
    if i * j * (c + c) > c * c * (i + j):
        x = q @ (k.transpose(1, 2) @ v)
    else:
        x = (q @ k.transpose(1, 2)) @ v
    x = x * z
    if dwc_weight is not None:
        fm = v.transpose(1, 2).reshape(B * num_heads, c, H, W).to(dwc_weight.dtype)
        pad = dwc_weight.shape[-1] // 2
        conv = F.conv2d(fm, dwc_weight, dwc_bias, padding=[pad, pad], groups=dwc_weight.shape[0])
        x = x + conv.float().flatten(2).transpose(1, 2)
    return x.reshape(B, num_heads, N, c).transpose(1, 2).reshape(B, N, C)


def _relu_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """ReLU of (B, N, C) written straight into a fresh (B * num_heads, N, C // num_heads): one pass, not two."""
    B, N, C = t.shape
    c = C // num_heads
    out = torch.empty(B, num_heads, N, c, dtype=t.dtype, device=t.device)
    torch.clamp_min(t.unflatten(-1, (num_heads, c)).transpose(1, 2), 0, out=out)
    return out.view(B * num_heads, N, c)


def _sla_inference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, grid_size: tuple[int, int],
                   dwc_weight: Optional[torch.Tensor], dwc_bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """:func:`_sla_float32` for plain CPU float32 inference, with fewer passes over the (B, N, C) maps: the ReLU
    while splitting the heads, the normaliser in place, the depthwise convolution on the values' own
    channels-last layout (no transposed copy in, none out; oneDNN's fast layout for depthwise kernels), and
    ``conv + x * z`` written once into the (B, N, C) output. Same arithmetic up to float rounding."""
    B, N, C = q.shape
    c = C // num_heads
    j = k.shape[1]
    qh = _relu_heads(q, num_heads)
    kh = _relu_heads(k, num_heads)
    vh = _heads(v, num_heads)  # v is float32 here: _heads' cast is a no-op
    z = torch.bmm(qh, kh.sum(dim=1).unsqueeze(-1)).add_(eps).reciprocal_()  # (B*h, N, 1)
    if N * j * (c + c) > c * c * (N + j):
        x = torch.bmm(qh, torch.bmm(kh.transpose(1, 2), vh))
    else:
        x = torch.bmm(torch.bmm(qh, kh.transpose(1, 2)), vh)
    out = torch.empty(B, N, num_heads, c, dtype=q.dtype, device=q.device)
    heads_view = out.transpose(1, 2)  # (B, h, N, c) over out's memory
    x = x.view(B, num_heads, N, c)
    z = z.view(B, num_heads, N, 1)
    if dwc_weight is None:
        torch.mul(x, z, out=heads_view)
    else:
        H, W = grid_size
        pad = dwc_weight.shape[-1] // 2
        fm = vh.view(B * num_heads, H, W, c).permute(0, 3, 1, 2)  # channels-last (B*h, c, H, W), no copy
        conv = F.conv2d(fm, dwc_weight, dwc_bias, padding=[pad, pad], groups=dwc_weight.shape[0])
        conv = conv.permute(0, 2, 3, 1).reshape(B, num_heads, N, c)  # a view when the conv kept channels-last
        torch.addcmul(conv, x, z, out=heads_view)
    return out.view(B, N, C)


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def resize_token_grid(tokens: torch.Tensor, src_size: tuple[int, int], dst_size: tuple[int, int],
                      mode: str = 'bilinear') -> torch.Tensor:
    """Resize a ``(1, Hs*Ws, C)`` table of per-token parameters to ``(1, Hd*Wd, C)`` (identity if equal)."""
    if src_size[0] == dst_size[0] and src_size[1] == dst_size[1]:
        return tokens
    C = tokens.shape[-1]
    t = tokens.reshape(1, src_size[0], src_size[1], C).permute(0, 3, 1, 2)
    t = F.interpolate(t.float(), size=[dst_size[0], dst_size[1]], mode=mode, align_corners=False)
    t = t.to(tokens.dtype)
    return t.flatten(2).transpose(1, 2)
