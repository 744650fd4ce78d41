"""Resampling of learned attention biases between every query and every key position.

Some pyramid models learn a bias table of shape ``(..., Nq, Nk)`` for a fixed query grid ``Nq = qh * qw``
and key grid ``Nk = kh * kw`` (PyramidTNT's and ViG's ``relative_pos``, where the keys are a spatially
reduced copy of the queries). To run such a model at another input size, both grids are resampled, like
absolute position embeddings are (timm's ``resample_abs_pos_embed``); this is the one resampler for such
tables (ViG's are resized without antialiasing: ``antialias=False``).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F


def resample_attention_bias(
        bias: torch.Tensor,
        query_size: List[int],
        key_size: List[int],
        new_query_size: List[int],
        new_key_size: List[int],
        interpolation: str = 'bicubic',
        antialias: bool = True,
) -> torch.Tensor:
    """Resample a ``(..., qh * qw, kh * kw)`` bias table to new query and key grids.

    The key grid is resampled first (every query's bias map over the keys is an image), then the query
    grid (every key's bias map over the queries is an image). Returns ``bias`` itself when both grids
    already match.
    """
    qh, qw = query_size[0], query_size[1]
    kh, kw = key_size[0], key_size[1]
    nqh, nqw = new_query_size[0], new_query_size[1]
    nkh, nkw = new_key_size[0], new_key_size[1]
    if bias.shape[-2] != qh * qw or bias.shape[-1] != kh * kw:
        raise ValueError(f'bias of shape {list(bias.shape)} does not match query grid {qh}x{qw} '
                         f'and key grid {kh}x{kw}')
    if qh == nqh and qw == nqw and kh == nkh and kw == nkw:
        return bias
    lead = list(bias.shape[:-2])
    orig_dtype = bias.dtype
    b = bias.float().reshape(-1, qh * qw, kh, kw)
    if kh != nkh or kw != nkw:
        b = F.interpolate(b, size=(nkh, nkw), mode=interpolation, antialias=antialias)
    b = b.reshape(-1, qh, qw, nkh * nkw).permute(0, 3, 1, 2)
    if qh != nqh or qw != nqw:
        b = F.interpolate(b, size=(nqh, nqw), mode=interpolation, antialias=antialias)
    b = b.permute(0, 2, 3, 1).reshape(lead + [nqh * nqw, nkh * nkw])
    return b.to(orig_dtype)
