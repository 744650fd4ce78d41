"""What one supervised step optimises: the student (plus OFA branches) and the loss terms, with or without a
teacher; the distillation methods (``--distill``), one :class:`Distillation` record each in :data:`DISTILLATIONS`.

:class:`StudentNet` is the trainable module (wrapped by DistributedDataParallel under torchrun);
:class:`Objective` turns its outputs, the targets and the teacher's logits into named loss terms. A
distillation combines with the supervised and GPT4Image paradigms (:mod:`zoo.train.paradigm`); adding one is a
loss in :mod:`zoo.train.losses` plus one entry in :data:`DISTILLATIONS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, TrainConfig
from .losses import build_criterion, hard_targets, kd_kl_loss, ofa_loss, soft_target_ce_loss
from .ofa import OFABranches
from .training_net import TrainingNet

__all__ = ['Distillation', 'DISTILLATIONS', 'StudentNet', 'Objective', 'teacher_feature_dim', 'build_student_net',
           'supervised_objective']


LogitsTerm = Callable[[TrainConfig, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Distillation:
    """A distillation method: its ``kd`` term on the final logits ``(cfg, student logits, teacher logits (float),
    target, eps) -> loss`` (weighted by ``kd_loss_weight``), and whether the student grows OFA-KD's stage
    branches, each scored against the teacher as the ``ofa`` term (weighted by ``ofa_loss_weight``)."""
    name: str
    summary: str
    logits_term: LogitsTerm
    stage_branches: bool = False


def _ofa_logits_term(cfg: TrainConfig, logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
                     eps: float) -> torch.Tensor:
    return ofa_loss(logits, teacher_logits, hard_targets(target, logits.shape[-1]), eps, cfg.ofa_temperature)


#: every distillation method, by its ``--distill`` name ('none': no teacher)
DISTILLATIONS: dict[str, Distillation] = {d.name: d for d in (
    Distillation('kd', 'vanilla KD: KL divergence at kd_temperature',
                 lambda cfg, s, t, target, eps: kd_kl_loss(s.float(), t, cfg.kd_temperature)),
    Distillation('soft_ce', "GhostNetV3's soft-target cross-entropy (its recipe adds EMA and the deploy form)",
                 lambda cfg, s, t, target, eps: soft_target_ce_loss(s.float(), t, cfg.kd_temperature)),
    Distillation('ofa', 'OFA-KD: its loss on the logits and on a branch per chosen student stage',
                 _ofa_logits_term, stage_branches=True),
)}


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
        if cfg.distill == 'none' or not DISTILLATIONS[cfg.distill].stage_branches:
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
    - ``kd``: the distillation method's term on the final logits (:data:`DISTILLATIONS`), weighted by
      ``kd_loss_weight``.
    - ``ofa``: for OFA-KD, its loss summed over the stage branches, weighted by ``ofa_loss_weight``.
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
        method = DISTILLATIONS[cfg.distill]
        losses['kd'] = cfg.kd_loss_weight * method.logits_term(cfg, logits, teacher_logits, target, self.ofa_eps[-1])
        if method.stage_branches:
            mask = hard_targets(target, logits.shape[-1])
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


def build_student_net(cfg: TrainConfig, student: nn.Module, teacher: Optional[nn.Module],
                      num_classes: int) -> StudentNet:
    """The supervised paradigm's network: the student, plus OFA-KD's stage branches."""
    return StudentNet.build(cfg, student, teacher, num_classes)


def supervised_objective(cfg: TrainConfig, mixup_active: bool) -> Objective:
    """The supervised paradigm's objective: timm's criterion (smoothing / mixup aware) plus the teacher's terms."""
    return Objective(cfg, build_criterion(mixup_active, cfg.smoothing))
