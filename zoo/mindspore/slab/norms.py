"""PRepBN and its pieces as MindSpore cells, mirroring :mod:`zoo.layers.prepbn` attribute for attribute.

``RepBN(x) = BN(x) + alpha * x`` over the channel (last) dimension of tokens; ``PRepBN`` holds a LayerNorm
(``norm1``) and a RepBN (``norm2``) with the official blend counters (``warm``, ``iter``, ``total_step``) as
non-trainable parameters, so torch checkpoints convert by leaf renames. In inference mode PRepBN is RepBN alone,
as in torch. :class:`NormSpec` builds the norm of a SLAB variant in its train form or, with ``deploy=True``, in
the fused form ``model.fuse()`` leaves: nothing where the norm was folded into the next layer, a per-channel
affine where nothing could absorb it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ..layers import LayerNorm

__all__ = ['RepBN', 'PRepBN', 'ChannelAffine', 'NormSpec']


class RepBN(nn.Cell):
    """``BN(x) + alpha * x`` over the last dimension of ``(..., C)`` tokens (torch BatchNorm1d defaults)."""

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = Parameter(Tensor(np.ones(1, np.float32)), name='alpha')
        self.bn = nn.BatchNorm1d(dim, eps=1e-5, momentum=0.9)  # MindSpore momentum = 1 - torch momentum

    def construct(self, x):
        shape = x.shape
        return self.bn(x.reshape(-1, shape[-1])).reshape(shape) + self.alpha * x


class PRepBN(nn.Cell):
    """LayerNorm blended into RepBN during training (weight ``r0 * iter / total_step`` on the LayerNorm,
    LayerNorm alone while ``warm > 0``); RepBN alone in inference mode."""

    def __init__(self, dim: int, blend_steps: int, eps: float, r0: float = 1.0):
        super().__init__()
        self.r0 = r0
        self.warm = Parameter(Tensor(np.array(0, np.int64)), name='warm', requires_grad=False)
        self.iter = Parameter(Tensor(np.array(blend_steps, np.int64)), name='iter', requires_grad=False)
        self.total_step = Parameter(Tensor(np.array(blend_steps, np.int64)), name='total_step', requires_grad=False)
        self.norm1 = LayerNorm(dim, eps)
        self.norm2 = RepBN(dim)

    def construct(self, x):
        if not self.training:
            return self.norm2(x)
        lam = self.r0 * self.iter.astype(x.dtype) / ops.maximum(self.total_step, 1).astype(x.dtype)
        lam = ops.select(self.warm > 0, ops.ones_like(lam), lam)  # warm-up: LayerNorm alone
        return lam * self.norm1(x) + (1.0 - lam) * self.norm2(x)


class ChannelAffine(nn.Cell):
    """``x * scale + shift`` over the last dimension: a RepBN in the deploy form where nothing absorbed it."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = Parameter(Tensor(np.ones(dim, np.float32)), name='scale')
        self.shift = Parameter(Tensor(np.zeros(dim, np.float32)), name='shift')

    def construct(self, x):
        return x * self.scale + self.shift


@dataclass(frozen=True)
class NormSpec:
    """The norm of one SLAB variant: plain RepBN (``blend_steps=0``) or PRepBN, train form or deploy form."""

    blend_steps: int = 0
    eps: float = 1e-5
    deploy: bool = False

    def deployed(self, deploy: bool) -> 'NormSpec':
        """The same norm in the deploy form (``True``) or the train form."""
        return replace(self, deploy=deploy)

    def __call__(self, dim: int) -> nn.Cell:
        """The train-form norm (what a torch model holds before ``fuse()``)."""
        return PRepBN(dim, self.blend_steps, self.eps) if self.blend_steps else RepBN(dim)

    def folded(self, dim: int) -> nn.Cell:
        """A norm that ``fuse()`` folds into the neighbouring linear layer or convolution."""
        return nn.Identity() if self.deploy else self(dim)

    def standalone(self, dim: int) -> nn.Cell:
        """A norm that nothing absorbs: a per-channel affine in the deploy form."""
        return ChannelAffine(dim) if self.deploy else self(dim)
