"""MMDetection 3.x adapter: registers :class:`~zoo.downstream._openmmlab.ZooBackbone` in mmdet's ``MODELS``.

Imported by the configs in ``configs/mmdet/`` through
``custom_imports=dict(imports=['zoo.downstream.mmdet'], allow_failed_imports=False)``; then
``backbone=dict(type='ZooBackbone', model_name='wavemlp_s', ...)`` builds any staged zoo or timm model.
"""
from mmdet.registry import MODELS

from ._openmmlab import ZooBackbone

__all__ = ['ZooBackbone']

MODELS.register_module(module=ZooBackbone)
