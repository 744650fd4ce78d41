"""Optimizer parameter groups with layer-wise learning-rate decay for the model being trained.

Fine-tuning recipes for pre-trained encoders (FastMIM, MAE, BEiT) scale each layer's learning rate by
``layer_decay ** (depth from the top)``: the new classifier learns at the full rate, the first layers barely
move, so the head can settle before large updates reach the pre-trained features. timm's
``param_groups_layer_decay`` finds the layers through the model's ``group_matcher`` (or its classifier name);
the training network wraps the model (``net.student``), so the groups are built on the model itself and the
network's own extra parts (decoder, projection, distillation branches) are added at the full rate. timm's
schedulers apply each group's ``lr_scale``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch.nn as nn
from timm.optim import param_groups_layer_decay

__all__ = ['optimizer_params']


def optimizer_params(net: nn.Module, weight_decay: float, layer_decay: Optional[float],
                     min_scale: float = 0.) -> nn.Module | list[dict]:
    """What ``create_optimizer_v2`` takes: ``net`` itself without layer decay (timm's grouping), else
    layer-decayed groups of ``net.student`` (no scale below ``min_scale``) plus the rest of ``net`` at scale 1
    (1-D tensors and the network's ``no_weight_decay`` names without weight decay, as timm does)."""
    if layer_decay is None:
        return net
    student = net.student
    skip = student.no_weight_decay() if hasattr(student, 'no_weight_decay') else set()
    groups: list[dict[str, Any]] = param_groups_layer_decay(student, weight_decay=weight_decay,
                                                             no_weight_decay_list=skip, layer_decay=layer_decay,
                                                             min_scale=min_scale)
    owned = {id(p) for g in groups for p in g['params']}
    net_skip = net.no_weight_decay() if hasattr(net, 'no_weight_decay') else set()
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        if p.requires_grad and id(p) not in owned:
            (no_decay if p.ndim <= 1 or name in net_skip else decay).append(p)
    groups += [{'params': ps, 'weight_decay': wd, 'lr_scale': 1.} for ps, wd in ((decay, weight_decay),
                                                                                 (no_decay, 0.)) if ps]
    return groups
