"""The official Wave-MLP models, for ``zoo.benchmark``: e.g.
``python -m zoo.benchmark --model wavemlp_t --compare python:benchmarks/official/wavemlp.py:wavemlp_t``.

Builds each variant from huawei-noah/Efficient-AI-Backbones (``wavemlp_pytorch/models/wavemlp.py``), found under
``$ZOO_OFFICIAL_SRC`` (default ``/work/official-src``) as ``huawei-noah+Efficient-AI-Backbones``. The file is
loaded under a private module name with two shims that change no arithmetic: ``to_2tuple`` where the old timm
kept it, and a no-op ``register_model`` (the official names must not enter timm's registry).
"""
import importlib.util
import os
import sys
import types

from torch import nn

_FILE = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'),
                     'huawei-noah+Efficient-AI-Backbones', 'wavemlp_pytorch', 'models', 'wavemlp.py')


def _load(path: str, name: str) -> types.ModuleType:
    """Execute an official model file with the shims in place; they are removed afterwards."""
    import timm.layers

    shims = {
        'timm.models.layers.helpers': types.SimpleNamespace(to_2tuple=timm.layers.to_2tuple),
        'timm.models.registry': types.SimpleNamespace(register_model=lambda fn: fn),
    }
    saved = {k: sys.modules.get(k) for k in shims}
    sys.modules.update(shims)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return module


_official = None


def _build(function: str) -> nn.Module:
    global _official
    if _official is None:
        _official = _load(_FILE, '_official_wavemlp')
    return getattr(_official, function)().eval()


def wavemlp_t_dw() -> nn.Module:
    return _build('WaveMLP_T_dw')


def wavemlp_t() -> nn.Module:
    return _build('WaveMLP_T')


def wavemlp_s() -> nn.Module:
    return _build('WaveMLP_S')


def wavemlp_m() -> nn.Module:
    return _build('WaveMLP_M')


def wavemlp_b() -> nn.Module:
    return _build('WaveMLP_B')
