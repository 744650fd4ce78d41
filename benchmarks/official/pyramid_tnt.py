"""Official PyramidTNT and TNT (huawei-noah/Efficient-AI-Backbones, ``tnt_pytorch/``) for ``zoo.benchmark``.

Each function builds the official model in eval mode, by calling the official constructor directly (the official
files register the same names with timm, so nothing is built by name). Point ``ZOO_OFFICIAL_SRC`` at a folder
holding the checkout as ``huawei-noah+Efficient-AI-Backbones`` (default ``/work/official-src``)::

    python -m zoo.benchmark --model ptnt_s_patch16_256 \
        --compare python:benchmarks/official/pyramid_tnt.py:ptnt_s_patch16_256 --rounds 3
"""
import torch.nn as nn

from _official import checkout, load_file  # zoo.benchmark makes this folder importable while it loads the file


def _build(filename: str, function: str) -> nn.Module:
    path = checkout('huawei-noah+Efficient-AI-Backbones', 'tnt_pytorch', filename)
    return getattr(load_file(path, f'_official_tnt_{filename[:-3]}'), function)().eval()


def ptnt_ti_patch16_192() -> nn.Module:
    return _build('pyramid_tnt.py', 'ptnt_ti_patch16_192')


def ptnt_s_patch16_256() -> nn.Module:
    return _build('pyramid_tnt.py', 'ptnt_s_patch16_256')


def ptnt_m_patch16_256() -> nn.Module:
    return _build('pyramid_tnt.py', 'ptnt_m_patch16_256')


def ptnt_b_patch16_256() -> nn.Module:
    return _build('pyramid_tnt.py', 'ptnt_b_patch16_256')


def tnt_s_patch16_224() -> nn.Module:
    return _build('tnt.py', 'tnt_s_patch16_224')


def tnt_b_patch16_224() -> nn.Module:
    return _build('tnt.py', 'tnt_b_patch16_224')
