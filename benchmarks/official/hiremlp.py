"""The official Hire-MLP models, for ``zoo.benchmark``: e.g.
``python -m zoo.benchmark --model hire_mlp_tiny --compare python:benchmarks/official/hiremlp.py:hire_mlp_tiny``.

Builds each variant from ggjy/Hire-Wave-MLP.pytorch (``mlp_based/hire_mlp.py``), found under
``$ZOO_OFFICIAL_SRC`` (default ``/work/official-src``) as ``ggjy+Hire-Wave-MLP.pytorch``. The file is loaded under
a private module name with two shims that change no arithmetic: ``to_2tuple`` where the old timm kept it, and a
no-op ``register_model`` (the official ``hire_mlp_*`` names would otherwise replace the zoo's in timm's registry).
The official blocks print their settings when built; that output is silenced.
"""
from torch import nn

from _official import checkout, load_file, official_imports  # zoo.benchmark makes this folder importable

_FILE = checkout('ggjy+Hire-Wave-MLP.pytorch', 'mlp_based', 'hire_mlp.py')


def _build(function: str) -> nn.Module:
    module = load_file(_FILE, '_official_hire_mlp', quiet=True)
    with official_imports(quiet=True):  # the official constructors print their settings
        return getattr(module, function)().eval()


def hire_mlp_tiny() -> nn.Module:
    return _build('hire_mlp_tiny')


def hire_mlp_small() -> nn.Module:
    return _build('hire_mlp_small')


def hire_mlp_base() -> nn.Module:
    return _build('hire_mlp_base')


def hire_mlp_large() -> nn.Module:
    return _build('hire_mlp_large')
