"""MindSpore twins of CGRSeg T / B / L (:mod:`zoo.models.cgrseg`): EfficientFormerV2 backbone, RCM and the DPG
head, for any input size divisible by 32 that the torch model takes.

``construct`` returns what the torch model's ``forward`` does: per-class logits at the input resolution
(bilinear upsampling of the stride-8 logits; ``num_classes=0``: the head's stride-8 features).
``forward_intermediates`` gives the backbone's four stage outputs, as torch's with ``intermediates_only=True``.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

from mindspore import Tensor, nn, ops
from timm.models.efficientformer_v2 import (
    EfficientFormer_depth, EfficientFormer_expansion_ratios, EfficientFormer_width,
)

from ..layers.input_checks import check_image_shape
from ..registry import register_twin
from .efficientformer_v2 import EfficientFormerV2Backbone
from .head import CGRSegHead

__all__ = ['CGRSeg', 'CGRSEG_CONFIGS']

# backbone width, ViT blocks, head width, band lengths (per-level, neck), neck depth: as zoo.models.cgrseg
CGRSEG_CONFIGS = {
    'cgrseg_t': dict(backbone='S1', num_vit=2, head_channels=128, band_kernel_size=11, neck_band_kernel_size=11,
                     neck_depth=5),
    'cgrseg_b': dict(backbone='S2', num_vit=4, head_channels=256, band_kernel_size=11, neck_band_kernel_size=11,
                     neck_depth=6),
    'cgrseg_l': dict(backbone='L', num_vit=6, head_channels=256, band_kernel_size=9, neck_band_kernel_size=9,
                     neck_depth=5),
}


class CGRSeg(nn.Cell):
    """CGRSeg: EfficientFormerV2 backbone (``backbone``) and decode head (``decode_head``)."""

    def __init__(self, backbone: str, num_vit: int, head_channels: int, band_kernel_size: int = 11,
                 neck_band_kernel_size: int = 11, neck_depth: int = 5, num_classes: int = 150, in_chans: int = 3,
                 bias_resolution: Union[int, tuple[int, int]] = 512, in_index: Sequence[int] = (1, 2, 3),
                 backbone_norm_eval: bool = True):
        super().__init__()
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.in_index = tuple(in_index)
        widths = EfficientFormer_width[backbone]
        self.backbone = EfficientFormerV2Backbone(
            EfficientFormer_depth[backbone], widths, EfficientFormer_expansion_ratios[backbone], num_vit,
            in_chans=in_chans, bias_resolution=bias_resolution, norm_eval=backbone_norm_eval)
        self.decode_head = CGRSegHead(
            [widths[i] for i in self.in_index], head_channels, num_classes=num_classes,
            band_kernel_size=band_kernel_size, neck_band_kernel_size=neck_band_kernel_size, neck_depth=neck_depth)

    def forward_intermediates(self, x: Tensor) -> tuple:
        """The backbone's four stage outputs (strides 4, 8, 16, 32)."""
        check_image_shape(x.shape, self.in_chans, divisor=32, min_size=32, name='CGRSeg')
        return self.backbone(x)

    def construct(self, x: Tensor) -> Tensor:
        stages = self.forward_intermediates(x)
        out = self.decode_head([stages[i] for i in self.in_index])
        if self.num_classes == 0:
            return out
        return ops.interpolate(out, size=(x.shape[2], x.shape[3]), mode='bilinear', align_corners=False)


def _bias_resolution(model: Any) -> Union[int, tuple[int, int]]:
    """The input size whose token grid the torch backbone's bias tables are built for (stride-16 grid x 16)."""
    h, w = model.backbone.stages[3].downsample.attn.resolution
    return h * 16 if h == w else (h * 16, w * 16)


def _cgrseg_kwargs(model: Any) -> dict:
    return dict(num_classes=model.num_classes, in_chans=model.in_chans, bias_resolution=_bias_resolution(model),
                in_index=model.in_index)


@register_twin(*CGRSEG_CONFIGS, kwargs_from_torch=_cgrseg_kwargs)
def create_cgrseg(variant: str, num_classes: int = 150, in_chans: int = 3,
                  bias_resolution: Union[int, tuple[int, int]] = 512, in_index: Sequence[int] = (1, 2, 3)) -> CGRSeg:
    """The MindSpore twin of CGRSeg ``variant``."""
    return CGRSeg(**CGRSEG_CONFIGS[variant], num_classes=num_classes, in_chans=in_chans,
                  bias_resolution=bias_resolution, in_index=in_index)
