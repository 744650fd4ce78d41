"""The official Wave-MLP models, for ``zoo.benchmark``: e.g.
``python -m zoo.benchmark --model wavemlp_t --compare python:benchmarks/official/wavemlp.py:wavemlp_t``.

Builds each variant from huawei-noah/Efficient-AI-Backbones (``wavemlp_pytorch/models/wavemlp.py``), found under
``$ZOO_OFFICIAL_SRC`` (default ``/work/official-src``) as ``huawei-noah+Efficient-AI-Backbones``. The file is
loaded under a private module name with two shims that change no arithmetic: ``to_2tuple`` where the old timm
kept it, and a no-op ``register_model`` (the official names must not enter timm's registry).
"""
from torch import nn

from _official import checkout, load_file  # zoo.benchmark makes this folder importable while it loads the file

_FILE = checkout('huawei-noah+Efficient-AI-Backbones', 'wavemlp_pytorch', 'models', 'wavemlp.py')


def _build(function: str) -> nn.Module:
    return getattr(load_file(_FILE, '_official_wavemlp'), function)().eval()


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
