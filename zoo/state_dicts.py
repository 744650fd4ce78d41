"""Comparing a checkpoint's state dict with a model's, so that a load error names what does not fit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import torch

__all__ = ['KeyMismatch', 'compare_state_dict', 'unwrap_state_dict', 'CHECKPOINT_WRAPPERS']

# Where training scripts put the weights inside a checkpoint, in the order they are looked for.
CHECKPOINT_WRAPPERS = ('model', 'state_dict', 'state_dict_ema', 'model_ema')


def unwrap_state_dict(obj: Any, wrappers: Sequence[str] = CHECKPOINT_WRAPPERS) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: a bare state dict, or the first of ``wrappers`` that holds one,
    without a DistributedDataParallel ``module.`` prefix and without non-tensor entries ({} if none)."""
    if isinstance(obj, Mapping):
        for key in wrappers:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        return {}
    return {k.removeprefix('module.'): v for k, v in obj.items() if torch.is_tensor(v)}


@dataclass(frozen=True)
class KeyMismatch:
    """Keys the model has and the checkpoint lacks, keys only the checkpoint has, and keys of both whose shapes
    differ (as ``'key (checkpoint shape) vs (model shape)'``). False when the checkpoint fits exactly."""
    missing: list[str]
    unexpected: list[str]
    wrong_shape: list[str]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.wrong_shape)

    def describe(self, examples: int = 5) -> str:
        return (f'{len(self.missing)} missing keys {self.missing[:examples]}, {len(self.unexpected)} unexpected '
                f'keys {self.unexpected[:examples]}, {len(self.wrong_shape)} of another shape '
                f'{self.wrong_shape[:examples]}')


def compare_state_dict(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                       may_miss: Iterable[str] = ()) -> KeyMismatch:
    """How ``state_dict`` differs from ``expected`` (a model's ``state_dict()``); keys in ``may_miss`` may be
    absent from ``state_dict``."""
    may_miss = set(may_miss)
    return KeyMismatch(
        missing=[k for k in expected if k not in state_dict and k not in may_miss],
        unexpected=[k for k in state_dict if k not in expected],
        wrong_shape=[f'{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}' for k, v in state_dict.items()
                     if k in expected and v.shape != expected[k].shape])
