"""Early, readable errors for inputs a model cannot take (instead of a shape error deep inside)."""
from __future__ import annotations

from typing import Optional

import torch


def check_image_input(
        x: torch.Tensor,
        in_chans: int,
        divisor: int = 1,
        min_size: int = 1,
        name: str = 'model',
) -> None:
    """Raise a ValueError naming the problem if ``x`` is not a (B, in_chans, H, W) image batch that a
    model with total stride ``divisor`` can take.

    Skipped while tracing (torch.fx / torch.jit / torch.compile), where shapes are symbolic.
    """
    if not isinstance(x, torch.Tensor) or isinstance(x, torch.fx.Proxy) or torch.jit.is_scripting() \
            or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if x.ndim != 4:
        raise ValueError(f'{name} expects a 4-D image batch (B, {in_chans}, H, W), got shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(
            f'{name} expects {in_chans} input channels, got {x.shape[1]} channels (input shape {tuple(x.shape)}); '
            f'create the model with in_chans={x.shape[1]} to change it')
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f'{name} needs an input of at least {min_size}x{min_size}, got {h}x{w}')
    if divisor > 1 and (h % divisor or w % divisor):
        raise ValueError(
            f'{name} needs input height and width that are multiples of {divisor}, got {h}x{w}; '
            f'resize or pad to e.g. {-(-h // divisor) * divisor}x{-(-w // divisor) * divisor}')
