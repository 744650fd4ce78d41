"""What the OpenMMLab adapters (mmdet, mmseg, mmaction) share; needs only mmengine.

:class:`ZooBackbone` is registered by :mod:`.mmdet` and :mod:`.mmseg` in their own ``MODELS`` registries.
Weights always come through the zoo's loader (official-layout aware, strict) when the model is built: an
``init_cfg=dict(type='Pretrained', checkpoint=...)`` is handed to it rather than to mmengine, whose
``init_weights`` would load the file later, non-strictly and without the official-layout conversion.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
from mmengine.model import BaseModule

from .backbone import BackboneError, build_backbone

__all__ = ['InitCfg', 'ZooBackbone', 'checkpoint_from_init_cfg']

InitCfg = Optional[Union[dict, Sequence[dict]]]


def checkpoint_from_init_cfg(init_cfg: InitCfg, owner: str) -> str:
    """The checkpoint path of an ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``; '' for none.

    Other initialisers and ``Pretrained`` options (``prefix``, ``map_location``) are refused: the zoo loads
    the checkpoint itself, and silently dropping an option would load something else than asked for.
    """
    if init_cfg is None:
        return ''
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg)
    if len(cfgs) != 1 or cfgs[0].get('type') != 'Pretrained' or set(cfgs[0]) != {'type', 'checkpoint'}:
        raise BackboneError(
            f'{owner} takes init_cfg=dict(type="Pretrained", checkpoint=PATH) only (loaded by the zoo, '
            f'official or zoo layout), got {init_cfg!r}')
    return str(cfgs[0]['checkpoint'])


class ZooBackbone(BaseModule):
    """A timm or zoo model's stages as an OpenMMLab backbone: ``forward`` returns a tuple of NCHW maps.

    Args:
        model_name: timm or zoo model name (e.g. ``pvig_s_224_gelu``, ``wavemlp_s``, ``slab_swin_t``).
        out_indices: stages to return (indices into the model's stages; None: every stage of a pyramid).
        frozen_stages: -1 none, 0 the stem, k the stem and the first k stages (OpenMMLab semantics).
        norm_eval: keep every batch norm in eval mode while training.
        pretrained: load the model's released ImageNet weights (download).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)``, a local checkpoint of this model in the
            official or the zoo layout, loaded strictly by the zoo at build time.
        model_kwargs: further model arguments (``drop_path_rate``, ...).

    Attributes:
        channels, strides: of each returned map (what the neck's ``in_channels`` must list).
    """

    def __init__(
            self,
            model_name: str,
            out_indices: Optional[Sequence[int]] = None,
            frozen_stages: int = -1,
            norm_eval: bool = False,
            pretrained: bool = False,
            init_cfg: InitCfg = None,
            **model_kwargs: Any,
    ) -> None:
        super().__init__()
        checkpoint = checkpoint_from_init_cfg(init_cfg, f'ZooBackbone({model_name!r})')
        self.body = build_backbone(
            model_name, out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
            checkpoint=checkpoint, pretrained=pretrained, **model_kwargs)
        self.channels = list(self.body.channels)
        self.strides = list(self.body.strides)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.body(x))
