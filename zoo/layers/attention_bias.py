"""Resampling of learned attention biases between every query and every key position.

Some pyramid transformers learn a bias table of shape ``(..., Nq, Nk)`` for a fixed query grid
``Nq = qh * qw`` and key grid ``Nk = kh * kw`` (e.g. PyramidTNT's ``relative_pos``, where the keys are a
spatially reduced copy of the queries). To run such a model at another input size, both grids are
resampled, like absolute position embeddings are.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def resample_attention_bias(
        bias: torch.Tensor,
        query_size: Sequence[int],
        key_size: Sequence[int],
        new_query_size: Sequence[int],
        new_key_size: Sequence[int],
        interpolation: str = 'bicubic',
        antialias: bool = True,
) -> torch.Tensor:
    """Resample a ``(..., qh * qw, kh * kw)`` bias table to new query and key grids.

    The key grid is resampled first (every query's bias map over the keys is an image), then the query
    grid (every key's bias map over the queries is an image). Returns ``bias`` itself when both grids
    already match.
    """
    qh, qw = query_size
    kh, kw = key_size
    nqh, nqw = new_query_size
    nkh, nkw = new_key_size
    if bias.shape[-2:] != (qh * qw, kh * kw):
        raise ValueError(f'bias of shape {tuple(bias.shape)} does not match query grid {qh}x{qw} '
                         f'and key grid {kh}x{kw}')
    if (qh, qw, kh, kw) == (nqh, nqw, nkh, nkw):
        return bias
    lead = bias.shape[:-2]
    orig_dtype = bias.dtype
    b = bias.float().reshape(-1, qh * qw, kh, kw)
    if (kh, kw) != (nkh, nkw):
        b = F.interpolate(b, size=(nkh, nkw), mode=interpolation, antialias=antialias)
    b = b.reshape(-1, qh, qw, nkh * nkw).permute(0, 3, 1, 2)
    if (qh, qw) != (nqh, nqw):
        b = F.interpolate(b, size=(nqh, nqw), mode=interpolation, antialias=antialias)
    b = b.permute(0, 2, 3, 1).reshape(*lead, nqh * nqw, nkh * nkw)
    return b.to(orig_dtype)
