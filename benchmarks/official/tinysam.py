"""Official TinySAM image encoder (xinghaochen/TinySAM, ``tinysam/modeling/tiny_vit_sam.py``) for ``zoo.benchmark``.

``tinysam_vit_t`` builds the official ``TinyViT`` with the settings of the official ``build_sam`` (TinyViT-5M trunk,
SAM neck; its forward gives the (B, 256, 64, 64) image embedding of a 1024 x 1024 input, as the zoo's
``tinysam_vit_t`` does), in eval mode. Only that file is loaded (under a private name, with timm's
``register_model`` a no-op while it loads: it registers TinyViT names timm has too). Point ``ZOO_OFFICIAL_SRC`` at
a folder holding the checkout as ``xinghaochen+TinySAM`` (default ``/work/official-src``)::

    python -m zoo.benchmark --model tinysam_vit_t --compare python:benchmarks/official/tinysam.py:tinysam_vit_t \
        --batch-size 1 --rounds 3
"""
import torch.nn as nn

from _official import checkout, load_file  # zoo.benchmark makes this folder importable while it loads the file

_FILE = checkout('xinghaochen+TinySAM', 'tinysam', 'modeling', 'tiny_vit_sam.py')


def _load():
    return load_file(_FILE, '_official_tinysam_tiny_vit_sam')


def tinysam_vit_t() -> nn.Module:
    """The official TinySAM image encoder (6.07M parameters), eval mode; takes 1024 x 1024 inputs only."""
    return _load().TinyViT(
        img_size=1024, in_chans=3, num_classes=1000, embed_dims=[64, 128, 160, 320], depths=[2, 2, 6, 2],
        num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7], mlp_ratio=4., drop_rate=0., drop_path_rate=0.0,
        use_checkpoint=False, mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8).eval()
