"""Loss functions: the supervised criterion (timm's) and the distillation losses on logits."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

__all__ = ['build_criterion', 'kd_kl_loss', 'soft_target_ce_loss', 'ofa_loss', 'hard_targets']


def build_criterion(mixup_active: bool, smoothing: float) -> nn.Module:
    """timm's criterion: soft-target CE under mixup/cutmix (smoothing is then in the targets), else
    label-smoothing CE, else plain CE."""
    if mixup_active:
        return SoftTargetCrossEntropy()
    if smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=smoothing)
    return nn.CrossEntropyLoss()


def kd_kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.) -> torch.Tensor:
    """Vanilla KD (Hinton et al.): KL(teacher || student) on temperature-softened logits, times T^2."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    p_t = F.softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_p_s, p_t, reduction='batchmean') * temperature ** 2


def soft_target_ce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                        temperature: float = 1.) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's softmax (the GhostNetV3 recipe's KD term).

    Equal to the KL form up to the teacher's entropy, a constant for the student.
    """
    p_t = F.softmax(teacher_logits / temperature, dim=-1)
    return -(p_t * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1).mean()


def hard_targets(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot of the ground-truth class; soft (mixup / smoothed) targets map to their arg-max."""
    if target.ndim > 1:
        target = target.argmax(-1)
    return F.one_hot(target, num_classes).to(torch.float32)


def ofa_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target_mask: torch.Tensor,
             eps: float = 1., temperature: float = 1.) -> torch.Tensor:
    """OFA-KD's loss with adaptive target enhancement (Hao et al., NeurIPS 2023).

    The target is ``(p_t + m) ** eps - m`` with ``m`` the one-hot ground truth: the true class gets
    ``(1 + p_t) ** eps - 1`` and the others ``p_t ** eps``, so ``eps > 1`` enhances the true class and damps
    the rest, the more so the more confident the teacher. With ``eps = 1`` this is the soft-target CE.
    """
    p_t = F.softmax(teacher_logits.float() / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    target = (p_t + target_mask) ** eps - target_mask
    return -(target * log_p_s).sum(-1).mean()
