"""Early, readable errors for clips a video twin cannot take: the ones ``zoo.layers.check_video_input`` raises.

The checks read the static input shape only, so they cost nothing at run time and hold in GRAPH mode too.
"""
from __future__ import annotations

__all__ = ['check_clip_shape']


def check_clip_shape(shape: tuple, in_chans: int, num_frames: int, min_size: int = 1, name: str = 'model') -> None:
    """Raise a ValueError naming the problem if ``shape`` is not a (B, in_chans, num_frames, H, W) clip batch
    with frames of at least ``min_size`` pixels a side (a model that folds time into channels is built for one
    clip length)."""
    layout = f'(B, {in_chans}, {num_frames}, H, W)'
    if len(shape) != 5:
        raise ValueError(f'{name} expects a 5-D clip batch {layout} (batch, channels, time, height, width), '
                         f'got shape {tuple(shape)}')
    if shape[1] != in_chans:
        hint = ''
        if shape[2] == in_chans and shape[1] == num_frames:
            hint = '; the clip looks like (B, T, C, H, W): use x.permute(0, 2, 1, 3, 4)'
        raise ValueError(f'{name} expects {in_chans} input channels in dim 1 of {layout}, got {shape[1]} channels '
                         f'(input shape {tuple(shape)}){hint}')
    if shape[2] != num_frames:
        raise ValueError(f'{name} was built for clips of {num_frames} frames, got {shape[2]} (input shape '
                         f'{tuple(shape)}); sample {num_frames} frames or create the model with '
                         f'num_frames={shape[2]}')
    h, w = shape[3], shape[4]
    if h < min_size or w < min_size:
        raise ValueError(f'{name} needs frames of at least {min_size}x{min_size}, got {h}x{w}')
