"""BatchNorm running statistics gathered on random inputs, so that checks on random weights compare O(1) outputs.

With default statistics (mean 0, variance 1) activations grow layer after layer to ~1e9, where a comparison of
two implementations hides a wrong graph. Used by the MindSpore parity check and the export tests.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ['gather_batchnorm_statistics']


def gather_batchnorm_statistics(model: torch.nn.Module, make_input: Callable[[], torch.Tensor],
                                batches: int = 3) -> torch.nn.Module:
    """Set every BatchNorm's running statistics to the average over ``batches`` inputs from ``make_input``,
    then put the model in eval mode; returns it."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes
    model.train()
    with torch.no_grad():
        for _ in range(batches if norms else 0):
            model(make_input())
    return model.eval()
