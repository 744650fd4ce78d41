"""Early, readable errors for inputs a twin cannot take, the same ones the torch models raise.

The checks read the static input shape only, so they cost nothing at run time and hold in GRAPH mode too.
"""
from __future__ import annotations

__all__ = ['check_image_shape']


def check_image_shape(shape: tuple, in_chans: int, divisor: int = 1, min_size: int = 1, name: str = 'model') -> None:
    """Raise a ValueError naming the problem if ``shape`` is not a (B, in_chans, H, W) batch that a model of
    total stride ``divisor`` taking at least ``min_size`` pixels a side can run."""
    if len(shape) != 4:
        raise ValueError(f'{name} expects a 4-D image batch (B, {in_chans}, H, W), got shape {tuple(shape)}')
    if shape[1] != in_chans:
        raise ValueError(f'{name} expects {in_chans} input channels, got {shape[1]}; build it with '
                         f'in_chans={shape[1]} to change that')
    h, w = shape[2], shape[3]
    if h < min_size or w < min_size:
        raise ValueError(f'{name} needs an input of at least {min_size}x{min_size}, got {h}x{w}')
    if divisor > 1 and (h % divisor or w % divisor):
        raise ValueError(f'{name} needs input height and width that are multiples of {divisor}, got {h}x{w}; '
                         f'resize or pad to e.g. {-(-h // divisor) * divisor}x{-(-w // divisor) * divisor}')
