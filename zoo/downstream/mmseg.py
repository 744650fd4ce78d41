"""MMSegmentation 1.x adapter: :class:`~zoo.downstream._openmmlab.ZooBackbone` and the CGRSeg decode head,
registered in mmseg's ``MODELS``.

Imported by the configs in ``configs/mmseg/`` through
``custom_imports=dict(imports=['zoo.downstream.mmseg'], allow_failed_imports=False)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS

from ..models.cgrseg import CGRSegHead as _PlainCGRSegHead
from ._openmmlab import ZooBackbone

__all__ = ['CGRSegHead', 'ZooBackbone']


class CGRSegHead(BaseDecodeHead):
    """The zoo's CGRSeg decode head as an mmseg decode head (losses, sampling and inference from mmseg).

    The plain head's modules become this head's own, under the same names, so the state dict has the
    official mmseg layout (``decode_head.trans.*``, ``decode_head.SIM.*``, ``decode_head.lgc.*``, ...) and
    official checkpoints' ``decode_head.*`` keys load as they are; ``forward`` runs the plain head's
    computation on them. The official config names map as ``dw_size`` -> ``band_kernel_size``,
    ``neck_size`` -> ``neck_band_kernel_size``, ``next_repeat`` -> ``neck_depth``, ``mr`` -> ``mlp_ratio``.

    Args:
        band_kernel_size, neck_band_kernel_size, neck_depth, mlp_ratio, square_kernel_size, ratio: the
            head's RCM settings (see :class:`zoo.models.cgrseg.CGRSegHead`).
        kwargs: :class:`BaseDecodeHead` arguments (``in_channels``, ``in_index``, ``channels``,
            ``num_classes``, ``dropout_ratio``, ``loss_decode``, ``align_corners``, ...); the input
            transform is always ``'multiple_select'`` and the head's norms are batch norms (set
            ``sync_bn='torch'`` in the config for SyncBN).
    """

    # the plain head's computation, run on this head's modules (which carry the same names)
    fuse_levels = _PlainCGRSegHead.fuse_levels
    classify = _PlainCGRSegHead.classify
    _plain_forward = _PlainCGRSegHead.forward

    def __init__(
            self,
            band_kernel_size: int = 11,
            neck_band_kernel_size: int = 11,
            neck_depth: int = 5,
            mlp_ratio: float = 2.,
            square_kernel_size: int = 3,
            ratio: int = 1,
            **kwargs: Any,
    ) -> None:
        if kwargs.pop('input_transform', 'multiple_select') != 'multiple_select':
            raise ValueError("CGRSegHead reads several feature levels: input_transform must be 'multiple_select'")
        if kwargs.get('norm_cfg') not in (None, dict(type='BN', requires_grad=True)):
            raise ValueError("CGRSegHead uses batch norm; for SyncBN set sync_bn='torch' in the config instead "
                             f"of norm_cfg={kwargs['norm_cfg']!r}")
        super().__init__(input_transform='multiple_select', **kwargs)
        plain = _PlainCGRSegHead(
            self.in_channels, self.channels, num_classes=self.out_channels, band_kernel_size=band_kernel_size,
            neck_band_kernel_size=neck_band_kernel_size, neck_depth=neck_depth, mlp_ratio=mlp_ratio,
            square_kernel_size=square_kernel_size, ratio=ratio, drop_rate=self.dropout_ratio)
        for name, module in plain.named_children():  # replaces BaseDecodeHead's conv_seg and dropout too
            setattr(self, name, module)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Stride-8 per-class logits from the backbone's feature maps (``in_index`` selects the levels)."""
        return self._plain_forward(self._transform_inputs(inputs))


MODELS.register_module(module=ZooBackbone)
MODELS.register_module(module=CGRSegHead)
