"""Window helpers of the Swin and CSWin twins: partitions, cyclic shifts, zero padding and the additive masks
(as :mod:`zoo.models.slab`). Masks and relative position indices depend on sizes alone, so they are NumPy
constants made once per size (in GRAPH mode, at compile time)."""
from __future__ import annotations

import functools

import numpy as np
from mindspore import Tensor, ops

__all__ = ['PAD_MASK', 'window_partition', 'window_reverse', 'roll2d', 'pad_bottom_right', 'window_mask',
           'relative_position_index', 'stripe_pad_mask']

PAD_MASK = -100.0  # added to the attention logits of masked keys (as Swin's shift mask)


def window_partition(x, ws: int):
    """(B, H, W, C) -> (B * nW, ws * ws, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // ws, ws, W // ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, C)


def window_reverse(x, ws: int, H: int, W: int):
    """(B * nW, ws * ws, C) -> (B, H, W, C)."""
    C = x.shape[-1]
    x = x.reshape(-1, H // ws, W // ws, ws, ws, C).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, H, W, C)


def roll2d(x, shift: int):
    """``torch.roll(x, (shift, shift), dims=(1, 2))`` by slicing (MindSpore's roll has no CPU kernel)."""
    H, W = x.shape[1], x.shape[2]
    sh, sw = shift % H, shift % W
    if sh:
        x = ops.concat((x[:, H - sh:], x[:, :H - sh]), axis=1)
    if sw:
        x = ops.concat((x[:, :, W - sw:], x[:, :, :W - sw]), axis=2)
    return x


def pad_bottom_right(x, pad_h: int, pad_w: int, channels_last: bool):
    """Zero-pad the bottom and right of a (B, H, W, C) map (``channels_last``) or a (B, C, H, W) one."""
    if pad_h == 0 and pad_w == 0:
        return x
    return ops.pad(x, (0, 0, 0, pad_w, 0, pad_h) if channels_last else (0, pad_w, 0, pad_h))


@functools.lru_cache(maxsize=64)
def _window_mask_array(hp: int, wp: int, h: int, w: int, ws: int, shift: int) -> np.ndarray:
    region = np.zeros((hp, wp), np.float32)
    if shift > 0:
        bounds = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
        cnt = 0
        for hs in bounds:
            for wsl in bounds:
                region[hs, wsl] = cnt
                cnt += 1
    pad = np.zeros((hp, wp), bool)
    pad[h:, :] = True
    pad[:, w:] = True
    if shift > 0:
        pad = np.roll(pad, (-shift, -shift), axis=(0, 1))

    def windows(a):
        return a.reshape(hp // ws, ws, wp // ws, ws).transpose(0, 2, 1, 3).reshape(-1, ws * ws)

    region, pad = windows(region), windows(pad)
    mask = (region[:, None, :] != region[:, :, None]) | pad[:, None, :]
    return mask.astype(np.float32) * PAD_MASK


def window_mask(hp: int, wp: int, h: int, w: int, ws: int, shift: int):
    """(nW, ws*ws, ws*ws) additive mask of Swin's shifted-window regions and of padded keys; None if not needed."""
    if shift == 0 and hp == h and wp == w:
        return None
    return Tensor(_window_mask_array(hp, wp, h, w, ws, shift))


def relative_position_index(ws: int) -> np.ndarray:
    """(ws*ws, ws*ws) index into Swin's relative position bias table (official layout)."""
    coords = np.stack(np.meshgrid(np.arange(ws), np.arange(ws), indexing='ij')).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (ws - 1)
    return (rel[:, :, 0] * (2 * ws - 1) + rel[:, :, 1]).astype(np.int32)


@functools.lru_cache(maxsize=64)
def _stripe_pad_mask_array(h: int, w: int, hs: int, ws: int) -> np.ndarray:
    hp, wp = -(-h // hs) * hs, -(-w // ws) * ws
    valid = np.zeros((hp, wp), np.float32)
    valid[:h, :w] = 1
    stripes = valid.reshape(hp // hs, hs, wp // ws, ws).transpose(0, 2, 1, 3).reshape(-1, 1, 1, hs * ws)
    return (stripes == 0).astype(np.float32) * PAD_MASK


def stripe_pad_mask(h: int, w: int, hs: int, ws: int):
    """(nWin, 1, 1, hs*ws) additive mask of the padded keys of CSWin stripes over an (h, w) map."""
    return Tensor(_stripe_pad_mask_array(h, w, hs, ws))
