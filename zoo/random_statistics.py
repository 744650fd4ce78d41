"""BatchNorm running statistics gathered on random inputs, so that checks on random weights compare O(1) outputs.

With default statistics (mean 0, variance 1) activations grow layer after layer to ~1e9, where a comparison of
two implementations hides a wrong graph. Used by the MindSpore parity check and the export tests.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ['gather_batchnorm_statistics']


def gather_batchnorm_statistics(model: torch.nn.Module, make_input: Callable[[], torch.Tensor],
                                batches: int = 3, min_variance: float = 0.) -> torch.nn.Module:
    """Set every BatchNorm's running statistics to the average over ``batches`` inputs from ``make_input``,
    then put the model in eval mode; returns it.

    ``min_variance`` floors every running variance: where few values reach a norm (the 1 x 1 late stages of a
    small video clip), gathered variances near 0 amplify float32 rounding enough to drown a parity check."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
    model.train()
    with torch.no_grad():
        for _ in range(batches if norms else 0):
            model(make_input())
    if min_variance > 0:
        for m in norms:
            m.running_var.clamp_(min=min_variance)
    return model.eval()
