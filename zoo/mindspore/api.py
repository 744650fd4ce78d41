"""The public MindSpore API: build twins, move weights between the frameworks, load torch weights strictly.

A twin's parameter names equal its torch model's state dict keys up to the leaf renames of
:mod:`zoo.mindspore.convert`, so every function here works for every family without a per-family table.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import mindspore as ms
import numpy as np
import torch
from mindspore import nn

from ..state_dicts import KeyMismatch, unwrap_state_dict
from .convert import DROPPED_LEAVES, convert_arrays, to_torch_arrays, torch_to_mindspore_names
from .registry import kwargs_reader, twin_builder, twin_names

__all__ = ['create_model', 'from_torch', 'convert_state_dict', 'to_torch_state_dict', 'load_torch_weights',
           'list_models', 'parameter_arrays', 'model_name_of', 'load_arrays']


def list_models() -> list[str]:
    """Every zoo model name with a MindSpore twin, sorted."""
    return twin_names()


def create_model(name: str, **kwargs: Any) -> nn.Cell:
    """The MindSpore twin of zoo model ``name`` (random weights, inference mode); ``kwargs`` as for the torch
    model where they apply (``num_classes``, ``in_chans``, ``deploy``, ...). ``'tinysam'`` is the whole SAM
    (``img_size``); Q-TinySAM's twin needs its calibrated layers: build it with :func:`from_torch`."""
    if name == 'tinysam':
        from .tinysam import build_tinysam
        return build_tinysam(**kwargs)
    if name == 'tinysam_w8a8':
        raise ValueError("the Q-TinySAM twin takes its quantised layers from the torch model: "
                         "zoo.mindspore.from_torch(zoo.create_sam('tinysam_w8a8', checkpoint=...))")
    cell = twin_builder(name)(name, **kwargs)
    cell.set_train(False)
    return cell


