"""OFA-KD's per-stage branches: project a student's intermediate feature maps into the logit space.

Architecture-agnostic: a branch is planned from the student's ``feature_info`` (channels and reduction of
each stage) and fed by ``forward_intermediates(output_fmt='NCHW')``, so CNN, MLP and transformer students
(and any teacher: only its logits are used) work without per-architecture code. A branch downsamples its
stage by depthwise-separable stride-2 blocks until it reaches the last stage's reduction, widening the
channels, then pools and classifies; the width before the classifier is max(student, teacher) features,
as in the paper's branches.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
from timm.layers import trunc_normal_

__all__ = ['SeparableDownsample', 'OFABranch', 'OFABranches', 'resolve_stage_indices']


class SeparableDownsample(nn.Sequential):
    """Two depthwise-separable 3x3 convolutions (the first with stride 2), each followed by BN + ReLU."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.Conv2d(in_chs, in_chs, 3, stride=2, padding=1, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, in_chs, 1, bias=False),
            nn.BatchNorm2d(in_chs),
            nn.ReLU(),
            nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs, bias=False),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(),
        )


class OFABranch(nn.Module):
    """One stage's branch: downsample ``num_down`` times (or a 1x1 projection), pool, classify."""

    def __init__(self, in_chs: int, num_down: int, embed_dim: int, num_classes: int):
        super().__init__()
        blocks: list[nn.Module] = []
        chs = in_chs
        for i in range(num_down):
            out = embed_dim if i == num_down - 1 else chs * 2
            blocks.append(SeparableDownsample(chs, out))
            chs = out
        if not blocks:
            blocks.append(nn.Conv2d(chs, embed_dim, 1))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.blocks(x)).flatten(1))


def resolve_stage_indices(stages: Sequence[int], num_stages: int) -> list[int]:
    """Stage indices into ``feature_info``; negative ones count from the end. Refuses out-of-range ones."""
    out = []
    for s in stages:
        i = s + num_stages if s < 0 else s
        if not 0 <= i < num_stages:
            raise ValueError(f'OFA stage {s} is out of range: the student has {num_stages} feature stages '
                             f'(indices 0..{num_stages - 1} or negative from the end)')
        out.append(i)
    if len(set(out)) != len(out):
        raise ValueError(f'OFA stages {list(stages)} name the same stage twice')
    return out


class OFABranches(nn.Module):
    """A branch per chosen student stage, planned from ``feature_info``."""

    def __init__(self, feature_info: Sequence[dict], stages: Sequence[int], num_classes: int, teacher_dim: int):
        super().__init__()
        self.stage_indices = resolve_stage_indices(stages, len(feature_info))
        last = feature_info[-1]
        embed_dim = max(int(last['num_chs']), int(teacher_dim))
        branches = []
        for i in self.stage_indices:
            info = feature_info[i]
            num_down = max(int(round(math.log2(last['reduction'] / info['reduction']))), 0)
            branches.append(OFABranch(int(info['num_chs']), num_down, embed_dim, num_classes))
        self.branches = nn.ModuleList(branches)
        self.apply(_init_weights)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(f) for branch, f in zip(self.branches, features)]


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
    elif isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=.02)
        nn.init.zeros_(m.bias)
