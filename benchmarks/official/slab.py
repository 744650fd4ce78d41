"""Official SLAB models (xinghaochen/SLAB, ``classification/models``) for ``python -m zoo.benchmark --compare
python:benchmarks/official/slab.py:<function>``.

One function per variant, named like the zoo model, returns the official model in eval mode, built with the
settings of the official configs (``classification/cfgs/*.yaml`` over ``config.py``'s defaults). The checkout
is found at ``$ZOO_OFFICIAL_SRC/xinghaochen+SLAB`` (default ``/work/official-src``). The official files are
loaded under private module names; shims that change no arithmetic stand in for what this environment lacks:
a small ``einops.rearrange`` (reshape / permute / reshape, as einops does) when einops is not installed, a
no-op ``register_model`` while they load (they would otherwise replace the zoo's own timm entries of the
same names), and a ``models`` package holding only their ``prepbn.py``.
"""
from __future__ import annotations

import math
import os
import re
import types
from typing import Any

import torch
from torch import nn

from _official import checkout, load_file, official_imports  # zoo.benchmark makes this folder importable

_ROOT = checkout('xinghaochen+SLAB', 'classification', 'models')


# ------------------------------------------------------------------------------------------------------
# shims
# ------------------------------------------------------------------------------------------------------

def _parse_side(side: str) -> list[list[str]]:
    """``'b (h c) n'`` -> ``[['b'], ['h', 'c'], ['n']]``."""
    return [g.strip('()').split() for g in re.findall(r'\([^)]*\)|\S+', side)]


def _rearrange(x: torch.Tensor, pattern: str, **sizes: int) -> torch.Tensor:
    """The subset of ``einops.rearrange`` the official files use: split / merge / permute axes."""
    left, right = (_parse_side(s) for s in pattern.split('->'))
    known = dict(sizes)
    for group, dim in zip(left, x.shape):
        unknown = [a for a in group if a not in known]
        rest = math.prod(known[a] for a in group if a in known)
        if unknown:
            known[unknown[0]] = dim // rest
    flat = [a for g in left for a in g]
    y = x.reshape([known[a] for a in flat])
    y = y.permute([flat.index(a) for g in right for a in g])
    return y.reshape([math.prod(known[a] for a in g) for g in right])


class _Rearrange(nn.Module):
    def __init__(self, pattern: str, **sizes: int):
        super().__init__()
        self.pattern, self.sizes = pattern, sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _rearrange(x, self.pattern, **self.sizes)


def _einops_modules() -> dict[str, types.ModuleType]:
    """Stand-in ``einops`` modules, only where einops itself is not installed."""
    try:
        import einops  # noqa: F401
        return {}
    except ImportError:
        pass
    root, layers, layers_torch = (types.ModuleType(n) for n in ('einops', 'einops.layers', 'einops.layers.torch'))
    root.rearrange = _rearrange
    layers_torch.Rearrange = _Rearrange
    root.layers, layers.torch = layers, layers_torch
    return {'einops': root, 'einops.layers': layers, 'einops.layers.torch': layers_torch}


def _official(name: str) -> types.ModuleType:
    """``classification/models/<name>.py`` under a private module name, with a ``models`` package holding only
    their ``prepbn.py`` and, where einops is missing, its stand-in."""
    prepbn = load_file(os.path.join(_ROOT, 'prepbn.py'), '_slab_official_prepbn')
    package = types.ModuleType('models')
    package.__path__ = []
    package.prepbn = prepbn
    stand_ins = {'models': package, 'models.prepbn': prepbn, **_einops_modules()}
    return load_file(os.path.join(_ROOT, f'{name}.py'), f'_slab_official_{name}', stand_ins=stand_ins)


def _quiet(fn, *args: Any, **kwargs: Any) -> nn.Module:
    """Build without the official constructors' per-layer prints."""
    with official_imports(quiet=True):
        return fn(*args, **kwargs).eval()


# ------------------------------------------------------------------------------------------------------
# variants (settings of the official cfgs/*.yaml and config.py defaults: SLA kernel 5, focusing factor 3)
# ------------------------------------------------------------------------------------------------------

_LA = dict(focusing_factor=3, kernel_size=5)


def slab_deit_t() -> nn.Module:
    """``deit_tiny_patch16_224_linear_repbn`` (cfgs/slab_deit_t.yaml)."""
    return _quiet(_official('slab_deit').deit_tiny_patch16_224_linear_repbn)


def slab_pvt_t() -> nn.Module:
    """``slab_pvt_tiny`` with ``attn_type='LLLL'``, ``la_sr_ratios='1111'`` (cfgs/slab_pvt_t.yaml)."""
    return _quiet(_official('slab_pvt').slab_pvt_tiny, attn_type='LLLL', la_sr_ratios='1111', **_LA)


def slab_pvt_v2_b0() -> nn.Module:
    """``slab_pvt_v2_b0`` (the official code defines it; no config or weights are released), built as the
    official ``build_model`` builds the PVT family: ``attn_type='LLLL'``, ``la_sr_ratios='1111'``."""
    return _quiet(_official('slab_pvt_v2').slab_pvt_v2_b0, attn_type='LLLL', la_sr_ratios='1111', **_LA)


def slab_swin_t() -> nn.Module:
    """``SlabSwinTransformer`` of cfgs/slab_swin_t.yaml: windows of 56, ``attn_type='LLSS'``."""
    return _quiet(_official('slab_swin').SlabSwinTransformer, img_size=224, patch_size=4, in_chans=3,
                  num_classes=1000, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=56,
                  mlp_ratio=4., qkv_bias=True, qk_scale=None, drop_rate=0., drop_path_rate=0.2, ape=False,
                  patch_norm=True, use_checkpoint=False, attn_type='LLSS', **_LA)


def slab_cswin_t() -> nn.Module:
    """``SLAB_CSWin_64_24181_tiny_224`` of cfgs/slab_cswin_t.yaml: ``attn_type='LLSS'``, SLA split sizes
    ``'56-28-14-7'`` (config.py's default)."""
    return _quiet(_official('slab_cswin').SLAB_CSWin_64_24181_tiny_224, img_size=224, in_chans=3,
                  num_classes=1000, drop_rate=0., drop_path_rate=0.1, attn_type='LLSS',
                  la_split_size='56-28-14-7', **_LA)
