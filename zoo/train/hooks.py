"""Per-step hooks for schedules that follow the global step (e.g. SLAB's PRepBN LayerNorm -> BatchNorm blend).

The engine calls every hook with the global optimizer step and the run's total step count before each
step. A hook is either a callable ``hook(step, total_steps)`` handed to the engine, or any sub-module of the
model defining ``on_train_step(step: int, total_steps: int)``. Since the step is saved in the checkpoint and
the hook receives it, a hook that derives its state from the step survives ``--resume`` unchanged.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch.nn as nn

__all__ = ['StepHook', 'collect_step_hooks', 'call_step_hooks']

StepHook = Callable[[int, int], None]


def collect_step_hooks(model: nn.Module, extra: Optional[Iterable[StepHook]] = None) -> list[StepHook]:
    """The ``on_train_step`` methods of the model's sub-modules, plus ``extra`` callables."""
    hooks: list[StepHook] = [m.on_train_step for m in model.modules() if callable(getattr(m, 'on_train_step', None))]
    return hooks + list(extra or [])


def call_step_hooks(hooks: Iterable[StepHook], step: int, total_steps: int) -> None:
    for hook in hooks:
        hook(step, total_steps)
