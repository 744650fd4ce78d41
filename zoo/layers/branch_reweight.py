"""Split-attention fusion of parallel token-mixing branches (CycleMLP / ViP / Wave-MLP / Hire-MLP style).

The branches are summed and globally pooled; a small 1x1-conv MLP turns the pooled vector into one
weight per branch and channel, softmax-normalised across branches, and the branches are mixed with
those weights.
"""
from __future__ import annotations

from typing import List, Type

import torch
from torch import nn


class BranchReweight(nn.Module):
    """Mix ``num_branches`` (B, C, H, W) maps with input-dependent per-channel weights.

    Parameters are named ``fc1`` / ``fc2`` like the official Wave-MLP and Hire-MLP ``reweight`` MLP,
    so their checkpoints load unchanged.
    """

    def __init__(
            self,
            dim: int,
            num_branches: int = 3,
            hidden_ratio: float = 0.25,
            act_layer: Type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.num_branches = num_branches
        hidden = int(dim * hidden_ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, dim * num_branches, 1)

    def forward(self, branches: List[torch.Tensor]) -> torch.Tensor:
        if len(branches) != self.num_branches:
            raise ValueError(f'expected {self.num_branches} branches, got {len(branches)}')
        B, C = branches[0].shape[0], branches[0].shape[1]
        # the mean of the sum as the sum of the means: the summed map is never written (same value up to rounding)
        pooled = branches[0].mean((2, 3), keepdim=True)
        for k in range(1, self.num_branches):
            pooled = pooled + branches[k].mean((2, 3), keepdim=True)
        weights = self.fc2(self.act(self.fc1(pooled)))
        # channel c*num_branches + k weighs branch k of channel c; lay the weights out branch-major so
        # that each branch multiplies a contiguous (B, C, 1, 1) tensor
        weights = weights.reshape(B, C, self.num_branches).softmax(dim=-1)
        weights = weights.permute(2, 0, 1).contiguous()[..., None, None]
        # one output map, accumulated in place: each further branch is one fused multiply-add pass (autograd
        # allows it: no backward reads ``out``); fresh maps this large cost page faults on every call. The
        # result is reassigned so that torch.fx graphs keep the in-place nodes (their dead-code pass drops
        # calls whose results are unused)
        out = branches[0] * weights[0]
        for k in range(1, self.num_branches):
            out = out.addcmul_(branches[k], weights[k])
        return out
