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

from torch import nn

from _official import checkout, load_file, official_imports  # zoo.benchmark makes this folder importable

_FOLDER = checkout('huawei-noah+Efficient-AI-Backbones', 'vig_pytorch')


def _build(file: str, name: str) -> nn.Module:
    """``name`` of ``vig.py`` or ``pyramid_vig.py``, loaded once under a private name with the checkout's folder
    importable (its ``gcn_lib``); DeepGCN prints its options when built, which is silenced."""
    imports = dict(folder=_FOLDER, quiet=True)
    module = load_file(f'{_FOLDER}/{file}.py', f'_official_vig_{file}', **imports)
    with official_imports(**imports):
        return getattr(module, name)().eval()


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
