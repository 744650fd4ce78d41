"""Files for the command line: torch checkpoints to fitting torch models, MindSpore ``.ckpt`` files, atomic writes.

Every writer goes through :func:`atomic_path`, so a conversion that fails half-way leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import mindspore as ms
import torch

import zoo
from ..checkpoint_io import load_checkpoint_file
from ..state_dicts import unwrap_state_dict
from ..state_dicts import compare_state_dict
from .convert import DROPPED_LEAVES

__all__ = ['atomic_path', 'torch_model_from_state_dict', 'torch_model_from_checkpoint', 'read_mindspore_checkpoint',
           'write_mindspore_checkpoint']


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = '') -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block succeeds, removed
    when it fails. ``suffix`` is what the writer appends itself (MindSpore's export adds ``.mindir``)."""
    path = Path(path)
    if path.parent and not path.parent.is_dir():
        raise ValueError(f'cannot write {path}: folder {path.parent} does not exist')
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', dir=path.parent or '.')
    os.close(fd)
    os.unlink(tmp)
    written = Path(tmp + suffix)
    try:
        yield Path(tmp)
        os.replace(written, path)
    finally:
        for leftover in (Path(tmp), written):
            if leftover.exists():
                leftover.unlink()


def _shape_kwargs(name: str, state_dict: Mapping[str, torch.Tensor]) -> dict:
    """``num_classes`` and ``in_chans`` read off the classifier and first conv of a state dict."""
    cfg = timm_cfg(name)
    kwargs = {}
    head = state_dict.get(f'{cfg.get("classifier", "head")}.weight')
    kwargs['num_classes'] = int(head.shape[0]) if head is not None else 0
    first = state_dict.get(f'{cfg.get("first_conv", "")}.weight')
    if first is not None and first.ndim == 4:
        kwargs['in_chans'] = int(first.shape[1])
    return kwargs


def timm_cfg(name: str) -> dict:
    """timm's pretrained_cfg of a registered name (classifier and first-conv names, input size)."""
    from timm.models import get_pretrained_cfg
    zoo.model_info(name)  # unknown names: one error with suggestions
    cfg = get_pretrained_cfg(name)
    return cfg.to_dict() if cfg is not None else {}


def _may_miss(keys) -> list[str]:
    return [k for k in keys if k.rpartition('.')[2] in DROPPED_LEAVES]


def torch_model_from_state_dict(name: str, state_dict: Mapping[str, torch.Tensor], source: str = 'the weights'
                                ) -> torch.nn.Module:
    """The torch model ``name`` holding ``state_dict`` (strictly), in eval mode: head size and input channels are
    read off the weights, and a deploy-form state dict (GhostNetV3 re-parameterised) builds the deploy form. A
    ValueError lists the missing, unexpected and mis-shaped keys otherwise."""
    model = zoo.create_model(name, **_shape_kwargs(name, state_dict))
    expected = model.state_dict()
    mismatch = compare_state_dict(state_dict, expected, may_miss=_may_miss(expected))
    if mismatch:
        from timm.models import reparameterize_model
        deployed = reparameterize_model(copy.deepcopy(model))
        expected = deployed.state_dict()
        if set(expected) != set(model.state_dict()) and not compare_state_dict(
                state_dict, expected, may_miss=_may_miss(expected)):
            model, mismatch = deployed, None
    if mismatch:
        raise ValueError(f'{source} does not fit {name}: {mismatch.describe()}')
    model.load_state_dict(dict(state_dict), strict=False)  # strictness checked above (counters may be absent)
    return model.eval()


def torch_model_from_checkpoint(name: str, path: str | Path) -> torch.nn.Module:
    """:func:`torch_model_from_state_dict` for a torch checkpoint file (read with ``weights_only=True``)."""
    return torch_model_from_state_dict(name, unwrap_state_dict(load_checkpoint_file(path)), f'checkpoint {path}')


def read_mindspore_checkpoint(path: str | Path) -> dict[str, Any]:
    """``{name: Parameter}`` of a MindSpore ``.ckpt`` file; a ValueError naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'MindSpore checkpoint {path} does not exist')
    try:
        params = ms.load_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError, TypeError) as e:
        raise ValueError(f'{path} is not a readable MindSpore checkpoint ({str(e).splitlines()[0][:160]})') from None
    if not params:
        raise ValueError(f'MindSpore checkpoint {path} holds no parameters')
    return params


def write_mindspore_checkpoint(params: Mapping[str, Any], path: str | Path,
                               metadata: Optional[dict[str, str]] = None) -> None:
    """Save ``{name: array | Tensor | Parameter}`` as a MindSpore ``.ckpt`` at ``path``, atomically."""
    entries = [{'name': k, 'data': v if isinstance(v, (ms.Tensor, ms.Parameter)) else ms.Tensor(v)}
               for k, v in params.items()]
    with atomic_path(path, suffix='.ckpt') as tmp:  # MindSpore appends .ckpt to the name
        ms.save_checkpoint(entries, str(tmp), append_dict=metadata)
