"""MindSpore blocks shared by several twins, each with torch's semantics and defaults (one concept per file)."""
from .activations import GELU, HardSigmoid, activation
from .conv import Conv2d
from .drop import DropPath
from .linear import Linear
from .norm import BatchNorm2d, GroupNorm, LayerNorm
from .pool import GlobalAvgPool

__all__ = ['GELU', 'HardSigmoid', 'activation', 'Conv2d', 'DropPath', 'Linear', 'BatchNorm2d', 'GroupNorm',
           'LayerNorm', 'GlobalAvgPool']
