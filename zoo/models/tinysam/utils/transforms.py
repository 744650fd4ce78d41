"""SAM's input geometry: resize so the longest side is the model's input size, and map prompts alike."""
from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ['ResizeLongestSide', 'to_rgb_uint8']


def to_rgb_uint8(image: np.ndarray, image_format: str = 'RGB') -> np.ndarray:
    """An HxWx3 uint8 RGB array from an RGB/BGR, grayscale (HxW, HxWx1) or RGBA (HxWx4) image.

    Grayscale is replicated to three channels and RGBA loses its alpha channel, each with a warning;
    floating-point images must lie in [0, 1] (scaled to 0..255) or [0, 255].
    """
    image = np.asarray(image)
    if image_format not in ('RGB', 'BGR'):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        warnings.warn('grayscale image: replicating it to 3 channels', stacklevel=3)
        image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        warnings.warn('RGBA image: dropping the alpha channel', stacklevel=3)
        image = image[..., :3]
    elif image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected an HxWx3 (or HxW / HxWx1 / HxWx4) image, got shape {image.shape}')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'empty image of shape {image.shape}')
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.number):
            raise ValueError(f'image dtype {image.dtype} is not numeric')
        image = image.astype(np.float64)
        if image.max() <= 1.0:
            image = image * 255.0
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    if image_format == 'BGR':
        image = image[..., ::-1]
    return np.ascontiguousarray(image)


class ResizeLongestSide:
    """Resizes images (and maps coordinates and boxes) so that the longest side is ``target_length``."""

    def __init__(self, target_length: int = 1024):
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(old_h: int, old_w: int, long_side: int) -> Tuple[int, int]:
        scale = long_side / max(old_h, old_w)
        return int(old_h * scale + 0.5), int(old_w * scale + 0.5)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 -> resized HxWx3 uint8 (PIL bilinear, as segment-anything does)."""
        h, w = self.get_preprocess_shape(image.shape[0], image.shape[1], self.target_length)
        return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        """(..., 2) x, y pixels of the original image -> pixels of the resized image."""
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float, copy=True)
        coords[..., 0] *= new_w / old_w
        coords[..., 1] *= new_h / old_h
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        """(..., 4) x0, y0, x1, y1 boxes -> resized frame."""
        boxes = np.asarray(boxes)
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(boxes.shape)

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float images -> resized (antialiased bilinear; close to, not equal to, apply_image)."""
        h, w = self.get_preprocess_shape(image.shape[2], image.shape[3], self.target_length)
        return F.interpolate(image, (h, w), mode='bilinear', align_corners=False, antialias=True)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Tuple[int, int]) -> torch.Tensor:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        scale = coords.new_tensor([new_w / old_w, new_h / old_h], dtype=torch.float)
        return coords.float() * scale

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Tuple[int, int]) -> torch.Tensor:
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(boxes.shape)
