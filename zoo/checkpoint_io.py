"""Reading checkpoint files safely, with one clear error for every way a file can be unusable.

torch reads a checkpoint with ``weights_only=True`` but does not check the zip archive's CRCs, so a file with
flipped bytes loads as wrong weights. :func:`load_checkpoint_file` checks the CRCs of any zip checkpoint (the
zoo's and third parties'), verifies the tensor digest the zoo stores in its own checkpoints
(:func:`with_digest`), and turns an empty, truncated, corrupt or refused (pickled code) file into a
:class:`CheckpointError` that names the file. Third-party checkpoints carry no digest and load as before.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from .state_dicts import unwrap_state_dict

__all__ = ['CheckpointError', 'DIGEST_KEY', 'tensor_digest', 'with_digest', 'check_archive', 'load_checkpoint_file',
           'model_state_dict', 'classifier_classes']

#: Key of the tensor digest in a zoo checkpoint (a top-level dict entry, next to 'model').
DIGEST_KEY = 'tensor_digest'


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file, the problem and the fix."""


def _tensors(obj: Any, prefix: str = '') -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) for every tensor in nested dicts / lists / tuples, in a fixed order."""
    if torch.is_tensor(obj):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if k != DIGEST_KEY:
                yield from _tensors(obj[k], f'{prefix}/{k}')
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f'{prefix}/{i}')


def tensor_digest(obj: Any) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every tensor in ``obj`` (``'sha256:<hex>'``)."""
    h = hashlib.sha256()
    for name, t in _tensors(obj):
        t = t.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return 'sha256:' + h.hexdigest()


def with_digest(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` plus its :func:`tensor_digest` under :data:`DIGEST_KEY`, for :func:`load_checkpoint_file` to verify."""
    return {**obj, DIGEST_KEY: tensor_digest(obj)}


_CORRUPT_HINT = 'the file is corrupt (damaged in writing, copying or on disk); restore it from a good copy'


def check_archive(path: str | Path) -> None:
    """Refuse an empty file, a truncated zip and a zip whose member CRCs do not match (flipped bytes); for files
    that are not read with ``weights_only=True`` here (e.g. safetensors, or a release that needs stand-ins)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes): it was not written completely; '
                              f'restore it or save it again')
    with open(path, 'rb') as f:
        is_zip = f.read(4) == b'PK\x03\x04'
    if not is_zip:
        return  # torch's legacy (pre-1.6) format: no CRCs to check
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f'checkpoint {path} is truncated or corrupt ({e}; {size} bytes): '
                              f'{_CORRUPT_HINT}') from None
    if bad is not None:
        raise CheckpointError(f'checkpoint {path} is corrupt: the CRC of its entry {bad} does not match; '
                              f'{_CORRUPT_HINT}')


def load_checkpoint_file(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, after checking the archive, with the stored digest
    verified (and removed from the result) when the file is one of the zoo's.

    Raises:
        CheckpointError: the file is missing, empty, truncated, corrupt, fails its digest, or holds pickled
            objects other than tensors and plain containers (refused: loading them could run code).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist' if not path.exists() else
                              f'checkpoint {path} is not a file')
    check_archive(path)
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        what = f' ({found.group(1)})' if found else ''
        raise CheckpointError(
            f'checkpoint {path} was refused: it holds pickled Python objects{what} besides tensors and plain '
            f'containers, and loading those could run arbitrary code; save the weights as a plain state dict '
            f'(or safetensors) where the file is trusted') from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(f'checkpoint {path} cannot be read ({str(e).splitlines()[0][:160] or type(e).__name__}): '
                              f'{_CORRUPT_HINT}') from None
    if isinstance(obj, dict) and DIGEST_KEY in obj:
        stored = obj.pop(DIGEST_KEY)
        if tensor_digest(obj) != stored:
            raise CheckpointError(f'checkpoint {path} is corrupt: its tensors do not match the digest stored '
                                  f'with them; {_CORRUPT_HINT}')
    return obj


def model_state_dict(obj: Any) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint (see :func:`zoo.state_dicts.unwrap_state_dict`)."""
    return unwrap_state_dict(obj)


def classifier_classes(path: str | Path, classifier: str) -> int:
    """The class count of the classifier ``classifier`` (a module name, e.g. ``'fc'``) in the checkpoint at ``path``.

    Raises:
        CheckpointError: the file is unusable (:func:`load_checkpoint_file`) or holds no such classifier, e.g.
            a backbone-only or another model's checkpoint, whose head would start random.
    """
    weights = unwrap_state_dict(load_checkpoint_file(path))
    weight = weights.get(f'{classifier}.weight')
    if weight is None or weight.ndim < 1:
        example = next(iter(weights), None)
        raise CheckpointError(f'checkpoint {path} holds no trained classifier {classifier}.weight '
                              f'({len(weights)} tensors{f", e.g. {example}" if example else ""}): it is a '
                              f'backbone-only checkpoint or one of another model; pass a checkpoint of the '
                              f'whole model')
    return int(weight.shape[0])
