"""Dilated k-nearest-neighbour graphs over feature maps, with an optional relative-position bias.

Nodes are the pixels of a (B, C, H, W) feature map; each query node is linked to the ``k`` candidates
(optionally from a pooled map) closest in L2-normalised feature space, every ``dilation``-th of the
``k * dilation`` nearest. Distances come from one matrix product per chunk of query rows followed by
``topk``, so memory grows as N x M (never N x M x C) and stays bounded for large maps. The chunk size
depends on the map only, never on the batch: a batch-dependent loop would make the exporters specialise on
(or reason at length about) the batch size.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    'knn_graph', 'dilate_neighbours', 'sincos_relative_position_bias', 'resize_relative_position_bias',
    'gather_max_neighbours',
]

#: Largest number of (query x candidate) distances per sample held at once before query rows are chunked.
MAX_DISTANCES_PER_CHUNK = 1 << 22


def knn_graph(
        x: torch.Tensor,
        y: torch.Tensor,
        k: int,
        bias: Optional[torch.Tensor] = None,
        max_chunk: int = MAX_DISTANCES_PER_CHUNK,
        sorted: bool = True,
) -> torch.Tensor:
    """Indices of the ``k`` candidates of ``y`` nearest to each query of ``x`` (nearest first).

    Args:
        x: (B, C, N) query features, L2-normalised over C.
        y: (B, C, M) candidate features, L2-normalised over C.
        k: neighbours per query, at most M.
        bias: optional (1, N, M) or (B, N, M) term added to the squared distances.
        max_chunk: bound on the number of distances computed at once per sample.
        sorted: nearest first; ``False`` returns the same set in any order (cheaper: for callers that
            neither dilate nor sample the list, such as a max over the neighbours).

    Returns:
        (B, N, k) int64 indices into the M candidates.
    """
    N = x.shape[-1]
    M = y.shape[-1]
    with torch.no_grad():
        xt = x.transpose(1, 2)
        x_sq = xt.pow(2).sum(-1, keepdim=True)  # (B, N, 1)
        y_sq = y.pow(2).sum(1, keepdim=True)  # (B, 1, M)
        rows = max(1, min(N, max_chunk // max(M, 1)))
        out = []
        for start in range(0, N, rows):
            end = min(N, start + rows)
            # the summation order of the official code, so near-ties resolve the same way
            dist = torch.bmm(xt[:, start:end], y).mul_(-2).add_(x_sq[:, start:end]).add_(y_sq)
            if bias is not None:
                dist.add_(bias[:, start:end])
            out.append(torch.topk(dist, k, dim=-1, largest=False, sorted=sorted).indices)
        return out[0] if len(out) == 1 else torch.cat(out, dim=1)


def dilate_neighbours(
        idx: torch.Tensor,
        k: int,
        dilation: int,
        stochastic: bool = False,
        epsilon: float = 0.0,
        training: bool = False,
) -> torch.Tensor:
    """Keep ``k`` of the ``k * dilation`` nearest neighbours in ``idx`` (B, N, k * dilation).

    Every ``dilation``-th neighbour, or, when ``stochastic`` and training, with probability ``epsilon`` a
    random ``k`` of them (stochastic dilated aggregation of the ViG paper).
    """
    if stochastic and training and torch.rand(1).item() < epsilon:
        keep = torch.randperm(k * dilation, device=idx.device)[:k]
        return idx.index_select(-1, keep)
    return idx[..., ::dilation] if dilation > 1 else idx


def gather_max_neighbours(y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum over each query's neighbours.

    Args:
        y: (B, C, M) candidate features.
        idx: (B, N, k) neighbour indices into M.

    Returns:
        (B, C, N): ``max_j y[:, :, idx[:, n, j]]``.
    """
    B, C, M = y.shape
    _, N, k = idx.shape
    flat = y.transpose(1, 2).reshape(B * M, C)
    rows = (idx + (torch.arange(B, device=idx.device) * M).view(B, 1, 1)).view(B * N, k)
    # one neighbour at a time: a running maximum of (B*N, C) rows instead of a (B, N, k, C) gather
    out = flat.index_select(0, rows[:, 0])
    in_place = not (torch.is_grad_enabled() and y.requires_grad)  # autograd's maximum needs both operands
    for j in range(1, k):
        rows_j = flat.index_select(0, rows[:, j])
        # clamp_min_ with a tensor bound is the same elementwise maximum, without a new (B*N, C) buffer
        out = out.clamp_min_(rows_j) if in_place else torch.maximum(out, rows_j)
    return out.view(B, N, C).transpose(1, 2)


def _sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """(grid * grid, dim) fixed 2-D sine-cosine embedding: first half encodes rows, second half columns."""
    if dim % 4:
        raise ValueError(f'sine-cosine position embedding needs a channel count divisible by 4, got {dim}')
    coords = torch.arange(grid, dtype=torch.float32, device='cpu').double()
    rows, cols = torch.meshgrid(coords, coords, indexing='ij')
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64, device='cpu') / (dim / 4))

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega.view(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    # the first half is driven by the column coordinate, the second by the row (meshgrid w-first convention)
    return torch.cat([encode(cols), encode(rows)], dim=1)


def sincos_relative_position_bias(dim: int, grid: int, reduction: int = 1) -> torch.Tensor:
    """Initial relative-position bias of Pyramid ViG, (1, grid**2, grid**2 // reduction**2).

    Minus the scaled similarity of the fixed sine-cosine embeddings of two positions (nearby nodes get a
    lower distance); the candidate axis is resampled to the pooled node count. Blocks of a stage share
    the computation, made on the CPU whatever the default device (a fresh copy on the default device is
    returned each call).
    """
    return _sincos_relative_position_bias(dim, grid, reduction).to(torch.get_default_device(), copy=True)


@functools.lru_cache(maxsize=8)
def _sincos_relative_position_bias(dim: int, grid: int, reduction: int) -> torch.Tensor:
    emb = _sincos_2d(dim, grid)
    sim = (2 * emb @ emb.t() / dim).float()
    n = grid * grid
    if reduction > 1:
        sim = F.interpolate(sim[None, None], size=(n, n // (reduction * reduction)), mode='bicubic',
                            align_corners=False)[0, 0]
    return -sim.unsqueeze(0)


def resize_relative_position_bias(
        bias: torch.Tensor,
        src_query: Tuple[int, int],
        src_key: Tuple[int, int],
        dst_query: Tuple[int, int],
        dst_key: Tuple[int, int],
) -> torch.Tensor:
    """Bicubically resample a (1, Hq*Wq, Hk*Wk) bias table to other query / candidate grids.

    The table is a function of a query position and a candidate position; both 2-D axes are resized
    separably (candidates first, then queries).
    """
    if tuple(src_query) == tuple(dst_query) and tuple(src_key) == tuple(dst_key):
        return bias
    t = bias.reshape(src_query[0] * src_query[1], 1, *src_key)
    if tuple(src_key) != tuple(dst_key):
        t = F.interpolate(t, size=tuple(dst_key), mode='bicubic', align_corners=False)
    nk = dst_key[0] * dst_key[1]
    t = t.reshape(src_query[0] * src_query[1], nk).t().reshape(nk, 1, *src_query)
    if tuple(src_query) != tuple(dst_query):
        t = F.interpolate(t, size=tuple(dst_query), mode='bicubic', align_corners=False)
    return t.reshape(nk, dst_query[0] * dst_query[1]).t().unsqueeze(0)

