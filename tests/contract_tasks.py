"""The contract's per-task adapters: what input a model of each task takes, what it returns, how to check it.

``tests/test_contract.py`` runs the same tests on every registered model and asks the adapter of the model's
task (``zoo.model_info(name).task``) for the parts that differ between tasks:

* classification: images (B, C, H, W) -> logits (B, num_classes);
* segmentation: images -> a logit map (B, num_classes, H, W), the head's stride-``output_stride`` logits
  upsampled bilinearly (mmseg's test-time convention); ``forward_features`` returns every stage's map;
* video: clips (B, C, T, H, W) -> clip logits (B, num_classes);
* sam: images -> SAM's image embedding (B, out_chans, H/16, W/16) through the neck; the classifier
  (``forward_head``) is a side branch that the official checkpoint carries.

With ``num_classes == 0`` the classifier output is the pre-logits output. A new task adds one adapter here; a
test a task cannot honour goes in its ``skips`` with the reason.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import zoo

BATCH = 2


def pre_logits_dim(model: nn.Module) -> int:
    return getattr(model, 'head_hidden_size', None) or model.num_features


class Task:
    """What every task shares; as it stands, an image model whose forward output is the classifier's."""
    #: contract test name -> why models of this task cannot honour it (or where else it is checked)
    skips: dict[str, str] = {}

    def make_input(self, name: str, batch: int = BATCH, chans: Optional[int] = None,
                   size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """A random input at the model's ``contract_input_size`` (``size``: other H, W; ``chans``: other C)."""
        c, *dims = zoo.model_info(name).contract_input_size
        if size is not None:
            dims = dims[:-2] + list(size)
        return torch.randn(batch, chans or c, *dims)

    def logits_shape(self, model: nn.Module, x: torch.Tensor, num_classes: int) -> tuple[int, ...]:
        return x.shape[0], num_classes

    def pre_logits_shape(self, model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
        return x.shape[0], pre_logits_dim(model)

    def classifier_shape(self, model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
        """What the classifier output is for the model's current ``num_classes`` (0: the pre-logits)."""
        if model.num_classes:
            return self.logits_shape(model, x, model.num_classes)
        return self.pre_logits_shape(model, x)

    def outputs(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        """Everything a loss on the model can reach: here the forward output, which is the classifier's."""
        return [model(x)]

    def output_shapes(self, model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
        """The shapes :meth:`outputs` must have."""
        return [self.classifier_shape(model, x)]

    def forward_from_features(self, model: nn.Module, x: torch.Tensor, features) -> torch.Tensor:
        """``model(x)`` recomputed from ``model.forward_features(x)``."""
        return model.forward_head(features)

    def final_features(self, features) -> torch.Tensor:
        """The map ``forward_intermediates`` returns as its final output, out of ``forward_features``."""
        return features


class ClassificationTask(Task):
    """Classification: images (B, C, H, W) -> logits (B, num_classes)."""
    skips = {'test_fx_feature_extraction': "timm's own tests/test_models.py checks FX tracing of every classification "
                                           "model (.ci/timm_model_tests.sh runs it)"}


class SegmentationTask(Task):
    """Segmentation: images -> logit map (B, num_classes, H, W), upsampled from the head's stride-8 logits."""

    def logits_shape(self, model: nn.Module, x: torch.Tensor, num_classes: int) -> tuple[int, ...]:
        return (x.shape[0], num_classes, *x.shape[-2:])

    def pre_logits_shape(self, model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
        s = model.output_stride
        return x.shape[0], model.num_features, x.shape[-2] // s, x.shape[-1] // s

    def forward_from_features(self, model: nn.Module, x: torch.Tensor, features) -> torch.Tensor:
        logits = model.forward_head(features)
        return F.interpolate(logits, size=x.shape[-2:], mode='bilinear', align_corners=False)

    def final_features(self, features) -> torch.Tensor:
        return features[-1]  # forward_features gives every stage's map: the decode head reads several


class VideoTask(Task):
    """Video: clips (B, C, T, H, W) (``contract_input_size`` is (C, T, H, W)) -> clip logits (B, num_classes)."""


class SamTask(Task):
    """SAM image encoder: images -> image embedding (B, out_chans, H/16, W/16) through the neck. The classifier
    (``forward_head`` on ``forward_features``) is a branch beside it: the official checkpoint carries it."""

    def outputs(self, model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        features = model.forward_features(x)
        return [model(x), model.forward_head(features)]

    def output_shapes(self, model: nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
        stride = model.feature_info[-1]['reduction']
        embedding = (x.shape[0], model.out_chans, math.ceil(x.shape[-2] / stride), math.ceil(x.shape[-1] / stride))
        return [embedding, self.classifier_shape(model, x)]

    def forward_from_features(self, model: nn.Module, x: torch.Tensor, features) -> torch.Tensor:
        return model.forward_neck(features)


TASKS: dict[str, Task] = {
    'classification': ClassificationTask(),
    'segmentation': SegmentationTask(),
    'video': VideoTask(),
    'sam': SamTask(),
}


def task_of(name: str) -> Task:
    """The adapter of a registered model's task."""
    return TASKS[zoo.model_info(name).task]
