"""Official GhostNet V1, V2 and V3 (huawei-noah/Efficient-AI-Backbones) for ``zoo.benchmark``.

    python -m zoo.benchmark --model ghostnetv2_100 --compare python:benchmarks/official/ghostnet.py:ghostnetv2_100

The checkout is looked up at ``$ZOO_OFFICIAL_SRC/huawei-noah+Efficient-AI-Backbones`` (``ZOO_OFFICIAL_SRC``
defaults to ``/work/official-src``): ``ghostnet_pytorch/ghostnet.py``, ``ghostnetv2_pytorch/model/
ghostnetv2_torch.py`` and ``ghostnetv3_pytorch/ghostnetv3.py``, each loaded under a private module name with
timm's ``register_model`` a no-op while it loads (so they never replace the zoo's timm entries). The
builders are called as the official training scripts call them (width 1.0, dropout 0.2, 1000 classes).
The zoo's ``ghostnet*`` are timm's models (``zoo/models/ghostnet.py``); their parameter counts equal these.
"""
from __future__ import annotations

from torch import nn

from _official import checkout, load_file  # zoo.benchmark makes this folder importable while it loads the file

_FILES = {
    'v1': 'ghostnet_pytorch/ghostnet.py',
    'v2': 'ghostnetv2_pytorch/model/ghostnetv2_torch.py',
    'v3': 'ghostnetv3_pytorch/ghostnetv3.py',
}


def _official(version: str):
    """The official file of a GhostNet version, loaded once under a private name."""
    return load_file(checkout('huawei-noah+Efficient-AI-Backbones', _FILES[version]), f'_official_ghostnet_{version}')


def ghostnet_100() -> nn.Module:
    return _official('v1').ghostnet(width=1.0).eval()


def ghostnetv2_100() -> nn.Module:
    return _official('v2').ghostnetv2(num_classes=1000, width=1.0, dropout=0.2, args=None).eval()


def ghostnetv3_100() -> nn.Module:
    return _official('v3').ghostnetv3(width=1.0).eval()
