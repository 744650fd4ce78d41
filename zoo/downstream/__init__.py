"""Downstream adapters: zoo backbones in detection, segmentation and video frameworks.

Never imported by the core (``import zoo`` does not load it). :mod:`.backbone` is the generic staged
backbone every adapter builds on; :mod:`.detection` is the always-available torchvision detection path.
"""
from .backbone import BackboneError, StagedBackbone, build_backbone

__all__ = ['BackboneError', 'StagedBackbone', 'build_backbone']
