"""Whether a fast path may bypass a module: not when someone observes it through hooks.

Several models run groups of modules as one fused computation (BatchNorm folded into the convolution before it,
several 1x1 convolutions as one product, an activation fused into a matmul). A forward hook on one of those
modules (Q-TinySAM's calibration records each convolution's input; feature probes read inner layers) would then
never fire. A module with hooks, or any global module hook, makes the caller run the modules one by one.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules import module as _module

__all__ = ['observed']


def observed(*modules: nn.Module) -> bool:
    """True when any of ``modules`` has a forward hook or pre-hook, or a global module hook is registered."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
