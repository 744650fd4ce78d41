"""The base of the networks a run trains (supervised / distillation, FastMIM, GPT4Image)."""
from __future__ import annotations

import torch.nn as nn

__all__ = ['TrainingNet']


class TrainingNet(nn.Module):
    """A trainable network around the model being trained, held as ``self.student``.

    ``aux_modules`` names its other trainable parts (saved beside the model weights, for --resume only).
    ``no_weight_decay`` is what timm's optimizer factory reads: the student's own exclusions (e.g. a ViT's
    position table and class token), under ``student.``, plus ``extra_no_weight_decay``.
    """
    #: names (relative to this network) of further parameters kept out of weight decay
    extra_no_weight_decay: tuple[str, ...] = ()

    def aux_modules(self) -> dict[str, nn.Module]:
        return {}

    def no_weight_decay(self) -> set[str]:
        inner = self.student.no_weight_decay() if hasattr(self.student, 'no_weight_decay') else set()
        return {f'student.{n}' for n in inner} | set(self.extra_no_weight_decay)
