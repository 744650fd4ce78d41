"""1x1 convolutions (+ BatchNorm) of ViG run as batched matrix products over (B, C, H*W) maps, or in plain CPU
inference as oneDNN's convolution primitive called directly.

Why: ``F.conv2d`` sends an NCHW 1x1 convolution to oneDNN when it runs on several threads and to its slow
reference kernel on one thread. ``torch.baddbmm`` on the NCHW map seen as (B, C, N) is the same product with no
copies, and its bias term carries the BatchNorm's shift and, when asked, a residual: it serves autograd. In plain
CPU float32 inference (``zoo.layers.onednn.onednn_applies``) oneDNN's convolution primitive, called directly on the
(B, C, N, 1) view whatever the thread count, was 1.3-2.7x faster than the batched product at every Pyramid ViG
shape (AMD EPYC, 2 threads, where MKL's batched products are slow), and Pyramid ViG-S 1.28x faster end to end.
The modules and their parameters stay as they are (checkpoints, converters); only the call changes. In eval mode
the BatchNorm is folded into the weight and bias inside every call (a few thousand numbers, recomputed each time,
so never stale; differentiable). Same arithmetic up to float rounding.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .batchnorm_fold import folded_conv_bn
from .hooks import observed
from .onednn import conv2d_act, onednn_applies

__all__ = ['foldable', 'folded_pointwise', 'pointwise_conv', 'conv_bn', 'activate']


def foldable(conv: nn.Module, bn: nn.Module) -> bool:
    """Whether ``(conv, bn)`` is a plain 1x1 conv followed by a BatchNorm this module knows how to run."""
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.dilation == (1, 1)
            and not observed(conv, bn))  # hooked modules run as modules


def folded_pointwise(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """(weight (O, C / groups), bias, folded): the conv's own, or with the eval-mode BatchNorm folded in."""
    if bn.training or bn.running_var is None or bn.weight is None:
        return conv.weight.flatten(1), conv.bias, False
    weight, bias = folded_conv_bn(conv, bn)
    return weight.flatten(1), bias, True


def pointwise_conv(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        groups: int = 1,
        residual: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``conv1x1(x) + bias (+ residual)`` for x (B, C, N) and weight (O, C / groups) -> (B, O, N).

    Groups are contiguous channel blocks, so a grouped conv is one batched product over (B * groups).
    """
    B, C, N = x.shape
    O = weight.shape[0]
    if not torch.jit.is_scripting():  # TorchScript (a scripted FX graph calls this leaf) drops this branch
        if onednn_applies(x, weight):
            out = conv2d_act(x.view(B, C, N, 1), weight.view(O, -1, 1, 1), bias, (1, 1), (0, 0), (1, 1), groups)
            out = out.view(B, O, N)
            return out if residual is None else out.add_(residual)
    og, cg = O // groups, C // groups
    w = weight.reshape(1, groups, og, cg).expand(B, groups, og, cg).reshape(B * groups, og, cg)
    xg = x.reshape(B * groups, cg, N)
    # written for TorchScript's Optional refinement (a scripted FX graph compiles this function)
    if residual is not None:
        base = residual
        if bias is not None:
            base = residual + bias.view(1, O, 1)
    elif bias is not None:
        base = bias.view(1, O, 1)
    else:
        return torch.bmm(w, xg).view(B, O, N)
    if groups > 1:
        base = base.expand(B, O, base.shape[-1]).reshape(B * groups, og, base.shape[-1])
    return torch.baddbmm(base, w, xg).view(B, O, N)


# An FX leaf (called from conv_bn through this module's globals): a traced graph decides between oneDNN and the
# batched product when it runs, as eager code does. Traced through, the graph would keep the batched product, and
# its rounding differs from eager inference's oneDNN call: ViG's KNN graph amplifies that at random init (timm's
# test_model_forward_fx compares the two).
torch.fx.wrap('pointwise_conv')


def conv_bn(pair: nn.Sequential, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``pair`` = (1x1 conv, BatchNorm) applied to x (B, C, H, W), plus ``residual`` if given.

    ``residual`` is added in the product's bias term when the BatchNorm folds (eval mode), else afterwards.
    Anything else than a plain (Conv2d, BatchNorm2d) pair runs module by module.
    """
    conv, bn = pair[0], pair[1]
    if not foldable(conv, bn):
        out = pair(x)
        return out if residual is None else out + residual
    B, _, H, W = x.shape
    weight, bias, folded = folded_pointwise(conv, bn)
    if folded:
        res = None if residual is None else residual.reshape(B, -1, H * W)
        return pointwise_conv(x.reshape(B, -1, H * W), weight, bias, conv.groups, res).view(B, -1, H, W)
    out = bn(pointwise_conv(x.reshape(B, -1, H * W), weight, bias, conv.groups).view(B, -1, H, W))
    return out if residual is None else out + residual


def activate(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(x)``; a GELU overwrites ``x`` when autograd is off (a fresh output of this size costs page faults
    on every call: ViG's 8x320x56x56 hidden map is past the allocator's reuse threshold). Same kernel."""
    if type(act) is nn.GELU and not torch.is_grad_enabled():
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)
