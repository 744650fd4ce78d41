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
from torch import nn

__all__ = ['simplified_linear_attention', 'resize_token_grid']


def simplified_linear_attention(
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_heads: int,
        grid_size: tuple[int, int],
        dwc: Optional[nn.Conv2d] = None,
        eps: float = 1e-6,
) -> torch.Tensor:
    """SLA of token tensors ``q, k, v`` of shape ``(B, N, C)`` laid out row-major on ``grid_size``.

    Returns ``(B, N, C)`` before the output projection. Runs in float32 (also under autocast), as the
    normaliser needs the range.
    """
    B, N, C = q.shape
    H, W = grid_size
    c = C // num_heads
    dtype = q.dtype
    # autocast has no 'meta' device (shape-only runs): any device type disables nothing there
    with torch.autocast(device_type='cpu' if q.device.type == 'meta' else q.device.type, enabled=False):
        q, k, v = (t.float().reshape(B, -1, num_heads, c).transpose(1, 2).reshape(B * num_heads, -1, c)
                   for t in (q, k, v))
        q = F.relu(q)
        k = F.relu(k)
        i, j = q.shape[1], k.shape[1]
        z = 1.0 / (q @ k.sum(dim=1).unsqueeze(-1) + eps)  # (B*h, i, 1)
        if i * j * (c + c) > c * c * (i + j):
            x = q @ (k.transpose(1, 2) @ v)
        else:
            x = (q @ k.transpose(1, 2)) @ v
        x = x * z
        if dwc is not None:
            fm = v.transpose(1, 2).reshape(B * num_heads, c, H, W)
            x = x + dwc(fm.to(dwc.weight.dtype)).float().flatten(2).transpose(1, 2)
    x = x.reshape(B, num_heads, N, c).transpose(1, 2).reshape(B, N, C)
    return x.to(dtype)


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def resize_token_grid(tokens: torch.Tensor, src_size: tuple[int, int], dst_size: tuple[int, int],
                      mode: str = 'bilinear') -> torch.Tensor:
    """Resize a ``(1, Hs*Ws, C)`` table of per-token parameters to ``(1, Hd*Wd, C)`` (identity if equal)."""
    src_size, dst_size = tuple(src_size), tuple(dst_size)
    if src_size == dst_size:
        return tokens
    C = tokens.shape[-1]
    t = tokens.reshape(1, src_size[0], src_size[1], C).permute(0, 3, 1, 2)
    t = F.interpolate(t.float(), size=dst_size, mode=mode, align_corners=False).to(tokens.dtype)
    return t.flatten(2).transpose(1, 2)
