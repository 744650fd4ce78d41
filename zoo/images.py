"""Reading images as 8-bit RGB without losing data: the one function every image reader in the zoo uses.

PIL's ``convert('RGB')`` clips 16-bit and 32-bit greyscale images (modes ``I;16``, ``I``, ``F``) at 255, which
turns most pixels of a normal 16-bit photo white. :func:`to_rgb8` scales such images to 8 bits instead, and
:func:`read_image` turns a file that is not an image, or is truncated, into one :class:`ImageReadError`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ['ImageReadError', 'read_image', 'to_rgb8']


class ImageReadError(ValueError):
    """An image file that cannot be decoded; the message names the file and the problem."""


def _full_scale(values: np.ndarray, mode: str) -> float:
    """The value that maps to 255: the full range of the bit depth the pixel values need."""
    if mode.startswith('I;16'):
        return 65535.
    peak = float(values.max()) if values.size else 0.
    if mode == 'F' and peak <= 1.:
        return 1.  # a normalised float image
    for bits in (8, 16, 32):
        if peak <= 2 ** bits - 1:
            return float(2 ** bits - 1)
    return peak


def to_rgb8(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB; high-bit-depth greyscale (``I;16*``, ``I``, ``F``) scaled to 0..255, not clipped."""
    if image.mode.startswith('I') or image.mode == 'F':
        values = np.asarray(image, dtype=np.float64)
        scaled = (values * (255. / _full_scale(values, image.mode))).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode='L').convert('RGB')
    return image.convert('RGB')


def read_image(path: str | Path) -> Image.Image:
    """Decode an image file to 8-bit RGB (:func:`to_rgb8`).

    Raises:
        ImageReadError: the file is missing, not an image PIL reads, truncated or too large to decode safely.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f'no image file at {path}')
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb8(img)
    except UnidentifiedImageError:
        raise ImageReadError(f'{path} is not an image PIL can read (PNG, JPEG, TIFF, ...); '
                             f'pass an image file') from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f'{path} is too large to decode safely ({e})') from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f'{path} cannot be decoded ({e}): the file is truncated or damaged') from None
