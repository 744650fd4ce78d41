"""MMAction2 1.x adapter: SqueezeTime as a recognizer backbone and its I2D classification head, registered in
mmaction's ``MODELS``.

Imported by the configs in ``configs/mmaction/`` through
``custom_imports=dict(imports=['zoo.downstream.mmaction'], allow_failed_imports=False)``. Module names follow
the official mmaction2 code (``backbone.net.*``, ``cls_head.fc_cls.*``), so an official recognizer
checkpoint also loads with mmaction's own ``load_from``.
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Optional

import torch
from mmaction.models.heads.base import BaseHead
from mmaction.registry import MODELS
from mmengine.model import BaseModule
from mmengine.model.weight_init import normal_init
from timm.models import load_state_dict
from torch import nn

from ..models.squeezetime import checkpoint_filter_fn
from ..registry import UnknownModelError, create_model, model_info
from ..state_dicts import compare_state_dict
from ._openmmlab import InitCfg, checkpoint_from_init_cfg
from .backbone import BackboneError

__all__ = ['SqueezeTimeBackbone', 'SqueezeTimeHead']


def _load_without_classifier(net: nn.Module, checkpoint: str, model_name: str) -> None:
    """Load a SqueezeTime checkpoint (official mmaction2 or zoo layout, plain or wrapped) strictly into a model
    without classifier: every backbone tensor must be there and fit; the checkpoint's classifier, whatever its
    number of classes, is ignored."""
    if not os.path.isfile(checkpoint):
        raise BackboneError(f'checkpoint {checkpoint!r} for {model_name} is not a file')
    try:
        state = checkpoint_filter_fn(load_state_dict(checkpoint), net)
    except (RuntimeError, pickle.UnpicklingError) as error:  # unreadable
        raise BackboneError(f'checkpoint {checkpoint!r} does not fit {model_name}: {type(error).__name__}: '
                            f'{str(error)[:300]}') from error
    state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    mismatch = compare_state_dict(state, net.state_dict())
    if mismatch:
        raise BackboneError(f'checkpoint {checkpoint!r} does not fit {model_name}: {mismatch.describe(3)}')
    net.load_state_dict(state)


class SqueezeTimeBackbone(BaseModule):
    """A zoo SqueezeTime model without its classifier: (N, C, T, H, W) clips -> (N, 2048, H/32, W/32) maps.

    Args:
        model_name: a zoo video model (``squeezetime_k400``, ``squeezetime_k600``, ``squeezetime_hmdb51``).
        pretrained: load the model's released weights (download; the classifier is dropped).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)``, a checkpoint of this architecture (official
            mmaction2 recognizer or zoo layout), loaded strictly (its classifier aside) at build time.
        model_kwargs: further model arguments (``num_frames``, ``drop_path_rate``, ...).
    """

    def __init__(self, model_name: str = 'squeezetime_k400', pretrained: bool = False, init_cfg: InitCfg = None,
                 **model_kwargs: Any) -> None:
        super().__init__()
        checkpoint = checkpoint_from_init_cfg(init_cfg, f'SqueezeTimeBackbone({model_name!r})')
        try:
            task = model_info(model_name).task
        except UnknownModelError as error:
            raise BackboneError(str(error)) from None
        if task != 'video':
            raise BackboneError(f'{model_name} is a {task} model; SqueezeTimeBackbone needs a zoo video model '
                                '(zoo.list_models(task="video"))')
        # with its classifier for the download, so that timm loads the release strictly; then dropped
        self.net = create_model(model_name, pretrained=pretrained and not checkpoint, **model_kwargs)
        self.net.reset_classifier(0, '')
        if checkpoint:
            _load_without_classifier(self.net, checkpoint, model_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_features(x)


class SqueezeTimeHead(BaseHead):
    """The official I2D head: 2-D pooling of the backbone's map, dropout, linear classifier (``fc_cls``).

    Args:
        num_classes, in_channels: as in mmaction's ``BaseHead``.
        spatial_type: 'avg' or 'max' pooling.
        dropout_ratio: dropout before the classifier.
        init_std: standard deviation of the classifier's initial weights.
        kwargs: further ``BaseHead`` arguments (``loss_cls``, ``average_clips``, ``label_smooth_eps``, ...).
    """

    def __init__(self, num_classes: int, in_channels: int, spatial_type: str = 'avg', dropout_ratio: float = 0.5,
                 init_std: float = 0.01, **kwargs: Any) -> None:
        super().__init__(num_classes, in_channels, **kwargs)
        if spatial_type not in ('avg', 'max'):
            raise ValueError(f"spatial_type must be 'avg' or 'max', got {spatial_type!r}")
        self.init_std = init_std
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_type == 'avg' else nn.AdaptiveMaxPool2d(1)
        self.dropout: Optional[nn.Dropout] = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else None
        self.fc_cls = nn.Linear(in_channels, num_classes)

    def init_weights(self) -> None:
        normal_init(self.fc_cls, std=self.init_std)

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """(N, in_channels, h, w) maps -> (N, num_classes) class scores."""
        x = self.pool(x).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc_cls(x)


MODELS.register_module(module=SqueezeTimeBackbone)
MODELS.register_module(module=SqueezeTimeHead)
