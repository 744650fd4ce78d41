"""Detection with any staged zoo / timm backbone through torchvision's detectors (no mmcv needed).

:func:`build_detector` puts a :class:`~zoo.downstream.backbone.StagedBackbone` under a torchvision
feature pyramid and one of torchvision's RetinaNet, Faster R-CNN or Mask R-CNN, with anchors sized to
the backbone's strides, the backbone's normalisation, and images padded to the backbone's size divisor.
Detector weights start untrained (nothing is downloaded); the backbone loads a ``checkpoint``.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional, Sequence

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

from .backbone import StagedBackbone, build_backbone

__all__ = ['DETECTORS', 'FPNBackbone', 'build_detector']

DETECTORS = ('retinanet', 'fasterrcnn', 'maskrcnn')
ASPECT_RATIOS = (0.5, 1.0, 2.0)


class FPNBackbone(nn.Module):
    """A StagedBackbone under a torchvision FPN: the ``backbone`` torchvision's detectors take.

    Returns an ordered dict of ``out_channels``-channel maps named '0', '1', ... (one per backbone map)
    followed by the extra levels ('p6', 'p7' for RetinaNet, 'pool' for the R-CNNs).
    """

    def __init__(self, body: StagedBackbone, out_channels: int, extra_blocks: nn.Module):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.channels, out_channels, extra_blocks=extra_blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def build_detector(
        kind: str,
        backbone: str,
        num_classes: int,
        *,
        out_indices: Optional[Sequence[int]] = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        checkpoint: str = '',
        fpn_channels: int = 256,
        min_size: int = 800,
        max_size: int = 1333,
        **kwargs: Any,
) -> nn.Module:
    """A torchvision RetinaNet / Faster R-CNN / Mask R-CNN over a zoo (or timm) backbone with an FPN.

    Args:
        kind: 'retinanet', 'fasterrcnn' or 'maskrcnn'.
        backbone: a model name :func:`~zoo.downstream.backbone.build_backbone` accepts.
        num_classes: classes including the background, as torchvision counts them (COCO: 91): object
            labels are 1 .. num_classes - 1 and label 0 is never a target.
        out_indices: backbone stages under the FPN; None: the last stage at each stride from stride 8
            (RetinaNet, which adds P6 and P7) or stride 4 (the R-CNNs, which add a max-pooled level).
        frozen_stages, norm_eval, checkpoint: passed to ``build_backbone``.
        fpn_channels: channels of every pyramid level.
        min_size, max_size: torchvision's resize of the input images (shorter side, longer side cap).
        kwargs: further arguments of the torchvision detector (``box_score_thresh``, ...).

    Returns:
        The torchvision detector: ``model(images)`` in eval mode gives one dict of boxes (x1, y1, x2, y2
        in the input image's pixels), labels, scores (and masks) per image; in train mode
        ``model(images, targets)`` gives the loss dict.
    """
    if kind not in DETECTORS:
        raise ValueError(f'unknown detector kind {kind!r}; expected one of {DETECTORS}')
    body = build_backbone(backbone, out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                          checkpoint=checkpoint)
    if out_indices is None:
        body = _from_stride(body, 8 if kind == 'retinanet' else 4)
    extra = LastLevelP6P7(fpn_channels, fpn_channels) if kind == 'retinanet' else LastLevelMaxPool()
    fpn = FPNBackbone(body, fpn_channels, extra)
    level_strides = body.strides + ([body.strides[-1] * 2, body.strides[-1] * 4] if kind == 'retinanet'
                                    else [body.strides[-1] * 2])
    transform = dict(min_size=min_size, max_size=max_size, image_mean=list(body.pretrained_cfg['mean']),
                     image_std=list(body.pretrained_cfg['std']), size_divisible=body.size_divisor)
    if kind == 'retinanet':
        # torchvision's sizes: 4x the stride with three octave scales (32, 40, 50 on stride 8)
        sizes = tuple(tuple(int(4 * s * 2 ** (i / 3)) for i in range(3)) for s in level_strides)
        anchors = AnchorGenerator(sizes, (ASPECT_RATIOS,) * len(sizes))
        return RetinaNet(fpn, num_classes, anchor_generator=anchors, **transform, **kwargs)
    anchors = AnchorGenerator(tuple((8 * s,) for s in level_strides), (ASPECT_RATIOS,) * len(level_strides))
    names = [str(i) for i in range(len(body.strides))]
    pools = dict(box_roi_pool=MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2))
    if kind == 'maskrcnn':
        pools['mask_roi_pool'] = MultiScaleRoIAlign(names, output_size=14, sampling_ratio=2)
    model_cls = FasterRCNN if kind == 'fasterrcnn' else MaskRCNN
    return model_cls(fpn, num_classes, rpn_anchor_generator=anchors, **pools, **transform, **kwargs)


def _from_stride(body: StagedBackbone, min_stride: int) -> StagedBackbone:
    """The maps of ``body`` with stride >= ``min_stride`` (all of them when none is that coarse)."""
    keep = [i for i, s in zip(body.out_indices, body.strides) if s >= min_stride] or list(body.out_indices)
    return body if keep == list(body.out_indices) else body.select(keep)
