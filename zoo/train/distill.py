"""What one training step optimises: the student (plus OFA branches) and the loss terms, with or without a
teacher.

:class:`StudentNet` is the trainable module (wrapped by DistributedDataParallel under torchrun);
:class:`Objective` turns its outputs, the targets and the teacher's logits into named loss terms.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, TrainConfig
from .losses import hard_targets, kd_kl_loss, ofa_loss, soft_target_ce_loss
from .ofa import OFABranches
from .training_net import TrainingNet

__all__ = ['StudentNet', 'Objective', 'teacher_feature_dim']


def teacher_feature_dim(teacher: nn.Module) -> int:
    """Width of the teacher's pre-logits features (what OFA branches are sized against)."""
    return int(getattr(teacher, 'num_features', 0) or teacher.get_classifier().in_features)


class StudentNet(TrainingNet):
    """The student, and for OFA-KD one branch per chosen stage; forward gives (logits, branch logits)."""

    def __init__(self, student: nn.Module, branches: Optional[OFABranches] = None):
        super().__init__()
        self.student = student
        self.branches = branches

    @classmethod
    def build(cls, cfg: TrainConfig, student: nn.Module, teacher: Optional[nn.Module], num_classes: int):
        if cfg.distill != 'ofa':
            return cls(student)
        if not hasattr(student, 'forward_intermediates') or not getattr(student, 'feature_info', None):
            raise ConfigError(f'OFA-KD needs a student with forward_intermediates and feature_info; '
                              f'{cfg.model} has neither')
        info = student.feature_info
        info = info.get_dicts() if hasattr(info, 'get_dicts') else list(info)
        try:
            branches = OFABranches(info, cfg.ofa_stages, num_classes, teacher_feature_dim(teacher))
        except ValueError as e:
            raise ConfigError(str(e)) from e
        return cls(student, branches)

    def aux_modules(self) -> dict[str, nn.Module]:
        """The OFA branches (saved beside the student's weights for --resume)."""
        return {'branches': self.branches} if self.branches is not None else {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.branches is None:
            return self.student(x), []
        final, feats = self.student.forward_intermediates(x, indices=self.branches.stage_indices,
                                                          output_fmt='NCHW')
        return self.student.forward_head(final), self.branches(feats)


class Objective:
    """Named loss terms of one batch; their sum is optimised.

    - ``gt``: the supervised criterion (timm's, smoothing / mixup aware), weighted by ``gt_loss_weight``.
    - ``kd``: vanilla KD (KL at ``kd_temperature``), the GhostNetV3 soft-target CE, or OFA's loss on the
      final logits, weighted by ``kd_loss_weight``.
    - ``ofa``: OFA's loss summed over the stage branches, weighted by ``ofa_loss_weight``.
    """

    def __init__(self, cfg: TrainConfig, criterion: nn.Module):
        self.cfg = cfg
        self.criterion = criterion
        n = len(cfg.ofa_stages) + 1
        self.ofa_eps = list(cfg.ofa_eps) * n if len(cfg.ofa_eps) == 1 else list(cfg.ofa_eps)

    def __call__(self, logits: torch.Tensor, branch_logits: list[torch.Tensor], target: torch.Tensor,
                 teacher_logits: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        losses = {'gt': cfg.gt_loss_weight * self.criterion(logits, target)}
        if cfg.distill == 'none' or teacher_logits is None:
            return losses
        teacher_logits = teacher_logits.detach().float()
        if cfg.distill == 'kd':
            losses['kd'] = cfg.kd_loss_weight * kd_kl_loss(logits.float(), teacher_logits, cfg.kd_temperature)
        elif cfg.distill == 'soft_ce':
            losses['kd'] = cfg.kd_loss_weight * soft_target_ce_loss(logits.float(), teacher_logits,
                                                                    cfg.kd_temperature)
        else:  # ofa
            mask = hard_targets(target, logits.shape[-1])
            losses['kd'] = cfg.kd_loss_weight * ofa_loss(logits, teacher_logits, mask, self.ofa_eps[-1],
                                                         cfg.ofa_temperature)
            stage_losses = [ofa_loss(b, teacher_logits, mask, eps, cfg.ofa_temperature)
                            for b, eps in zip(branch_logits, self.ofa_eps)]
            losses['ofa'] = cfg.ofa_loss_weight * torch.stack(stage_losses).sum()
        return losses


def teacher_logits_for(teacher: nn.Module, x: torch.Tensor, img_size: Optional[int]) -> torch.Tensor:
    """The frozen teacher's logits, at its own input size when it needs one (e.g. a 224-pixel ViT)."""
    if img_size and x.shape[-1] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode='bilinear', align_corners=False)
    with torch.no_grad():
        return teacher(x)
