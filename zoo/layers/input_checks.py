"""Early, readable errors for inputs a model cannot take (instead of a shape error deep inside)."""
from __future__ import annotations

import torch


def _symbolic(x: object) -> bool:
    """True while tracing or compiling, where shapes are symbolic and checks must not run."""
    return not isinstance(x, torch.Tensor) or isinstance(x, torch.fx.Proxy) or torch.jit.is_scripting() \
        or torch.jit.is_tracing() or torch.compiler.is_compiling()


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
    if _symbolic(x):
        return
    if x.ndim != 4:
        raise ValueError(f'{name} expects a 4-D image batch (B, {in_chans}, H, W), got shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        raise ValueError(
            f'{name} expects {in_chans} input channels, got {x.shape[1]} channels (input shape {tuple(x.shape)}); '
            f'create the model with in_chans={x.shape[1]} to change it')
    if x.shape[0] == 0:  # graph and attention layers reshape by the batch size, which fails on an empty batch
        raise ValueError(f'{name} got an empty batch (input shape {tuple(x.shape)}); pass at least one image')
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f'{name} needs an input of at least {min_size}x{min_size}, got {h}x{w}')
    if divisor > 1 and (h % divisor or w % divisor):
        raise ValueError(
            f'{name} needs input height and width that are multiples of {divisor}, got {h}x{w}; '
            f'resize or pad to e.g. {-(-h // divisor) * divisor}x{-(-w // divisor) * divisor}')


def check_video_input(
        x: torch.Tensor,
        in_chans: int,
        num_frames: int,
        min_size: int = 1,
        name: str = 'model',
) -> None:
    """Raise a ValueError naming the problem if ``x`` is not a (B, in_chans, num_frames, H, W) clip batch.

    A model that folds time into channels is built for one clip length, so the frame count must match.
    Skipped while tracing (torch.fx / torch.jit / torch.compile), where shapes are symbolic.
    """
    if _symbolic(x):
        return
    layout = f'(B, {in_chans}, {num_frames}, H, W)'
    if x.ndim != 5:
        raise ValueError(f'{name} expects a 5-D clip batch {layout} (batch, channels, time, height, width), '
                         f'got shape {tuple(x.shape)}')
    if x.shape[1] != in_chans:
        hint = ''
        if x.shape[2] == in_chans and x.shape[1] == num_frames:
            hint = '; the clip looks like (B, T, C, H, W): use x.permute(0, 2, 1, 3, 4)'
        raise ValueError(
            f'{name} expects {in_chans} input channels in dim 1 of {layout}, got {x.shape[1]} channels '
            f'(input shape {tuple(x.shape)}){hint}')
    if x.shape[2] != num_frames:
        raise ValueError(
            f'{name} was built for clips of {num_frames} frames, got {x.shape[2]} (input shape {tuple(x.shape)}); '
            f'sample {num_frames} frames or create the model with num_frames={x.shape[2]}')
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(f'{name} needs frames of at least {min_size}x{min_size}, got {h}x{w}')


def square_size(img_size, name: str = 'model') -> int:
    """``img_size`` as one int, for a family whose tables are laid out for a square grid.

    Takes an int or an (H, W) pair with H == W: timm records a model's size as [H, W] (``model_args`` in a Hub
    folder's config.json), so ``timm.create_model('hf-hub:...')`` passes the pair back.
    """
    if isinstance(img_size, int):
        return img_size
    size = tuple(img_size)
    if len(size) == 2 and size[0] == size[1] and isinstance(size[0], int):
        return size[0]
    raise ValueError(f'{name} lays out its tables for a square size: img_size must be an int or (S, S), '
                     f'got {img_size!r}')
