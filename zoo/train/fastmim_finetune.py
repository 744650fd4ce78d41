"""FastMIM's fine-tuning recipe for an encoder: the layer-wise learning-rate decay its official scripts use.

FastMIM fine-tunes every encoder it pre-trains with layer-wise lr decay (``--layer-decay`` here): 0.70 for ViT
and 0.80 for Swin (the commands in its README), 0.75 otherwise (its fine-tuning script's default, which its
PVTv2 and CMT runs take). The zoo's other attention and MLP encoders take the value of the kind they build on
(SLAB's DeiT / Swin / CSWin / PVT variants that of their base; Wave-MLP, Hire-MLP and PyramidTNT the default).
FastMIM has no fine-tuning recipe for CNNs or graph networks, and decay hurts them here: on the digits (3 + 3
epochs, 32 px) decay 0.75 cost ghostnet_050 31 points and pvig_ti_224_gelu 4.4 against plain fine-tuning,
while it gained wavemlp_t 10.6 and vit_tiny 31. They fine-tune plainly.

FastMIM (as MAE) also fine-tunes ViTs on the average of the patch tokens (``--global-pool avg``; timm then
normalises the pooled features with ``fc_norm`` instead of the tokens with ``norm``), since masked-image
pre-training never trains the class token for classification. The pooling changes the model's keys, so it is
chosen at pre-training already. On the digits (3 + 3 epochs, 32 px, layer decay 0.70) it took fine-tuned
vit_tiny from 83.06% to 86.67%, against 88.89% from scratch with either pooling.
"""
from __future__ import annotations

from typing import Optional

__all__ = ['LAYER_DECAY', 'AVERAGE_POOLED', 'layer_decay_for', 'encoder_options']

#: (model-name prefixes, layer decay), first match wins
LAYER_DECAY: tuple[tuple[tuple[str, ...], float], ...] = (
    (('vit_', 'deit_', 'slab_deit'), 0.70),
    (('swin', 'slab_swin', 'slab_cswin'), 0.80),
    (('pvt', 'slab_pvt', 'wavemlp', 'hire_mlp', 'ptnt', 'tnt'), 0.75),
)


#: model-name prefixes of timm's ViTs, which FastMIM pools by averaging patch tokens
AVERAGE_POOLED = ('vit_', 'deit_')


def encoder_options(model: str) -> dict[str, str]:
    """Options of FastMIM's encoder for ``model`` at pre-training, fine-tuning and its scratch baseline alike."""
    return {'global_pool': 'avg'} if model.startswith(AVERAGE_POOLED) else {}


def layer_decay_for(model: str) -> Optional[float]:
    """FastMIM's fine-tuning layer decay for ``model`` (a timm / zoo name), or None to fine-tune plainly."""
    for prefixes, decay in LAYER_DECAY:
        if model.startswith(prefixes):
            return decay
    return None
