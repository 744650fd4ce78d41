"""Activations with torch's formulas: exact (erf) GELU, and timm's hard sigmoid ``relu6(x + 3) / 6``."""
from __future__ import annotations

from mindspore import nn, ops


class GELU(nn.Cell):
    """torch's default GELU, ``x * Phi(x)`` with the exact normal CDF (MindSpore's default is the tanh
    approximation)."""

    def __init__(self):
        super().__init__()
        self.gelu = nn.GELU(approximate=False)

    def construct(self, x):
        return self.gelu(x)


class HardSigmoid(nn.Cell):
    """``relu6(x + 3) / 6``, the gate of GhostNet's squeeze-excite (timm's ``hard_sigmoid``)."""

    def construct(self, x):
        return ops.relu6(x + 3.0) / 6.0


_ACTIVATIONS = {'relu': nn.ReLU, 'gelu': GELU, 'sigmoid': nn.Sigmoid, 'hard_sigmoid': HardSigmoid,
                'identity': nn.Identity}


def activation(name: str) -> nn.Cell:
    """A new activation cell by name (``relu``, ``gelu``, ``sigmoid``, ``hard_sigmoid``, ``identity``)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f'unknown activation {name!r}: use one of {", ".join(_ACTIVATIONS)}')
    return _ACTIVATIONS[name]()
