"""Grapher: the graph-processing block of Vision GNN (ViG).

``fc1 -> dynamic max-relative graph convolution -> fc2`` with a residual connection. Module and
parameter names follow the official ViG state-dict layout (``fc1.0``, ``graph_conv.gconv.nn.0``,
``relative_pos``, ...) so the official checkpoints load as they are.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn
from timm.layers import DropPath, register_notrace_function, register_notrace_module

from .hooks import observed
from .knn_graph import (
    dilate_neighbours, gather_max_neighbours, knn_graph, resize_relative_position_bias,
    sincos_relative_position_bias,
)
from .pointwise import activate, conv_bn, folded_pointwise, foldable, pointwise_conv

__all__ = ['MaxRelativeConv', 'DynamicGraphConv', 'Grapher', 'grid_position_bias']


class MaxRelativeConv(nn.Module):
    """Max-relative graph convolution: ``[x_i, max_j (x_j - x_i)]`` then a grouped 1x1 conv, BN, act.

    ``max_j (x_j - x_i) == max_j x_j - x_i`` exactly (rounding is monotone), so the centre features are
    never gathered. The grouped conv was trained on channels interleaved as (x_0, rel_0, x_1, rel_1, ...);
    it runs as one product (:mod:`~zoo.layers.pointwise`) on the features laid out per group as
    (x block, rel block), with the weight's columns permuted to match at call time: one copy fewer than an
    interleave, eval-mode BatchNorm folded. Same arithmetic up to float rounding.
    """

    def __init__(self, in_chs: int, out_chs: int, act_layer: Type[nn.Module] = nn.GELU, groups: int = 4):
        super().__init__()
        self.nn = nn.Sequential(
            nn.Conv2d(in_chs * 2, out_chs, 1, groups=groups),
            nn.BatchNorm2d(out_chs),
            act_layer(),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """x: (B, C, N) nodes, y: (B, C, M) candidates, idx: (B, N, k) neighbours -> (B, out, N, 1)."""
        B, C, N = x.shape
        rel = gather_max_neighbours(y, idx) - x
        if not torch.jit.is_scripting():  # TorchScript drops this branch: it runs the modules
            out = self._batched(x, rel)
            if out is not None:
                return out
        # channels interleaved as (x_0, rel_0, x_1, rel_1, ...), the layout the grouped conv was trained on
        return self.nn(torch.stack([x, rel], dim=2).reshape(B, 2 * C, N, 1))

    @torch.jit.unused
    def _batched(self, x: torch.Tensor, rel: torch.Tensor) -> Optional[torch.Tensor]:
        """The grouped conv, BN and activation as one product (see ``pointwise_conv``); None where that does not apply."""
        B, C, N = x.shape
        conv, bn, act = self.nn[0], self.nn[1], self.nn[2]
        g = conv.groups
        if not foldable(conv, bn) or C % g or observed(act):
            return None
        # per group: its C/g channels of x, then the same of rel (a view of rel, however it is strided)
        feats = torch.cat([x.reshape(B, g, C // g, N), rel.view(B, g, C // g, N)], dim=2).view(B, 2 * C, N)
        weight, bias, folded = folded_pointwise(conv, bn)
        # interleaved column 2c + t (t = 0: x, 1: rel) of each group -> column t * (C / g) + c
        weight = weight.view(weight.shape[0], C // g, 2).transpose(1, 2).reshape(weight.shape[0], 2 * C // g)
        out = pointwise_conv(feats, weight, bias, g).unsqueeze(-1)
        return activate(act, out if folded else bn(out))


@register_notrace_module  # the graph depends on the data and the grid size: a leaf for torch.fx
class DynamicGraphConv(nn.Module):
    """Builds a dilated KNN graph from the current features and applies a max-relative graph conv.

    Args:
        in_chs / out_chs: channels.
        k: neighbours per node.
        dilation: keep every ``dilation``-th of the ``k * dilation`` nearest candidates.
        reduction: candidates come from the map average-pooled by this factor (Pyramid ViG), 1 for all.
        stochastic / epsilon: during training, with probability ``epsilon`` take a random ``k`` of the
            ``k * dilation`` nearest instead of the dilated ones.

    ``k`` and ``dilation`` are capped at run time so that ``k * dilation`` never exceeds the number of
    candidates (small inputs); at the native size the caps change nothing.
    """

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            k: int = 9,
            dilation: int = 1,
            reduction: int = 1,
            stochastic: bool = False,
            epsilon: float = 0.0,
            act_layer: Type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.k = k
        self.dilation = dilation
        self.reduction = reduction
        self.stochastic = stochastic
        self.epsilon = epsilon
        self.gconv = MaxRelativeConv(in_chs, out_chs, act_layer=act_layer)

    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, C, H, W = x.shape
        y = F.avg_pool2d(x, self.reduction, self.reduction) if self.reduction > 1 else x
        x = x.reshape(B, C, H * W)
        y = y.reshape(B, C, -1)
        m = y.shape[-1]
        k = min(self.k, m)
        dilation = max(1, min(self.dilation, m // k))
        # without dilation or sampling the order of the neighbours is lost in the max: skip sorting them
        ordered = dilation > 1 or (self.stochastic and self.training)
        idx = knn_graph(F.normalize(x, dim=1), F.normalize(y, dim=1), k * dilation, bias, sorted=ordered)
        idx = dilate_neighbours(idx, k, dilation, self.stochastic, self.epsilon, self.training)
        return self.gconv(x, y, idx).reshape(B, -1, H, W)


@register_notrace_function  # size-dependent resampling: a leaf for torch.fx
def grid_position_bias(table: torch.Tensor, grid: int, reduction: int, h: int, w: int) -> torch.Tensor:
    """A (1, grid**2, (grid // reduction)**2) relative-position table resampled to an (h, w) node grid."""
    src_key = (grid // reduction, grid // reduction)
    return resize_relative_position_bias(table, (grid, grid), src_key, (h, w), (h // reduction, w // reduction))


class Grapher(nn.Module):
    """``x + drop_path(fc2(graph_conv(fc1(x))))``; the graph conv doubles the channels, fc2 restores them.

    Args:
        dim: channels.
        k, dilation, reduction, stochastic, epsilon: see :class:`DynamicGraphConv`.
        grid: native grid side (nodes per row at the training resolution); sizes the relative-position
            table, which is resized bicubically for other grids.
        relative_pos: add the (frozen) relative-position bias to the KNN distances (Pyramid ViG).
        drop_path: stochastic depth rate.
    """

    def __init__(
            self,
            dim: int,
            k: int = 9,
            dilation: int = 1,
            reduction: int = 1,
            stochastic: bool = False,
            epsilon: float = 0.0,
            grid: int = 14,
            relative_pos: bool = False,
            drop_path: float = 0.0,
            act_layer: Type[nn.Module] = nn.GELU,
    ):
        super().__init__()
        self.grid = grid
        self.reduction = reduction
        self.fc1 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim))
        self.graph_conv = DynamicGraphConv(
            dim, dim * 2, k=k, dilation=dilation, reduction=reduction, stochastic=stochastic, epsilon=epsilon,
            act_layer=act_layer)
        self.fc2 = nn.Sequential(nn.Conv2d(dim * 2, dim, 1), nn.BatchNorm2d(dim))
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        # The official code holds the fixed table in a frozen nn.Parameter that never gets a gradient; a
        # persistent buffer keeps its state-dict key (the official checkpoints load as they are).
        self.register_buffer(
            'relative_pos', sincos_relative_position_bias(dim, grid, reduction) if relative_pos else None)

    def position_bias(self, size: Tuple[int, int]) -> Optional[torch.Tensor]:
        """The relative-position bias for a (H, W) node grid, resized from the native grid if needed."""
        table = self.relative_pos
        if table is None:
            return None
        return grid_position_bias(table, self.grid, self.reduction, size[0], size[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles this branch only: the modules one by one
            h = self.fc1(x)
            return x + self.drop_path(self.fc2(self.graph_conv(h, self.position_bias((h.shape[-2], h.shape[-1])))))
        else:
            shortcut = x
            x = conv_bn(self.fc1, x)  # (1x1 conv, BN) pairs, BN folded: see zoo.layers.pointwise
            x = self.graph_conv(x, self.position_bias((x.shape[-2], x.shape[-1])))
            if self.training and not isinstance(self.drop_path, nn.Identity):
                return self.drop_path(conv_bn(self.fc2, x)) + shortcut
            return conv_bn(self.fc2, x, residual=shortcut)  # DropPath is the identity in eval mode