def model_name_of(model: torch.nn.Module) -> str:
    """The registered name a zoo torch model was built as (timm records it in ``pretrained_cfg``)."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    name = cfg.get('architecture')
    if not name:
        raise ValueError(f'cannot tell which zoo model this {type(model).__name__} is: build it with '
                         f'zoo.create_model(NAME) or timm.create_model(NAME)')
    return name


def _default_kwargs(model: torch.nn.Module) -> dict:
    kwargs = {'num_classes': getattr(model, 'num_classes', 1000)}
    if hasattr(model, 'in_chans'):
        kwargs['in_chans'] = model.in_chans
    return kwargs


def from_torch(model: torch.nn.Module) -> nn.Cell:
    """The MindSpore twin of a zoo torch model, holding its weights, in inference mode; also of the whole SAM
    ``zoo.create_sam('tinysam' | 'tinysam_w8a8')`` returns."""
    from ..models.tinysam import TinySam as TorchTinySam
    if isinstance(model, TorchTinySam):
        from .tinysam import from_torch_qsam, from_torch_sam
        quantized = any(key.endswith('.weight_scale') for key in model.state_dict())
        return from_torch_qsam(model) if quantized else from_torch_sam(model)
    name = model_name_of(model)
    reader = kwargs_reader(name) or _default_kwargs
    cell = create_model(name, **reader(model))
    load_torch_weights(cell, model.state_dict())
    return cell


def parameter_arrays(cell: nn.Cell) -> dict[str, np.ndarray]:
    """``{parameter name: NumPy array}`` of a cell, buffers (non-trainable parameters) included."""
    return {name: param.asnumpy() for name, param in cell.parameters_and_names()}


def _numpy_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    state_dict = unwrap_state_dict(state_dict) if any(torch.is_tensor(v) for v in state_dict.values()) \
        else dict(state_dict)
    return {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in state_dict.items()}


def _compare(params: Mapping[str, np.ndarray], expected: Mapping[str, tuple]) -> KeyMismatch:
    return KeyMismatch(
        missing=[k for k in expected if k not in params],
        unexpected=[k for k in params if k not in expected],
        wrong_shape=[f'{k} {tuple(v.shape)} vs {tuple(expected[k])}' for k, v in params.items()
                     if k in expected and tuple(v.shape) != tuple(expected[k])])


def load_torch_weights(cell: nn.Cell, state_dict: Mapping[str, Any]) -> nn.Cell:
    """Copy a torch state dict into ``cell`` strictly: a ValueError lists the missing, unexpected and
    mis-shaped parameters, and nothing is changed unless everything fits."""
    shapes = {name: tuple(p.shape) for name, p in cell.parameters_and_names()}
    params = convert_arrays(_numpy_state_dict(state_dict), shapes)
    mismatch = _compare(params, shapes)
    if mismatch:
        raise ValueError(f'the weights do not fit the MindSpore {type(cell).__name__}: {mismatch.describe()}')
    load_arrays(cell, params)
    return cell


def load_arrays(cell: nn.Cell, params: Mapping[str, Any]) -> nn.Cell:
    """Copy ``{MindSpore name: array}`` into ``cell`` strictly (same names and shapes), dtype kept per
    parameter; a ValueError lists what does not fit."""
    arrays = {k: (v.asnumpy() if isinstance(v, (ms.Tensor, ms.Parameter)) else np.asarray(v))
              for k, v in params.items()}
    targets = dict(cell.parameters_and_names())
    mismatch = _compare(arrays, {k: tuple(p.shape) for k, p in targets.items()})
    if mismatch:
        raise ValueError(f'the parameters do not fit the MindSpore {type(cell).__name__}: {mismatch.describe()}')
    for name, param in targets.items():
        param.set_data(ms.Tensor(arrays[name], dtype=param.dtype))
    return cell


@functools.lru_cache(maxsize=None)
def _twin_names(name: str) -> tuple[str, ...]:
    return tuple(n for n, _ in create_model(name).parameters_and_names())


@functools.lru_cache(maxsize=None)
def _torch_keys(name: str) -> tuple[str, ...]:
    """The torch state dict keys of ``name``, of its deploy form too where it has one (GhostNetV3)."""
    from timm.models import reparameterize_model

    from .. import create_model as create_torch_model
    model = create_torch_model(name)
    keys = list(model.state_dict()) + list(reparameterize_model(model).state_dict())
    return tuple(dict.fromkeys(keys))


def convert_state_dict(state_dict: Mapping[str, Any], name: str) -> dict[str, ms.Parameter]:
    """A torch state dict of zoo model ``name`` as ``{name: mindspore.Parameter}`` (what
    ``mindspore.save_checkpoint`` and ``mindspore.load_param_into_net`` take). Names only are checked here;
    :func:`load_torch_weights` checks shapes against a built twin."""
    twin = _twin_names(name)
    arrays = convert_arrays(_numpy_state_dict(state_dict), twin)
    return {k: ms.Parameter(ms.Tensor(v), name=k, requires_grad=v.dtype.kind == 'f') for k, v in arrays.items()}


def to_torch_state_dict(params: Mapping[str, Any], name: str) -> dict[str, torch.Tensor]:
    """MindSpore parameters (``{name: Parameter | Tensor | array}``, e.g. from ``mindspore.load_checkpoint``) of
    zoo model ``name`` as a torch state dict; BatchNorm's ``num_batches_tracked`` counters come back as 0."""
    arrays = {k: (v.asnumpy() if isinstance(v, (ms.Tensor, ms.Parameter)) else np.asarray(v))
              for k, v in params.items()}
    keys = _torch_keys(name)
    placed = torch_to_mindspore_names(keys, arrays)
    unexpected = sorted(set(arrays) - set(placed.values()))
    if unexpected:
        raise ValueError(f'{len(unexpected)} parameters are not parameters of {name}: {unexpected[:5]}')
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_torch_arrays(arrays, keys).items()}
    for key in keys:
        prefix, _, leaf = key.rpartition('.')
        if leaf in DROPPED_LEAVES and f'{prefix}.running_mean' in out:
            out[key] = torch.tensor(0, dtype=torch.long)
    return out
