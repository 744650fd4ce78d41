"""Histograms of oriented gradients (HOG) of a batch of images, in torch: FastMIM's reconstruction target.

Everything runs batched on the images' own device (no per-image loop, no NumPy): per-channel Sobel gradients,
unsigned orientation binned into ``bins`` equal sectors of [0, pi), magnitudes summed per ``cell`` x ``cell``
cell, then each cell's histogram L2-normalised. :func:`hog_patch_targets`
regroups the cells into one target vector per patch (a token of the backbone's last stage).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ['hog_histograms', 'hog_patch_targets', 'pixel_patch_targets', 'patchify']


def hog_histograms(images: torch.Tensor, bins: int = 9, cell: int = 8, normalize: bool = True) -> torch.Tensor:
    """Per-channel HOG of ``images`` (B, C, H, W): a (B, C, bins, H // cell, W // cell) tensor.

    Gradients are Sobel responses (x rightwards, y downwards) with reflected borders, so a border pixel sees
    its mirror image and a ramp has zero gradient across the border. A pixel adds its gradient magnitude to
    the bin of its unsigned orientation ``atan2(gy, gx) mod pi`` (a gradient and its opposite fall in the same
    bin), bin ``k`` covering ``[k, k + 1) * pi / bins``. ``normalize`` scales each cell's histogram to unit
    L2 norm.
    """
    if images.ndim != 4:
        raise ValueError(f'HOG takes a (B, C, H, W) batch, got shape {tuple(images.shape)}')
    b, c, h, w = images.shape
    if h % cell or w % cell:
        raise ValueError(f'HOG cells of {cell} px must tile the {h}x{w} images')
    # Sobel, separably: central difference along one axis, 1-2-1 smoothing along the other. Written as slices
    # rather than a convolution so that a mirrored border gives an exact zero (a convolution's summation order
    # varies with the batch layout, and a +-1e-7 residue would flip such a pixel between bins 0 and bins - 1)
    p = F.pad(images.float(), (1, 1, 1, 1), mode='reflect')
    dx = p[..., :, 2:] - p[..., :, :-2]
    gx = dx[..., :-2, :] + 2. * dx[..., 1:-1, :] + dx[..., 2:, :]
    dy = p[..., 2:, :] - p[..., :-2, :]
    gy = dy[..., :, :-2] + 2. * dy[..., :, 1:-1] + dy[..., :, 2:]
    magnitude = torch.sqrt(gx * gx + gy * gy)
    # atan2 lies in [-pi, pi]; scaled to [-bins, bins], floored and folded modulo bins, opposite directions
    # share a bin (unsigned orientation)
    index = torch.floor(torch.atan2(gy, gx) / math.pi * bins).long().remainder(bins)
    hist = torch.zeros(b, c, bins, h, w, dtype=magnitude.dtype, device=magnitude.device)
    hist.scatter_add_(2, index.unsqueeze(2), magnitude.unsqueeze(2))
    hist = hist.view(b, c, bins, h // cell, cell, w // cell, cell).sum((4, 6))
    return F.normalize(hist, dim=2) if normalize else hist


def patchify(maps: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, D, H, W) -> (B, (H / patch) * (W / patch), patch * patch * D): one row per patch, row-major."""
    b, d, h, w = maps.shape
    if h % patch or w % patch:
        raise ValueError(f'patches of {patch} do not tile a {h}x{w} map')
    x = maps.view(b, d, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * d)


def hog_patch_targets(images: torch.Tensor, patch: int, bins: int = 9, cell: int = 8,
                      normalize: bool = True) -> torch.Tensor:
    """The HOG cells of each ``patch`` x ``patch`` patch as one vector: (B, L, (patch / cell)^2 * C * bins)."""
    if patch % cell:
        raise ValueError(f'HOG cells of {cell} px must tile the {patch}-px patches (the backbone\'s stride)')
    hist = hog_histograms(images, bins, cell, normalize)
    b, c, _, gh, gw = hist.shape
    return patchify(hist.reshape(b, c * bins, gh, gw), patch // cell)


def pixel_patch_targets(images: torch.Tensor, patch: int, normalize: bool = True) -> torch.Tensor:
    """The pixels of each patch as one vector (B, L, patch^2 * C), optionally standardised per patch."""
    target = patchify(images.float(), patch)
    if normalize:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    return target
