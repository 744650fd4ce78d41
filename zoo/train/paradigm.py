"""What a run trains, by ``cfg.paradigm``: the trainable network and the objective over its outputs.

Every network is a :class:`TrainingNet` whose forward gives ``(logits or None, aux)``; it holds the model
being trained as ``.student`` and names its other trainable parts in ``aux_modules()`` (saved beside the
model weights for --resume) and passes the student's weight-decay exclusions on; the objective turns
``(logits, aux, target, teacher_logits, *extra batch items)`` into named loss terms.

- ``supervised``: :class:`StudentNet` (plus OFA branches) and :class:`Objective` (CE, KD, OFA).
- ``fastmim``: :class:`MaskedImageModel`; one term, ``mim``, the masked-token reconstruction error.
- ``gpt4image``: :class:`TextAlignedNet` and :class:`TextAlignObjective` (the supervised terms plus ``align``);
  batches carry each image's text embedding as a third item.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from .config import ConfigError, TrainConfig
from .distill import Objective, StudentNet
from .losses import build_criterion
from .mim import MaskedImageModel, masked_mse_loss
from .text_align import TextAlignedNet, TextAlignObjective

__all__ = ['build_net', 'build_objective', 'mim_objective']


def build_net(cfg: TrainConfig, student: nn.Module, teacher: Optional[nn.Module], num_classes: int,
              text_dim: int = 0) -> nn.Module:
    """The trainable network of ``cfg.paradigm`` around ``student``."""
    if cfg.paradigm == 'fastmim':
        try:
            return MaskedImageModel(
                student, img_size=cfg.img_size, mask_ratio=cfg.mim_mask_ratio, mask_patch=cfg.mim_mask_patch,
                target=cfg.mim_target, hog_bins=cfg.mim_hog_bins, hog_cell=cfg.mim_hog_cell,
                norm_target=cfg.mim_norm_target, decoder_dim=cfg.mim_decoder_dim,
                decoder_depth=cfg.mim_decoder_depth, sizes=cfg.mim_sizes, size_epochs=cfg.mim_size_epochs,
                epochs=cfg.epochs)
        except ValueError as e:
            raise ConfigError(f'{cfg.model}: {e}') from e
    if cfg.paradigm == 'gpt4image':
        return TextAlignedNet(student, text_dim, cfg.img_size)
    return StudentNet.build(cfg, student, teacher, num_classes)


def mim_objective(logits: None, aux: tuple[torch.Tensor, torch.Tensor, torch.Tensor], target: torch.Tensor,
                  teacher_logits: None) -> dict[str, torch.Tensor]:
    """FastMIM's one loss term: mean squared error of the prediction on masked tokens."""
    return {'mim': masked_mse_loss(*aux)}


def build_objective(cfg: TrainConfig, mixup_active: bool) -> Callable[..., dict[str, torch.Tensor]]:
    """The loss terms of ``cfg.paradigm``."""
    if cfg.paradigm == 'fastmim':
        return mim_objective
    base = Objective(cfg, build_criterion(mixup_active, cfg.smoothing))
    return TextAlignObjective(cfg, base) if cfg.paradigm == 'gpt4image' else base
