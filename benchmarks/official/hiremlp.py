"""The official Hire-MLP models, for ``zoo.benchmark``: e.g.
``python -m zoo.benchmark --model hire_mlp_tiny --compare python:benchmarks/official/hiremlp.py:hire_mlp_tiny``.

Builds each variant from ggjy/Hire-Wave-MLP.pytorch (``mlp_based/hire_mlp.py``), found under
``$ZOO_OFFICIAL_SRC`` (default ``/work/official-src``) as ``ggjy+Hire-Wave-MLP.pytorch``. The file is loaded under
a private module name with two shims that change no arithmetic: ``to_2tuple`` where the old timm kept it, and a
no-op ``register_model`` (the official ``hire_mlp_*`` names would otherwise replace the zoo's in timm's registry).
The official blocks print their settings when built; that output is silenced.
"""
import contextlib
import importlib.util
import io
import os
import sys
import types

from torch import nn

_FILE = os.path.join(os.environ.get('ZOO_OFFICIAL_SRC', '/work/official-src'),
                     'ggjy+Hire-Wave-MLP.pytorch', 'mlp_based', 'hire_mlp.py')


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
        _official = _load(_FILE, '_official_hire_mlp')
    with contextlib.redirect_stdout(io.StringIO()):
        return getattr(_official, function)().eval()


def hire_mlp_tiny() -> nn.Module:
    return _build('hire_mlp_tiny')


def hire_mlp_small() -> nn.Module:
    return _build('hire_mlp_small')


def hire_mlp_base() -> nn.Module:
    return _build('hire_mlp_base')


def hire_mlp_large() -> nn.Module:
    return _build('hire_mlp_large')
