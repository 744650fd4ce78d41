"""SLAB: efficient transformers with simplified linear attention and progressive re-parameterised BatchNorm.

Guo, Chen, Tang, Wang, ICML 2024 (https://arxiv.org/abs/2405.11582), official code xinghaochen/SLAB.

Four backbones, one module each, in the official state-dict layouts so the released checkpoints load
directly: :mod:`.deit` (``deit_*_prepbn``, ``slab_deit_*``), :mod:`.pvt` (``pvt_*_prepbn``, ``slab_pvt_*``,
``slab_pvt_v2_b*``), :mod:`.swin` (``swin_t_prepbn``, ``slab_swin_*``) and :mod:`.cswin` (``slab_cswin_*``);
:mod:`.common` holds what they share.

Norms are PRepBN (:mod:`zoo.layers.prepbn`), or plain RepBN where the official code builds that
(``deit_t_prepbn``, ``swin_t_prepbn``). The training loop drives the LayerNorm-to-RepBN blend with
``model.set_norm_progress(step)``; eval mode always uses RepBN. ``model.fuse()`` gives the deploy form:
every RepBN folded into the neighbouring linear layer or convolution (a per-channel affine where nothing
can absorb it), same outputs.

Other input sizes than the 224 the variants are built for: learned position tables are resized
(bilinear, as the official PVT does), SLA stages attend globally over the whole feature map, and window /
stripe attention pads the map and masks the padding out of the keys.
"""
from . import cswin, deit, pvt, swin
from .common import resample_position_tables
from .cswin import SlabCSWinTransformer
from .deit import SlabVisionTransformer
from .pvt import SlabPyramidTransformer
from .swin import SlabSwinTransformer

__all__ = ['SlabVisionTransformer', 'SlabPyramidTransformer', 'SlabSwinTransformer', 'SlabCSWinTransformer',
           'resample_position_tables']
