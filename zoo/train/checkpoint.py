"""Run checkpoints: written atomically, read with ``weights_only=True``, holding everything a resume needs.

A checkpoint holds the model, optimizer, scheduler, EMA, grad-scaler and OFA-branch states, the epoch
count and global step, the metric history, the configuration and the random-number generator states;
every value is a tensor or a plain Python container, so ``torch.load(..., weights_only=True)`` reads it. Each
file carries a digest of its tensors, verified when it is read (:mod:`zoo.checkpoint_io`).
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..checkpoint_io import CheckpointError, load_checkpoint_file, with_digest

__all__ = ['atomic_save', 'load_checkpoint', 'rng_state', 'set_rng_state']


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A reader (or a run killed mid-write) sees either the old file or the new one, never half of one. A dict
    is saved with its tensor digest (:func:`zoo.checkpoint_io.with_digest`).
    """
    if isinstance(obj, dict):
        obj = with_digest(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, require: Sequence[str] = ()) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``, on the CPU, digest verified); a file that cannot be read, or
    that lacks one of the ``require``d entries (e.g. a resume's), is a :class:`~zoo.checkpoint_io.CheckpointError`."""
    ckpt = load_checkpoint_file(path)
    missing = [k for k in require if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f'{path} is not a train.py run checkpoint (it lacks {", ".join(missing[:4])}); '
                              f'resume a run folder written by train.py, or start over with --overwrite')
    return ckpt


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states, as tensors and plain containers."""
    np_state = np.random.get_state()
    state = {
        'python': _to_plain(random.getstate()),
        'numpy': {'keys': torch.from_numpy(np_state[1].astype(np.int64)), 'pos': int(np_state[2]),
                  'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(_to_tuple(state['python']))
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, tuple) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x
