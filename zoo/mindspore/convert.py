"""Torch state dicts to MindSpore parameters and back, by leaf renames alone.

Every twin mirrors its torch module tree attribute for attribute, so a parameter keeps its dotted path and only
the leaf of normalisation layers changes name: BatchNorm ``weight / bias / running_mean / running_var`` become
``gamma / beta / moving_mean / moving_variance``, LayerNorm and GroupNorm ``weight / bias`` become
``gamma / beta``. Conv (OIHW) and dense ([out, in]) layouts are the same in both frameworks. Which rename
applies is read off the twin's own parameter names, so no per-family table is needed.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

__all__ = ['LEAF_RENAMES', 'torch_to_mindspore_names', 'convert_arrays', 'to_torch_arrays']

# torch leaf -> MindSpore leaf, for normalisation layers.
LEAF_RENAMES = {'weight': 'gamma', 'bias': 'beta', 'running_mean': 'moving_mean', 'running_var': 'moving_variance'}
# torch bookkeeping buffers with no MindSpore counterpart.
DROPPED_LEAVES = ('num_batches_tracked',)


def _leaf_split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition('.')
    return (prefix + '.' if prefix else ''), leaf


def torch_to_mindspore_names(torch_keys: Iterable[str], mindspore_names: Iterable[str]) -> dict[str, str]:
    """Map each torch key to the twin's parameter name: the same path, or the same path with the leaf renamed.

    Keys whose leaf torch keeps only for bookkeeping (``num_batches_tracked``) are left out; a key with no
    counterpart maps to itself, so that the caller's comparison reports it as unexpected.
    """
    targets = set(mindspore_names)
    mapping = {}
    for key in torch_keys:
        prefix, leaf = _leaf_split(key)
        if leaf in DROPPED_LEAVES:
            continue
        renamed = prefix + LEAF_RENAMES.get(leaf, leaf)
        mapping[key] = key if key in targets or renamed not in targets else renamed
    return mapping


def convert_arrays(state_dict: Mapping[str, 'np.ndarray'], mindspore_names: Iterable[str]) -> dict[str, np.ndarray]:
    """Torch ``{key: array}`` (tensors already turned to NumPy) to ``{MindSpore name: array}``."""
    mapping = torch_to_mindspore_names(state_dict, mindspore_names)
    return {mapping[k]: np.asarray(v) for k, v in state_dict.items() if k in mapping}


def to_torch_arrays(params: Mapping[str, 'np.ndarray'], torch_keys: Iterable[str]) -> dict[str, np.ndarray]:
    """MindSpore ``{name: array}`` back to torch ``{key: array}``, for the keys of the torch model."""
    torch_keys = list(torch_keys)
    mapping = torch_to_mindspore_names(torch_keys, params)
    return {k: np.asarray(params[v]) for k, v in mapping.items() if v in params}
