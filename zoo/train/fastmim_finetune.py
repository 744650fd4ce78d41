"""FastMIM's fine-tuning recipe for an encoder: the layer-wise learning-rate decay its official scripts use.

FastMIM fine-tunes every encoder it pre-trains with layer-wise lr decay (``--layer-decay`` here): 0.70 for ViT
and 0.80 for Swin (the commands in its README), 0.75 otherwise (its fine-tuning script's default, which its
PVTv2 and CMT runs take). The zoo's other attention and MLP encoders take the value of the kind they build on
(SLAB's DeiT / Swin / CSWin / PVT variants that of their base; Wave-MLP, Hire-MLP and PyramidTNT the default).
FastMIM has no fine-tuning recipe for CNNs or graph networks, and decay hurts them here: on the digits (3 + 3
epochs, 32 px) decay 0.75 cost ghostnet_050 31 points and pvig_ti_224_gelu 4.4 against plain fine-tuning,
while it gained wavemlp_t 10.6 and vit_tiny 31. They fine-tune plainly.
"""
from __future__ import annotations

from typing import Optional

__all__ = ['LAYER_DECAY', 'layer_decay_for']

#: (model-name prefixes, layer decay), first match wins
LAYER_DECAY: tuple[tuple[tuple[str, ...], float], ...] = (
    (('vit_', 'deit_', 'slab_deit'), 0.70),
    (('swin', 'slab_swin', 'slab_cswin'), 0.80),
    (('pvt', 'slab_pvt', 'wavemlp', 'hire_mlp', 'ptnt', 'tnt'), 0.75),
)


def layer_decay_for(model: str) -> Optional[float]:
    """FastMIM's fine-tuning layer decay for ``model`` (a timm / zoo name), or None to fine-tune plainly."""
    for prefixes, decay in LAYER_DECAY:
        if model.startswith(prefixes):
            return decay
    return None
