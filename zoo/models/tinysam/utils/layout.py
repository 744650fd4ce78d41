"""Official TinySAM names -> zoo names (the encoder's blocks are timm's, whose submodules are named differently)."""
from __future__ import annotations

from typing import Dict

import torch

__all__ = ['rename_encoder_key', 'to_zoo_name', 'to_zoo_layout']

_ENCODER = 'image_encoder.'


def rename_encoder_key(key: str) -> str:
    """An official image-encoder key (relative to the encoder) in the zoo layout: timm's TinyViT blocks name the
    patch embedding's convolutions ``conv1`` / ``conv2`` and a ConvNorm's convolution ``conv`` (official: ``seq.0``
    / ``seq.2`` and ``c``)."""
    key = key.replace('patch_embed.seq.0.', 'patch_embed.conv1.').replace('patch_embed.seq.2.', 'patch_embed.conv2.')
    return key.replace('.c.', '.conv.')


def to_zoo_name(name: str) -> str:
    """An official SAM parameter or module name (``image_encoder.layers.0.blocks.0.conv1.c``) in the zoo layout."""
    if not name.startswith(_ENCODER):
        return name
    # rename_encoder_key works on dotted keys; a trailing dot lets it rename a module path's last component too
    return _ENCODER + rename_encoder_key(name[len(_ENCODER):] + '.')[:-1]


def to_zoo_layout(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An official SAM state dict renamed to the zoo layout, without the non-persistent attention index tables."""
    return {to_zoo_name(k): v for k, v in state_dict.items() if not k.endswith('attention_bias_idxs')}
