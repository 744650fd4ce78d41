"""Helpers of automatic mask generation: point grids, mask scores, boxes, run-length encoding, clean-up."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List

import numpy as np
import torch

__all__ = ['build_point_grid', 'batch_iterator', 'stability_score', 'masks_to_boxes', 'mask_to_rle', 'rle_to_mask',
           'rle_area', 'remove_small_regions', 'MaskRecords']


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points at the centres of an n x n grid of cells over [0, 1]^2, as (x, y), row by row."""
    offsets = (np.arange(n_per_side) + 0.5) / n_per_side
    xs, ys = np.meshgrid(offsets, offsets)
    return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=-1)


def batch_iterator(batch_size: int, array: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, len(array), batch_size):
        yield array[start:start + batch_size]


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks binarised at ``threshold + offset`` and at ``threshold - offset`` (B, H, W) -> (B,)."""
    inner = (logits > threshold + offset).flatten(1).sum(-1, dtype=torch.int64)
    outer = (logits > threshold - offset).flatten(1).sum(-1, dtype=torch.int64)
    return inner.float() / outer.clamp(min=1).float()


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(B, H, W) boolean masks -> (B, 4) x0, y0, x1, y1 boxes (inclusive); empty masks give zeros."""
    if masks.numel() == 0 or masks.shape[0] == 0:
        return torch.zeros(0, 4, device=masks.device)
    b, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)

    def _extent(any_along: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(size, device=masks.device)[None]
        last = (any_along * idx).amax(dim=1)
        first = torch.where(any_along, idx, size).amin(dim=1)
        return first, last

    y0, y1 = _extent(rows, h)
    x0, x1 = _extent(cols, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).float()
    return boxes * (masks.flatten(1).any(dim=1))[:, None]


def mask_to_rle(masks: torch.Tensor) -> List[Dict[str, Any]]:
    """(B, H, W) boolean masks -> uncompressed RLE (column-major counts starting with zeros, COCO style)."""
    b, h, w = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    change = flat[:, 1:] ^ flat[:, :-1]
    out = []
    for i in range(b):
        idx = torch.nonzero(change[i]).flatten() + 1
        bounds = torch.cat([idx.new_zeros(1), idx, idx.new_tensor([h * w])])
        counts = (bounds[1:] - bounds[:-1]).tolist()
        if flat[i, 0]:
            counts = [0] + counts
        out.append({'size': [h, w], 'counts': counts})
    return out


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    h, w = rle['size']
    values = np.zeros(len(rle['counts']), dtype=bool)
    values[1::2] = True
    return np.repeat(values, rle['counts']).reshape(w, h).T


def rle_area(rle: Dict[str, Any]) -> int:
    return int(sum(rle['counts'][1::2]))


def remove_small_regions(mask: np.ndarray, area_thresh: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or drop islands (``'islands'``) smaller than ``area_thresh`` pixels."""
    from scipy import ndimage  # scipy comes with scikit-learn, a zoo dependency

    if mode not in ('holes', 'islands'):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == 'holes'
    working = (fill_holes ^ mask).astype(np.uint8)
    labels, n = ndimage.label(working, structure=np.ones((3, 3)))
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel())[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not fill_holes:
        fill = [i for i in range(n + 1) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


class MaskRecords(dict):
    """Column store of per-mask fields (tensors, arrays or lists of equal length) that filter together."""

    def filter(self, keep: torch.Tensor) -> None:
        idx = torch.as_tensor(keep).nonzero().flatten() if torch.as_tensor(keep).dtype == torch.bool \
            else torch.as_tensor(keep)
        for k, v in self.items():
            if isinstance(v, torch.Tensor):
                self[k] = v[idx.to(v.device)]
            elif isinstance(v, np.ndarray):
                self[k] = v[idx.cpu().numpy()]
            else:
                self[k] = [v[i] for i in idx.tolist()]

    def cat(self, other: 'MaskRecords') -> None:
        for k, v in other.items():
            if k not in self or self[k] is None:
                self[k] = v
            elif isinstance(v, torch.Tensor):
                self[k] = torch.cat([self[k], v])
            elif isinstance(v, np.ndarray):
                self[k] = np.concatenate([self[k], v])
            else:
                self[k] = list(self[k]) + list(v)

    def num_masks(self) -> int:
        return len(next(iter(self.values()))) if self else 0
