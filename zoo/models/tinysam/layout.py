"""Official TinySAM names -> zoo names (the encoder's blocks are timm's, whose submodules are named differently)."""
from __future__ import annotations

from typing import Dict

import torch

from .image_encoder import _rename

__all__ = ['to_zoo_name', 'to_zoo_layout']

_ENCODER = 'image_encoder.'


def to_zoo_name(name: str) -> str:
    """An official SAM parameter or module name (``image_encoder.layers.0.blocks.0.conv1.c``) in the zoo layout."""
    if not name.startswith(_ENCODER):
        return name
    # _rename works on dotted keys; a trailing dot lets it rename a module path's last component too
    return _ENCODER + _rename(name[len(_ENCODER):] + '.')[:-1]


def to_zoo_layout(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An official SAM state dict renamed to the zoo layout, without the non-persistent attention index tables."""
    return {to_zoo_name(k): v for k, v in state_dict.items() if not k.endswith('attention_bias_idxs')}
