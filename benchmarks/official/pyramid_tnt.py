"""Official PyramidTNT and TNT (huawei-noah/Efficient-AI-Backbones, ``tnt_pytorch/``) for ``zoo.benchmark``.

Each function builds the official model in eval mode, by calling the official constructor directly (the official
files register the same names with timm, so nothing is built by name). Point ``ZOO_OFFICIAL_SRC`` at a folder
holding the checkout as ``huawei-noah+Efficient-AI-Backbones`` (default ``/work/official-src``)::

    python -m zoo.benchmark --model ptnt_s_patch16_256 \
        --compare python:benchmarks/official/pyramid_tnt.py:ptnt_s_patch16_256 --rounds 3
"""
import importlib.util
import os
import sys
import types

import torch.nn as nn

_FOLDER = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'),
                       'huawei-noah+Efficient-AI-Backbones', 'tnt_pytorch')


def _load(filename: str) -> types.ModuleType:
    """Import an official file under a private name, with timm's ``register_model`` made a no-op while it loads
    (so it neither shadows nor warns about the zoo's names). The arithmetic is untouched."""
    name = f'_official_tnt_{filename[:-3]}'
    if name in sys.modules:
        return sys.modules[name]
    import timm.models.registry as registry
    original = registry.register_model
    registry.register_model = lambda fn: fn
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(_FOLDER, filename))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        registry.register_model = original
    return module


def _build(filename: str, function: str) -> nn.Module:
    return getattr(_load(filename), function)().eval()


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
