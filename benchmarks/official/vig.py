"""Official ViG and Pyramid ViG (huawei-noah/Efficient-AI-Backbones, vig_pytorch) for ``zoo.benchmark``.

    python -m zoo.benchmark --model pvig_s_224_gelu --compare python:benchmarks/official/vig.py:pvig_s_224_gelu

The checkout is looked up at ``$ZOO_OFFICIAL_SRC/huawei-noah+Efficient-AI-Backbones/vig_pytorch``
(``ZOO_OFFICIAL_SRC`` defaults to ``/work/official-src``). Its files are loaded under private module names with
shims that change no arithmetic: ``np.float`` (removed from NumPy) is aliased to ``float``, and timm's
``register_model`` is a no-op while they load, so they never replace the zoo's entries in timm's registry.

Parameter counts: the official Pyramid ViG keeps its fixed relative-position tables in frozen
``nn.Parameter``s, the zoo in buffers under the same keys, so ``official - zoo == tables`` there (see
:func:`frozen_table_count`); ViG's counts are equal.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import sys
from types import ModuleType

import numpy as np
from torch import nn

_FOLDER = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'),
                       'huawei-noah+Efficient-AI-Backbones', 'vig_pytorch')
_MODULES: dict[str, ModuleType] = {}


@contextlib.contextmanager
def _official_imports():
    """The official folder importable, timm's registration a no-op, ``np.float`` defined, prints silenced."""
    import timm.models.registry as timm_registry

    if not hasattr(np, 'float'):
        np.float = float  # the official pos_embed.py still uses the alias NumPy removed
    register = timm_registry.register_model
    timm_registry.register_model = lambda fn: fn
    sys.path.insert(0, _FOLDER)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # DeepGCN prints its options when built
            yield
    finally:
        sys.path.remove(_FOLDER)
        timm_registry.register_model = register


def _official(file: str) -> ModuleType:
    """``vig.py`` or ``pyramid_vig.py`` of the checkout, loaded once under a private name."""
    if file not in _MODULES:
        path = os.path.join(_FOLDER, file + '.py')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'no official ViG code at {path}; set ZOO_OFFICIAL_SRC')
        with _official_imports():
            spec = importlib.util.spec_from_file_location(f'_official_vig_{file}', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        _MODULES[file] = module
    return _MODULES[file]


def _build(file: str, name: str) -> nn.Module:
    with _official_imports():
        return getattr(_official(file), name)().eval()


def frozen_table_count(model: nn.Module) -> int:
    """Elements of the official model's frozen relative-position tables (Parameters there, buffers in the zoo)."""
    return sum(p.numel() for n, p in model.named_parameters() if n.endswith('relative_pos'))


def vig_ti_224_gelu() -> nn.Module:
    return _build('vig', 'vig_ti_224_gelu')


def vig_s_224_gelu() -> nn.Module:
    return _build('vig', 'vig_s_224_gelu')


def vig_b_224_gelu() -> nn.Module:
    return _build('vig', 'vig_b_224_gelu')


def pvig_ti_224_gelu() -> nn.Module:
    return _build('pyramid_vig', 'pvig_ti_224_gelu')


def pvig_s_224_gelu() -> nn.Module:
    return _build('pyramid_vig', 'pvig_s_224_gelu')


def pvig_m_224_gelu() -> nn.Module:
    return _build('pyramid_vig', 'pvig_m_224_gelu')


def pvig_b_224_gelu() -> nn.Module:
    return _build('pyramid_vig', 'pvig_b_224_gelu')
